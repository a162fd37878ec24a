/**
 * TLS and mutual TLS on both listeners, end to end: certificates made with the openssl CLI at start (a CA,
 * a server certificate for 127.0.0.1 and localhost, a client certificate, and a client certificate from
 * another CA), real HTTPS and grpc-js clients, the real servers and KeyService on the software backend.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { credentials, loadPackageDefinition, Metadata, status, type ChannelCredentials, type Client, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { httpsJson, type HttpsAnswer, type HttpsClient } from '../helpers/httpsJson.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { softwareBackendFactory } from '../../adapters/software/index.js';
import { startApp } from '../../src/app.js';
import type { Backend } from '../../src/backend/port.js';
import { ConfigError, loadServiceConfig } from '../../src/config/load.js';
import type { TlsConfig } from '../../src/config/schema.js';
import { KeyService } from '../../src/operations/keyService.js';
import { findProtoRoot } from '../../src/transports/grpc/protos.js';
import { startGrpcServer, type RunningGrpcServer } from '../../src/transports/grpc/server.js';
import { buildRestServer } from '../../src/transports/rest/server.js';
import { loadTlsMaterial, type TlsMaterial } from '../../src/transports/tls.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../helpers/software.js';

const quiet = pino({ level: 'silent' });
const limits = { maxDataBytes: 4096, maxRandomBytes: 256 };

// ---- certificates, made with the openssl CLI -------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), 'hsmb-tls-'));
const at = (name: string) => join(dir, name);
const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
const serial = () => `0x${Date.now().toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}`;

function makeCa(name: string): void {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-sha256', '-days', '2',
    '-keyout', `${name}.key`, '-out', `${name}.pem`, '-subj', `/CN=hsm-bridge test ${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
}

function makeLeaf(name: string, ca: string, subject: string, extensions: string): void {
  openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-sha256',
    '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
  writeFileSync(at(`${name}.ext`), extensions);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-set_serial', serial(),
    '-days', '2', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.pem`);
}

makeCa('ca');
makeCa('other-ca');
makeLeaf('server', 'ca', '/CN=localhost',
  'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n');
const clientExt = 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n';
makeLeaf('client', 'ca', '/CN=payments-client', clientExt);
makeLeaf('stranger', 'other-ca', '/CN=stranger-client', clientExt);

const pem = (name: string) => readFileSync(at(name));
const caPem = pem('ca.pem');
const clientCert = { cert: pem('client.pem'), key: pem('client.key') };
const strangerCert = { cert: pem('stranger.pem'), key: pem('stranger.key') };

const tlsConfig = (requireClientCert: boolean): TlsConfig => ({
  certFile: at('server.pem'),
  keyFile: at('server.key'),
  ...(requireClientCert ? { caFile: at('ca.pem') } : {}),
  requireClientCert,
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

// ---- a real backend and KeyService -------------------------------------------------------------------

let harness: SoftwareBackendHarness;
let backend: Backend;
let service: KeyService;

beforeAll(async () => {
  harness = await createSoftwareBackendConfig();
  backend = await softwareBackendFactory.create(harness.config, { logger: quiet });
  service = new KeyService(backend, { limits, metadataCacheTtlMs: 0 });
});

afterAll(async () => {
  await backend?.close();
  await harness?.cleanup();
});

// ---- clients -----------------------------------------------------------------------------------------

const httpsCall = (port: number, method: string, path: string, body: unknown, client: HttpsClient): Promise<HttpsAnswer> => httpsJson(port, method, path, body, client);

/** The error of a request that must not get an HTTP answer at all. */
async function refused(call: Promise<HttpsAnswer>): Promise<NodeJS.ErrnoException> {
  const outcome = await call.then(
    (answer) => ({ answer }),
    (error: NodeJS.ErrnoException) => ({ error }),
  );
  expect(outcome, 'no HTTP answer: the TLS handshake is refused').not.toHaveProperty('answer');
  return (outcome as { error: NodeJS.ErrnoException }).error;
}

/** A TLS 1.0/1.1 handshake, with a client willing to do it (security level 0), against a listener. */
function oldTlsHandshake(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: caPem, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0', ALPNProtocols: ['h2', 'http/1.1'] });
    socket.on('secureConnect', () => {
      resolve(`connected with ${socket.getProtocol()}`);
      socket.destroy();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

const protoDefinition = loadSync(['hsmbridge/v1/key_service.proto', 'grpc/health/v1/health.proto'], {
  includeDirs: [findProtoRoot()],
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const grpcPackage = loadPackageDefinition(protoDefinition) as any;

function grpcClient(port: number, creds: ChannelCredentials, host = '127.0.0.1') {
  const KeyServiceClient = grpcPackage.hsmbridge.v1.KeyService as ServiceClientConstructor;
  const client = new KeyServiceClient(`${host}:${port}`, creds) as Client & Record<string, any>;
  const call = <T = Record<string, any>>(method: string, request: Record<string, unknown> = {}) =>
    new Promise<T>((resolve, reject) => {
      client[method](request, new Metadata(), { deadline: Date.now() + 10_000 }, (error: ServiceError | null, response: T) =>
        error ? reject(error) : resolve(response),
      );
    });
  return { call, close: () => client.close() };
}

const grpcSsl = (client: HttpsClient) =>
  credentials.createSsl(client.ca ?? null, client.key ?? null, client.cert ?? null);

// ---- REST --------------------------------------------------------------------------------------------

describe('REST over TLS', () => {
  const servers: FastifyInstance[] = [];
  /** What the server saw: handshakes it refused, and HTTP requests it read. */
  interface Seen {
    handshakeErrors: string[];
    requests: number;
  }
  const listen = async (tls: TlsMaterial, seen: Seen = { handshakeErrors: [], requests: 0 }): Promise<number> => {
    const app = await buildRestServer({ service, logger: quiet, maxRequestBytes: 16 * 1024, tls });
    app.server.on('request', () => void seen.requests++);
    app.server.on('tlsClientError', (error: NodeJS.ErrnoException) => seen.handshakeErrors.push(error.code ?? error.message));
    servers.push(app);
    await app.listen({ host: '127.0.0.1', port: 0 });
    return (app.server.address() as { port: number }).port;
  };
  afterAll(async () => {
    for (const s of servers) await s.close();
  });

  describe('server authentication only', () => {
    let port: number;
    beforeAll(async () => {
      port = await listen(loadTlsMaterial(tlsConfig(false), '/rest/tls'));
    });

    it('a client that trusts the CA gets answers, by IP and by name; keys work end to end', async () => {
      expect((await httpsCall(port, 'GET', '/health/live', undefined, { ca: caPem })).status).toBe(200);
      expect((await httpsCall(port, 'GET', '/health/live', undefined, { ca: caPem, host: 'localhost' })).status).toBe(200);
      const name = `tls-rest-${Date.now().toString(36)}`;
      expect((await httpsCall(port, 'POST', '/v1/keys', { name, type: 'HMAC_256' }, { ca: caPem })).status).toBe(201);
      const mac = await httpsCall(port, 'POST', `/v1/keys/${name}/mac`, { data: Buffer.from('iso 9797').toString('base64') }, { ca: caPem });
      expect(mac).toMatchObject({ status: 200, body: { keyName: name, keyVersion: 1 } });
    });

    it('a client that does not trust the CA refuses the server', async () => {
      const error = await refused(httpsCall(port, 'GET', '/health/live', undefined, {}));
      expect(error.code).toMatch(/UNABLE_TO_VERIFY|SELF_SIGNED|ISSUER/);
    });

    it('plain HTTP is not served', async () => {
      const answer = await fetch(`http://127.0.0.1:${port}/health/live`).then(
        (r) => r.status,
        () => 'refused',
      );
      expect(answer).not.toBe(200);
    });

    it('TLS 1.1 and older are refused', async () => {
      expect(await oldTlsHandshake(port)).toMatch(/^ERR_SSL_.*(PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL)/);
    });
  });

  describe('mutual TLS', () => {
    let port: number;
    const seen: Seen = { handshakeErrors: [], requests: 0 };
    beforeAll(async () => {
      port = await listen(loadTlsMaterial(tlsConfig(true), '/rest/tls'), seen);
    });
    /**
     * Expects the request to be refused in the handshake and never to be read as HTTP. With TLS 1.3 the
     * client may send its request before the server's verdict arrives, so the client sees an alert or a
     * reset; the server side is what matters: no request was read, no answer was sent.
     */
    const expectHandshakeRefusal = async (client: HttpsClient, serverReason?: RegExp) => {
      const before = { errors: seen.handshakeErrors.length, requests: seen.requests };
      const error = await refused(httpsCall(port, 'GET', '/health/live', undefined, client));
      expect(error.code).toMatch(/^(ERR_SSL_|ECONNRESET$|EPIPE$)/);
      if (serverReason) {
        // OpenSSL's own refusal (no certificate at all); a certificate that fails verification is
        // dropped by Node right after the handshake, before the HTTP server gets the connection.
        await expect.poll(() => seen.handshakeErrors.length).toBeGreaterThan(before.errors);
        expect(seen.handshakeErrors.slice(before.errors).join(' ')).toMatch(serverReason);
      }
      expect(seen.requests).toBe(before.requests);
    };

    it('a request without a client certificate is refused during the handshake', async () => {
      await expectHandshakeRefusal({ ca: caPem }, /PEER_DID_NOT_RETURN_A_CERTIFICATE/);
    });

    it('a request with a client certificate from the CA succeeds', async () => {
      expect((await httpsCall(port, 'GET', '/health/live', undefined, { ca: caPem, ...clientCert })).status).toBe(200);
      const random = await httpsCall(port, 'POST', '/v1/random', { length: 16 }, { ca: caPem, ...clientCert });
      expect(random.status).toBe(200);
      expect(Buffer.from(random.body.random as string, 'base64')).toHaveLength(16);
    });

    it('a client certificate from another CA is refused during the handshake', async () => {
      await expectHandshakeRefusal({ ca: caPem, ...strangerCert });
    });

    it('a certificate from the CA without clientAuth usage (the server certificate) is refused', async () => {
      await expectHandshakeRefusal({ ca: caPem, cert: pem('server.pem'), key: pem('server.key') });
    });
  });
});

// ---- gRPC --------------------------------------------------------------------------------------------

describe('gRPC over TLS', () => {
  const servers: RunningGrpcServer[] = [];
  const start = async (tls: TlsMaterial): Promise<number> => {
    const server = await startGrpcServer({ service, logger: quiet, host: '127.0.0.1', port: 0, maxMessageBytes: 64 * 1024, tls });
    servers.push(server);
    return server.port;
  };
  const attempt = async (port: number, creds: ChannelCredentials, host?: string) => {
    const client = grpcClient(port, creds, host);
    try {
      return await client.call('GenerateRandom', { length: 8 });
    } finally {
      client.close();
    }
  };
  afterAll(async () => {
    for (const s of servers) await s.close();
  });

  describe('server authentication only', () => {
    let port: number;
    beforeAll(async () => {
      port = await start(loadTlsMaterial(tlsConfig(false), '/grpc/tls'));
    });

    it('a client that trusts the CA gets answers, by IP and by name; keys work end to end', async () => {
      expect((await attempt(port, grpcSsl({ ca: caPem }))).random).toHaveLength(8);
      expect((await attempt(port, grpcSsl({ ca: caPem }), 'localhost')).random).toHaveLength(8);
      const client = grpcClient(port, grpcSsl({ ca: caPem }));
      try {
        const name = `tls-grpc-${Date.now().toString(36)}`;
        expect(await client.call('CreateKey', { name, type: 'HMAC_256' })).toMatchObject({ name, primaryVersion: 1 });
        expect(await client.call('GenerateMac', { name, data: Buffer.from('iso 9797') })).toMatchObject({ keyName: name, keyVersion: 1 });
      } finally {
        client.close();
      }
    });

    it('a plaintext client and a client that does not trust the CA are UNAVAILABLE', async () => {
      await expect(attempt(port, credentials.createInsecure())).rejects.toMatchObject({ code: status.UNAVAILABLE });
      await expect(attempt(port, grpcSsl({}))).rejects.toMatchObject({ code: status.UNAVAILABLE });
    });

    it('TLS 1.1 and older are refused', async () => {
      expect(await oldTlsHandshake(port)).toMatch(/^ERR_SSL_.*(PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL)/);
    });
  });

  describe('mutual TLS', () => {
    let port: number;
    beforeAll(async () => {
      port = await start(loadTlsMaterial(tlsConfig(true), '/grpc/tls'));
    });

    it('a call without a client certificate is refused (UNAVAILABLE: the handshake fails)', async () => {
      await expect(attempt(port, grpcSsl({ ca: caPem }))).rejects.toMatchObject({ code: status.UNAVAILABLE });
    });

    it('a call with a client certificate from the CA succeeds', async () => {
      expect((await attempt(port, grpcSsl({ ca: caPem, ...clientCert }))).random).toHaveLength(8);
    });

    it('a client certificate from another CA is refused', async () => {
      await expect(attempt(port, grpcSsl({ ca: caPem, ...strangerCert }))).rejects.toMatchObject({ code: status.UNAVAILABLE });
    });
  });
});

// ---- loading and checking the files -------------------------------------------------------------------

describe('loadTlsMaterial', () => {
  const expectConfigError = (config: TlsConfig, message: RegExp) => {
    let error: unknown;
    try {
      loadTlsMaterial(config, '/rest/tls');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(message);
    return (error as Error).message;
  };

  it('reads the files and describes the server certificate', () => {
    const m = loadTlsMaterial(tlsConfig(true), '/rest/tls');
    expect(m.requireClientCert).toBe(true);
    expect(m.ca?.equals(caPem)).toBe(true);
    expect(m.subject).toContain('CN=localhost');
    expect(m.validTo.getTime()).toBeGreaterThan(Date.now());
  });

  it('names the field and the path of a file that cannot be read', () => {
    const missing = at('no-such.pem');
    expectConfigError({ ...tlsConfig(false), certFile: missing }, new RegExp(`^config: /rest/tls/certFile \\(${missing}\\) cannot be read: ENOENT`));
    expectConfigError({ ...tlsConfig(false), keyFile: missing }, /\/rest\/tls\/keyFile .* cannot be read: ENOENT/);
    expectConfigError({ ...tlsConfig(true), caFile: missing }, /\/rest\/tls\/caFile .* cannot be read: ENOENT/);
    expectConfigError({ ...tlsConfig(false), certFile: dir }, /\/rest\/tls\/certFile .* cannot be read: EISDIR/);
    if (process.getuid?.() !== 0) {
      const unreadable = at('unreadable.key');
      writeFileSync(unreadable, pem('server.key'));
      chmodSync(unreadable, 0o000);
      expectConfigError({ ...tlsConfig(false), keyFile: unreadable }, /\/rest\/tls\/keyFile .* cannot be read: EACCES/);
    }
  });

  it('refuses files that are not what the field says, without printing their contents', () => {
    const keyText = pem('server.key').toString();
    const notPem = at('not-pem.txt');
    writeFileSync(notPem, 'hello, not a certificate\n');
    const corrupt = at('corrupt.pem');
    writeFileSync(corrupt, '-----BEGIN CERTIFICATE-----\nQUJDREVGR0g=\n-----END CERTIFICATE-----\n');
    const messages = [
      expectConfigError({ ...tlsConfig(false), certFile: notPem }, /\/rest\/tls\/certFile .* holds no PEM certificate/),
      expectConfigError({ ...tlsConfig(false), certFile: at('server.key') }, /\/rest\/tls\/certFile .* holds no PEM certificate/),
      expectConfigError({ ...tlsConfig(false), certFile: corrupt }, /\/rest\/tls\/certFile .* cannot be parsed/),
      expectConfigError({ ...tlsConfig(false), keyFile: at('server.pem') }, /\/rest\/tls\/keyFile .* holds no PEM private key/),
      expectConfigError({ ...tlsConfig(false), keyFile: at('client.key') }, /\/rest\/tls\/keyFile .* is not the private key of the certificate in \/rest\/tls\/certFile/),
      expectConfigError({ ...tlsConfig(true), caFile: at('server.key') }, /\/rest\/tls\/caFile .* holds no PEM certificate/),
      expectConfigError({ ...tlsConfig(false), keyFile: notPem }, /\/rest\/tls\/keyFile .* holds no PEM private key/),
    ];
    const keyBody = keyText.split('\n').filter((l) => l !== '' && !l.startsWith('-----'));
    for (const message of messages) {
      expect(message).not.toContain('hello, not a certificate');
      expect(message).not.toContain('QUJDREVGR0g=');
      for (const line of keyBody) expect(message).not.toContain(line);
    }
  });

  it('refuses an encrypted private key, saying so', () => {
    const encrypted = at('encrypted.key');
    openssl('pkey', '-in', 'server.key', '-aes256', '-passout', 'pass:secret', '-out', 'encrypted.key');
    expectConfigError({ ...tlsConfig(false), keyFile: encrypted }, /\/rest\/tls\/keyFile .* is an encrypted private key/);
    const traditional = at('encrypted-traditional.key');
    openssl('pkey', '-in', 'server.key', '-aes256', '-passout', 'pass:secret', '-traditional', '-out', 'encrypted-traditional.key');
    expectConfigError({ ...tlsConfig(false), keyFile: traditional }, /\/rest\/tls\/keyFile .* is an encrypted private key/);
  });

  it('refuses requireClientCert without caFile', () => {
    expectConfigError({ certFile: at('server.pem'), keyFile: at('server.key'), requireClientCert: true }, /^config: \/rest\/tls\/caFile is required when \/rest\/tls\/requireClientCert is true/);
  });
});

// ---- the composition root ---------------------------------------------------------------------------

describe('startApp with TLS', () => {
  const configWith = (env: Record<string, string>) =>
    loadServiceConfig({
      env: {
        HSMB_REST__PORT: '0',
        HSMB_GRPC__PORT: '0',
        HSMB_OPS__PORT: '0',
        HSMB_LOG__LEVEL: 'silent',
        HSMB_REST__TLS__CERT_FILE: at('server.pem'),
        HSMB_REST__TLS__KEY_FILE: at('server.key'),
        HSMB_GRPC__TLS__CERT_FILE: at('server.pem'),
        HSMB_GRPC__TLS__KEY_FILE: at('server.key'),
        HSMB_GRPC__TLS__CA_FILE: at('ca.pem'),
        HSMB_GRPC__TLS__REQUIRE_CLIENT_CERT: 'true',
        ...env,
      },
    });

  it('serves https:// and mutual-TLS gRPC from the configuration, and logs it', async () => {
    const own = await createSoftwareBackendConfig();
    const ownBackend = await softwareBackendFactory.create(own.config, { logger: quiet });
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    // caFile without requireClientCert: allowed, with a warning that client certificates are not asked for.
    const app = await startApp(configWith({ HSMB_REST__TLS__CA_FILE: at('ca.pem') }), logger, ownBackend);
    try {
      expect(app.restUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const port = Number(new URL(app.restUrl!).port);
      expect((await httpsCall(port, 'GET', '/health/ready', undefined, { ca: caPem })).status).toBe(200);
      await expect(attempt(app.grpcPort!, grpcSsl({ ca: caPem }))).rejects.toMatchObject({ code: status.UNAVAILABLE });
      expect((await attempt(app.grpcPort!, grpcSsl({ ca: caPem, ...clientCert }))).random).toHaveLength(4);
      expect(lines.find((l) => l.msg === 'REST listening')).toMatchObject({ url: app.restUrl, tls: true, clientCert: 'off' });
      expect(lines.find((l) => l.msg === 'gRPC listening')).toMatchObject({ port: app.grpcPort, tls: true, clientCert: 'required' });
      expect(lines.find((l) => l.level === 40 && l.field === '/rest/tls/caFile')?.msg).toMatch(/requireClientCert is false: client certificates are not asked for/);
      expect(lines.some((l) => l.level === 40 && String(l.field).startsWith('/grpc'))).toBe(false);
    } finally {
      await app.close();
      await own.cleanup();
    }

    async function attempt(grpcPort: number, creds: ChannelCredentials) {
      const client = grpcClient(grpcPort, creds);
      try {
        return await client.call('GenerateRandom', { length: 4 });
      } finally {
        client.close();
      }
    }
  });

  it('a bad certificate path stops the start, naming the field, before anything listens; the backend is closed', async () => {
    const own = await createSoftwareBackendConfig();
    const ownBackend = await softwareBackendFactory.create(own.config, { logger: quiet });
    let closed = false;
    const watched = new Proxy(ownBackend, {
      get(target, property) {
        if (property === 'close') return () => ((closed = true), target.close());
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    try {
      await expect(startApp(configWith({ HSMB_GRPC__TLS__KEY_FILE: at('missing.key') }), quiet, watched)).rejects.toThrow(
        /^config: \/grpc\/tls\/keyFile \(.*missing\.key\) cannot be read: ENOENT$/,
      );
      expect(closed).toBe(true);
    } finally {
      await own.cleanup();
    }
  });
});
