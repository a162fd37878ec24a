/**
 * The whole service on a KMIP server by configuration alone: startApp from a YAML file whose backend
 * section is `type: kmip` plus the server's address and certificates, against a real PyKMIP server.
 * Keys are made and used over REST (and gRPC), checked with node:crypto; readiness follows the key
 * manager: ready, then 503 with calls failing BACKEND_UNAVAILABLE once it is killed (the process keeps
 * serving), then ready again once it is back, without a restart of the service.
 */
import { createHmac, createPublicKey, verify as nodeVerify } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../../src/app.js';
import { ConfigError, loadServiceConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { referenceAccepts } from '../fspiop/support.js';
import { startPyKmip, type PyKmipServer } from '../helpers/pykmip.js';
import { connect, expectGrpcError, type TestClients } from '../transports/grpc/grpcClient.js';

const b64 = (data: Buffer | string) => Buffer.from(data).toString('base64');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` holds; fails naming `what` after the timeout. */
async function until(check: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** A loopback port nothing listens on (just released by the kernel). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/** The configuration a deployment writes: nothing but the key manager's address and the certificates. */
const configYaml = (server: PyKmipServer) => `
rest: { host: 127.0.0.1, port: 0 }
grpc: { host: 127.0.0.1, port: 0 }
ops: { host: 127.0.0.1, port: 0 }
backend:
  type: kmip
  kmip:
    host: ${server.host}
    port: ${server.port}
    serverName: 127.0.0.1
    caFile: ${server.caPath}
    certFile: ${server.clientCertPath}
    keyFile: ${server.clientKeyPath}
`;

describe('the service on a KMIP server, configured by file alone', () => {
  let server: PyKmipServer;
  let app: RunningApp;
  let grpc: TestClients;
  const logLines: Array<Record<string, unknown>> = [];
  /** Made by the first test, used again across the outage. */
  const rsa = `cfg-rsa-${process.pid}`;
  const hmac = `cfg-hmac-${process.pid}`;

  const call = async (method: 'GET' | 'POST', path: string, body?: unknown) => {
    const r = await fetch(`${app.restUrl}${path}`, {
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    return { status: r.status, body: (await r.json()) as any };
  };
  const ready = async () => (await call('GET', '/health/ready')).status === 200;
  /** What PyKMIP holds for version 1 of an HMAC key, read with PyKMIP's own client: for an independent MAC. */
  const hmacKeyBytes = async (name: string) =>
    Buffer.from(
      (await server.pyClient(
        [
          'from kmip.core.factories.attributes import AttributeFactory',
          'f = AttributeFactory()',
          "[uid] = client.locate(attributes=[f.create_attribute(enums.AttributeType.NAME, 'hsmb/%s/v1' % args),",
          '    f.create_attribute(enums.AttributeType.OBJECT_TYPE, enums.ObjectType.SYMMETRIC_KEY)])',
          'print(json.dumps(client.get(uid).value.hex()))',
        ].join('\n'),
        name,
      )) as string,
      'hex',
    );

  beforeAll(async () => {
    server = await startPyKmip();
    const file = join(server.dir, 'hsm-bridge.yaml');
    await writeFile(file, configYaml(server));
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logLines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    app = await startApp(loadServiceConfig({ file, env: {} }), createLogger('info', sink));
    grpc = connect(app.grpcPort!);
  }, 60_000);

  afterAll(async () => {
    grpc?.close();
    await app?.close();
    await server?.stop();
  });

  it('runs on the KMIP backend: its capabilities, ready; RSA signs and HMAC MACs, checked independently', async () => {
    expect(logLines.find((l) => l.msg === 'kmip: connected to the key manager')).toMatchObject({ backend: 'kmip', server: `127.0.0.1:${server.port}` });
    const caps = await call('GET', '/v1/capabilities');
    expect(caps.body).toMatchObject({ keyTypes: expect.arrayContaining(['RSA_2048', 'HMAC_256']), sign: ['RS256', 'RS384', 'RS512'], random: false });
    expect(caps.body.keyTypes).not.toContain('EC_P256');
    expect(await call('GET', '/health/ready')).toEqual({ status: 200, body: { status: 'ready' } });

    expect((await call('POST', '/v1/keys', { name: rsa, type: 'RSA_2048' })).status).toBe(201);
    expect((await call('POST', '/v1/keys', { name: hmac, type: 'HMAC_256' })).status).toBe(201);

    const message = Buffer.from('pacs.008 settlement 42');
    const pem = (await call('GET', `/v1/keys/${rsa}`)).body.versions[0].publicKeyPem as string;
    const signed = await call('POST', `/v1/keys/${rsa}/sign`, { message: b64(message) });
    expect(signed.body).toMatchObject({ keyName: rsa, keyVersion: 1, algorithm: 'RS256' });
    expect(nodeVerify('sha256', message, createPublicKey(pem), Buffer.from(signed.body.signature, 'base64'))).toBe(true);
    // The same key over gRPC.
    const overGrpc = await grpc.call('Sign', { name: rsa, algorithm: 'RS384', message });
    expect(nodeVerify('sha384', message, createPublicKey(pem), overGrpc.signature)).toBe(true);

    const mac = await call('POST', `/v1/keys/${hmac}/mac`, { data: b64(message) });
    expect(mac.body).toMatchObject({ keyName: hmac, keyVersion: 1, algorithm: 'HMAC_SHA256' });
    const key = await hmacKeyBytes(hmac);
    expect(key).toHaveLength(32);
    expect(Buffer.from(mac.body.mac, 'base64')).toEqual(createHmac('sha256', key).update(message).digest());
    key.fill(0);
    expect((await call('POST', `/v1/keys/${hmac}/mac/verify`, { data: b64(message), mac: mac.body.mac })).body.valid).toBe(true);
  }, 60_000);

  it('signs FSPIOP RS256 with the KMIP key, and the Mojaloop reference validator accepts it', async () => {
    const pem = (await call('GET', `/v1/keys/${rsa}`)).body.versions[0].publicKeyPem as string;
    const body = { transferId: 'b51ec534-ee48-4575-b6a9-ead2955b8069', amount: { currency: 'USD', amount: '12.34' } };
    const signed = await call('POST', '/v1/fspiop/sign', { key: rsa, method: 'put', uri: '/transfers/b51ec534-ee48-4575-b6a9-ead2955b8069', source: 'payerfsp', body });
    expect(signed.status, JSON.stringify(signed.body)).toBe(200);
    // The caller sends the returned headers beside its own.
    const headers = { 'content-type': 'application/vnd.interoperability.transfers+json;version=1.1', 'fspiop-source': 'payerfsp', ...signed.body.headers };
    expect(referenceAccepts({ payerfsp: pem }, { headers, body: JSON.parse(signed.body.body) })).toBe(true);
    const tampered = { ...JSON.parse(signed.body.body), amount: { currency: 'USD', amount: '99.99' } };
    expect(referenceAccepts({ payerfsp: pem }, { headers, body: tampered })).toBe(false);
  }, 60_000);

  /** startApp from a JSON file with this backend.kmip section; what a bad one must fail with. */
  const startWith = async (kmip: Record<string, unknown>) => {
    const file = join(server.dir, `bad-${Math.random().toString(36).slice(2)}.json`);
    await writeFile(file, JSON.stringify({ rest: { port: 0 }, grpc: { port: 0 }, ops: { port: 0 }, backend: { type: 'kmip', kmip } }));
    return startApp(loadServiceConfig({ file, env: {} }), createLogger('silent'));
  };
  const files = () => ({ host: '127.0.0.1', port: server.port, caFile: server.caPath, certFile: server.clientCertPath, keyFile: server.clientKeyPath });

  it('a bad kmip section fails the start naming the field: missing, unknown, an unreadable key file, one others can read', async () => {
    const { caFile, ...noCa } = files();
    expect(caFile).toBeTruthy();
    await expect(startWith(noCa)).rejects.toThrow(ConfigError);
    await expect(startWith(noCa)).rejects.toThrow(/\/backend\/kmip.*caFile/);
    await expect(startWith({ ...files(), pin: '1234' })).rejects.toThrow(/\/backend\/kmip\/pin is not a known field/);
    await expect(startWith({ ...files(), keyFile: join(server.dir, 'nope.key') })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('keyFile') });
    const loose = join(server.dir, 'loose.key');
    await writeFile(loose, server.clientKey, { mode: 0o644 });
    await expect(startWith({ ...files(), keyFile: loose })).rejects.toMatchObject({ message: expect.stringMatching(/readable by others.*0600/) });
  });

  it('a server name the certificate does not carry, or nothing at the address: the start fails BACKEND_UNAVAILABLE, quickly', async () => {
    const started = Date.now();
    await expect(startWith({ ...files(), serverName: 'kms.example.org', connectTimeoutMs: 2000 })).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    await expect(startWith({ ...files(), port: await closedPort(), connectTimeoutMs: 2000 })).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    expect(Date.now() - started).toBeLessThan(10_000);
    // The running service was not disturbed.
    expect(await ready()).toBe(true);
  }, 30_000);

  it('key manager killed: not ready (503), calls 503 BACKEND_UNAVAILABLE, the process serves on; back: ready again by itself', async () => {
    const message = Buffer.from('during the outage');
    const macBefore = (await call('POST', `/v1/keys/${hmac}/mac`, { data: b64(message) })).body.mac as string;

    await server.kill();
    for (const r of [
      await call('POST', `/v1/keys/${rsa}/sign`, { message: b64(message) }),
      await call('POST', `/v1/keys/${hmac}/mac`, { data: b64(message) }),
      await call('GET', '/v1/keys'),
      await call('POST', '/v1/keys', { name: `cfg-down-${process.pid}`, type: 'AES_256' }),
    ]) {
      expect(r).toMatchObject({ status: 503, body: { error: { code: 'BACKEND_UNAVAILABLE' } } });
    }
    await expectGrpcError(grpc.call('Sign', { name: rsa, message }), status.UNAVAILABLE, 'BACKEND_UNAVAILABLE');
    await until(async () => !(await ready()), 'readiness to go false', 10_000);
    expect(await call('GET', '/health/ready')).toMatchObject({ status: 503, body: { status: 'unavailable' } });
    expect(await call('GET', '/health/live')).toEqual({ status: 200, body: { status: 'ok' } });

    await server.restart();
    await until(ready, 'readiness to come back', 30_000);
    const pem = (await call('GET', `/v1/keys/${rsa}`)).body.versions[0].publicKeyPem as string;
    const signed = await call('POST', `/v1/keys/${rsa}/sign`, { message: b64(message) });
    expect(signed.status).toBe(200);
    expect(nodeVerify('sha256', message, createPublicKey(pem), Buffer.from(signed.body.signature, 'base64'))).toBe(true);
    // The same key as before the outage (the server's database survived it).
    expect((await call('POST', `/v1/keys/${hmac}/mac`, { data: b64(message) })).body.mac).toBe(macBefore);
    expect((await grpc.call('Sign', { name: rsa, message })).signature).toEqual(Buffer.from(signed.body.signature, 'base64'));
  }, 90_000);
});
