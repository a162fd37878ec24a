/**
 * A real KMIP server for a test suite: PyKMIP's server (Debian `python3-pykmip`) on a free loopback port,
 * with certificates generated for it, so that KMIP tests speak mutual TLS to the real thing:
 *   const server = await startPyKmip();
 *   const client = await KmipClient.open(server.clientOptions(), logger);
 *   await server.kill();     // SIGKILL: the key manager is gone, mid-call or not
 *   await server.restart();  // the same port and database
 *   ... await client.close(); await server.stop();
 *
 * Facts found by running PyKMIP 0.10 (Debian 0.10.0-4) that shape this helper:
 * - The log path (-l) must be absolute: PyKMIP makedirs(dirname(path)) and fails on ''.
 * - Its TLS 1.2 suite defaults to AES128-SHA256 (RSA key exchange, no forward secrecy) unless
 *   `tls_cipher_suites` narrows it; with P-256 certificates and the ECDHE-ECDSA-AES-GCM suites Node and
 *   PyKMIP agree on an AEAD suite with forward secrecy, the one a deployment should use.
 * - The client certificate needs extendedKeyUsage=clientAuth; its CN becomes the owner of the objects it
 *   creates (the default operation policy lets the owner do everything), so PyKMIP's own client must use
 *   the same certificate to see our keys.
 * - A server that cannot bind its port logs "failed to bind" and stays alive (its multiprocessing
 *   manager keeps it up): the helper watches the log, kills the process group and tries another port.
 * - SIGTERM is honoured only when accept() times out (every 10 s); SIGINT raises KeyboardInterrupt in the
 *   accept loop at once, so stop() sends SIGINT for the same orderly shutdown without the wait.
 * - The server forks a multiprocessing manager: it runs in a process group of its own and kill() SIGKILLs
 *   the whole group, then waits until no member is left.
 * Several servers may run in one test process: each has its own directory, port and database.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import type { KmipClientOptions } from '../../adapters/kmip/client.js';
import { groupAlive } from './processGroup.js';

const run = promisify(execFile);

export const PYTHON = '/usr/bin/python3';
export const PYKMIP_SERVER = '/usr/bin/pykmip-server';
const START_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 15_000;
const KILL_TIMEOUT_MS = 5_000;
const BIND_ATTEMPTS = 5;
/** The CN of the client certificate, which PyKMIP takes as the owner of the objects the client creates. */
export const CLIENT_IDENTITY = 'hsm-bridge-test';
const CIPHER_SUITES = 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384';

/** PEM files of a test PKI: a CA, a server certificate (127.0.0.1, localhost), a client certificate. */
export interface TestPki {
  readonly dir: string;
  readonly caPath: string;
  readonly caKeyPath: string;
  readonly serverCertPath: string;
  readonly serverKeyPath: string;
  readonly clientCertPath: string;
  readonly clientKeyPath: string;
  readonly ca: Buffer;
  readonly clientCert: Buffer;
  readonly clientKey: Buffer;
}

export interface StartPyKmipOptions {
  /** Operation policy files to put in the policy directory (file name without .json -> JSON content). */
  readonly policies?: Record<string, unknown>;
  /** PyKMIP's logging level; DEBUG logs every message in hex. */
  readonly logLevel?: 'DEBUG' | 'INFO' | 'WARNING';
}

export interface PyKmipServer {
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  readonly pki: TestPki;
  readonly ca: Buffer;
  readonly clientCert: Buffer;
  readonly clientKey: Buffer;
  readonly caPath: string;
  readonly clientCertPath: string;
  readonly clientKeyPath: string;
  readonly databasePath: string;
  readonly logPath: string;
  /** Pid (and process group id) of the running server; undefined while stopped or killed. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Options for KmipClient.open (short timeouts, a pool of 2); overrides are merged in. */
  clientOptions(overrides?: Partial<KmipClientOptions>): KmipClientOptions;
  /**
   * Runs Python with PyKMIP's own client (`client`, a ProxyKmipClient opened with our client certificate,
   * so it owns what we create), `enums`, and `args` (the JSON-decoded `args`); `script` prints a JSON
   * value as its last line of output, which this resolves with. For interoperability tests.
   */
  pyClient(script: string, args?: unknown): Promise<unknown>;
  /** The end of the server's log, for failure messages. */
  logTail(lines?: number): string;
  /** SIGKILLs the server's process group; resolves once every member is gone. */
  kill(): Promise<void>;
  /** Starts the server again on the same port with the same database (after kill()). */
  restart(): Promise<void>;
  /** SIGINT (an orderly shutdown), up to 15 s for it to exit, then SIGKILL; removes the directory. */
  stop(): Promise<void>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') throw new Error('openssl was not found: run `apt-get install openssl`');
    throw new Error(`openssl ${args[0]} failed: ${(err.stderr ?? err.message).trim()}`);
  }
}

/**
 * Generates a CA and, signed by it, a server certificate for 127.0.0.1/localhost and a client certificate
 * for client authentication (all P-256), into `dir`. Call it twice for a second, untrusted PKI.
 */
export async function createTestPki(dir: string, clientCn = CLIENT_IDENTITY): Promise<TestPki> {
  await mkdir(dir, { recursive: true });
  const p = (name: string) => join(dir, name);
  const newKey = (name: string) => openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', p(name)], dir);
  await newKey('ca.key');
  await openssl(
    ['req', '-x509', '-new', '-key', p('ca.key'), '-out', p('ca.pem'), '-days', '7', '-subj', '/CN=hsm-bridge test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
  const issue = async (name: string, cn: string, extensions: string) => {
    await newKey(`${name}.key`);
    await openssl(['req', '-new', '-key', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', `/CN=${cn}`], dir);
    await writeFile(p(`${name}.ext`), extensions);
    await openssl(
      ['x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial',
        '-out', p(`${name}.pem`), '-days', '7', '-extfile', p(`${name}.ext`)],
      dir,
    );
  };
  const leaf = 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n';
  await issue('server', '127.0.0.1', `${leaf}extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n`);
  await issue('client', clientCn, `${leaf}extendedKeyUsage=clientAuth\n`);
  return {
    dir,
    caPath: p('ca.pem'),
    caKeyPath: p('ca.key'),
    serverCertPath: p('server.pem'),
    serverKeyPath: p('server.key'),
    clientCertPath: p('client.pem'),
    clientKeyPath: p('client.key'),
    ca: await readFile(p('ca.pem')),
    clientCert: await readFile(p('client.pem')),
    clientKey: await readFile(p('client.key')),
  };
}

/** A loopback port free right now (the kernel's pick); the caller retries if someone takes it meanwhile. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Whether a mutual-TLS handshake with the server completes (the connection is closed at once). */
function handshakes(port: number, pki: TestPki): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: pki.ca, cert: pki.clientCert, key: pki.clientKey, minVersion: 'TLSv1.2' });
    const timer = setTimeout(() => finish(false), 2_000);
    function finish(ok: boolean) {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    }
    socket.once('secureConnect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startPyKmip(options: StartPyKmipOptions = {}): Promise<PyKmipServer> {
  if (!existsSync(PYKMIP_SERVER) || !existsSync(PYTHON)) {
    throw new Error(`PyKMIP is not installed (${PYKMIP_SERVER} is missing): run \`apt-get install python3-pykmip\``);
  }
  const dir = await mkdtemp(join(tmpdir(), 'hsmb-pykmip-'));
  const pki = await createTestPki(join(dir, 'pki'));
  const policyDir = join(dir, 'policies');
  await mkdir(policyDir);
  for (const [name, policy] of Object.entries(options.policies ?? {})) {
    await writeFile(join(policyDir, `${name}.json`), JSON.stringify(policy));
  }
  const confPath = join(dir, 'server.conf');
  const logPath = join(dir, 'server.log');
  const databasePath = join(dir, 'pykmip.sqlite');
  const writeConf = (port: number) =>
    writeFile(
      confPath,
      [
        '[server]',
        'hostname=127.0.0.1',
        `port=${port}`,
        `certificate_path=${pki.serverCertPath}`,
        `key_path=${pki.serverKeyPath}`,
        `ca_path=${pki.caPath}`,
        'auth_suite=TLS1.2',
        `tls_cipher_suites=${CIPHER_SUITES}`,
        'enable_tls_client_auth=True',
        `policy_path=${policyDir}`,
        `database_path=${databasePath}`,
        `logging_level=${options.logLevel ?? 'INFO'}`,
        '',
      ].join('\n'),
    );

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let port = 0;
  let output = '';

  const read = (path: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return '';
    }
  };
  const logTail = (lines = 20) =>
    [...read(logPath).trim().split('\n').slice(-lines), ...output.trim().split('\n').filter((l) => !/Deprecat|enums\.Crypto/.test(l)).slice(-lines)]
      .filter(Boolean)
      .join('\n');
  const killGroupSync = () => {
    if (child?.pid === undefined) return;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // The whole group is gone already.
    }
  };
  const waitGroupGone = async (pgid: number) => {
    const deadline = Date.now() + KILL_TIMEOUT_MS;
    while (groupAlive(pgid)) {
      if (Date.now() > deadline) throw new Error(`PyKMIP server group ${pgid} still alive ${KILL_TIMEOUT_MS} ms after SIGKILL`);
      await sleep(20);
    }
  };
  const killAndWait = async () => {
    const proc = child;
    if (proc?.pid === undefined) return;
    killGroupSync();
    await Promise.race([exited, sleep(KILL_TIMEOUT_MS)]);
    await waitGroupGone(proc.pid);
    child = undefined;
  };
  // A detached server outlives a crashed test process otherwise.
  const onExit = () => {
    killGroupSync();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);

  /** Spawns the server on `port`; resolves once a TLS handshake works, 'port-taken' if it could not bind. */
  async function spawnOnce(): Promise<'ready' | 'port-taken'> {
    await writeConf(port);
    await writeFile(logPath, '');
    output = '';
    const proc = spawn(PYTHON, [PYKMIP_SERVER, '-f', confPath, '-l', logPath], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let exit: string | undefined;
    exited = new Promise<void>((resolve) =>
      proc.once('exit', (code, signal) => {
        exit = signal ?? `code ${code}`;
        resolve();
      }),
    );
    proc.once('error', (e) => (exit = e.message));
    const collect = (d: string) => {
      output += d;
      if (output.length > 64_000) output = output.slice(-32_000);
    };
    proc.stdout!.setEncoding('utf8').on('data', collect);
    proc.stderr!.setEncoding('utf8').on('data', collect);

    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (/failed to bind/i.test(read(logPath)) || /failed to bind/i.test(output)) {
        await killAndWait();
        return 'port-taken';
      }
      if (exit !== undefined) {
        child = undefined;
        throw new Error(`PyKMIP server exited at start (${exit}):\n${logTail()}`);
      }
      if (await handshakes(port, pki)) return 'ready';
      if (Date.now() > deadline) {
        await killAndWait();
        throw new Error(`PyKMIP server on 127.0.0.1:${port} accepted no TLS handshake within ${START_TIMEOUT_MS} ms:\n${logTail()}`);
      }
      await sleep(100);
    }
  }

  try {
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      if ((await spawnOnce()) === 'ready') break;
      if (attempt === BIND_ATTEMPTS) throw new Error(`PyKMIP server could not bind a port in ${BIND_ATTEMPTS} attempts:\n${logTail()}`);
    }
  } catch (e) {
    process.removeListener('exit', onExit);
    await rm(dir, { recursive: true, force: true });
    throw e;
  }

  const server: PyKmipServer = {
    host: '127.0.0.1',
    get port() {
      return port;
    },
    dir,
    pki,
    ca: pki.ca,
    clientCert: pki.clientCert,
    clientKey: pki.clientKey,
    caPath: pki.caPath,
    clientCertPath: pki.clientCertPath,
    clientKeyPath: pki.clientKeyPath,
    databasePath,
    logPath,
    get pid() {
      return child?.exitCode === null && child.signalCode === null ? child.pid : undefined;
    },
    get running() {
      return this.pid !== undefined;
    },
    clientOptions: (overrides) => ({
      host: '127.0.0.1',
      port,
      ca: pki.ca,
      cert: pki.clientCert,
      key: pki.clientKey,
      connectTimeoutMs: 5_000,
      requestTimeoutMs: 15_000,
      poolSize: 2,
      maxResponseBytes: 1024 * 1024,
      ...overrides,
    }),
    pyClient: (script, args) => runPyClient(port, pki, script, args),
    logTail,
    kill: killAndWait,
    async restart() {
      if (server.running) throw new Error('PyKMIP server is running; kill() or stop() it first');
      // The port was just released by a dead process; another process could take it meanwhile, but on a
      // test machine that is rare enough that a clear failure is the right answer.
      for (let attempt = 1; ; attempt++) {
        if ((await spawnOnce()) === 'ready') return;
        if (attempt === BIND_ATTEMPTS) throw new Error(`PyKMIP server could not bind 127.0.0.1:${port} again:\n${logTail()}`);
        await sleep(500);
      }
    },
    async stop() {
      const proc = child;
      if (proc?.pid !== undefined && server.running) {
        process.kill(proc.pid, 'SIGINT');
        await Promise.race([exited, sleep(STOP_GRACE_MS)]);
      }
      await killAndWait(); // what SIGTERM left: the manager process, or the server itself after the grace period
      process.removeListener('exit', onExit);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return server;
}

async function runPyClient(port: number, pki: TestPki, script: string, args: unknown): Promise<unknown> {
  const program = [
    'import json, sys, warnings',
    "warnings.simplefilter('ignore')",
    'from kmip.pie.client import ProxyKmipClient',
    'from kmip import enums',
    'args = json.loads(sys.argv[1])',
    `client = ProxyKmipClient(hostname='127.0.0.1', port=${port}, cert=${JSON.stringify(pki.clientCertPath)}, key=${JSON.stringify(pki.clientKeyPath)},`,
    `    ca=${JSON.stringify(pki.caPath)}, ssl_version='PROTOCOL_TLSv1_2', config_file='/dev/null')`,
    'client.open()',
    script,
    'client.close()',
  ].join('\n');
  let stdout: string;
  try {
    ({ stdout } = await run(PYTHON, ['-c', program, JSON.stringify(args ?? null)], { timeout: 60_000 }));
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`PyKMIP client script failed: ${(err.stderr ?? err.message).trim().split('\n').slice(-5).join('\n')}`);
  }
  const last = stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(last) as unknown;
}
