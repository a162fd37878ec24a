/**
 * TLS reloads under load: the REST and gRPC listeners (mutual TLS, certificates made with the openssl CLI)
 * serve a steady stream of new connections while their certificate and key files are replaced (an
 * atomic rename of each, so for a moment the certificate does not match the key), then overwritten with
 * garbage, then replaced again and reloaded on SIGHUP. No request fails; new handshakes get the new
 * certificate; a bad file is refused with a log line and the old certificate stays.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { credentials, loadPackageDefinition, Metadata, type Client, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { softwareBackendFactory } from '../../adapters/software/index.js';
import type { Backend } from '../../src/backend/port.js';
import { KeyService } from '../../src/operations/keyService.js';
import { findProtoRoot } from '../../src/transports/grpc/protos.js';
import { startGrpcServer, type RunningGrpcServer } from '../../src/transports/grpc/server.js';
import { buildRestServer } from '../../src/transports/rest/server.js';
import { ReloadingTls } from '../../src/transports/tlsReload.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../helpers/software.js';

const dir = mkdtempSync(join(tmpdir(), 'hsmb-tls-reload-'));
const at = (name: string) => join(dir, name);
const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
let serialNo = 1;

function makeLeaf(name: string, subject: string, extensions: string): void {
  openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-sha256', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
  writeFileSync(at(`${name}.ext`), extensions);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', String(serialNo++), '-days', '2', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.pem`);
}

openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-sha256', '-days', '2', '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=hsm-bridge reload test CA',
  '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
const serverExt = 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n';
for (const name of ['server-a', 'server-b', 'server-c']) makeLeaf(name, `/CN=${name}`, serverExt);
makeLeaf('client', '/CN=reload-client', 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
const client = { ca: readFileSync(at('ca.pem')), cert: readFileSync(at('client.pem')), key: readFileSync(at('client.key')) };

/** The listeners' files, in a directory of their own; replaced by rename as a deployment would. */
function listenerFiles(subdirectory: string) {
  const live = join(dir, subdirectory);
  mkdirSync(live);
  const path = (file: string) => join(live, file);
  const install = (name: string): void => {
    for (const [from, to] of [[`${name}.pem`, 'server.pem'], [`${name}.key`, 'server.key']] as const) {
      copyFileSync(at(from), path(`.${to}.new`));
      renameSync(path(`.${to}.new`), path(to));
    }
  };
  install('server-a');
  copyFileSync(at('ca.pem'), path('ca.pem'));
  return { path, install, config: { certFile: path('server.pem'), keyFile: path('server.key'), caFile: path('ca.pem'), requireClientCert: true } };
}
const { path: livePath, install, config: tlsConfig } = listenerFiles('live');

const protoDefinition = loadSync(['hsmbridge/v1/key_service.proto'], { includeDirs: [findProtoRoot()], longs: Number, enums: String, defaults: true, oneofs: true });
const KeyServiceClient = (loadPackageDefinition(protoDefinition) as any).hsmbridge.v1.KeyService as ServiceClientConstructor;

/** One REST call on a new connection; resolves with the served certificate's CN. */
function restCall(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify({ length: 8 });
    const req = httpsRequest(
      { host: '127.0.0.1', port, method: 'POST', path: '/v1/random', ...client, agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } },
      (res) => {
        const cn = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().subject.CN;
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve(String(cn)) : reject(new Error(`status ${res.statusCode}`))));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** A few gRPC calls on a new channel (a new handshake). */
async function grpcCalls(port: number): Promise<void> {
  const c = new KeyServiceClient(`127.0.0.1:${port}`, credentials.createSsl(client.ca, client.key, client.cert)) as Client & Record<string, any>;
  try {
    for (let i = 0; i < 3; i++) {
      await new Promise((resolve, reject) =>
        c.GenerateRandom({ length: 8 }, new Metadata(), { deadline: Date.now() + 30_000 }, (e: ServiceError | null, r: unknown) => (e ? reject(e) : resolve(r))),
      );
    }
  } finally {
    c.close();
  }
}

/** The CN of the certificate a listener serves to a new handshake. */
function servedCn(port: number, alpn?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', servername: '', port, ...client, ...(alpn ? { ALPNProtocols: [alpn] } : {}) }, () => {
      const cn = socket.getPeerCertificate().subject.CN;
      socket.end();
      resolve(String(cn));
    });
    socket.on('error', reject);
  });
}

async function until(condition: () => Promise<boolean> | boolean): Promise<void> {
  while (!(await condition())) await new Promise((r) => setTimeout(r, 20));
}

describe('TLS reloads under load (REST and gRPC, mutual TLS)', () => {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, new Writable({ write(chunk: Buffer, _e, done) { for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l)); done(); } }));
  let harness: SoftwareBackendHarness;
  let backend: Backend;
  let rest: FastifyInstance;
  let grpc: RunningGrpcServer;
  let restPort: number;
  const restTls = new ReloadingTls(tlsConfig, '/rest/tls', logger);
  const grpcTls = new ReloadingTls(tlsConfig, '/grpc/tls', logger);

  beforeAll(async () => {
    harness = await createSoftwareBackendConfig();
    backend = await softwareBackendFactory.create(harness.config, { logger });
    const service = new KeyService(backend, { limits: { maxDataBytes: 4096, maxRandomBytes: 256 }, metadataCacheTtlMs: 1000 });
    rest = await buildRestServer({ service, logger, maxRequestBytes: 16 * 1024, tls: restTls });
    await rest.listen({ host: '127.0.0.1', port: 0 });
    restPort = (rest.server.address() as import('node:net').AddressInfo).port;
    grpc = await startGrpcServer({ service, logger, host: '127.0.0.1', port: 0, maxMessageBytes: 64 * 1024, tls: grpcTls });
    restTls.watch();
    grpcTls.watch();
  });
  afterAll(async () => {
    restTls.close();
    grpcTls.close();
    await rest?.close();
    await grpc?.close();
    await backend?.close();
    await harness?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves every request while the files change, and new handshakes get the new certificate', async () => {
    const failures: unknown[] = [];
    const seen = new Set<string>();
    let calls = 0;
    let stop = false;
    const loop = async (work: () => Promise<void>) => {
      while (!stop) {
        await work().then(
          () => void calls++,
          (e: unknown) => void failures.push(e),
        );
      }
    };
    const load = [
      ...Array.from({ length: 3 }, () => loop(async () => void seen.add(await restCall(restPort)))),
      ...Array.from({ length: 2 }, () => loop(() => grpcCalls(grpc.port))),
    ];
    try {
      await until(() => calls >= 20);
      expect(await servedCn(restPort)).toBe('server-a');
      expect(await servedCn(grpc.port, 'h2')).toBe('server-a');

      // A new certificate and key, each renamed into place: for a moment they do not match.
      install('server-b');
      await until(async () => seen.has('server-b') && (await servedCn(grpc.port, 'h2')) === 'server-b');
      const afterB = calls;
      await until(() => calls >= afterB + 20);

      // A bad file: refused with the reason logged; the listeners keep server-b.
      const mark = lines.length;
      writeFileSync(livePath('.server.pem.new'), 'not a certificate\n');
      renameSync(livePath('.server.pem.new'), livePath('server.pem'));
      const refusals = () => lines.slice(mark).filter((l) => String(l.msg).startsWith('TLS files not reloaded'));
      await until(() => ['/rest/tls', '/grpc/tls'].every((field) => refusals().some((l) => l.field === field)));
      for (const refusal of refusals()) expect(refusal.reason).toMatch(/tls\/certFile \(.*server\.pem\) holds no PEM certificate/);
      const afterBad = calls;
      await until(() => calls >= afterBad + 20);
      expect(await servedCn(restPort)).toBe('server-b');
      expect(await servedCn(grpc.port, 'h2')).toBe('server-b');
    } finally {
      stop = true;
      await Promise.all(load);
    }
    expect(failures).toEqual([]);
    expect(seen).toEqual(new Set(['server-a', 'server-b']));
  });

  it('still requires a client certificate after the reloads', async () => {
    const withoutCert = { ca: client.ca };
    const rejected = await new Promise<unknown>((resolve) => {
      const req = httpsRequest({ host: '127.0.0.1', port: restPort, method: 'GET', path: '/health/live', ...withoutCert, agent: false }, (res) => resolve(res.statusCode));
      req.on('error', resolve);
      req.end();
    });
    expect(rejected).toBeInstanceOf(Error);
    const c = new KeyServiceClient(`127.0.0.1:${grpc.port}`, credentials.createSsl(client.ca)) as Client & Record<string, any>;
    try {
      const error = await new Promise<ServiceError | null>((resolve) =>
        c.GenerateRandom({ length: 8 }, new Metadata(), { deadline: Date.now() + 30_000 }, (e: ServiceError | null) => resolve(e)),
      );
      expect(error?.code).toBe(14); // UNAVAILABLE: the handshake is refused
    } finally {
      c.close();
    }
  });

  it('reloads on SIGHUP', async () => {
    const files = listenerFiles('sighup');
    const other = new ReloadingTls(files.config, '/other/tls', logger);
    files.install('server-c');
    // Only the signal: this one watches no file.
    other.watch({ files: false });
    try {
      process.kill(process.pid, 'SIGHUP');
      await until(() => other.material.subject === 'CN=server-c');
      expect(lines.some((l) => l.msg === 'TLS files reloaded' && l.field === '/other/tls' && l.trigger === 'SIGHUP')).toBe(true);
    } finally {
      other.close();
    }
  });
});
