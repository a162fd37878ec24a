/**
 * hsm-bridge as a process of its own, for benches that measure it from outside and tests whose scenario
 * could block a process (a frozen HSM) or needs several replicas:
 *   const service = await startServiceProcess({ env: { HSMB_BACKEND__TYPE: 'pkcs11', ... }, config: {...} });
 *   await fetch(`${service.restUrl}/health/live`); ... await service.stop();
 * Compiled (benches: dist/bench-build/src/main.js) or from the sources (tests: `node --import tsx
 * src/main.ts`), whichever this file itself is. Listeners on loopback, ports chosen by the system and read
 * from the log, which goes to a file (not a pipe this process would have to drain while it measures).
 * Every wait is bounded; a service still running at `hardDeadlineMs`, or when this process exits, is
 * SIGKILLed.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const FROM_SOURCES = import.meta.url.endsWith('.ts');
const MAIN = fileURLToPath(new URL(`../../src/main.${FROM_SOURCES ? 'ts' : 'js'}`, import.meta.url));
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

export interface ServiceProcessOptions {
  /** HSMB_* variables, PIN variables ... on top of this process's environment. */
  readonly env?: Record<string, string>;
  /** A configuration file's content (besides the environment), written to a temporary file. */
  readonly config?: Record<string, unknown>;
  /** The process is SIGKILLed this long after start, whatever happens (default 10 minutes). */
  readonly hardDeadlineMs?: number;
}

export interface ServiceProcess {
  /** e.g. http://127.0.0.1:41234 */
  readonly restUrl: string;
  /** Undefined when the configuration turned gRPC off. */
  readonly grpcPort: number | undefined;
  /** The ops listener (/metrics), e.g. http://127.0.0.1:41235; undefined when the configuration turned it off. */
  readonly opsUrl: string | undefined;
  /** What the service logged so far (JSON lines), for failure messages. */
  output(): string;
  /** CPU time (user + system, ms) the service has used so far, from /proc (Linux, as SoftHSM here). */
  cpuMs(): number;
  /** SIGTERM, then the exit (0, or this throws) within STOP_TIMEOUT_MS, SIGKILL past it; removes the log. */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts the service; resolves once it listens and /health/ready answers 200. */
export async function startServiceProcess(options: ServiceProcessOptions = {}): Promise<ServiceProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'hsmb-service-'));
  const logPath = join(dir, 'service.log');
  const args = FROM_SOURCES ? ['--import', 'tsx', MAIN] : [MAIN];
  if (options.config) {
    const configPath = join(dir, 'config.json');
    writeFileSync(configPath, JSON.stringify(options.config));
    args.push('--config', configPath);
  }
  const logFd = openSync(logPath, 'w');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, args, { ...(FROM_SOURCES ? { cwd: fileURLToPath(new URL('../../', import.meta.url)) } : {}), env: { ...process.env, ...options.env }, stdio: ['ignore', logFd, logFd] });
  } finally {
    closeSync(logFd); // the child has its own copy
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // Whatever happens to this process, the service does not outlive it.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const hardKill = setTimeout(killOnExit, options.hardDeadlineMs ?? 10 * 60_000);
  hardKill.unref();
  const log = () => readFileSync(logPath, 'utf8');
  const cleanup = () => {
    clearTimeout(hardKill);
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
  // The ops listener starts before the API listeners: once REST is listening, it is logged if it is on.
  let opsUrl: string | undefined;
  // gRPC starts after REST; wait for it too unless the configuration turned it off.
  const grpcOff = options.env?.HSMB_GRPC__ENABLED === 'false' || (options.config?.grpc as { enabled?: boolean } | undefined)?.enabled === false;
  while (restUrl === undefined || (grpcPort === undefined && !grpcOff)) {
    if (child.exitCode !== null) return fail(`exited with ${child.exitCode} while starting`);
    if (Date.now() > deadline) return fail(`not listening within ${START_TIMEOUT_MS} ms`);
    const lines = log().split('\n');
    lines.pop(); // unfinished, or the empty rest after the last newline
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      const entry = JSON.parse(line) as { msg?: string; url?: string; port?: number };
      if (entry.msg === 'ops listening (metrics, health)') opsUrl = entry.url;
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
    opsUrl,
    output: log,
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
      if (code !== 0) return fail(`exited with ${code ?? child.signalCode} on SIGTERM`);
      cleanup();
    },
  };
}
