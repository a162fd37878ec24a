/**
 * Wrapped import (BYOK) through startApp, over REST and gRPC, on the software backend and SoftHSM. Every
 * key is wrapped here with node:crypto alone, as a user does it with openssl (RSA-OAEP of a fresh AES-256
 * key under the published wrapping key, then RFC 5649 key wrap with padding), and every imported key is
 * checked against the original with node:crypto: its signatures verify with the original public key, a
 * ciphertext made with the original AES key decrypts, its HMAC is the original's.
 */
import {
  createCipheriv,
  createHmac,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  verify as nodeVerify,
  type KeyObject,
} from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../../src/app.js';
import { loadServiceConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import type { WrappingScheme } from '../../src/backend/port.js';
import { wrapForImport } from '../../src/conformance/reference/byokWrap.js';
import { createSoftwareBackendConfig } from '../helpers/software.js';
import { tempDir } from '../identity/accessSupport.js';
import { connect, expectGrpcError, type TestClients } from '../transports/grpc/grpcClient.js';

const b64 = (b: Buffer) => b.toString('base64');

interface WrappingKeyAnswer {
  keyName: string;
  keyVersion: number;
  publicKeyPem: string;
  publicKeyJwk: Record<string, unknown>;
  wrappings: string[];
}

/** The whole blob as the API takes it: OAEP(transport key) || KWP(material). */
function wrapFor(publicKeyPem: string, scheme: string, material: Buffer, transport?: Buffer): Buffer {
  const { encryptedKey, wrappedTarget } = wrapForImport(publicKeyPem, scheme as WrappingScheme, material, transport);
  return Buffer.concat([encryptedKey, wrappedTarget]);
}

const pkcs8 = (k: KeyObject) => k.export({ format: 'der', type: 'pkcs8' });

describe.each(['software', 'SoftHSM'] as const)('wrapped import (BYOK) on %s', (backendName) => {
  const dir = tempDir();
  let app: RunningApp;
  let grpc: TestClients;
  let cleanup: () => Promise<void>;
  let wrapping: WrappingKeyAnswer;
  let scheme: string;

  const rest = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`${app.restUrl}${path}`, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const text = await r.text();
    return { status: r.status, body: text === '' ? undefined : (JSON.parse(text) as any) };
  };
  const wrap = (material: Buffer, transport?: Buffer) => wrapFor(wrapping.publicKeyPem, scheme, material, transport);
  const importRest = (name: string, type: string, material: Buffer, extra: Record<string, unknown> = {}) =>
    rest('POST', '/v1/keys/import', { name, type, wrappedKey: b64(wrap(material)), wrapping: scheme, ...extra });
  const keyCount = async () => (await rest('GET', '/v1/keys')).body.keys.length as number;

  beforeAll(async () => {
    let backend: Record<string, unknown>;
    if (backendName === 'software') {
      const h = await createSoftwareBackendConfig();
      backend = { type: 'software', software: h.config };
      cleanup = () => h.cleanup();
    } else {
      const { createSoftHsmToken } = await import('../helpers/softhsm.js');
      const token = await createSoftHsmToken();
      backend = { type: 'pkcs11', pkcs11: token.backendConfig() };
      cleanup = () => token.cleanup();
    }
    writeFileSync(dir.at('config.json'), JSON.stringify({ rest: { port: 0 }, grpc: { port: 0 }, ops: { enabled: false }, keys: { metadataCacheTtlMs: 0 }, backend }));
    app = await startApp(loadServiceConfig({ file: dir.at('config.json'), env: {} }), createLogger('silent'));
    grpc = connect(app.grpcPort!);
    const answer = await rest('GET', '/v1/wrapping-key');
    expect(answer.status).toBe(200);
    wrapping = answer.body;
    scheme = wrapping.wrappings[0]!;
  }, 60_000);

  afterAll(async () => {
    grpc?.close();
    await app?.close();
    await cleanup?.();
    dir.remove();
  });

  it('publishes the wrapping key: RSA-3072 made on first use, its PEM and JWK, and the wrappings this backend unwraps', async () => {
    expect(wrapping).toMatchObject({ keyName: 'hsm-bridge-import', keyVersion: 1, publicKeyJwk: { kty: 'RSA' } });
    expect(createPublicKey(wrapping.publicKeyPem).asymmetricKeyDetails?.modulusLength).toBe(3072);
    // SoftHSM has OAEP with SHA-1 only (FIELD-NOTES section 1).
    expect(wrapping.wrappings).toEqual(backendName === 'software' ? ['RSA_OAEP_SHA256_AES_KWP', 'RSA_OAEP_SHA1_AES_KWP'] : ['RSA_OAEP_SHA1_AES_KWP']);
    const again = await grpc.call<{ keyName: string; keyVersion: number; publicKeyPem: string; wrappings: string[] }>('GetWrappingKey', {});
    expect(again).toMatchObject({ keyName: wrapping.keyName, keyVersion: 1, publicKeyPem: wrapping.publicKeyPem, wrappings: wrapping.wrappings });
  });

  it('imports RSA-2048, P-256 and Ed25519 signing keys whose signatures verify with the original public keys', async () => {
    const cases = [
      { type: 'RSA_2048', pair: generateKeyPairSync('rsa', { modulusLength: 2048 }), algorithm: 'RS256', verify: (pub: KeyObject, m: Buffer, s: Buffer) => nodeVerify('sha256', m, pub, s) },
      { type: 'EC_P256', pair: generateKeyPairSync('ec', { namedCurve: 'prime256v1' }), algorithm: 'ES256', verify: (pub: KeyObject, m: Buffer, s: Buffer) => nodeVerify('sha256', m, { key: pub, dsaEncoding: 'ieee-p1363' }, s) },
      { type: 'ED25519', pair: generateKeyPairSync('ed25519'), algorithm: 'EdDSA', verify: (pub: KeyObject, m: Buffer, s: Buffer) => nodeVerify(null, m, pub, s) },
    ];
    for (const [i, c] of cases.entries()) {
      const name = `byok-sign-${i}`;
      const message = randomBytes(40);
      let signature: Buffer;
      if (i % 2 === 0) {
        const created = await importRest(name, c.type, pkcs8(c.pair.privateKey));
        expect(created.status, JSON.stringify(created.body)).toBe(201);
        expect(createPublicKey(created.body.versions[0].publicKeyPem).export({ format: 'der', type: 'spki' })).toEqual(c.pair.publicKey.export({ format: 'der', type: 'spki' }));
        signature = Buffer.from((await rest('POST', `/v1/keys/${name}/sign`, { message: b64(message) })).body.signature, 'base64');
      } else {
        const created = await grpc.call<{ name: string; versions: { publicKeyPem: string }[] }>('ImportKey', { name, type: c.type, wrappedKey: wrap(pkcs8(c.pair.privateKey)), wrapping: scheme });
        expect(created.name).toBe(name);
        signature = (await grpc.call<{ signature: Buffer }>('Sign', { name, message })).signature;
      }
      expect(c.verify(c.pair.publicKey, message, signature), c.type).toBe(true);
      expect((await rest('POST', `/v1/keys/${name}/verify`, { message: b64(message), signature: b64(signature), algorithm: c.algorithm })).body.valid).toBe(true);
    }
  });

  it('imports an AES-256 key that decrypts what the original encrypted, and an HMAC key that MACs as the original', async () => {
    const aes = randomBytes(32);
    expect((await importRest('byok-aes', 'AES_256', aes)).status).toBe(201);
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', aes, iv);
    const plaintext = Buffer.from('a row of personal data');
    const raw = Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    const opened = await rest('POST', '/v1/keys/byok-aes/decrypt', { ciphertext: b64(raw), keyVersion: 1, algorithm: 'AES_GCM' });
    expect(Buffer.from(opened.body.plaintext, 'base64')).toEqual(plaintext);

    const hmac = randomBytes(32);
    await grpc.call('ImportKey', { name: 'byok-hmac', type: 'HMAC_256', wrappedKey: wrap(hmac), wrapping: scheme });
    const data = randomBytes(100);
    const mac = await grpc.call<{ mac: Buffer }>('GenerateMac', { name: 'byok-hmac', data });
    expect(mac.mac).toEqual(createHmac('sha256', hmac).update(data).digest());
  });

  it('adds a version by import (rotation by import); the old version keeps verifying', async () => {
    const first = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const second = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    await importRest('byok-rotated', 'EC_P256', pkcs8(first.privateKey));
    const rotated = await rest('POST', '/v1/keys/byok-rotated/import', { wrappedKey: b64(wrap(pkcs8(second.privateKey))), wrapping: scheme });
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(201);
    expect(rotated.body.primaryVersion).toBe(2);
    const message = Buffer.from('after rotation');
    const signed = await rest('POST', '/v1/keys/byok-rotated/sign', { message: b64(message) });
    expect(signed.body.keyVersion).toBe(2);
    expect(nodeVerify('sha256', message, { key: second.publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(signed.body.signature, 'base64'))).toBe(true);
    // Payment keys are replaced by new keys, never rotated by import.
    expect((await importRest('byok-kbpk', 'AES_128', randomBytes(16), { purpose: 'kbpk' })).status).toBe(201);
    const paymentRotation = await rest('POST', '/v1/keys/byok-kbpk/import', { wrappedKey: b64(wrap(randomBytes(16))), wrapping: scheme });
    expect(paymentRotation.body.error.code).toBe('INCOMPATIBLE_KEY');
    expect((await rest('GET', '/v1/keys/byok-kbpk')).body.primaryVersion).toBe(1);
    // Material of another type than the key's is refused.
    const other = await grpc.call('ImportKeyVersion', { name: 'byok-rotated', wrappedKey: wrap(randomBytes(32)), wrapping: scheme }).catch((e: unknown) => e);
    expect(other).toMatchObject({ code: status.INVALID_ARGUMENT });
  });

  it('refuses bad input with a stable code, leaving no key behind', async () => {
    const before = await keyCount();
    const rsa3072 = generateKeyPairSync('rsa', { modulusLength: 3072 });
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const good = wrap(pkcs8(ec.privateKey));
    const cases: Array<[string, Record<string, unknown>, number, string]> = [
      ['a tampered wrap', { type: 'EC_P256', wrappedKey: b64(Buffer.concat([good.subarray(0, -1), Buffer.from([good.at(-1)! ^ 1])])) }, 400, 'DECRYPTION_FAILED'],
      ['a tampered OAEP part', { type: 'EC_P256', wrappedKey: b64(Buffer.concat([Buffer.from([good[0]! ^ 0x80]), good.subarray(1)])) }, 400, 'DECRYPTION_FAILED'],
      ['a truncated blob', { type: 'EC_P256', wrappedKey: b64(good.subarray(0, 390)) }, 400, 'INVALID_ARGUMENT'],
      ['an RSA-3072 key as RSA_2048', { type: 'RSA_2048', wrappedKey: b64(wrap(pkcs8(rsa3072.privateKey))) }, 400, 'INCOMPATIBLE_KEY'],
      ['an EC key as RSA_2048', { type: 'RSA_2048', wrappedKey: b64(good) }, 400, 'INCOMPATIBLE_KEY'],
      ['31 bytes as AES_256', { type: 'AES_256', wrappedKey: b64(wrap(randomBytes(31))) }, 400, 'INVALID_ARGUMENT'],
      ['an unknown wrapping', { type: 'EC_P256', wrappedKey: b64(good), wrapping: 'RSA_PKCS1_AES_KWP' }, 400, 'INVALID_ARGUMENT'],
      ['a wrapping key version that does not exist', { type: 'EC_P256', wrappedKey: b64(good), wrappingKeyVersion: 9 }, 404, 'KEY_VERSION_NOT_FOUND'],
      ['the reserved purpose', { type: 'RSA_3072', purpose: 'wrap', wrappedKey: b64(wrap(pkcs8(rsa3072.privateKey))) }, 400, 'INCOMPATIBLE_KEY'],
    ];
    for (const [what, body, httpStatus, code] of cases) {
      const r = await rest('POST', '/v1/keys/import', { name: 'byok-bad', wrapping: scheme, ...body });
      expect({ what, status: r.status, code: r.body?.error?.code }).toEqual({ what, status: httpStatus, code });
      expect(r.body.error.message).not.toMatch(/[0-9a-f]{32}/i);
    }
    expect((await rest('GET', '/v1/keys/byok-bad')).body.error.code).toBe('KEY_NOT_FOUND');
    expect(await keyCount()).toBe(before);
  });

  it('keeps the wrapping key to itself, and unwraps under an older version once rotated', async () => {
    for (const [method, path] of [['POST', '/v1/keys/hsm-bridge-import/decrypt'], ['POST', '/v1/keys/hsm-bridge-import/disable'], ['DELETE', '/v1/keys/hsm-bridge-import'], ['GET', '/v1/keys/hsm-bridge-import']] as const) {
      const r = await rest(method, path, method === 'POST' ? { ciphertext: b64(randomBytes(384)), keyVersion: 1 } : undefined);
      expect({ path, code: r.body?.error?.code }).toEqual({ path, code: 'INVALID_ARGUMENT' });
    }
    await expectGrpcError(grpc.call('Decrypt', { name: 'hsm-bridge-import', ciphertext: randomBytes(384), keyVersion: 1 }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    expect((await rest('POST', '/v1/keys', { name: 'my-wrap', type: 'RSA_3072', purpose: 'wrap' })).body.error.code).toBe('INCOMPATIBLE_KEY');
    // Not a JOSE key: the JWKS leaves it out.
    const jwks = (await rest('GET', '/.well-known/jwks.json')).body as { keys: { kid: string }[] };
    expect(jwks.keys.some((k) => k.kid.startsWith('hsm-bridge-import:'))).toBe(false);

    const oldWrapping = wrapping;
    const aes = randomBytes(32);
    const underV1 = wrapFor(oldWrapping.publicKeyPem, scheme, aes);
    const rotated = await rest('POST', '/v1/wrapping-key/rotate');
    expect(rotated.body).toMatchObject({ keyName: 'hsm-bridge-import', keyVersion: 2 });
    expect(rotated.body.publicKeyPem).not.toBe(oldWrapping.publicKeyPem);
    // Under the new primary version, a blob made for version 1 does not unwrap; naming version 1, it does.
    expect((await rest('POST', '/v1/keys/import', { name: 'byok-v1', type: 'AES_256', wrappedKey: b64(underV1), wrapping: scheme })).body.error.code).toBe('DECRYPTION_FAILED');
    expect((await rest('POST', '/v1/keys/import', { name: 'byok-v1', type: 'AES_256', wrappedKey: b64(underV1), wrapping: scheme, wrappingKeyVersion: 1 })).status).toBe(201);
  });
});
