/**
 * The key import conformance suite: the backend port's wrapped import (BYOK) and ceremony storage,
 * driven directly, as the core's import and ceremony services use them. Every wrapped key is wrapped
 * here with node:crypto alone (RSA-OAEP of a fresh AES-256 key, then RFC 5649 under it), and every
 * imported key is checked against the original with node:crypto, never only with the backend's own
 * inverse. What capabilities().keyImport leaves out must be refused with UNSUPPORTED_BY_BACKEND.
 *
 * Use from a test file:
 *   describeKeyImportConformance('software', async () => ({ open: () => ..., cleanup: () => ... }));
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { expect } from '../expect.js';
import type { ConformanceTarget, SuiteHost } from '../host.js';
import type { SignAlgorithm } from '../../algorithms/registry.js';
import { wrappingSchemes, type Backend, type ImportTarget, type KeyRef, type NewKey, type WrappedKey, type WrappingScheme } from '../../backend/port.js';
import { newCeremonyId, type CeremonyId, type CeremonyPlan, type ComponentEntry } from '../../ceremonies/record.js';
import { parseKeyName, type KeyVersion } from '../../keys/names.js';
import { keyTypes, type KeyMetadata, type KeyPurpose, type KeyType } from '../../keys/types.js';
import { setOddParity } from '../../payment/crypto/parity.js';
import { wrapForImport } from '../reference/byokWrap.js';
import { nodeKcv } from '../reference/nodeBlockCiphers.js';
import { nodeVerifies } from '../reference/nodeVerify.js';

const wrap = wrapForImport;

const pkcs8 = (k: KeyObject) => k.export({ format: 'der', type: 'pkcs8' });
const spki = (k: KeyObject) => k.export({ format: 'der', type: 'spki' });

/** A copy of `data` with one bit flipped at `index` (negative counts from the end). */
function flip(data: Buffer, index: number): Buffer {
  const copy = Buffer.from(data);
  const at = index < 0 ? copy.length + index : index;
  copy[at] = copy[at]! ^ 1;
  return copy;
}

export function describeKeyImportConformance(t: SuiteHost, label: string, makeTarget: () => Promise<ConformanceTarget>): void {
  t.describe(`key import conformance: ${label}`, () => {
    let target: ConformanceTarget;
    let backend: Backend;
    /** The import wrapping key, made once (RSA key generation is slow); undefined when the backend imports nothing. */
    let wrapping: { ref: KeyRef; publicKey: KeyObject } | undefined;
    let seq = 0;
    const fresh = (stem: string) => parseKeyName(`imp-${stem}-${Date.now().toString(36)}-${seq++}`);
    const caps = () => backend.capabilities();
    const schemes = () => caps().keyImport.wrappings;
    const has = (type: KeyType) => caps().keyTypes.includes(type);
    const refTo = (meta: KeyMetadata, version: number = meta.primaryVersion): KeyRef => ({ name: meta.name, version: version as KeyVersion, type: meta.type });
    const newKey = (type: KeyType, purpose: KeyPurpose = keyTypes[type].purposes[0]!): NewKey => ({ name: fresh(type.toLowerCase()), type, purpose });

    const wrappedFor = (material: Buffer, scheme: WrappingScheme = schemes()[0]!, transport?: Buffer): WrappedKey => ({
      wrappingKey: wrapping!.ref,
      scheme,
      ...wrap(wrapping!.publicKey, scheme, material, transport),
    });
    /** Imports material as version 1 of a new key, as the core would after splitting the blob. */
    const importNew = (key: NewKey, material: Buffer, scheme?: WrappingScheme) => backend.importWrappedKey({ kind: 'create', key }, wrappedFor(material, scheme));
    /** The scheme to use for the n-th test: every offered scheme gets used. */
    const schemeFor = (n: number) => schemes()[n % schemes().length]!;

    t.beforeAll(async () => {
      target = await makeTarget();
      backend = await target.open();
      if (schemes().length === 0) return;
      const meta = await backend.createKey(newKey('RSA_3072', 'wrap'));
      const der = meta.versions[0]!.publicKeySpki!;
      wrapping = { ref: refTo(meta), publicKey: createPublicKey({ key: der, format: 'der', type: 'spki' }) };
    });
    t.afterAll(async () => {
      await backend?.close();
      await target?.cleanup();
    });

    t.describe('capabilities and the wrapping key', () => {
      t.it('names only known schemes and key types; a backend that imports nothing refuses with UNSUPPORTED_BY_BACKEND', async () => {
        const k = caps().keyImport;
        for (const s of k.wrappings) expect(wrappingSchemes).toContain(s);
        for (const t of k.unwrapsInside) expect(caps().keyTypes).toContain(t);
        expect(typeof k.ceremonies).toBe('boolean');
        if (k.wrappings.length === 0) {
          const ref: KeyRef = { name: fresh('none'), version: 1 as KeyVersion, type: 'RSA_3072' };
          const wrapped: WrappedKey = { wrappingKey: ref, scheme: 'RSA_OAEP_SHA256_AES_KWP', encryptedKey: Buffer.alloc(384), wrappedTarget: Buffer.alloc(40) };
          await expect(backend.importWrappedKey({ kind: 'create', key: newKey('AES_256') }, wrapped)).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
        }
      });

      t.it('an RSA_3072 key of purpose wrap: enabled, with its 3072-bit public key', async () => {
        if (!wrapping) return t.refused('wrapped import');
        const meta = await backend.describeKey(wrapping.ref.name);
        expect(meta).toMatchObject({ type: 'RSA_3072', purpose: 'wrap', state: 'enabled', primaryVersion: 1 });
        expect(wrapping.publicKey.asymmetricKeyDetails?.modulusLength).toBe(3072);
      });
    });

    t.describe('imported keys work as the original', () => {
      const message = Buffer.from('{"transferId":"9f6c1d2e","amount":"100"}');
      const pairs: Array<[KeyType, SignAlgorithm, () => { privateKey: KeyObject; publicKey: KeyObject }]> = [
        ['RSA_2048', 'RS256', () => generateKeyPairSync('rsa', { modulusLength: 2048 })],
        ['EC_P256', 'ES256', () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' })],
        ['ED25519', 'EdDSA', () => generateKeyPairSync('ed25519')],
      ];
      for (const [i, [type, algorithm, generate]] of pairs.entries()) {
        t.it(`${type} from PKCS#8: the same public key, and ${algorithm} signatures verify with the original`, async () => {
          if (!wrapping || !has(type) || !caps().sign.includes(algorithm)) return t.refused(`wrapped import and ${type} keys and sign ${algorithm}`);
          const original = generate();
          const meta = await importNew(newKey(type, 'sign'), pkcs8(original.privateKey), schemeFor(i));
          expect(meta).toMatchObject({ type, purpose: 'sign', state: 'enabled', primaryVersion: 1 });
          expect(meta.versions[0]!.publicKeySpki).toEqual(spki(original.publicKey));
          const signature = await backend.sign(refTo(meta), algorithm, { kind: 'message', data: message });
          expect(nodeVerifies(algorithm, original.publicKey, message, signature)).toBe(true);
        });
      }

      t.it('AES_256 (encrypt): decrypts what node:crypto encrypts under the original, and the reverse', async () => {
        if (!wrapping || !has('AES_256') || !caps().encrypt.includes('AES_GCM')) return t.refused('wrapped import and AES_256 keys and encrypt AES_GCM');
        const material = randomBytes(32);
        const meta = await importNew(newKey('AES_256', 'encrypt'), material, schemeFor(1));
        const plaintext = Buffer.from('4111111111111111|12/29');
        const iv = randomBytes(12);
        const c = createCipheriv('aes-256-gcm', material, iv);
        const data = Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
        expect(await backend.decrypt(refTo(meta), 'AES_GCM', { iv, data })).toEqual(plaintext);

        const ours = await backend.encrypt(refTo(meta), 'AES_GCM', plaintext);
        const d = createDecipheriv('aes-256-gcm', material, ours.iv!);
        d.setAuthTag(ours.data.subarray(-16));
        expect(Buffer.concat([d.update(ours.data.subarray(0, -16)), d.final()])).toEqual(plaintext);
      });

      t.it('HMAC_256: the MAC is node:crypto HMAC-SHA256 under the original', async () => {
        if (!wrapping || !has('HMAC_256') || !caps().mac.includes('HMAC_SHA256')) return t.refused('wrapped import and HMAC_256 keys and mac HMAC_SHA256');
        const material = randomBytes(32);
        const meta = await importNew(newKey('HMAC_256', 'mac'), material);
        const data = Buffer.from('0200|4111111111111111|000000010000');
        expect(await backend.mac(refTo(meta), 'HMAC_SHA256', data)).toEqual(createHmac('sha256', material).update(data).digest());
      });

      t.it('TDES_2KEY (pin) and AES_128 (kbpk): the key check value is the original key\'s', async () => {
        if (!wrapping) return t.refused('wrapped import');
        if (has('TDES_2KEY')) {
          // Without odd parity: the backend sets it, and DES ignores those bits.
          const material = randomBytes(16);
          const meta = await importNew({ ...newKey('TDES_2KEY', 'pin'), keyUsage: 'P0' }, material);
          expect(meta).toMatchObject({ type: 'TDES_2KEY', purpose: 'pin', keyUsage: 'P0' });
          const block = await backend.encryptBlocks(refTo(meta), Buffer.alloc(8));
          expect(block.subarray(0, 3).toString('hex').toUpperCase()).toBe(nodeKcv('tdes', material));
        }
        if (has('AES_128') && caps().mac.includes('AES_CMAC')) {
          // An AES key's check value is its CMAC of zeros (no ECB on a KBPK).
          const material = randomBytes(16);
          const meta = await importNew(newKey('AES_128', 'kbpk'), material);
          const block = await backend.mac(refTo(meta), 'AES_CMAC', Buffer.alloc(16));
          expect(block.subarray(0, 3).toString('hex').toUpperCase()).toBe(nodeKcv('aes', material));
        }
      });

      t.it("rotation by import: a 'rotate' target adds version 2, which becomes primary; version 1 still works", async () => {
        if (!wrapping || !has('EC_P256')) return t.refused('wrapped import and EC_P256 keys');
        const first = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
        const second = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
        const v1 = await importNew(newKey('EC_P256', 'sign'), pkcs8(first.privateKey));
        const rotated = await backend.importWrappedKey({ kind: 'rotate', name: v1.name, type: 'EC_P256' }, wrappedFor(pkcs8(second.privateKey)));
        expect(rotated).toMatchObject({ name: v1.name, primaryVersion: 2 });
        expect(rotated.versions.map((v) => v.version)).toEqual([1, 2]);
        expect(rotated.versions[1]!.publicKeySpki).toEqual(spki(second.publicKey));
        const input = { kind: 'message', data: message } as const;
        expect(nodeVerifies('ES256', second.publicKey, message, await backend.sign(refTo(rotated, 2), 'ES256', input))).toBe(true);
        expect(nodeVerifies('ES256', first.publicKey, message, await backend.sign(refTo(rotated, 1), 'ES256', input))).toBe(true);
      });

      t.it('an imported key is stored like a generated one: a new instance on the same storage still uses it', async () => {
        if (!wrapping || !has('EC_P256')) return t.refused('wrapped import and EC_P256 keys');
        const original = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
        const meta = await importNew(newKey('EC_P256', 'sign'), pkcs8(original.privateKey));
        await backend.close();
        backend = await target.open();
        expect((await backend.describeKey(meta.name)).versions[0]!.publicKeySpki).toEqual(spki(original.publicKey));
        const signature = await backend.sign(refTo(meta), 'ES256', { kind: 'message', data: message });
        expect(nodeVerifies('ES256', original.publicKey, message, signature)).toBe(true);
      });
    });

    t.describe('bad input is refused with its code, and nothing is stored', () => {
      /** Asserts the refusal and that listKeys() is exactly what it was. */
      const refused = async (importTarget: ImportTarget, wrapped: WrappedKey, code: string) => {
        const before = await backend.listKeys();
        await expect(backend.importWrappedKey(importTarget, wrapped)).rejects.toMatchObject({ code });
        expect(await backend.listKeys()).toEqual(before);
      };
      const create = (type: KeyType, purpose?: KeyPurpose): ImportTarget => ({ kind: 'create', key: newKey(type, purpose) });

      t.it('either layer that does not unwrap: DECRYPTION_FAILED', async () => {
        if (!wrapping || !has('AES_256')) return t.refused('wrapped import and AES_256 keys');
        const material = randomBytes(32);
        const good = wrappedFor(material);
        await refused(create('AES_256'), { ...good, wrappedTarget: flip(good.wrappedTarget, 5) }, 'DECRYPTION_FAILED');
        await refused(create('AES_256'), { ...good, wrappedTarget: good.wrappedTarget.subarray(0, good.wrappedTarget.length - 8) }, 'DECRYPTION_FAILED');
        await refused(create('AES_256'), { ...good, encryptedKey: flip(good.encryptedKey, 40) }, 'DECRYPTION_FAILED');
        // OAEP that opens, but to a 16-byte key that wraps the target: not an AES-256 transport key
        await refused(create('AES_256'), wrappedFor(material, schemes()[0], randomBytes(16)), 'DECRYPTION_FAILED');
        if (schemes().length > 1) {
          // SHA-256 OAEP presented as the SHA-1 scheme
          await refused(create('AES_256'), { ...good, scheme: schemes().find((s) => s !== good.scheme)! }, 'DECRYPTION_FAILED');
        }
      });

      t.it('a blob wrapped for another import wrapping key: DECRYPTION_FAILED', async () => {
        if (!wrapping || !has('AES_256')) return t.refused('wrapped import and AES_256 keys');
        const other = await backend.createKey(newKey('RSA_3072', 'wrap'));
        const otherPublic = createPublicKey({ key: other.versions[0]!.publicKeySpki!, format: 'der', type: 'spki' });
        const scheme = schemes()[0]!;
        await refused(create('AES_256'), { wrappingKey: wrapping.ref, scheme, ...wrap(otherPublic, scheme, randomBytes(32)) }, 'DECRYPTION_FAILED');
      });

      t.it('a private key of another size, curve or kind: INCOMPATIBLE_KEY', async () => {
        if (!wrapping) return t.refused('wrapped import');
        const rsa3072 = generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey;
        const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey;
        const p256 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
        if (has('RSA_2048')) await refused(create('RSA_2048', 'sign'), wrappedFor(pkcs8(rsa3072)), 'INCOMPATIBLE_KEY');
        if (has('EC_P256')) await refused(create('EC_P256', 'sign'), wrappedFor(pkcs8(p384)), 'INCOMPATIBLE_KEY');
        if (has('RSA_2048')) await refused(create('RSA_2048', 'sign'), wrappedFor(pkcs8(p256)), 'INCOMPATIBLE_KEY');
        if (has('ED25519')) await refused(create('ED25519', 'sign'), wrappedFor(pkcs8(p256)), 'INCOMPATIBLE_KEY');
      });

      t.it('malformed material: a secret of the wrong length, bytes that are not PKCS#8: INVALID_ARGUMENT', async () => {
        if (!wrapping) return t.refused('wrapped import');
        if (has('AES_256')) await refused(create('AES_256'), wrappedFor(randomBytes(31)), 'INVALID_ARGUMENT');
        if (has('HMAC_256')) await refused(create('HMAC_256'), wrappedFor(randomBytes(16)), 'INVALID_ARGUMENT');
        if (has('EC_P256')) await refused(create('EC_P256', 'sign'), wrappedFor(randomBytes(138)), 'INVALID_ARGUMENT');
        if (has('RSA_2048')) {
          const der = pkcs8(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
          await refused(create('RSA_2048', 'sign'), wrappedFor(der.subarray(0, der.length - 20)), 'INVALID_ARGUMENT');
        }
      });

      t.it('a TDES key whose halves are equal (single DES): INCOMPATIBLE_KEY', async () => {
        if (!wrapping || !has('TDES_2KEY')) return t.refused('wrapped import and TDES_2KEY keys');
        const half = setOddParity(randomBytes(8));
        await refused(create('TDES_2KEY', 'pin'), wrappedFor(Buffer.concat([half, half])), 'INCOMPATIBLE_KEY');
      });

      t.it('a wrapping key that is not an import wrapping key: INCOMPATIBLE_KEY', async () => {
        if (!wrapping || !has('AES_256')) return t.refused('wrapped import and AES_256 keys');
        const scheme = schemes()[0]!;
        if (has('RSA_2048') && caps().encrypt.includes('RSA_OAEP_SHA256')) {
          const enc = await backend.createKey(newKey('RSA_2048', 'encrypt'));
          const encPublic = createPublicKey({ key: enc.versions[0]!.publicKeySpki!, format: 'der', type: 'spki' });
          await refused(create('AES_256'), { wrappingKey: refTo(enc), scheme, ...wrap(encPublic, scheme, randomBytes(32)) }, 'INCOMPATIBLE_KEY');
        }
        const aesWrap = await backend.createKey(newKey('AES_256', 'wrap'));
        await refused(create('AES_256'), { ...wrappedFor(randomBytes(32)), wrappingKey: refTo(aesWrap) }, 'INCOMPATIBLE_KEY');
      });

      t.it("a 'create' target whose name exists: KEY_ALREADY_EXISTS; a 'rotate' target that is missing or of another type: KEY_NOT_FOUND, INCOMPATIBLE_KEY", async () => {
        if (!wrapping || !has('AES_256')) return t.refused('wrapped import and AES_256 keys');
        const existing = await importNew(newKey('AES_256', 'encrypt'), randomBytes(32));
        await refused({ kind: 'create', key: { name: existing.name, type: 'AES_256', purpose: 'encrypt' } }, wrappedFor(randomBytes(32)), 'KEY_ALREADY_EXISTS');
        await refused({ kind: 'rotate', name: fresh('missing'), type: 'AES_256' }, wrappedFor(randomBytes(32)), 'KEY_NOT_FOUND');
        if (has('AES_128')) await refused({ kind: 'rotate', name: existing.name, type: 'AES_128' }, wrappedFor(randomBytes(16)), 'INCOMPATIBLE_KEY');
        expect((await backend.describeKey(existing.name)).versions.map((v) => v.version)).toEqual([1]);
      });
    });

    t.describe('ceremony storage', () => {
      const at = (offsetMs = 0) => new Date(Date.now() + offsetMs).toISOString();
      const planFor = (components: 2 | 3): CeremonyPlan => ({
        id: newCeremonyId(),
        key: { ...newKey('TDES_2KEY', 'pin'), keyUsage: 'P0' },
        components,
        expectedKcv: '08D7B4',
        startedBy: 'token:starter',
        startedAt: at(),
        expiresAt: at(3_600_000),
      });
      const entry = (number: number, enteredBy: string, identities = [enteredBy]): ComponentEntry => ({ number, enteredBy, identities, enteredAt: at(), kcv: 'ABC123' });
      const component = () => setOddParity(randomBytes(16));
      const start = async (components: 2 | 3) => {
        const plan = planFor(components);
        await backend.startCeremony(plan);
        return plan;
      };

      t.it('a backend without ceremonies refuses to start one', async () => {
        if (caps().keyImport.ceremonies) return;
        await expect(backend.startCeremony(planFor(2))).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
      });

      t.it('start, describe and list: the plan round-trips exactly, with no entries', async () => {
        if (!caps().keyImport.ceremonies) return t.refused('key ceremonies');
        const plan = await start(3);
        expect(await backend.describeCeremony(plan.id)).toEqual({ plan, entries: [] });
        expect((await backend.listCeremonies()).find((c) => c.plan.id === plan.id)).toEqual({ plan, entries: [] });
        await backend.endCeremony(plan.id);
      });

      t.it('components staged in any order come back exactly, in number order, with their entries', async () => {
        if (!caps().keyImport.ceremonies) return t.refused('key ceremonies');
        const plan = await start(3);
        const parts = [component(), component(), component()];
        const entries = [entry(1, 'token:alice'), entry(2, 'token:bob'), entry(3, 'certificate:carol')];
        const s3 = await backend.stageComponent(plan.id, entries[2]!, parts[2]!);
        expect(s3).toEqual({ plan, entries: [entries[2]] });
        const s1 = await backend.stageComponent(plan.id, entries[0]!, parts[0]!);
        expect(s1.entries).toEqual([entries[0], entries[2]]);
        const s2 = await backend.stageComponent(plan.id, entries[1]!, parts[1]!);
        expect(s2).toEqual({ plan, entries });
        expect(await backend.describeCeremony(plan.id)).toEqual({ plan, entries });
        expect(await backend.stagedComponents(plan.id)).toEqual(parts);
        await backend.endCeremony(plan.id);
      });

      t.it('the same number twice: CEREMONY_CONFLICT; the same identity twice: DUAL_CONTROL; the state is unchanged', async () => {
        if (!caps().keyImport.ceremonies) return t.refused('key ceremonies');
        const plan = await start(2);
        const first = component();
        await backend.stageComponent(plan.id, entry(1, 'token:alice'), first);
        await expect(backend.stageComponent(plan.id, entry(1, 'token:bob'), component())).rejects.toMatchObject({ code: 'CEREMONY_CONFLICT' });
        await expect(backend.stageComponent(plan.id, entry(2, 'token:alice'), component())).rejects.toMatchObject({ code: 'DUAL_CONTROL' });
        expect((await backend.describeCeremony(plan.id)).entries.map((e) => e.enteredBy)).toEqual(['token:alice']);
        expect(await backend.stagedComponents(plan.id)).toEqual([first]);
        await backend.endCeremony(plan.id);
      });

      t.it('dual control is by identities: an entry sharing one credential with an earlier entry is DUAL_CONTROL, though enteredBy differs', async () => {
        if (!caps().keyImport.ceremonies) return t.refused('key ceremonies');
        const plan = await start(3);
        await backend.stageComponent(plan.id, entry(1, 'certificate:alice', ['certificate:alice', 'san:alice@example.com']), component());
        await expect(
          backend.stageComponent(plan.id, entry(2, 'token:alice', ['token:https://idp.example|alice', 'san:alice@example.com']), component()),
        ).rejects.toMatchObject({ code: 'DUAL_CONTROL' });
        await backend.stageComponent(plan.id, entry(2, 'certificate:bob'), component());
        expect((await backend.describeCeremony(plan.id)).entries.map((e) => e.identities)).toEqual([['certificate:alice', 'san:alice@example.com'], ['certificate:bob']]);
        await backend.endCeremony(plan.id);
      });

      t.it('two entries of one number at the same moment: exactly one is staged, the other is CEREMONY_CONFLICT', async () => {
        if (!caps().keyImport.ceremonies) return t.refused('key ceremonies');
        const plan = await start(2);
        const results = await Promise.allSettled([
          backend.stageComponent(plan.id, entry(2, 'token:alice'), component()),
          backend.stageComponent(plan.id, entry(2, 'token:bob'), component()),
        ]);
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        expect(rejected?.reason).toMatchObject({ code: 'CEREMONY_CONFLICT' });
        expect((await backend.describeCeremony(plan.id)).entries).toHaveLength(1);
        await backend.endCeremony(plan.id);
      });

      t.it('an unknown ceremony: CEREMONY_NOT_FOUND; ending one is final, and ending it again is no error', async () => {
        if (!caps().keyImport.ceremonies) return t.refused('key ceremonies');
        const unknown = newCeremonyId();
        await expect(backend.describeCeremony(unknown)).rejects.toMatchObject({ code: 'CEREMONY_NOT_FOUND' });
        await expect(backend.stageComponent(unknown, entry(1, 'token:alice'), component())).rejects.toMatchObject({ code: 'CEREMONY_NOT_FOUND' });
        await expect(backend.stagedComponents(unknown)).rejects.toMatchObject({ code: 'CEREMONY_NOT_FOUND' });

        const plan = await start(2);
        await backend.stageComponent(plan.id, entry(1, 'token:alice'), component());
        await backend.endCeremony(plan.id);
        await expect(backend.describeCeremony(plan.id)).rejects.toMatchObject({ code: 'CEREMONY_NOT_FOUND' });
        await expect(backend.stagedComponents(plan.id)).rejects.toMatchObject({ code: 'CEREMONY_NOT_FOUND' });
        await expect(backend.stageComponent(plan.id, entry(2, 'token:bob'), component())).rejects.toMatchObject({ code: 'CEREMONY_NOT_FOUND' });
        expect((await backend.listCeremonies()).map((c) => c.plan.id)).not.toContain(plan.id as CeremonyId);
        await backend.endCeremony(plan.id);
        await backend.endCeremony(unknown);
      });
    });
  });
}
