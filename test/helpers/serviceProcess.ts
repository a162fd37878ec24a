/**
 * hsm-bridge as a real process, started from the sources (`node --import tsx src/main.ts`), for tests
 * whose scenario could block a process (a frozen HSM) or needs several replicas:
 *   const service = await startServiceProcess({ backend: {...}, ... }, { env: { PIN_VAR: pin } });
 *   await fetch(`${service.restUrl}/health/live`);
 *   await service.stop();
 * Listeners are on loopback, ports chosen by the system and read from the service's log. A service that
 * does not start within `startTimeoutMs`, or outlives `hardDeadlineMs`, is SIGKILLed: a test never hangs
 * on it. Its output is kept for the failure message.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

export interface ServiceProcess {
  readonly pid: number;
  /** http://127.0.0.1:<port> */
  readonly restUrl: string;
  readonly grpcAddress: string;
  /** What the process wrote so far (JSON log lines), for failure messages. */
  output(): string;
  /** SIGTERM, then SIGKILL if it has not exited within 5 s; removes its config directory. */
  stop(): Promise<void>;
}

export interface ServiceProcessOptions {
  /** Extra environment (PIN variables, P11_KIT_SERVER_ADDRESS ...), on top of this process's. */
  readonly env?: Record<string, string>;
  readonly startTimeoutMs?: number;
  /** The process is SIGKILLed this long after start whatever happens. */
  readonly hardDeadlineMs?: number;
}

export async function startServiceProcess(config: Record<string, unknown>, options: ServiceProcessOptions = {}): Promise<ServiceProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'hsmb-service-'));
  const file = join(dir, 'config.json');
  const listeners = { rest: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, ops: { enabled: false } };
  await writeFile(file, JSON.stringify({ ...listeners, log: { level: 'info' }, ...config }));
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--config', file], {
    cwd: REPO,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (output += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (output += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const hardKill = setTimeout(() => child.kill('SIGKILL'), options.hardDeadlineMs ?? 10 * 60_000);
  hardKill.unref();
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const stop = async () => {
    clearTimeout(hardKill);
    process.removeListener('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };

  const logged = (message: string): Record<string, unknown> | undefined => {
    for (const line of output.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        if (entry.msg === message) return entry;
      } catch {
        // a partial line: not complete yet
      }
    }
    return undefined;
  };

  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  for (;;) {
    const rest = logged('REST listening');
    const grpc = logged('gRPC listening');
    if (rest && grpc) {
      return { pid: child.pid!, restUrl: String(rest.url), grpcAddress: `127.0.0.1:${String(grpc.port)}`, output: () => output, stop };
    }
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`the service did not start (${child.exitCode !== null ? `exit code ${child.exitCode}` : child.signalCode ?? 'timed out'}):\n${output.slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
