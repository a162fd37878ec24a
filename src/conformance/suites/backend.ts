/**
 * The adapter conformance suite: one set of tests that every backend must pass (software, PKCS#11, KMIP,
 * and any vendor's own adapter). It drives the backend through the core KeyService, as the service
 * does, and checks every output with node:crypto rather than with the backend's own verify.
 * What a backend cannot do must be absent from capabilities() and refused with UNSUPPORTED_BY_BACKEND:
 * nothing is skipped silently.
 *
 * Run by `hsmb conformance` (src/cli/conformanceCommand.ts), and in this repository's tests:
 *   describeBackendConformance(vitestHost, 'software', async () => ({ open: () => ..., cleanup: () => ... }));
 */
import { createHash, createPublicKey, diffieHellman, generateKeyPairSync, publicEncrypt, constants } from 'node:crypto';
import { expect } from '../expect.js';
import type { ConformanceTarget, SuiteHost } from '../host.js';
import {
  algorithmsFor,
  allEncryptAlgorithms,
  allMacAlgorithms,
  allSignAlgorithms,
  signAlgorithms,
  type SignAlgorithm,
} from '../../algorithms/registry.js';
import type { Backend } from '../../backend/port.js';
import { allKeyTypes, keyTypeInfo, keyTypes, type KeyPurpose, type KeyType } from '../../keys/types.js';
import { KeyService } from '../../operations/keyService.js';
import { nodeVerifies } from '../reference/nodeVerify.js';

const limits = { maxDataBytes: 64 * 1024, maxRandomBytes: 1024 };

/** The key type used to exercise each sign algorithm. */
const signKeyType: Record<SignAlgorithm, KeyType> = {
  RS256: 'RSA_2048', RS384: 'RSA_2048', RS512: 'RSA_2048',
  PS256: 'RSA_2048', PS384: 'RSA_2048', PS512: 'RSA_2048',
  ES256: 'EC_P256', ES384: 'EC_P384', EdDSA: 'ED25519',
};

/** A copy of `data` with one bit flipped at `index` (negative counts from the end). */
function flip(data: Buffer, index: number): Buffer {
  const copy = Buffer.from(data);
  const at = index < 0 ? copy.length + index : index;
  copy[at] = copy[at]! ^ 1;
  return copy;
}


export function describeBackendConformance(t: SuiteHost, label: string, makeTarget: () => Promise<ConformanceTarget>): void {
  t.describe(`backend conformance: ${label}`, () => {
    let target: ConformanceTarget;
    let backend: Backend;
    let service: KeyService;
    let seq = 0;
    const fresh = (stem: string) => `conf-${stem}-${Date.now().toString(36)}-${seq++}`;
    const open = async () => {
      backend = await target.open();
      service = new KeyService(backend, { limits, metadataCacheTtlMs: 1000 });
    };
    const caps = () => backend.capabilities();
    const has = (type: KeyType) => caps().keyTypes.includes(type);
    const publicKeyOf = async (name: string, version = 1) => {
      const meta = await service.getKey(name);
      const spki = meta.versions.find((v) => v.version === version)?.publicKeySpki;
      expect(spki, 'public key of an asymmetric key').toBeDefined();
      return createPublicKey({ key: spki!, format: 'der', type: 'spki' });
    };
    const create = async (type: KeyType, purpose?: KeyPurpose) => {
      const name = fresh(type.toLowerCase());
      await service.createKey({ name, type, purpose });
      return name;
    };
    /** A backend makes no key that none of the algorithms it offers can use: it refuses with UNSUPPORTED_BY_BACKEND. */
    const createUnlessUnusable = async (type: KeyType, purpose: KeyPurpose): Promise<string | undefined> => {
      const c = caps();
      const offered: readonly string[] = [...c.sign, ...c.encrypt, ...c.mac, ...(c.keyAgreement.includes(type) ? ['ECDH'] : [])];
      if (algorithmsFor(type, purpose).some((a) => offered.includes(a))) return create(type, purpose);
      await expect(service.createKey({ name: fresh(type.toLowerCase()), type, purpose })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
      t.refused(`${type} for ${purpose}: no offered algorithm uses it`);
      return undefined;
    };

    t.beforeAll(async () => {
      target = await makeTarget();
      await open();
    });
    t.afterAll(async () => {
      await backend?.close();
      await target?.cleanup();
    });

    t.describe('capabilities', () => {
      t.it('names only known key types and algorithms, each with a key type that can use it', () => {
        const c = caps();
        expect(c.keyTypes.length).toBeGreaterThan(0);
        for (const t of c.keyTypes) expect(allKeyTypes).toContain(t);
        for (const a of c.sign) expect(c.keyTypes).toContain(signKeyType[a]);
        for (const a of c.signDigest) {
          expect(c.sign).toContain(a);
          expect(signAlgorithms[a].hash, `${a} hashes, so a digest makes sense`).not.toBeNull();
        }
        for (const a of c.encrypt) expect(allEncryptAlgorithms).toContain(a);
        for (const a of c.mac) expect(allMacAlgorithms).toContain(a);
        for (const t of c.keyAgreement) {
          expect(c.keyTypes).toContain(t);
          expect(keyTypes[t].purposes as readonly string[]).toContain('agree');
        }
      });
    });

    t.describe('key creation', () => {
      for (const type of allKeyTypes) {
        t.it(`${type}: created with the right shape, or refused as unsupported`, async () => {
          const name = fresh(type.toLowerCase());
          if (!has(type)) {
            await expect(service.createKey({ name, type })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
            return t.refused(`${type} keys`);
          }
          const meta = await service.createKey({ name, type });
          expect(meta).toMatchObject({ name, type, purpose: keyTypes[type].purposes[0], state: 'enabled', primaryVersion: 1 });
          expect(meta.versions.map((v) => v.version)).toEqual([1]);
          expect(Number.isNaN(Date.parse(meta.createdAt))).toBe(false);
          const info = keyTypeInfo(type);
          const spki = meta.versions[0]!.publicKeySpki;
          if (info.family === 'rsa' || info.family === 'ec' || info.family === 'okp') {
            const pub = createPublicKey({ key: spki!, format: 'der', type: 'spki' });
            if (info.family === 'rsa') {
              expect(pub.asymmetricKeyType).toBe('rsa');
              expect(pub.asymmetricKeyDetails?.modulusLength).toBe(info.bits);
            } else if (info.family === 'ec') {
              expect(pub.asymmetricKeyDetails?.namedCurve).toBe(info.curve === 'P-256' ? 'prime256v1' : 'secp384r1');
            } else {
              expect(pub.asymmetricKeyType).toBe('ed25519');
            }
          } else {
            expect(spki).toBeUndefined();
          }
        });
      }

      t.it('refuses a name that is taken, and a purpose the key type cannot have', async () => {
        const name = await create('AES_256');
        await expect(service.createKey({ name, type: 'AES_256' })).rejects.toMatchObject({ code: 'KEY_ALREADY_EXISTS' });
        await expect(service.createKey({ name: fresh('x'), type: 'EC_P256', purpose: 'encrypt' })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
      });

      t.it('an RSA key made for encryption cannot sign, and one made for signing cannot decrypt', async () => {
        const enc = await createUnlessUnusable('RSA_2048', 'encrypt');
        const sig = await create('RSA_2048', 'sign');
        if (enc) await expect(service.sign({ name: enc, message: Buffer.from('x') })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        await expect(service.encrypt({ name: sig, plaintext: Buffer.from('x') })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
      });
    });

    t.describe('sign and verify', () => {
      const message = Buffer.from('{"transferId":"b51ec534-ee48-4575-b6a9-ead2955b8069","amount":{"amount":"100","currency":"USD"}}');

      for (const algorithm of allSignAlgorithms) {
        t.it(`${algorithm}: signatures verify with node:crypto, or the algorithm is refused as unsupported`, async () => {
          const type = signKeyType[algorithm];
          if (!caps().sign.includes(algorithm)) {
            if (!has(type)) return t.refused(`${type} keys`); // the key-creation test already asserts the refusal
            const name = await create(type);
            await expect(service.sign({ name, algorithm, message })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
            return t.refused(`sign ${algorithm}`);
          }
          const name = await create(type);
          const pub = await publicKeyOf(name);
          const signed = await service.sign({ name, algorithm, message });
          expect(signed).toMatchObject({ keyVersion: 1, algorithm });
          expect(nodeVerifies(algorithm, pub, message, signed.signature)).toBe(true);
          if (algorithm.startsWith('ES')) expect(signed.signature.length).toBe(algorithm === 'ES256' ? 64 : 96);

          expect((await service.verify({ name, algorithm, message, signature: signed.signature })).valid).toBe(true);
          expect((await service.verify({ name, algorithm, message: flip(message, 0), signature: signed.signature })).valid).toBe(false);
          expect((await service.verify({ name, algorithm, message, signature: flip(signed.signature, -1) })).valid).toBe(false);

          const hash = signAlgorithms[algorithm].hash;
          if (hash === null) {
            await expect(service.sign({ name, algorithm, digest: Buffer.alloc(32) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
          } else if (caps().signDigest.includes(algorithm)) {
            const digest = createHash(hash).update(message).digest();
            const overDigest = await service.sign({ name, algorithm, digest });
            expect(nodeVerifies(algorithm, pub, message, overDigest.signature)).toBe(true);
            expect((await service.verify({ name, algorithm, digest, signature: overDigest.signature })).valid).toBe(true);
            expect((await service.verify({ name, algorithm, message, signature: overDigest.signature })).valid).toBe(true);
            await expect(service.sign({ name, algorithm, digest: digest.subarray(1) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
          } else {
            const digest = createHash(hash).update(message).digest();
            await expect(service.sign({ name, algorithm, digest })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
          }
        });
      }

      t.it('refuses an algorithm that does not fit the key, and an unknown one', async () => {
        if (!has('EC_P256') || !has('RSA_2048')) return t.refused('EC_P256 keys and RSA_2048 keys');
        const ec = await create('EC_P256');
        await expect(service.sign({ name: ec, algorithm: 'RS256', message })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        await expect(service.sign({ name: ec, algorithm: 'ES384', message })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        await expect(service.sign({ name: ec, algorithm: 'ES257', message })).rejects.toMatchObject({ code: 'UNSUPPORTED_ALGORITHM' });
        await expect(service.sign({ name: ec, message, digest: Buffer.alloc(32) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      });

      t.it('many concurrent signatures all verify', async () => {
        if (!caps().sign.includes('ES256')) return t.refused('sign ES256');
        const name = await create('EC_P256');
        const pub = await publicKeyOf(name);
        const messages = Array.from({ length: 64 }, (_, i) => Buffer.from(`message ${i}`));
        const results = await Promise.all(messages.map((m) => service.sign({ name, algorithm: 'ES256', message: m })));
        results.forEach((r, i) => expect(nodeVerifies('ES256', pub, messages[i]!, r.signature)).toBe(true));
      });
    });

    t.describe('encrypt and decrypt', () => {
      const plaintext = Buffer.from('4111111111111111|12/29|payment data');

      for (const type of ['AES_128', 'AES_256'] as const) {
        t.it(`AES_GCM with ${type}: round trip with AAD; wrong AAD, wrong key and tampering are refused alike`, async () => {
          if (!has(type)) return t.refused(`${type} keys`); // the key-creation test already asserts the refusal
          const name = await create(type);
          if (!caps().encrypt.includes('AES_GCM')) {
            await expect(service.encrypt({ name, plaintext })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
            return t.refused('encrypt AES_GCM');
          }
          const aad = Buffer.from('transfer:42');
          const a = await service.encrypt({ name, plaintext, aad });
          const b = await service.encrypt({ name, plaintext, aad });
          expect(a).toMatchObject({ keyVersion: 1, algorithm: 'AES_GCM' });
          // envelope (8) + IV (12) + ciphertext + tag (16); a fresh IV every time
          expect(a.ciphertext.length).toBe(8 + 12 + plaintext.length + 16);
          expect(a.ciphertext.equals(b.ciphertext)).toBe(false);
          expect((await service.decrypt({ name, ciphertext: a.ciphertext, aad })).plaintext).toEqual(plaintext);

          await expect(service.decrypt({ name, ciphertext: a.ciphertext })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
          await expect(service.decrypt({ name, ciphertext: a.ciphertext, aad: Buffer.from('transfer:43') })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
          await expect(service.decrypt({ name, ciphertext: flip(a.ciphertext, -20), aad })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
          const other = await create(type);
          await expect(service.decrypt({ name: other, ciphertext: a.ciphertext, aad })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
          // the raw form (IV || ciphertext || tag) decrypts when the version is given
          const raw = a.ciphertext.subarray(8);
          expect((await service.decrypt({ name, ciphertext: raw, aad, keyVersion: 1 })).plaintext).toEqual(plaintext);
        });
      }

      t.it('RSA_OAEP_SHA256: decrypts what node:crypto encrypts to the public key, and its own ciphertexts', async () => {
        if (!has('RSA_2048')) return t.refused('RSA_2048 keys');
        const name = await createUnlessUnusable('RSA_2048', 'encrypt');
        if (!name) return;
        if (!caps().encrypt.includes('RSA_OAEP_SHA256')) {
          await expect(service.encrypt({ name, plaintext })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
          return t.refused('encrypt RSA_OAEP_SHA256');
        }
        const pub = await publicKeyOf(name);
        const external = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, plaintext);
        const fromNode = await service.decrypt({ name, ciphertext: external, keyVersion: 1, algorithm: 'RSA_OAEP_SHA256' });
        expect(fromNode.plaintext).toEqual(plaintext);

        const ours = await service.encrypt({ name, plaintext });
        expect(ours).toMatchObject({ algorithm: 'RSA_OAEP_SHA256', keyVersion: 1 });
        expect((await service.decrypt({ name, ciphertext: ours.ciphertext })).plaintext).toEqual(plaintext);

        // SHA-1 OAEP is a different scheme and must not decrypt
        const sha1 = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, plaintext);
        await expect(service.decrypt({ name, ciphertext: sha1, keyVersion: 1 })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
        await expect(service.decrypt({ name, ciphertext: flip(external, 10), keyVersion: 1 })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
        await expect(service.encrypt({ name, plaintext: Buffer.alloc(191) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      });

      t.it('refuses keys that cannot encrypt', async () => {
        if (!has('EC_P256')) return t.refused('EC_P256 keys');
        const ec = await create('EC_P256');
        await expect(service.encrypt({ name: ec, plaintext })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
      });
    });

    t.describe('JOSE primitives: RSA-OAEP with SHA-1, AES key wrap, ECDH, signing with a chosen version', () => {
      const cek = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');

      t.it('RSA_OAEP_SHA1: decrypts what node:crypto encrypts with SHA-1 OAEP, and its own; refuses SHA-256 OAEP', async () => {
        if (!has('RSA_2048')) return t.refused('RSA_2048 keys');
        const name = await createUnlessUnusable('RSA_2048', 'encrypt');
        if (!name) return;
        if (!caps().encrypt.includes('RSA_OAEP_SHA1')) {
          await expect(service.encrypt({ name, algorithm: 'RSA_OAEP_SHA1', plaintext: cek })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
          return t.refused('encrypt RSA_OAEP_SHA1');
        }
        const pub = await publicKeyOf(name);
        const external = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, cek);
        expect((await service.decrypt({ name, ciphertext: external, keyVersion: 1, algorithm: 'RSA_OAEP_SHA1' })).plaintext).toEqual(cek);
        const ours = await service.encrypt({ name, algorithm: 'RSA_OAEP_SHA1', plaintext: cek });
        expect(ours.ciphertext.length).toBe(8 + 256);
        expect((await service.decrypt({ name, ciphertext: ours.ciphertext })).plaintext).toEqual(cek);
        const sha256 = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, cek);
        await expect(service.decrypt({ name, ciphertext: sha256, keyVersion: 1, algorithm: 'RSA_OAEP_SHA1' })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
        await expect(service.decrypt({ name, ciphertext: flip(external, 7), keyVersion: 1, algorithm: 'RSA_OAEP_SHA1' })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
        await expect(service.encrypt({ name, algorithm: 'RSA_OAEP_SHA1', plaintext: Buffer.alloc(215) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      });

      for (const type of ['AES_128', 'AES_256'] as const) {
        t.it(`AES_KW with ${type}: wraps 16, 24 and 32 bytes deterministically (+8), unwraps, and refuses tampering, another key, bad lengths`, async () => {
          if (!has(type)) return t.refused(`${type} keys`);
          const name = await createUnlessUnusable(type, 'wrap');
          if (!name) return;
          if (!caps().encrypt.includes('AES_KW')) {
            await expect(service.encrypt({ name, algorithm: 'AES_KW', plaintext: cek })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
            return t.refused('encrypt AES_KW');
          }
          for (const length of [16, 24, 32]) {
            const data = cek.subarray(0, length);
            const a = await service.encrypt({ name, algorithm: 'AES_KW', plaintext: data });
            const b = await service.encrypt({ name, algorithm: 'AES_KW', plaintext: data });
            expect(a).toMatchObject({ algorithm: 'AES_KW', keyVersion: 1 });
            expect(a.ciphertext.length).toBe(8 + length + 8);
            expect(a.ciphertext).toEqual(b.ciphertext); // RFC 3394 has no IV: the same key data wraps the same way
            expect((await service.decrypt({ name, ciphertext: a.ciphertext })).plaintext).toEqual(data);
            const raw = a.ciphertext.subarray(8);
            expect((await service.decrypt({ name, ciphertext: raw, keyVersion: 1, algorithm: 'AES_KW' })).plaintext).toEqual(data);
            await expect(service.decrypt({ name, ciphertext: flip(raw, 3), keyVersion: 1, algorithm: 'AES_KW' })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
            await expect(service.decrypt({ name, ciphertext: flip(raw, -1), keyVersion: 1, algorithm: 'AES_KW' })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
          }
          const other = await create(type, 'wrap');
          const wrapped = await service.encrypt({ name, algorithm: 'AES_KW', plaintext: cek });
          await expect(service.decrypt({ name: other, ciphertext: wrapped.ciphertext })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
          for (const bad of [8, 15, 17]) {
            await expect(service.encrypt({ name, algorithm: 'AES_KW', plaintext: Buffer.alloc(bad) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
          }
          await expect(service.decrypt({ name, ciphertext: Buffer.alloc(20), keyVersion: 1, algorithm: 'AES_KW' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        });
      }

      for (const type of ['AES_128', 'AES_256'] as const) {
        t.it(`${type}: a data (encrypt) key never wraps and a wrap key never encrypts data (INCOMPATIBLE_KEY)`, async () => {
          if (!has(type)) return t.refused(`${type} keys`);
          const dataKey = await create(type, 'encrypt');
          const kek = await createUnlessUnusable(type, 'wrap');
          await expect(service.encrypt({ name: dataKey, algorithm: 'AES_KW', plaintext: cek })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
          await expect(service.decrypt({ name: dataKey, algorithm: 'AES_KW', keyVersion: 1, ciphertext: Buffer.alloc(40) })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
          if (!kek) return;
          expect((await service.getKey(kek)).purpose).toBe('wrap');
          await expect(service.encrypt({ name: kek, algorithm: 'AES_GCM', plaintext: cek })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
          const sealed = await service.encrypt({ name: dataKey, plaintext: cek });
          expect(sealed.algorithm).toBe('AES_GCM');
          await expect(service.decrypt({ name: kek, ciphertext: sealed.ciphertext })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
          await expect(service.sign({ name: kek, message: cek })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
          if (caps().encrypt.includes('AES_KW')) expect((await service.encrypt({ name: kek, plaintext: cek })).algorithm).toBe('AES_KW');
        });
      }

      for (const [type, curve] of [['EC_P256', 'prime256v1'], ['EC_P384', 'secp384r1']] as const) {
        t.it(`ECDH with ${type}: Z equals node:crypto's diffieHellman with an ephemeral key; only agreement keys agree`, async () => {
          if (!has(type)) return t.refused(`${type} keys`);
          const name = await create(type, 'agree');
          const meta = await service.getKey(name);
          expect(meta.purpose).toBe('agree');
          await expect(service.sign({ name, message: Buffer.from('x') })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
          const ephemeral = generateKeyPairSync('ec', { namedCurve: curve });
          if (!caps().keyAgreement.includes(type)) {
            await expect(service.deriveSharedSecret({ name, peerPublicKey: ephemeral.publicKey })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
            return t.refused(`key agreement on ${type}`);
          }
          const z = await service.deriveSharedSecret({ name, peerPublicKey: ephemeral.publicKey.export({ format: 'der', type: 'spki' }) });
          expect(z.keyVersion).toBe(1);
          expect(z.sharedSecret.length).toBe(type === 'EC_P256' ? 32 : 48);
          expect(z.sharedSecret).toEqual(diffieHellman({ privateKey: ephemeral.privateKey, publicKey: await publicKeyOf(name) }));
          const again = generateKeyPairSync('ec', { namedCurve: curve });
          expect((await service.deriveSharedSecret({ name, peerPublicKey: again.publicKey })).sharedSecret).toEqual(
            diffieHellman({ privateKey: again.privateKey, publicKey: await publicKeyOf(name) }),
          );
          const otherCurve = generateKeyPairSync('ec', { namedCurve: curve === 'prime256v1' ? 'secp384r1' : 'prime256v1' }).publicKey;
          await expect(service.deriveSharedSecret({ name, peerPublicKey: otherCurve })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
          const signing = await create(type);
          await expect(service.deriveSharedSecret({ name: signing, peerPublicKey: ephemeral.publicKey })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
          // after rotation the new version agrees with its own key, and version 1 still works
          await service.rotateKey(name);
          const v2 = await service.deriveSharedSecret({ name, peerPublicKey: ephemeral.publicKey });
          expect(v2.keyVersion).toBe(2);
          expect(v2.sharedSecret).toEqual(diffieHellman({ privateKey: ephemeral.privateKey, publicKey: await publicKeyOf(name, 2) }));
          expect((await service.deriveSharedSecret({ name, keyVersion: 1, peerPublicKey: ephemeral.publicKey })).sharedSecret).toEqual(z.sharedSecret);
        });
      }

      t.it('sign and encrypt with a chosen older version after rotation', async () => {
        const type: KeyType = has('EC_P256') ? 'EC_P256' : 'RSA_2048';
        const name = await create(type);
        await service.rotateKey(name);
        const message = Buffer.from('pinned');
        const signed = await service.sign({ name, message, keyVersion: 1 });
        expect(signed.keyVersion).toBe(1);
        expect(nodeVerifies(signed.algorithm, await publicKeyOf(name, 1), message, signed.signature)).toBe(true);
        await expect(service.sign({ name, message, keyVersion: 3 })).rejects.toMatchObject({ code: 'KEY_VERSION_NOT_FOUND' });
        if (has('AES_256') && caps().encrypt.includes('AES_GCM')) {
          const enc = await create('AES_256');
          await service.rotateKey(enc);
          const old = await service.encrypt({ name: enc, plaintext: message, keyVersion: 1 });
          expect(old.keyVersion).toBe(1);
          expect(await service.decrypt({ name: enc, ciphertext: old.ciphertext })).toMatchObject({ keyVersion: 1, plaintext: message });
        }
      });
    });

    t.describe('MAC', () => {
      t.it('HMAC_SHA256: deterministic, verifies, and refuses a changed MAC or message', async () => {
        if (!has('HMAC_256')) return t.refused('HMAC_256 keys');
        const name = await create('HMAC_256');
        if (!caps().mac.includes('HMAC_SHA256')) {
          await expect(service.mac({ name, data: Buffer.from('x') })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
          return t.refused('mac HMAC_SHA256');
        }
        const data = Buffer.from('0200|4111111111111111|000000010000');
        const m1 = await service.mac({ name, data });
        const m2 = await service.mac({ name, data });
        expect(m1.mac.length).toBe(32);
        expect(m1.mac).toEqual(m2.mac);
        expect((await service.verifyMac({ name, data, mac: m1.mac })).valid).toBe(true);
        expect((await service.verifyMac({ name, data, mac: flip(m1.mac, 0) })).valid).toBe(false);
        expect((await service.verifyMac({ name, data: Buffer.from('other'), mac: m1.mac })).valid).toBe(false);
        expect((await service.verifyMac({ name, data, mac: m1.mac.subarray(0, 16) })).valid).toBe(false);
        const other = await create('HMAC_256');
        expect((await service.mac({ name: other, data })).mac).not.toEqual(m1.mac);
      });
    });

    t.describe('random', () => {
      t.it('returns the requested number of bytes, different each time, and refuses bad lengths', async () => {
        if (!caps().random) {
          await expect(service.randomBytes(16)).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
          return t.refused('random');
        }
        const a = await service.randomBytes(32);
        const b = await service.randomBytes(32);
        expect(a.length).toBe(32);
        expect(a.equals(b)).toBe(false);
        expect((await service.randomBytes(1024)).length).toBe(1024);
        for (const bad of [0, -1, 1.5, 1025, '16']) {
          await expect(service.randomBytes(bad)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        }
      });
    });

    t.describe('lifecycle', () => {
      t.it('rotation: the new version signs; the old one still verifies; old ciphertexts still decrypt', async () => {
        const sigType: KeyType = has('EC_P256') ? 'EC_P256' : 'RSA_2048';
        const sig = await create(sigType);
        const message = Buffer.from('rotate me');
        const v1 = await service.sign({ name: sig, message });
        const rotated = await service.rotateKey(sig);
        expect(rotated.primaryVersion).toBe(2);
        expect(rotated.versions.map((v) => v.version)).toEqual([1, 2]);
        const v2 = await service.sign({ name: sig, message });
        expect(v2.keyVersion).toBe(2);
        expect(nodeVerifies(v2.algorithm, await publicKeyOf(sig, 2), message, v2.signature)).toBe(true);
        expect(nodeVerifies(v1.algorithm, await publicKeyOf(sig, 2), message, v1.signature)).toBe(false);
        expect((await service.verify({ name: sig, message, signature: v1.signature, keyVersion: 1 })).valid).toBe(true);
        expect((await service.verify({ name: sig, message, signature: v1.signature })).valid).toBe(false);
        await expect(service.verify({ name: sig, message, signature: v1.signature, keyVersion: 3 })).rejects.toMatchObject({ code: 'KEY_VERSION_NOT_FOUND' });

        if (has('AES_256') && caps().encrypt.includes('AES_GCM')) {
          const enc = await create('AES_256');
          const old = await service.encrypt({ name: enc, plaintext: message });
          await service.rotateKey(enc);
          const fresh2 = await service.encrypt({ name: enc, plaintext: message });
          expect(fresh2.keyVersion).toBe(2);
          expect((await service.decrypt({ name: enc, ciphertext: old.ciphertext })).keyVersion).toBe(1);
          expect((await service.decrypt({ name: enc, ciphertext: old.ciphertext })).plaintext).toEqual(message);
          expect((await service.decrypt({ name: enc, ciphertext: fresh2.ciphertext })).plaintext).toEqual(message);
        }
      });

      t.it('disable refuses every operation; enable restores them', async () => {
        const type: KeyType = has('EC_P256') ? 'EC_P256' : 'RSA_2048';
        const name = await create(type);
        const message = Buffer.from('m');
        const { signature } = await service.sign({ name, message });
        expect((await service.disableKey(name)).state).toBe('disabled');
        await expect(service.sign({ name, message })).rejects.toMatchObject({ code: 'KEY_DISABLED' });
        await expect(service.verify({ name, message, signature })).rejects.toMatchObject({ code: 'KEY_DISABLED' });
        await expect(service.rotateKey(name)).rejects.toMatchObject({ code: 'KEY_DISABLED' });
        expect((await service.getKey(name)).state).toBe('disabled');
        expect((await service.enableKey(name)).state).toBe('enabled');
        expect((await service.verify({ name, message, signature })).valid).toBe(true);
      });

      t.it('a disabled key refuses encrypt, decrypt, MAC and MAC verification too', async () => {
        const checks: Array<Promise<void>> = [];
        if (has('AES_256') && caps().encrypt.includes('AES_GCM')) {
          const enc = await create('AES_256');
          const { ciphertext } = await service.encrypt({ name: enc, plaintext: Buffer.from('p') });
          await service.disableKey(enc);
          checks.push(
            expect(service.encrypt({ name: enc, plaintext: Buffer.from('p') })).rejects.toMatchObject({ code: 'KEY_DISABLED' }),
            expect(service.decrypt({ name: enc, ciphertext })).rejects.toMatchObject({ code: 'KEY_DISABLED' }),
          );
        }
        if (has('HMAC_256') && caps().mac.includes('HMAC_SHA256')) {
          const mac = await create('HMAC_256');
          const tag = await service.mac({ name: mac, data: Buffer.from('d') });
          await service.disableKey(mac);
          checks.push(
            expect(service.mac({ name: mac, data: Buffer.from('d') })).rejects.toMatchObject({ code: 'KEY_DISABLED' }),
            expect(service.verifyMac({ name: mac, data: Buffer.from('d'), mac: tag.mac })).rejects.toMatchObject({ code: 'KEY_DISABLED' }),
          );
        }
        await Promise.all(checks);
      });

      t.it('destroy needs a disabled key, then removes every version', async () => {
        const name = await create(has('AES_256') ? 'AES_256' : caps().keyTypes[0]!);
        await service.rotateKey(name);
        await expect(service.destroyKey(name)).rejects.toMatchObject({ code: 'KEY_NOT_DISABLED' });
        await service.disableKey(name);
        await service.destroyKey(name);
        await expect(service.getKey(name)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
        expect((await service.listKeys()).map((k) => k.name)).not.toContain(name);
        // the name is free again
        await service.createKey({ name, type: has('AES_256') ? 'AES_256' : caps().keyTypes[0]! });
        expect((await service.getKey(name)).primaryVersion).toBe(1);
      });

      t.it('unknown keys and bad names are refused clearly', async () => {
        await expect(service.getKey('no-such-key')).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
        await expect(service.sign({ name: 'no-such-key', message: Buffer.from('x') })).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
        await expect(service.rotateKey('no-such-key')).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
        await expect(service.disableKey('no-such-key')).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
        for (const bad of ['', 'a/b', 'a b', '-lead', 'x'.repeat(65), 42]) {
          await expect(service.createKey({ name: bad, type: 'AES_256' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        }
      });

      t.it('keys, versions and state live in the backend: a new instance on the same storage sees them', async () => {
        const type: KeyType = has('EC_P256') ? 'EC_P256' : caps().keyTypes[0]!;
        const name = await create(type);
        await service.rotateKey(name);
        await service.disableKey(name);
        const before = await service.getKey(name);
        await backend.close();
        await open();
        const after = await service.getKey(name);
        expect(after).toMatchObject({ name, type, state: 'disabled', primaryVersion: 2 });
        expect(after.versions.map((v) => [v.version, v.publicKeySpki?.toString('hex')])).toEqual(
          before.versions.map((v) => [v.version, v.publicKeySpki?.toString('hex')]),
        );
        expect((await service.listKeys()).map((k) => k.name)).toContain(name);
      });
    });
  });
}
