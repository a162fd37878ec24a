/**
 * Every key type and algorithm of the software backend, called directly (the core's checks are tested
 * elsewhere). Outputs are checked with node:crypto, using the public key from describeKey or the secret
 * key read from the keystore file with node:crypto alone; inputs made by node:crypto must be accepted.
 */
import {
  constants,
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  diffieHellman,
  generateKeyPairSync,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  sign as nodeSign,
  verify as nodeVerify,
  type KeyObject,
} from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashes } from '../../../src/algorithms/hashes.js';
import { signAlgorithms, type SignAlgorithm } from '../../../src/algorithms/registry.js';
import type { Backend, KeyRef } from '../../../src/backend/port.js';
import type { KeyType } from '../../../src/keys/types.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../../helpers/software.js';
import { createKey, openBackend, privateKeyWithNode, publicKeyOf, unsealWithNode } from './support.js';
import { nodeVerifies } from '../../../src/conformance/reference/nodeVerify.js';

let h: SoftwareBackendHarness;
let backend: Backend;
const masterKey = () => process.env[h.config.masterKeyEnv]!;

beforeAll(async () => {
  h = await createSoftwareBackendConfig();
  backend = await openBackend(h);
});
afterAll(async () => {
  await backend?.close();
  await h?.cleanup();
});

const message = Buffer.from('{"transferId":"7c23e80c-d078-4077-8263-2c047876fcf6","amount":{"amount":"10.5","currency":"EUR"}}');

/** The node:crypto signing options of a JWS algorithm; used to make and check signatures independently. */
function nodeOptions(algorithm: SignAlgorithm, key: KeyObject) {
  const info = signAlgorithms[algorithm];
  if (info.scheme === 'pss') return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: hashes[info.hash].length };
  if (info.scheme === 'ecdsa') return { key, dsaEncoding: 'ieee-p1363' as const };
  return { key };
}

const cases: Array<[SignAlgorithm, KeyType]> = [
  ...(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'] as const).flatMap((a) =>
    (['RSA_2048', 'RSA_3072', 'RSA_4096'] as const).map((t): [SignAlgorithm, KeyType] => [a, t]),
  ),
  ['ES256', 'EC_P256'],
  ['ES384', 'EC_P384'],
  ['EdDSA', 'ED25519'],
];

describe('capabilities', () => {
  it('offers every key type and algorithm, the payment primitives, FF1\'s AES, and digest signing only for the RSA schemes', () => {
    const c = backend.capabilities();
    expect(c.keyTypes).toHaveLength(12);
    expect(c.keyTypes).toContain('AES_192');
    expect(c.sign).toEqual(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'EdDSA']);
    expect(c.signDigest).toEqual(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']);
    expect(c.encrypt).toEqual(['AES_GCM', 'RSA_OAEP_SHA256', 'RSA_OAEP_SHA1', 'AES_KW']);
    expect(c.mac).toEqual(['HMAC_SHA256', 'AES_CMAC', 'ISO9797_ALG1', 'ISO9797_ALG3', 'ISO9797_ALG1_PAD2', 'ISO9797_ALG3_PAD2', 'TDES_CMAC']);
    expect(c.random).toBe(true);
    expect(c.keyAgreement).toEqual(['EC_P256', 'EC_P384']);
    expect(c.payment).toEqual({ dukpt: ['tdes', 'aes'], importKeys: true, exportKeys: true });
    expect(c.fpe).toBe(true);
  });
});

describe('sign and verify', () => {
  const keys = new Map<KeyType, KeyRef>();
  const keyFor = async (type: KeyType) => {
    if (!keys.has(type)) keys.set(type, await createKey(backend, `sig-${type.toLowerCase()}`, type));
    return keys.get(type)!;
  };

  for (const [algorithm, type] of cases) {
    it(`${algorithm} with ${type}: node:crypto verifies ours, we verify node:crypto's, tampering fails`, async () => {
      const key = await keyFor(type);
      const pub = await publicKeyOf(backend, key);
      const signature = await backend.sign(key, algorithm, { kind: 'message', data: message });
      expect(nodeVerifies(algorithm, pub, message, signature)).toBe(true);
      if (algorithm === 'ES256') expect(signature).toHaveLength(64);
      if (algorithm === 'ES384') expect(signature).toHaveLength(96);

      const priv = privateKeyWithNode(h.config.keystorePath, masterKey(), key.name, key.version);
      const theirs = nodeSign(signAlgorithms[algorithm].hash, message, nodeOptions(algorithm, priv));
      expect(await backend.verify(key, algorithm, { kind: 'message', data: message }, theirs)).toBe(true);

      const other = Buffer.from(message);
      other[5]! ^= 0x20;
      expect(await backend.verify(key, algorithm, { kind: 'message', data: other }, signature)).toBe(false);
      const flipped = Buffer.from(signature);
      flipped[flipped.length >> 1]! ^= 1;
      expect(await backend.verify(key, algorithm, { kind: 'message', data: message }, flipped)).toBe(false);
      // malformed signatures are invalid, not errors
      for (const bad of [Buffer.alloc(0), signature.subarray(1), Buffer.concat([signature, Buffer.of(0)]), Buffer.alloc(signature.length, 0xff)]) {
        expect(await backend.verify(key, algorithm, { kind: 'message', data: message }, bad)).toBe(false);
      }

      const hash = signAlgorithms[algorithm].hash;
      if (!backend.capabilities().signDigest.includes(algorithm) || hash === null) return;
      const digest = createHash(hash).update(message).digest();
      const overDigest = await backend.sign(key, algorithm, { kind: 'digest', data: digest });
      expect(nodeVerifies(algorithm, pub, message, overDigest)).toBe(true);
      expect(await backend.verify(key, algorithm, { kind: 'digest', data: digest }, overDigest)).toBe(true);
      expect(await backend.verify(key, algorithm, { kind: 'digest', data: digest }, theirs)).toBe(true);
      const otherDigest = createHash(hash).update(other).digest();
      expect(await backend.verify(key, algorithm, { kind: 'digest', data: otherDigest }, overDigest)).toBe(false);
      for (const bad of [flipped, Buffer.alloc(0), Buffer.alloc(signature.length, 0xff), Buffer.alloc(signature.length)]) {
        expect(await backend.verify(key, algorithm, { kind: 'digest', data: digest }, bad)).toBe(false);
      }
      if (signAlgorithms[algorithm].scheme === 'pss') {
        // PSS is randomised: two signatures of one digest differ, and both verify
        const again = await backend.sign(key, algorithm, { kind: 'digest', data: digest });
        expect(again.equals(overDigest)).toBe(false);
        expect(nodeVerifies(algorithm, pub, message, again)).toBe(true);
      } else {
        // PKCS#1 v1.5 is deterministic: the digest path gives exactly node:crypto's signature
        expect(overDigest.equals(signature)).toBe(true);
      }
    });
  }

  it('PS256 signatures use a salt as long as the hash (node:crypto with another salt length refuses them)', async () => {
    const key = await keyFor('RSA_2048');
    const pub = await publicKeyOf(backend, key);
    const digest = createHash('sha256').update(message).digest();
    for (const signature of [
      await backend.sign(key, 'PS256', { kind: 'message', data: message }),
      await backend.sign(key, 'PS256', { kind: 'digest', data: digest }),
    ]) {
      expect(nodeVerify('sha256', message, { key: pub, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, signature)).toBe(true);
      expect(nodeVerify('sha256', message, { key: pub, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 20 }, signature)).toBe(false);
    }
  });

  it('a signature by one version does not verify under another', async () => {
    const key = await createKey(backend, 'sig-rotated', 'EC_P256');
    const v1 = await backend.sign(key, 'ES256', { kind: 'message', data: message });
    const meta = await backend.rotateKey(key.name);
    const v2 = { ...key, version: meta.primaryVersion };
    expect(await backend.verify(v2, 'ES256', { kind: 'message', data: message }, v1)).toBe(false);
    expect(await backend.verify(key, 'ES256', { kind: 'message', data: message }, v1)).toBe(true);
  });
});

describe('AES_GCM', () => {
  for (const type of ['AES_128', 'AES_256'] as const) {
    it(`${type}: node:crypto decrypts ours and we decrypt node:crypto's; every failure is DECRYPTION_FAILED`, async () => {
      const key = await createKey(backend, `gcm-${type.toLowerCase()}`, type);
      const secret = unsealWithNode(h.config.keystorePath, masterKey(), key.name, 1);
      expect(secret).toHaveLength(type === 'AES_128' ? 16 : 32);
      const cipherName = type === 'AES_128' ? 'aes-128-gcm' : 'aes-256-gcm';
      const plaintext = Buffer.from('4111111111111111|12/29');
      const aad = Buffer.from('order:17');

      const ours = await backend.encrypt(key, 'AES_GCM', plaintext, aad);
      expect(ours.iv).toHaveLength(12);
      expect(ours.data).toHaveLength(plaintext.length + 16);
      const d = createDecipheriv(cipherName, secret, ours.iv!);
      d.setAAD(aad);
      d.setAuthTag(ours.data.subarray(-16));
      expect(Buffer.concat([d.update(ours.data.subarray(0, -16)), d.final()])).toEqual(plaintext);

      const iv = randomBytes(12);
      const c = createCipheriv(cipherName, secret, iv);
      c.setAAD(aad);
      const theirs = { iv, data: Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]) };
      expect(await backend.decrypt(key, 'AES_GCM', theirs, aad)).toEqual(plaintext);

      const noAad = await backend.encrypt(key, 'AES_GCM', plaintext);
      expect(await backend.decrypt(key, 'AES_GCM', noAad)).toEqual(plaintext);

      const tamperedData = Buffer.from(ours.data);
      tamperedData[0]! ^= 1;
      const tamperedIv = Buffer.from(ours.iv!);
      tamperedIv[0]! ^= 1;
      for (const [ct, a] of [
        [ours, undefined],
        [ours, Buffer.from('order:18')],
        [{ iv: ours.iv!, data: tamperedData }, aad],
        [{ iv: tamperedIv, data: ours.data }, aad],
        [{ iv: ours.iv!, data: ours.data.subarray(0, 15) }, aad],
        [{ iv: ours.iv!.subarray(0, 8), data: ours.data }, aad],
        [{ data: ours.data }, aad],
      ] as const) {
        await expect(backend.decrypt(key, 'AES_GCM', ct, a)).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
      }
    });
  }

  it('an empty plaintext round-trips, and every encryption uses a fresh IV', async () => {
    const key = await createKey(backend, 'gcm-empty', 'AES_256');
    const ivs = new Set<string>();
    for (let i = 0; i < 50; i++) ivs.add((await backend.encrypt(key, 'AES_GCM', Buffer.alloc(0))).iv!.toString('hex'));
    expect(ivs.size).toBe(50);
    const empty = await backend.encrypt(key, 'AES_GCM', Buffer.alloc(0));
    expect(empty.data).toHaveLength(16);
    expect(await backend.decrypt(key, 'AES_GCM', empty)).toEqual(Buffer.alloc(0));
  });
});

describe('RSA_OAEP_SHA256', () => {
  for (const type of ['RSA_2048', 'RSA_3072', 'RSA_4096'] as const) {
    it(`${type}: we decrypt node:crypto's ciphertext, node:crypto decrypts ours, SHA-1 OAEP and garbage fail`, async () => {
      const key = await createKey(backend, `oaep-${type.toLowerCase()}`, type, 'encrypt');
      const pub = await publicKeyOf(backend, key);
      const plaintext = randomBytes(64);
      const theirs = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, plaintext);
      expect(await backend.decrypt(key, 'RSA_OAEP_SHA256', { data: theirs })).toEqual(plaintext);

      const ours = await backend.encrypt(key, 'RSA_OAEP_SHA256', plaintext);
      expect(ours.iv).toBeUndefined();
      expect(ours.data).toHaveLength(pub.asymmetricKeyDetails!.modulusLength! / 8);
      const priv = privateKeyWithNode(h.config.keystorePath, masterKey(), key.name, 1);
      expect(privateDecrypt({ key: priv, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, ours.data)).toEqual(plaintext);

      const sha1 = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, plaintext);
      const garbled = Buffer.from(theirs);
      garbled[3]! ^= 0x40;
      for (const data of [sha1, garbled, Buffer.alloc(0), theirs.subarray(1), Buffer.alloc(theirs.length, 0xff)]) {
        await expect(backend.decrypt(key, 'RSA_OAEP_SHA256', { data })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
      }
    });
  }
});

describe('RSA_OAEP_SHA1 (JOSE RSA-OAEP)', () => {
  it("we decrypt node:crypto's SHA-1 OAEP, node:crypto decrypts ours; SHA-256 OAEP and garbage fail", async () => {
    const key = await createKey(backend, 'oaep1', 'RSA_2048', 'encrypt');
    const pub = await publicKeyOf(backend, key);
    const plaintext = randomBytes(32);
    const theirs = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, plaintext);
    expect(await backend.decrypt(key, 'RSA_OAEP_SHA1', { data: theirs })).toEqual(plaintext);
    const ours = await backend.encrypt(key, 'RSA_OAEP_SHA1', plaintext);
    const priv = privateKeyWithNode(h.config.keystorePath, masterKey(), key.name, 1);
    expect(privateDecrypt({ key: priv, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, ours.data)).toEqual(plaintext);
    const sha256 = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, plaintext);
    for (const data of [sha256, theirs.subarray(1), Buffer.alloc(theirs.length, 0xff)]) {
      await expect(backend.decrypt(key, 'RSA_OAEP_SHA1', { data })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
    }
  });
});

describe('AES_KW (RFC 3394)', () => {
  for (const type of ['AES_128', 'AES_256'] as const) {
    it(`${type}: node:crypto's id-aes-wrap unwraps ours and we unwrap its; tampering is DECRYPTION_FAILED`, async () => {
      const key = await createKey(backend, `kw-${type.toLowerCase()}`, type);
      const secret = unsealWithNode(h.config.keystorePath, masterKey(), key.name, 1);
      const cipher = type === 'AES_128' ? 'id-aes128-wrap' : 'id-aes256-wrap';
      const iv = Buffer.from('a6a6a6a6a6a6a6a6', 'hex');
      const cek = randomBytes(32);
      const ours = await backend.encrypt(key, 'AES_KW', cek);
      expect(ours.iv).toBeUndefined();
      expect(ours.data).toHaveLength(40);
      const d = createDecipheriv(cipher, secret, iv);
      expect(Buffer.concat([d.update(ours.data), d.final()])).toEqual(cek);
      const c = createCipheriv(cipher, secret, iv);
      const theirs = Buffer.concat([c.update(cek), c.final()]);
      expect(theirs).toEqual(ours.data); // key wrap is deterministic
      expect(await backend.decrypt(key, 'AES_KW', { data: theirs })).toEqual(cek);
      const tampered = Buffer.from(theirs);
      tampered[5]! ^= 1;
      for (const data of [tampered, theirs.subarray(8)]) {
        await expect(backend.decrypt(key, 'AES_KW', { data })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
      }
    });
  }
});

describe('ECDH', () => {
  for (const [type, curve] of [['EC_P256', 'prime256v1'], ['EC_P384', 'secp384r1']] as const) {
    it(`${type}: Z equals node:crypto's diffieHellman from the other side, with an ephemeral key`, async () => {
      const key = await createKey(backend, `ecdh-${type.toLowerCase()}`, type, 'agree');
      const ours = await publicKeyOf(backend, key);
      const eph = generateKeyPairSync('ec', { namedCurve: curve });
      const z = await backend.deriveSharedSecret(key, eph.publicKey.export({ format: 'der', type: 'spki' }));
      expect(z).toHaveLength(type === 'EC_P256' ? 32 : 48);
      expect(z).toEqual(diffieHellman({ privateKey: eph.privateKey, publicKey: ours }));
      const other = generateKeyPairSync('ec', { namedCurve: curve });
      expect(await backend.deriveSharedSecret(key, other.publicKey.export({ format: 'der', type: 'spki' }))).not.toEqual(z);
    });
  }
});

describe('HMAC_SHA256', () => {
  it('equals node:crypto HMAC under the stored key; verification is exact', async () => {
    const key = await createKey(backend, 'hmac', 'HMAC_256');
    const secret = unsealWithNode(h.config.keystorePath, masterKey(), key.name, 1);
    expect(secret).toHaveLength(32);
    const data = Buffer.from('0200|4111111111111111|000000010000|840');
    const mac = await backend.mac(key, 'HMAC_SHA256', data);
    expect(mac).toEqual(createHmac('sha256', secret).update(data).digest());
    expect(await backend.verifyMac(key, 'HMAC_SHA256', data, mac)).toBe(true);
    for (let i = 0; i < mac.length; i += 7) {
      const bad = Buffer.from(mac);
      bad[i]! ^= 0x80;
      expect(await backend.verifyMac(key, 'HMAC_SHA256', data, bad)).toBe(false);
    }
    expect(await backend.verifyMac(key, 'HMAC_SHA256', data, mac.subarray(0, 31))).toBe(false);
    expect(await backend.verifyMac(key, 'HMAC_SHA256', data, Buffer.concat([mac, Buffer.of(0)]))).toBe(false);
    expect(await backend.verifyMac(key, 'HMAC_SHA256', Buffer.from('other'), mac)).toBe(false);
  });
});

describe('TDES keys', () => {
  for (const [type, length] of [['TDES_2KEY', 16], ['TDES_3KEY', 24]] as const) {
    it(`${type}: ${length} bytes, odd parity on every byte, distinct 8-byte parts, usable by node:crypto DES-EDE`, async () => {
      for (let i = 0; i < 5; i++) {
        const key = await createKey(backend, `tdes-${type.toLowerCase()}-${i}`, type);
        const secret = unsealWithNode(h.config.keystorePath, masterKey(), key.name, 1);
        expect(secret).toHaveLength(length);
        for (const byte of secret) expect(byte.toString(2).split('').filter((b) => b === '1').length % 2).toBe(1);
        const parts = [0, 8, 16].filter((o) => o < length).map((o) => secret.subarray(o, o + 8).toString('hex'));
        expect(new Set(parts).size).toBe(parts.length);
        // OpenSSL accepts it as a TDES key (the 2-key form is K1 K2 K1)
        const full = length === 16 ? Buffer.concat([secret, secret.subarray(0, 8)]) : secret;
        const c = createCipheriv('des-ede3', full, null).setAutoPadding(false);
        expect(Buffer.concat([c.update(Buffer.alloc(8)), c.final()])).toHaveLength(8);
      }
    });
  }
});

describe('random and errors', () => {
  it('returns fresh random bytes of the requested length', async () => {
    const a = await backend.randomBytes(32);
    const b = await backend.randomBytes(32);
    expect(a).toHaveLength(32);
    expect(a.equals(b)).toBe(false);
    expect(await backend.randomBytes(1)).toHaveLength(1);
    expect(await backend.randomBytes(65536)).toHaveLength(65536);
  });

  it('names a missing key or version', async () => {
    const key = await createKey(backend, 'err-aes', 'AES_256');
    await expect(backend.encrypt({ ...key, name: 'nope' as KeyRef['name'] }, 'AES_GCM', Buffer.from('x'))).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    await expect(backend.encrypt({ ...key, version: 2 as KeyRef['version'] }, 'AES_GCM', Buffer.from('x'))).rejects.toMatchObject({ code: 'KEY_VERSION_NOT_FOUND' });
    await expect(backend.describeKey('nope' as KeyRef['name'])).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
  });

  it('is unusable once closed, with BACKEND_UNAVAILABLE', async () => {
    const h2 = await createSoftwareBackendConfig();
    const b2 = await openBackend(h2);
    const key = await createKey(b2, 'k', 'AES_256');
    await b2.close();
    await b2.close(); // idempotent
    expect(await b2.health()).toMatchObject({ ready: false });
    await expect(b2.encrypt(key, 'AES_GCM', Buffer.from('x'))).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    await expect(b2.createKey({ name: key.name, type: 'AES_256', purpose: 'encrypt' })).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    await expect(b2.randomBytes(4)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    await h2.cleanup();
  });
});
