/**
 * The KMIP backend against a real PyKMIP server, beyond the conformance suite: keys cross between
 * hsm-bridge and PyKMIP's own Python client both ways (the object mapping is the contract), and the
 * service survives the server being killed and comes back when it returns.
 */
import { execFile } from 'node:child_process';
import { createPublicKey, verify } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kmipBackendFactory } from '../../../adapters/kmip/index.js';
import type { Backend } from '../../../src/backend/port.js';
import { KeyService } from '../../../src/operations/keyService.js';
import { PYTHON, startPyKmip, type PyKmipServer } from '../../helpers/pykmip.js';

const run = promisify(execFile);

/** PyKMIP's own client, connected with the same client certificate (the default policy lets the owner act). */
const clientPrelude = `
import sys, json, os
from kmip.pie.client import ProxyKmipClient
from kmip.pie import objects
from kmip.core import enums
from kmip.core.factories import attributes as af
host, port, ca, cert, key = sys.argv[1:6]
args = sys.argv[6:]
c = ProxyKmipClient(hostname=host, port=int(port), cert=cert, key=key, ca=ca, config_file='/dev/null', kmip_version=enums.KMIPVersion.KMIP_1_4)
c.open()
f = af.AttributeFactory()
def locate(name, object_type):
    return c.locate(attributes=[f.create_attribute(enums.AttributeType.NAME, name), f.create_attribute(enums.AttributeType.OBJECT_TYPE, object_type), f.create_attribute(enums.AttributeType.STATE, enums.State.ACTIVE)])
`;

/** Finds hsm-bridge's version 1 objects by KMIP Name and uses them: an RSA signature and an HMAC. */
const useOurs = `${clientPrelude}
rsa_name, hmac_name, message = args[0], args[1], bytes.fromhex(args[2])
[priv] = locate('hsmb/%s/v1' % rsa_name, enums.ObjectType.PRIVATE_KEY)
sig = c.sign(message, uid=priv, cryptographic_parameters={'padding_method': enums.PaddingMethod.PKCS1v15, 'cryptographic_algorithm': enums.CryptographicAlgorithm.RSA, 'hashing_algorithm': enums.HashingAlgorithm.SHA_256})
[mk] = locate('hsmb/%s/v1' % hmac_name, enums.ObjectType.SYMMETRIC_KEY)
_, mac = c.mac(message, uid=mk, algorithm=enums.CryptographicAlgorithm.HMAC_SHA256)
print(json.dumps({'signature': sig.hex(), 'mac': mac.hex()}))
`;

/** Makes a key the way the README's mapping says: an AES key named hsmb/<key>/v1 and its head record. */
const makeTheirs = `${clientPrelude}
name, = args
U = enums.CryptographicUsageMask
uid = c.create(enums.CryptographicAlgorithm.AES, 256, name='hsmb/%s/v1' % name, cryptographic_usage_mask=[U.ENCRYPT, U.DECRYPT])
c.activate(uid)
now = '2026-01-01T00:00:00.000Z'
record = {'format': 1, 'name': name, 'type': 'AES_256', 'purpose': 'encrypt', 'state': 'enabled', 'createdAt': now, 'writtenAt': now, 'versions': {'1': {'createdAt': now, 'uid': uid}}}
from kmip.core import objects as cobjects
template = cobjects.TemplateAttribute(attributes=[
    f.create_attribute(enums.AttributeType.NAME, 'hsmb/%s' % name),
    f.create_attribute(enums.AttributeType.OBJECT_GROUP, 'hsm-bridge'),
])
secret = c.object_factory.convert(objects.SecretData(json.dumps(record).encode(), enums.SecretDataType.SEED))
result = c.proxy.register(enums.ObjectType.SECRET_DATA, template, secret)
if result.result_status.value != enums.ResultStatus.SUCCESS:
    raise SystemExit('register failed: %s' % result.result_message)
c.activate(result.uuid)
print(json.dumps({'uid': uid}))
`;

describe('kmip backend against PyKMIP', () => {
  let server: PyKmipServer;
  let backend: Backend;
  let service: KeyService;
  let seq = 0;
  const fresh = (stem: string) => `interop-${stem}-${Date.now().toString(36)}-${seq++}`;

  const python = async (script: string, ...args: string[]): Promise<Record<string, string>> => {
    const path = join(server.dir, `script-${seq++}.py`);
    await writeFile(path, script);
    const { stdout } = await run(PYTHON, [path, server.host, String(server.port), server.caPath, server.clientCertPath, server.clientKeyPath, ...args], { timeout: 60_000 });
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, string>;
  };

  beforeAll(async () => {
    server = await startPyKmip();
    backend = await kmipBackendFactory.create(
      {
        host: server.host, port: server.port, serverName: '127.0.0.1',
        caFile: server.caPath, certFile: server.clientCertPath, keyFile: server.clientKeyPath,
        connectTimeoutMs: 2000, requestTimeoutMs: 10_000, poolSize: 2,
      },
      { logger: pino({ level: 'silent' }) },
    );
    service = new KeyService(backend, { limits: { maxDataBytes: 65536, maxRandomBytes: 1024 }, metadataCacheTtlMs: 0 });
  }, 60_000);

  afterAll(async () => {
    await backend?.close();
    await server?.stop();
  });

  it('offers only what PyKMIP serves: RSA PKCS#1 signatures, AES-GCM, HMAC-SHA256, FF1 (fpe); no EC, PSS, OAEP, key wrap, random', () => {
    const caps = backend.capabilities();
    expect([...caps.keyTypes].sort()).toEqual(['AES_128', 'AES_192', 'AES_256', 'HMAC_256', 'RSA_2048', 'RSA_3072', 'RSA_4096']);
    expect(caps.fpe).toBe(true);
    expect(caps.sign).toEqual(['RS256', 'RS384', 'RS512']);
    expect(caps.encrypt).toEqual(['AES_GCM']);
    expect(caps.mac).toEqual(['HMAC_SHA256']);
    expect(caps.signDigest).toEqual([]);
    expect(caps.random).toBe(false);
    expect(caps.keyAgreement).toEqual([]);
  });

  it("a key made through hsm-bridge is found by its KMIP Name and used by PyKMIP's own client", async () => {
    const rsa = fresh('rsa');
    const hmac = fresh('hmac');
    await service.createKey({ name: rsa, type: 'RSA_2048' });
    await service.createKey({ name: hmac, type: 'HMAC_256' });
    const message = Buffer.from('pacs.008 settlement 42');
    const out = await python(useOurs, rsa, hmac, message.toString('hex'));
    const spki = (await service.getKey(rsa)).versions[0]!.publicKeySpki!;
    const pub = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    expect(verify('sha256', message, pub, Buffer.from(out.signature!, 'hex'))).toBe(true);
    // PyKMIP's MAC with our key equals ours, and hsm-bridge verifies it
    const ours = await service.mac({ name: hmac, data: message });
    expect(Buffer.from(out.mac!, 'hex')).toEqual(ours.mac);
    expect((await service.verifyMac({ name: hmac, data: message, mac: Buffer.from(out.mac!, 'hex') })).valid).toBe(true);
  }, 60_000);

  it('a key PyKMIP\'s client makes per the mapping is listed and used by hsm-bridge', async () => {
    const name = fresh('theirs');
    await python(makeTheirs, name);
    const listed = (await service.listKeys()).find((k) => k.name === name);
    expect(listed).toMatchObject({ name, type: 'AES_256', purpose: 'encrypt', state: 'enabled', primaryVersion: 1 });
    const plaintext = Buffer.from('card data');
    const sealed = await service.encrypt({ name, plaintext, aad: Buffer.from('x') });
    expect((await service.decrypt({ name, ciphertext: sealed.ciphertext, aad: Buffer.from('x') })).plaintext).toEqual(plaintext);
    // hsm-bridge can change it like its own: rotate, disable, destroy
    expect((await service.rotateKey(name)).primaryVersion).toBe(2);
    await service.disableKey(name);
    await service.destroyKey(name);
    await expect(service.getKey(name)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
  }, 60_000);

  it('two replicas racing on one key: one create wins, both rotations land as versions 2 and 3, destroy waits for disable', async () => {
    const other = await kmipBackendFactory.create(
      { host: server.host, port: server.port, serverName: '127.0.0.1', caFile: server.caPath, certFile: server.clientCertPath, keyFile: server.clientKeyPath },
      { logger: pino({ level: 'silent' }) },
    );
    try {
      const replica = new KeyService(other, { limits: { maxDataBytes: 65536, maxRandomBytes: 1024 }, metadataCacheTtlMs: 0 });
      const name = fresh('race');
      const created = await Promise.allSettled([service.createKey({ name, type: 'AES_128' }), replica.createKey({ name, type: 'AES_128' })]);
      expect(created.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect(created.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'KEY_ALREADY_EXISTS' } });
      await Promise.all([service.rotateKey(name), replica.rotateKey(name)]);
      const meta = await replica.getKey(name);
      expect(meta.versions.map((v) => v.version)).toEqual([1, 2, 3]);
      for (const version of [1, 2, 3]) {
        const sealed = await service.encrypt({ name, plaintext: Buffer.from('v'), keyVersion: version });
        expect((await replica.decrypt({ name, ciphertext: sealed.ciphertext })).keyVersion).toBe(version);
      }
      await service.disableKey(name);
      const [enabled, destroyed] = await Promise.allSettled([replica.enableKey(name), service.destroyKey(name)]);
      // either the enable landed first (destroy refused) or the destroy did (the enable finds no key)
      if (destroyed.status === 'fulfilled') expect(enabled).toMatchObject({ status: 'rejected', reason: { code: 'KEY_NOT_FOUND' } });
      else expect(destroyed.reason).toMatchObject({ code: 'KEY_NOT_DISABLED' });
    } finally {
      await other.close();
    }
  }, 120_000);

  it('server killed: calls fail BACKEND_UNAVAILABLE and health goes false, no crash; restarted: recovers by itself', async () => {
    const name = fresh('fault');
    await service.createKey({ name, type: 'AES_256' });
    const plaintext = Buffer.from('survives a restart');
    const before = await service.encrypt({ name, plaintext });
    await server.kill();
    await expect(service.encrypt({ name, plaintext })).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    await expect(service.getKey(name)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    await expect(service.createKey({ name: fresh('down'), type: 'AES_256' })).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    await new Promise((r) => setTimeout(r, 1100)); // past the client's health cache
    expect((await backend.health()).ready).toBe(false);
    await server.restart();
    let ready = false;
    for (let i = 0; i < 50 && !ready; i++) {
      ready = (await backend.health()).ready;
      if (!ready) await new Promise((r) => setTimeout(r, 200));
    }
    expect(ready).toBe(true);
    expect((await service.decrypt({ name, ciphertext: before.ciphertext })).plaintext).toEqual(plaintext);
    expect((await service.getKey(name)).state).toBe('enabled');
  }, 120_000);
});
