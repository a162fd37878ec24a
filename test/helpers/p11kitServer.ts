/**
 * A SoftHSM token served from another process, so that a test can really kill "the HSM":
 *   const token = await createSoftHsmToken();
 *   const server = await startP11KitServer(token);
 *   const backend = await pkcs11BackendFactory.create(server.backendConfig(), { logger });
 *   await server.kill();     // SIGKILL: the HSM is gone, mid-call or not
 *   await server.restart();  // the same token on the same socket
 *   server.freeze(); ... server.thaw();  // SIGSTOP / SIGCONT: an HSM that stops answering, then resumes
 *   ... await backend.close(); await server.stop(); await token.cleanup();
 *
 * `p11-kit server -f -n <socket> --provider libsofthsm2.so "pkcs11:token=<label>"` (Debian `p11-kit`)
 * exports the token over a unix socket and prints `P11_KIT_SERVER_ADDRESS=unix:path=<socket>; export ...`
 * on stdout once it listens. The consumer loads `p11-kit-client.so` (Debian `p11-kit-modules`), which
 * connects to the address in the environment variable P11_KIT_SERVER_ADDRESS.
 *
 * Two facts found by experiment (p11-kit 0.24.1) shape this helper:
 * - The server forks a `p11-kit-remote` process per client connection, and that process is the one
 *   holding SoftHSM and the sessions. Killing only the server's pid leaves every open connection working.
 *   So the server runs in a process group of its own (detached) and kill() SIGKILLs the whole group,
 *   then waits until no member of it is left.
 * - The client module reads P11_KIT_SERVER_ADDRESS when it is loaded (C_GetFunctionList), from the
 *   process environment: the variable is process-global, so this helper sets it and one test process
 *   serves one p11-kit server (vitest runs each test file in its own process). After a kill, C_Initialize
 *   of the client still succeeds, with no slot; calls on old sessions fail with CKR_DEVICE_ERROR.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Pkcs11Config } from '../../adapters/pkcs11/index.js';
import type { SoftHsmToken } from './softhsm.js';
import { groupAlive } from './processGroup.js';

const run = promisify(execFile);

const CLIENT_CANDIDATES = [
  '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so',
  '/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so',
  '/usr/lib/pkcs11/p11-kit-client.so',
  '/usr/lib64/pkcs11/p11-kit-client.so',
];
const START_TIMEOUT_MS = 10_000;
const KILL_TIMEOUT_MS = 5_000;

export interface P11KitServer {
  /** The p11-kit client module a backend loads instead of SoftHSM. */
  readonly clientLibrary: string;
  /** The value of P11_KIT_SERVER_ADDRESS (`unix:path=<socket>`), stable across restarts. */
  readonly address: string;
  readonly socketPath: string;
  /** Pid (and process group id) of the running server; undefined while killed. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** A backend configuration for the served token: the client module, the token's label and PIN variable. */
  backendConfig(overrides?: Partial<Pkcs11Config>): Pkcs11Config;
  /** SIGKILLs the server and every per-connection process it forked; resolves once all are gone. */
  kill(): Promise<void>;
  /** SIGSTOPs the server's whole process group: the HSM stops answering, as a stalled network HSM does. */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
  /** Starts the server again on the same socket (after kill()). */
  restart(): Promise<void>;
  /** kill() if running, then removes the socket directory. */
  stop(): Promise<void>;
}

/** Where Debian put p11-kit-client.so (dpkg -L p11-kit-modules), or a usual path. */
export async function findP11KitClient(): Promise<string> {
  try {
    const { stdout } = await run('dpkg', ['-L', 'p11-kit-modules']);
    const path = stdout.split('\n').find((l) => l.endsWith('/p11-kit-client.so'));
    if (path && existsSync(path)) return path;
  } catch {
    // Not Debian, or the package is missing: try the usual paths.
  }
  const found = CLIENT_CANDIDATES.find((p) => existsSync(p));
  if (!found) throw new Error('p11-kit-client.so was not found: run `apt-get install p11-kit p11-kit-modules`');
  return found;
}

/** Whether a unix socket accepts a connection (closed at once: the server's child for it just exits). */
function accepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function startP11KitServer(token: SoftHsmToken): Promise<P11KitServer> {
  const clientLibrary = await findP11KitClient();
  try {
    await run('p11-kit', ['server', '--help']);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('p11-kit was not found: run `apt-get install p11-kit p11-kit-modules`');
    // `--help` exits non-zero on some versions; being found is enough.
  }
  const dir = await mkdtemp(join(tmpdir(), 'hsmb-p11kit-'));
  const socketPath = join(dir, 'pkcs11.sock');
  const address = `unix:path=${socketPath}`;
  const args = ['server', '-f', '-n', socketPath, '--provider', token.library, `pkcs11:token=${token.tokenLabel}`];
  // The server (and the SoftHSM in its children) finds the token through SOFTHSM2_CONF, set by createSoftHsmToken.
  const env = { ...process.env, SOFTHSM2_CONF: token.confPath };

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const signalGroup = (signal: NodeJS.Signals) => {
    if (child?.pid === undefined) throw new Error('the p11-kit server is not running');
    process.kill(-child.pid, signal);
  };

  const killGroupSync = () => {
    if (child?.pid === undefined) return;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // The whole group is gone already.
    }
  };
  // A detached server outlives a crashed test process otherwise.
  const onExit = () => {
    killGroupSync();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);

  async function start(): Promise<void> {
    const proc = spawn('p11-kit', args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    let stdout = '';
    let stderr = '';
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        proc.removeListener('error', onError);
        proc.removeListener('exit', onEarlyExit);
        proc.stdout!.removeListener('data', onData);
      };
      const fail = (why: string) => {
        done();
        killGroupSync();
        reject(new Error(`p11-kit server ${why}${stderr.trim() ? `: ${stderr.trim()}` : ''}`));
      };
      const onError = (e: Error) => fail(`could not start (${e.message})`);
      const onEarlyExit = (code: number | null, signal: string | null) => fail(`exited at start (${signal ?? `code ${code}`})`);
      const onData = (d: string) => {
        stdout += d;
        // Printed once the socket listens: "P11_KIT_SERVER_ADDRESS=unix:path=...; export P11_KIT_SERVER_ADDRESS;"
        const m = /P11_KIT_SERVER_ADDRESS=([^;\s]+);/.exec(stdout);
        if (!m) return;
        if (m[1] !== address) return fail(`listens on ${m[1]}, expected ${address}`);
        done();
        resolve();
      };
      const timer = setTimeout(() => fail(`printed no address within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
      proc.once('error', onError);
      proc.once('exit', onEarlyExit);
      proc.stdout!.setEncoding('utf8').on('data', onData);
    });
    proc.stdout!.resume();
    // The line should come after listen(); make sure, since the test connects at once.
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await accepts(socketPath))) {
      if (Date.now() > deadline) {
        killGroupSync();
        throw new Error(`p11-kit server does not accept connections on ${socketPath}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  await start();
  process.env.P11_KIT_SERVER_ADDRESS = address;

  const server: P11KitServer = {
    clientLibrary,
    address,
    socketPath,
    get pid() {
      return child?.exitCode === null && child.signalCode === null ? child.pid : undefined;
    },
    get running() {
      return this.pid !== undefined;
    },
    backendConfig: (overrides) => ({ library: clientLibrary, tokenLabel: token.tokenLabel, pinEnv: token.pinEnv, ...overrides }),
    freeze: () => signalGroup('SIGSTOP'),
    thaw: () => signalGroup('SIGCONT'),
    async kill() {
      const proc = child;
      if (proc?.pid === undefined) return;
      const pgid = proc.pid;
      killGroupSync();
      const deadline = Date.now() + KILL_TIMEOUT_MS;
      await Promise.race([exited, new Promise((r) => setTimeout(r, KILL_TIMEOUT_MS).unref())]);
      // The p11-kit-remote children are orphans now (reaped by init): wait until the group is empty.
      while (groupAlive(pgid)) {
        if (Date.now() > deadline) throw new Error(`p11-kit server group ${pgid} still alive ${KILL_TIMEOUT_MS} ms after SIGKILL`);
        await new Promise((r) => setTimeout(r, 20));
      }
      child = undefined;
    },
    async restart() {
      if (server.running) throw new Error('p11-kit server is running; kill() it first');
      await start();
    },
    async stop() {
      await server.kill();
      process.removeListener('exit', onExit);
      if (process.env.P11_KIT_SERVER_ADDRESS === address) delete process.env.P11_KIT_SERVER_ADDRESS;
      await rm(dir, { recursive: true, force: true });
    },
  };
  return server;
}
