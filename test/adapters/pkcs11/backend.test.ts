/**
 * The PKCS#11 adapter against a real SoftHSM token: every key type created and used, every output
 * checked with node:crypto, key attributes read back with pkcs11js, two backends on one token acting as
 * replicas, concurrency through a small session pool, and clear start-up errors.
 */
import { constants, createHash, createPublicKey, publicEncrypt } from 'node:crypto';
import { pino } from 'pino';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pkcs11BackendFactory } from '../../../adapters/pkcs11/index.js';
import { CKM } from '../../../adapters/pkcs11/mechanisms.js';
import { signAlgorithms, type SignAlgorithm } from '../../../src/algorithms/registry.js';
import type { Backend, KeyRef } from '../../../src/backend/port.js';
import { validateSection } from '../../../src/config/load.js';
import { parseKeyName, type KeyVersion } from '../../../src/keys/names.js';
import { keyTypes, type KeyPurpose, type KeyType } from '../../../src/keys/types.js';
import { createSoftHsmToken, type SoftHsmToken } from '../../helpers/softhsm.js';
import { TokenInspector } from './tokenInspector.js';
import { nodeVerifies } from '../../../src/conformance/reference/nodeVerify.js';

const logger = pino({ level: 'silent' });
const A = pkcs11js;
let token: SoftHsmToken;
let backend: Backend;
let inspector: TokenInspector;
let seq = 0;
const fresh = (stem: string) => parseKeyName(`${stem}-${process.pid}-${seq++}`);
const ref = (name: string, type: KeyType, version = 1): KeyRef => ({ name: parseKeyName(name), type, version: version as KeyVersion });

async function create(type: KeyType, purpose: KeyPurpose = keyTypes[type].purposes[0]!, on = backend) {
  const name = fresh(type.toLowerCase().replace('_', ''));
  const meta = await on.createKey({ name, type, purpose });
  return { name, meta };
}


beforeAll(async () => {
  token = await createSoftHsmToken();
  backend = await pkcs11BackendFactory.create(token.backendConfig(), { logger });
  inspector = new TokenInspector(token.library, token.tokenLabel, token.pin);
});
afterAll(async () => {
  await backend?.close();
  await token?.cleanup();
});

describe('pkcs11 backend on SoftHSM', () => {
  it('derives its capabilities from the token mechanism list', () => {
    const list = new Set(inspector.mechanisms());
    const caps = backend.capabilities();
    expect(caps.keyTypes).toEqual(Object.keys(keyTypes)); // SoftHSM 2.6.1 can make every type
    expect(caps.sign.includes('EdDSA')).toBe(list.has(CKM.EDDSA));
    expect(caps.signDigest.includes('ES256')).toBe(list.has(CKM.ECDSA));
    expect(list.has(CKM.ECDSA_SHA256)).toBe(false); // hence ES256 hashes in process
    expect(caps.encrypt).toEqual(['AES_GCM', 'RSA_OAEP_SHA256', 'RSA_OAEP_SHA1', 'AES_KW']);
    // The payment MACs: retail MAC (ALG3) runs with K1 companions as DES2 K1 K1 keys when single DES is refused (paymentKeys.ts).
    expect(caps.mac).toEqual(['HMAC_SHA256', 'AES_CMAC', 'ISO9797_ALG1', 'ISO9797_ALG1_PAD2', 'ISO9797_ALG3', 'ISO9797_ALG3_PAD2', 'TDES_CMAC']);
    expect(caps.payment).toEqual({ dukpt: ['tdes', 'aes'], importKeys: true, exportKeys: true });
    expect(caps.random).toBe(true);
    expect(caps.keyAgreement).toEqual(list.has(CKM.ECDH1_DERIVE) ? ['EC_P256', 'EC_P384'] : []);
  });

  const signCases: [SignAlgorithm, KeyType][] = [
    ['RS256', 'RSA_2048'], ['RS384', 'RSA_3072'], ['RS512', 'RSA_4096'],
    ['PS256', 'RSA_2048'], ['PS384', 'RSA_3072'], ['PS512', 'RSA_4096'],
    ['ES256', 'EC_P256'], ['ES384', 'EC_P384'], ['EdDSA', 'ED25519'],
  ];
  for (const [algorithm, type] of signCases) {
    it(`${algorithm} with ${type}: message and digest signatures verify with node:crypto`, async () => {
      const { name, meta } = await create(type);
      const pub = createPublicKey({ key: meta.versions[0]!.publicKeySpki!, format: 'der', type: 'spki' });
      const message = Buffer.from(`amount=100&currency=EUR&${algorithm}`);
      const key = ref(name, type);
      const sig = await backend.sign(key, algorithm, { kind: 'message', data: message });
      expect(nodeVerifies(algorithm, pub, message, sig)).toBe(true);
      expect(await backend.verify(key, algorithm, { kind: 'message', data: message }, sig)).toBe(true);
      const other = Buffer.from(message);
      other[0]! ^= 1;
      expect(await backend.verify(key, algorithm, { kind: 'message', data: other }, sig)).toBe(false);
      expect(await backend.verify(key, algorithm, { kind: 'message', data: message }, sig.subarray(1))).toBe(false);
      const hash = signAlgorithms[algorithm].hash;
      if (hash) {
        const digest = createHash(hash).update(message).digest();
        const overDigest = await backend.sign(key, algorithm, { kind: 'digest', data: digest });
        expect(nodeVerifies(algorithm, pub, message, overDigest)).toBe(true);
        expect(await backend.verify(key, algorithm, { kind: 'digest', data: digest }, overDigest)).toBe(true);
      }
      // an empty message is a message too
      const empty = await backend.sign(key, algorithm, { kind: 'message', data: Buffer.alloc(0) });
      expect(nodeVerifies(algorithm, pub, Buffer.alloc(0), empty)).toBe(true);
    });
  }

  for (const type of ['AES_128', 'AES_256'] as const) {
    it(`AES_GCM with ${type}: round trip (node:crypto checks are in knownKey.test.ts); tampering and wrong AAD fail with DECRYPTION_FAILED`, async () => {
      const { name } = await create(type);
      const key = ref(name, type);
      const aad = Buffer.from('transfer:42');
      const plaintext = Buffer.from('4111111111111111');
      const ct = await backend.encrypt(key, 'AES_GCM', plaintext, aad);
      expect(ct.iv).toHaveLength(12);
      expect(ct.data).toHaveLength(plaintext.length + 16);
      expect(await backend.decrypt(key, 'AES_GCM', ct, aad)).toEqual(plaintext);
      const tag = Buffer.from(ct.data);
      tag[tag.length - 1]! ^= 1;
      await expect(backend.decrypt(key, 'AES_GCM', { iv: ct.iv!, data: tag }, aad)).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
      await expect(backend.decrypt(key, 'AES_GCM', ct, Buffer.from('transfer:43'))).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
      await expect(backend.decrypt(key, 'AES_GCM', ct)).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
      // the session that saw the failures is still good for the next caller
      expect(await backend.decrypt(key, 'AES_GCM', ct, aad)).toEqual(plaintext);
      const empty = await backend.encrypt(key, 'AES_GCM', Buffer.alloc(0));
      expect(await backend.decrypt(key, 'AES_GCM', empty)).toEqual(Buffer.alloc(0));
    });
  }

  it('RSA_OAEP_SHA256: decrypts node:crypto ciphertexts and its own; refuses SHA-1 OAEP and garbage', async () => {
    const { name, meta } = await create('RSA_2048', 'encrypt');
    const key = ref(name, 'RSA_2048');
    const pub = createPublicKey({ key: meta.versions[0]!.publicKeySpki!, format: 'der', type: 'spki' });
    const plaintext = Buffer.from('a content encryption key, 32 b.');
    const fromNode = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, plaintext);
    expect(await backend.decrypt(key, 'RSA_OAEP_SHA256', { data: fromNode })).toEqual(plaintext);
    const ours = await backend.encrypt(key, 'RSA_OAEP_SHA256', plaintext);
    expect(ours.data).toHaveLength(256);
    expect(await backend.decrypt(key, 'RSA_OAEP_SHA256', ours)).toEqual(plaintext);
    const sha1 = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, plaintext);
    await expect(backend.decrypt(key, 'RSA_OAEP_SHA256', { data: sha1 })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
    await expect(backend.decrypt(key, 'RSA_OAEP_SHA256', { data: Buffer.alloc(256, 0xff) })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
    await expect(backend.decrypt(key, 'RSA_OAEP_SHA256', { data: fromNode.subarray(1) })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
  });

  it('HMAC_SHA256: deterministic, verifies, refuses a flipped byte', async () => {
    const { name } = await create('HMAC_256');
    const key = ref(name, 'HMAC_256');
    const data = Buffer.from('0200|4111111111111111|000000010000');
    const mac = await backend.mac(key, 'HMAC_SHA256', data);
    expect(mac).toHaveLength(32);
    expect(await backend.mac(key, 'HMAC_SHA256', data)).toEqual(mac);
    expect(await backend.verifyMac(key, 'HMAC_SHA256', data, mac)).toBe(true);
    for (const i of [0, 31]) {
      const flipped = Buffer.from(mac);
      flipped[i]! ^= 0x80;
      expect(await backend.verifyMac(key, 'HMAC_SHA256', data, flipped)).toBe(false);
    }
    expect(await backend.verifyMac(key, 'HMAC_SHA256', Buffer.from('other'), mac)).toBe(false);
    expect(await backend.mac(key, 'HMAC_SHA256', Buffer.alloc(0))).toHaveLength(32);
  });

  it('TDES 2-key and 3-key keys are created', async () => {
    for (const type of ['TDES_2KEY', 'TDES_3KEY'] as const) {
      const { meta } = await create(type);
      expect(meta).toMatchObject({ type, purpose: 'pin', state: 'enabled', primaryVersion: 1 });
      expect(meta.versions[0]!.publicKeySpki).toBeUndefined();
    }
  });

  it('random bytes come from the token', async () => {
    const a = await backend.randomBytes(64);
    expect(a).toHaveLength(64);
    expect(a.equals(await backend.randomBytes(64))).toBe(false);
  });

  describe('key objects in the token', () => {
    const secretFlags = [A.CKA_TOKEN, A.CKA_PRIVATE, A.CKA_SENSITIVE, A.CKA_EXTRACTABLE, A.CKA_ALWAYS_SENSITIVE, A.CKA_NEVER_EXTRACTABLE,
      A.CKA_SIGN, A.CKA_VERIFY, A.CKA_ENCRYPT, A.CKA_DECRYPT, A.CKA_WRAP, A.CKA_UNWRAP, A.CKA_DERIVE];
    const privateFlags = [A.CKA_TOKEN, A.CKA_PRIVATE, A.CKA_SENSITIVE, A.CKA_EXTRACTABLE, A.CKA_ALWAYS_SENSITIVE, A.CKA_NEVER_EXTRACTABLE,
      A.CKA_SIGN, A.CKA_DECRYPT, A.CKA_UNWRAP, A.CKA_DERIVE];
    const publicFlags = [A.CKA_TOKEN, A.CKA_VERIFY, A.CKA_ENCRYPT, A.CKA_WRAP];
    const cases: [KeyType, KeyPurpose, number[]][] = [
      ['RSA_2048', 'sign', [A.CKA_SIGN]], ['RSA_2048', 'encrypt', [A.CKA_DECRYPT]], ['EC_P256', 'sign', [A.CKA_SIGN]],
      ['ED25519', 'sign', [A.CKA_SIGN]], ['AES_256', 'encrypt', [A.CKA_ENCRYPT, A.CKA_DECRYPT]],
      ['AES_128', 'wrap', [A.CKA_WRAP, A.CKA_UNWRAP]],
      ['EC_P256', 'agree', [A.CKA_DERIVE]], ['EC_P384', 'agree', [A.CKA_DERIVE]],
      ['TDES_2KEY', 'pin', [A.CKA_ENCRYPT, A.CKA_DECRYPT]], ['TDES_3KEY', 'kbpk', [A.CKA_SIGN, A.CKA_ENCRYPT]],
      ['AES_128', 'pin', [A.CKA_ENCRYPT, A.CKA_DECRYPT, A.CKA_SIGN]], ['AES_256', 'bdk', [A.CKA_DERIVE, A.CKA_SIGN]],
      ['HMAC_256', 'mac', [A.CKA_SIGN, A.CKA_VERIFY]],
    ];
    for (const [type, purpose, usage] of cases) {
      it(`${type} for ${purpose}: token, private, sensitive, never extractable, usage limited to the purpose`, async () => {
        const { name } = await create(type, purpose);
        const asymmetric = keyTypes[type].family !== 'aes' && keyTypes[type].family !== 'tdes' && keyTypes[type].family !== 'hmac';
        const flags = asymmetric ? privateFlags : secretFlags;
        const objects = inspector.objects(name, asymmetric ? A.CKO_PRIVATE_KEY : A.CKO_SECRET_KEY, flags);
        expect(objects).toHaveLength(1);
        const got = objects[0]!.flags;
        for (const f of [A.CKA_TOKEN, A.CKA_PRIVATE, A.CKA_SENSITIVE, A.CKA_ALWAYS_SENSITIVE, A.CKA_NEVER_EXTRACTABLE]) expect(got.get(f), `attribute 0x${f.toString(16)}`).toBe(true);
        expect(got.get(A.CKA_EXTRACTABLE)).toBe(false);
        for (const f of flags.slice(6)) expect(got.get(f), `usage 0x${f.toString(16)}`).toBe(usage.includes(f));
        if (asymmetric) {
          const pub = inspector.objects(name, A.CKO_PUBLIC_KEY, publicFlags);
          expect(pub).toHaveLength(1);
          expect(pub[0]!.id).toEqual(objects[0]!.id); // the pair shares its CKA_ID
          expect(pub[0]!.flags.get(A.CKA_VERIFY)).toBe(purpose === 'sign');
          expect(pub[0]!.flags.get(A.CKA_ENCRYPT)).toBe(purpose === 'encrypt');
          expect(pub[0]!.flags.get(A.CKA_VERIFY) || pub[0]!.flags.get(A.CKA_ENCRYPT)).toBe(purpose !== 'agree'); // the public half of an agreement key does nothing in the HSM
          expect(pub[0]!.flags.get(A.CKA_WRAP)).toBe(false);
        }
      });
    }

    it('destroy removes every object of the key: all versions, both halves, the metadata', async () => {
      const { name } = await create('EC_P256');
      await backend.rotateKey(name);
      await backend.setKeyState(name, 'disabled');
      expect(inspector.objects(name, A.CKO_PRIVATE_KEY, [])).toHaveLength(2);
      expect(inspector.objects(name, A.CKO_DATA, [])).toHaveLength(2); // the current revision and its base; older ones are gone
      await backend.destroyKey(name);
      for (const cls of [A.CKO_PRIVATE_KEY, A.CKO_PUBLIC_KEY, A.CKO_DATA]) expect(inspector.objects(name, cls, [])).toHaveLength(0);
      await expect(backend.describeKey(name)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
      await expect(backend.destroyKey(name)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    });

    it('objects that are not hsm-bridge\'s are ignored', async () => {
      const label = fresh('foreign');
      inspector.withSession((api, session) => {
        api.C_GenerateKey(session, { mechanism: CKM.AES_KEY_GEN }, [
          { type: A.CKA_TOKEN, value: true }, { type: A.CKA_LABEL, value: label }, { type: A.CKA_ID, value: Buffer.from('01', 'hex') }, { type: A.CKA_VALUE_LEN, value: 16 },
        ]);
        api.C_CreateObject(session, [
          { type: A.CKA_CLASS, value: A.CKO_DATA }, { type: A.CKA_TOKEN, value: true }, { type: A.CKA_APPLICATION, value: 'someone-else' },
          { type: A.CKA_LABEL, value: label }, { type: A.CKA_VALUE, value: Buffer.from('{}') },
        ]);
      });
      await expect(backend.describeKey(label)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
      expect((await backend.listKeys()).map((k) => k.name)).not.toContain(label);
      // and creating an hsm-bridge key of that name leaves the foreign key alone
      await backend.createKey({ name: label, type: 'AES_128', purpose: 'encrypt' });
      expect(inspector.objects(label, A.CKO_SECRET_KEY, [])).toHaveLength(2);
      expect((await backend.describeKey(label)).versions).toHaveLength(1);
    });
  });

  describe('lifecycle errors', () => {
    it('an existing name is KEY_ALREADY_EXISTS; unknown names and versions are not found', async () => {
      const { name } = await create('AES_128');
      await expect(backend.createKey({ name, type: 'AES_256', purpose: 'encrypt' })).rejects.toMatchObject({ code: 'KEY_ALREADY_EXISTS' });
      const missing = parseKeyName('never-created');
      await expect(backend.describeKey(missing)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
      await expect(backend.rotateKey(missing)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
      await expect(backend.setKeyState(missing, 'disabled')).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
      await expect(backend.encrypt(ref(missing, 'AES_128'), 'AES_GCM', Buffer.from('x'))).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
      await expect(backend.encrypt(ref(name, 'AES_128', 2), 'AES_GCM', Buffer.from('x'))).rejects.toMatchObject({ code: 'KEY_VERSION_NOT_FOUND' });
    });
  });

  describe('two backends on one token (replicas)', () => {
    let replica: Backend;
    beforeAll(async () => {
      replica = await pkcs11BackendFactory.create(token.backendConfig(), { logger });
    });
    afterAll(() => replica?.close());

    it('see each other\'s create, rotate, disable and destroy', async () => {
      const { name } = await create('EC_P256', 'sign', backend);
      expect((await replica.describeKey(name)).primaryVersion).toBe(1);
      expect((await replica.listKeys()).map((k) => k.name)).toContain(name);

      const rotated = await replica.rotateKey(name);
      const seen = await backend.describeKey(name);
      expect(seen.primaryVersion).toBe(2);
      expect(seen.versions.map((v) => v.publicKeySpki!.toString('hex'))).toEqual(rotated.versions.map((v) => v.publicKeySpki!.toString('hex')));
      const v2 = createPublicKey({ key: seen.versions[1]!.publicKeySpki!, format: 'der', type: 'spki' });
      const message = Buffer.from('signed by the first replica with version 2');
      const sig = await backend.sign(ref(name, 'EC_P256', 2), 'ES256', { kind: 'message', data: message });
      expect(nodeVerifies('ES256', v2, message, sig)).toBe(true);

      await backend.setKeyState(name, 'disabled');
      expect((await replica.describeKey(name)).state).toBe('disabled');
      await replica.setKeyState(name, 'enabled');
      expect((await backend.describeKey(name)).state).toBe('enabled');

      await replica.setKeyState(name, 'disabled');
      await replica.destroyKey(name);
      await expect(backend.describeKey(name)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
      // the first replica cached the handles when it signed: the stale handle leads to KEY_NOT_FOUND
      await expect(backend.sign(ref(name, 'EC_P256', 2), 'ES256', { kind: 'message', data: message })).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    });

    it('a key destroyed and recreated under the same name by another replica is found again', async () => {
      const { name } = await create('HMAC_256', 'mac', backend);
      const key = ref(name, 'HMAC_256');
      const data = Buffer.from('data');
      const before = await backend.mac(key, 'HMAC_SHA256', data); // caches the handle
      await replica.setKeyState(name, 'disabled');
      await replica.destroyKey(name);
      await replica.createKey({ name, type: 'HMAC_256', purpose: 'mac' });
      const after = await backend.mac(key, 'HMAC_SHA256', data);
      expect(after).not.toEqual(before); // a new key, found through the name, not the old handle
      expect(await replica.verifyMac(key, 'HMAC_SHA256', data, after)).toBe(true);
    });
  });

  it('200 concurrent signatures through a pool of 4 sessions all verify', async () => {
    const small = await pkcs11BackendFactory.create(token.backendConfig({ sessionPoolSize: 4, acquireTimeoutMs: 30_000 }), { logger });
    try {
      const { name, meta } = await create('EC_P256', 'sign', small);
      const pub = createPublicKey({ key: meta.versions[0]!.publicKeySpki!, format: 'der', type: 'spki' });
      const messages = Array.from({ length: 200 }, (_, i) => Buffer.from(`payment ${i}`));
      const sigs = await Promise.all(messages.map((m) => small.sign(ref(name, 'EC_P256'), 'ES256', { kind: 'message', data: m })));
      sigs.forEach((s, i) => expect(nodeVerifies('ES256', pub, messages[i]!, s), `signature ${i}`).toBe(true));
    } finally {
      await small.close();
    }
  });

  it('the wait queue holds 4 x sessionPoolSize by default: beyond it, calls fail at once with BACKEND_UNAVAILABLE', async () => {
    const small = await pkcs11BackendFactory.create(token.backendConfig({ sessionPoolSize: 2, acquireTimeoutMs: 30_000, maxQueuedRequests: undefined }), { logger });
    try {
      const { name } = await create('RSA_4096', 'sign', small);
      const key = ref(name, 'RSA_4096');
      const calls = Array.from({ length: 20 }, (_, i) => small.sign(key, 'RS256', { kind: 'message', data: Buffer.from(`m${i}`) }));
      const results = await Promise.allSettled(calls);
      // 2 lent + 8 waiting; the other 10 were refused without waiting
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(10);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    } finally {
      await small.close();
    }
  });

  it('a saturated pool fails waiters with BACKEND_UNAVAILABLE after acquireTimeoutMs', async () => {
    const tiny = await pkcs11BackendFactory.create(token.backendConfig({ sessionPoolSize: 1, acquireTimeoutMs: 1 }), { logger });
    try {
      const results = await Promise.allSettled(Array.from({ length: 3 }, () => tiny.createKey({ name: fresh('busy'), type: 'RSA_4096', purpose: 'sign' })));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    } finally {
      await tiny.close();
    }
  });

  describe('start-up', () => {
    it('selects the token by slot number too', async () => {
      const slots = inspector.withSession((api) => api.C_GetSlotList(true).filter((s) => api.C_GetTokenInfo(s).label.trimEnd() === token.tokenLabel));
      const slot = Number(slots[0]!.readBigUInt64LE(0));
      const bySlot = await pkcs11BackendFactory.create({ library: token.library, slot, pinEnv: token.pinEnv }, { logger });
      expect(await bySlot.health()).toEqual({ ready: true });
      await bySlot.close();
    });

    it('the config schema wants a library and exactly one of tokenLabel and slot, and nothing else', () => {
      const check = (c: object) => () => validateSection(pkcs11BackendFactory.configSchema, c, '/backend/pkcs11');
      expect(check({ library: '/x.so', tokenLabel: 't' })).not.toThrow();
      expect(check({ library: '/x.so', slot: 3, pinFile: '/run/pin' })).not.toThrow();
      for (const bad of [{ tokenLabel: 't' }, { library: '/x.so' }, { library: '/x.so', tokenLabel: 't', slot: 1 }, { library: '/x.so', tokenLabel: 't', pin: '1234' },
        { library: '/x.so', tokenLabel: 't', pinEnv: 'A', pinFile: '/p' }, { library: '/x.so', tokenLabel: 't', sessionPoolSize: 0 }]) {
        expect(check(bad), JSON.stringify(bad)).toThrow();
      }
    });
  });

  it('after close: health not ready, calls fail with BACKEND_UNAVAILABLE', async () => {
    const b = await pkcs11BackendFactory.create(token.backendConfig(), { logger });
    await b.close();
    expect((await b.health()).ready).toBe(false);
    await expect(b.randomBytes(8)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
  });
});
