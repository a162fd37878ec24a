/**
 * HsmBridgeClient against a real service (software backend, REST, and REST with mTLS): typed methods with
 * Buffers both ways, checked with node:crypto; errors with the service's code and the request id; any
 * declared operation by name. The retry rules run against a stub HTTP server that answers 503 on cue
 * (pure client logic: which calls are sent again, and how often).
 */
import { createPublicKey, createVerify, randomBytes, verify } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { operations } from '../../src/api/operations/index.js';
import { startApp, type RunningApp } from '../../src/app.js';
import { HsmBridgeClient, HsmBridgeClientError, routes } from '../../src/client/index.js';
import { loadServiceConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { createTestPki, type TestPki } from '../helpers/pykmip.js';
import { createSoftwareBackendConfig } from '../helpers/software.js';
import { tempDir } from '../identity/accessSupport.js';

const dir = tempDir();
const harnesses: Awaited<ReturnType<typeof createSoftwareBackendConfig>>[] = [];
let plain: RunningApp;
let mtls: RunningApp;
let pki: TestPki;
let client: HsmBridgeClient;

async function start(name: string, rest: Record<string, unknown>): Promise<RunningApp> {
  const harness = await createSoftwareBackendConfig();
  harnesses.push(harness);
  writeFileSync(dir.at(`${name}.json`), JSON.stringify({ rest: { port: 0, ...rest }, grpc: { enabled: false }, ops: { enabled: false }, backend: { type: 'software', software: harness.config } }));
  return startApp(loadServiceConfig({ file: dir.at(`${name}.json`), env: {} }), createLogger('silent'));
}

beforeAll(async () => {
  pki = await createTestPki(dir.at('pki'));
  plain = await start('plain', {});
  mtls = await start('mtls', { tls: { certFile: pki.serverCertPath, keyFile: pki.serverKeyPath, caFile: pki.caPath, requireClientCert: true } });
  client = new HsmBridgeClient({ url: plain.restUrl! });
});
afterAll(async () => {
  client?.close();
  await plain?.close();
  await mtls?.close();
  for (const h of harnesses) await h.cleanup();
  dir.remove();
});

describe('routes', () => {
  it('has every declared operation, with the REST method and path the service serves', () => {
    expect([...routes.keys()].sort()).toEqual(operations.map((o) => o.name).sort());
    for (const op of operations) {
      const route = routes.get(op.name)!;
      expect([route.method, route.path]).toEqual([op.rest.method, op.rest.path]);
      expect(route.idempotent).toBe(op.changesState !== true);
    }
    expect(routes.get('keys.sign')!.params).toEqual(['name']);
  });
});

describe('HsmBridgeClient over REST', () => {
  it('creates and describes a key, signs with Buffers that node:crypto verifies, and verifies', async () => {
    const created = await client.createKey({ name: 'client-signer', type: 'EC_P256', purpose: 'sign' });
    expect(created).toMatchObject({ name: 'client-signer', type: 'EC_P256', primaryVersion: 1 });
    const message = randomBytes(100);
    const signed = await client.sign('client-signer', { message, algorithm: 'ES256' });
    expect(Buffer.isBuffer(signed.signature)).toBe(true);
    expect(signed).toMatchObject({ keyVersion: 1, algorithm: 'ES256' });
    const pem = (await client.getKey('client-signer')).versions[0]!.publicKeyPem!;
    expect(verify('sha256', message, { key: createPublicKey(pem), dsaEncoding: 'ieee-p1363' }, signed.signature)).toBe(true);
    expect((await client.verify('client-signer', { message, signature: signed.signature })).valid).toBe(true);
    expect((await client.verify('client-signer', { message: Buffer.from('other'), signature: signed.signature })).valid).toBe(false);
    expect((await client.listKeys()).keys.map((k) => k.name)).toContain('client-signer');
  });

  it('encrypts and decrypts, MACs, gives random bytes and batches with per-item errors', async () => {
    await client.createKey({ name: 'client-aes', type: 'AES_256', purpose: 'encrypt' });
    const plaintext = Buffer.from('a row of personal data');
    const { ciphertext } = await client.encrypt('client-aes', { plaintext });
    expect((await client.decrypt('client-aes', { ciphertext })).plaintext).toEqual(plaintext);
    await client.createKey({ name: 'client-hmac', type: 'HMAC_256', purpose: 'mac' });
    const { mac } = await client.mac('client-hmac', { data: plaintext });
    expect(mac).toHaveLength(32);
    expect((await client.verifyMac('client-hmac', { data: plaintext, mac })).valid).toBe(true);
    const { random } = await client.random({ length: 32 });
    expect(Buffer.isBuffer(random) && random.length).toBe(32);
    const { results } = await client.signBatch('client-signer', { items: [{ message: Buffer.from('one') }, { message: Buffer.from('two'), algorithm: 'RS256' }] });
    expect(results[0]!.error).toBeUndefined();
    expect(results[1]!.error?.code).toBe('INCOMPATIBLE_KEY');
  });

  it('runs any declared operation by name, and a key lifecycle through the typed methods', async () => {
    await client.createKey({ name: 'client-rotated', type: 'RSA_2048', purpose: 'sign' });
    expect((await client.rotateKey('client-rotated')).primaryVersion).toBe(2);
    const updated = await client.call<{ minDecryptionVersion?: number }>('keys.update', { name: 'client-rotated', minDecryptionVersion: 2 });
    expect(updated.minDecryptionVersion).toBe(2);
    const message = Buffer.from('rs256');
    const signed = await client.sign('client-rotated', { message, algorithm: 'RS256' });
    const pem = (await client.getKey('client-rotated')).versions.find((v) => v.version === 2)!.publicKeyPem!;
    expect(createVerify('sha256').update(message).verify(pem, signed.signature)).toBe(true);
    await expect(client.verify('client-rotated', { message, algorithm: 'RS256', signature: signed.signature, keyVersion: 1 })).rejects.toMatchObject({ code: 'KEY_VERSION_RETIRED', status: 409 });
    await client.disableKey('client-rotated');
    await client.destroyKey('client-rotated');
    await expect(client.getKey('client-rotated')).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    await expect(client.call('keys.nonsense')).rejects.toThrow(TypeError);
  });

  it('fails with one error class carrying the stable code, the status and the request id it sent', async () => {
    const error = await client.sign('no-such-key', { message: Buffer.from('m') }, { requestId: 'client-test-42' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HsmBridgeClientError);
    expect(error).toMatchObject({ code: 'KEY_NOT_FOUND', status: 404, requestId: 'client-test-42', transient: false });
    await expect(client.sign('bad name!', { message: Buffer.from('m') })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', status: 400 });
  });

  it('calls over mTLS with the client certificate, and whoami names it', async () => {
    const tls = new HsmBridgeClient({ url: mtls.restUrl!, tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } });
    try {
      expect(await tls.whoami()).toMatchObject({ authenticatedBy: 'certificate' });
      expect((await tls.random({ length: 8 })).random.length).toBe(8);
    } finally {
      tls.close();
    }
    const without = new HsmBridgeClient({ url: mtls.restUrl!, tls: { ca: pki.ca }, retries: 0 });
    await expect(without.random({ length: 8 })).rejects.toMatchObject({ code: 'NETWORK_ERROR' });
    without.close();
  });
});

describe('retries', () => {
  let server: Server;
  let url: string;
  const seen: string[] = [];
  let failures = 0;
  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res) => {
      seen.push(`${req.method} ${req.url} ${req.headers['x-request-id']}`);
      req.resume();
      if (failures > 0) {
        failures--;
        res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'BACKEND_UNAVAILABLE', message: 'HSM unavailable' } }));
        return;
      }
      res.writeHead(req.url === '/v1/keys' ? 201 : 200, { 'content-type': 'application/json' }).end(JSON.stringify(req.url === '/v1/random' ? { random: 'AAEC' } : { name: 'k' }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('sends a call that changes nothing again after BACKEND_UNAVAILABLE, with the same request id, up to `retries` times', async () => {
    const c = new HsmBridgeClient({ url, retries: 2 });
    seen.length = 0;
    failures = 2;
    expect((await c.random({ length: 3 })).random).toEqual(Buffer.from([0, 1, 2]));
    expect(seen).toHaveLength(3);
    expect(new Set(seen.map((s) => s.split(' ')[2])).size).toBe(1);
    seen.length = 0;
    failures = 3;
    await expect(c.random({ length: 3 })).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE', status: 503 });
    expect(seen).toHaveLength(3);
    c.close();
  });

  it('never sends a call that changes state twice', async () => {
    const c = new HsmBridgeClient({ url, retries: 5 });
    seen.length = 0;
    failures = 1;
    await expect(c.createKey({ name: 'k', type: 'AES_256' })).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    expect(seen).toEqual([expect.stringMatching(/^POST \/v1\/keys /)]);
    failures = 0;
    c.close();
  });

  it('retries a call that got no answer, then says NETWORK_ERROR', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    await expect(new HsmBridgeClient({ url: `http://127.0.0.1:${port}`, retries: 1 }).random({ length: 1 })).rejects.toMatchObject({ code: 'NETWORK_ERROR', transient: true });
  });
});
