/**
 * The service as a process of its own, for benches that measure it from outside: the compiled
 * dist/bench-build/src/main.js, configured through HSMB_* variables, its listeners on port 0. Its log
 * goes to a file (not a pipe this process would have to drain while it measures), where the
 * "REST listening" and "gRPC listening" lines give the bound ports. Every wait is bounded.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

export interface ServiceProcess {
  /** e.g. http://127.0.0.1:41234 */
  readonly restUrl: string;
  readonly grpcPort: number;
  /** CPU time (user + system, ms) the service has used so far, from /proc (Linux, as SoftHSM here). */
  cpuMs(): number;
  /** SIGTERM, then the exit (0, or this throws) within STOP_TIMEOUT_MS, SIGKILL past it; removes the log. */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts the service with `env` over this process's environment; resolves once it listens and /health/ready answers 200. */
export async function startService(env: Record<string, string>): Promise<ServiceProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'hsmb-bench-service-'));
  const logPath = join(dir, 'service.log');
  const logFd = openSync(logPath, 'w');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [MAIN], { env: { ...process.env, ...env }, stdio: ['ignore', logFd, logFd] });
  } finally {
    closeSync(logFd); // the child has its own copy
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // Whatever happens to this process, the service does not outlive it.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const log = () => readFileSync(logPath, 'utf8');
  const cleanup = () => {
    process.off('exit', killOnExit);
    rmSync(dir, { recursive: true, force: true });
  };
  const fail = async (why: string): Promise<never> => {
    const tail = log().trimEnd().split('\n').slice(-20).join('\n');
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    cleanup();
    throw new Error(`service: ${why}\n--- last lines of its log ---\n${tail}`);
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  let restUrl: string | undefined;
  let grpcPort: number | undefined;
  while (restUrl === undefined || grpcPort === undefined) {
    if (child.exitCode !== null) return fail(`exited with ${child.exitCode} while starting`);
    if (Date.now() > deadline) return fail(`not listening within ${START_TIMEOUT_MS} ms`);
    const lines = log().split('\n');
    lines.pop(); // unfinished, or the empty rest after the last newline
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      const entry = JSON.parse(line) as { msg?: string; url?: string; port?: number };
      if (entry.msg === 'REST listening') restUrl = entry.url;
      if (entry.msg === 'gRPC listening') grpcPort = entry.port;
    }
    await sleep(100);
  }
  for (;;) {
    const ready = await fetch(`${restUrl}/health/ready`, { signal: AbortSignal.timeout(2000) }).then((r) => r.status === 200, () => false);
    if (ready) break;
    if (child.exitCode !== null) return fail(`exited with ${child.exitCode} while starting`);
    if (Date.now() > deadline) return fail(`not ready within ${START_TIMEOUT_MS} ms`);
    await sleep(100);
  }

  const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
  const stat = `/proc/${child.pid}/stat`;
  return {
    restUrl,
    grpcPort,
    cpuMs() {
      // "pid (comm) state ...": utime and stime are the 12th and 13th fields after the comm's last ')'.
      const text = readFileSync(stat, 'utf8');
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), STOP_TIMEOUT_MS)))]);
      clearTimeout(timer);
      if (code === 'timeout') return fail(`still running ${STOP_TIMEOUT_MS} ms after SIGTERM`);
      if (code !== 0) return fail(`exited with ${code} on SIGTERM`);
      cleanup();
    },
  };
}
