/**
 * The data-protection conformance suite: what the backend port must do for personal-data protection,
 * driven directly. Retired versions (setMinDecryptionVersion) and trimming (trimKey) survive a reopen;
 * keys of purpose fpe encrypt single AES blocks (FF1 is built on that) and do nothing else; keys of purpose
 * tokenize compute HMAC-SHA-256. Known keys come in by wrapped import where the backend offers it, and
 * every result is compared with node:crypto. What capabilities() leaves out is skipped, or refused with
 * UNSUPPORTED_BY_BACKEND.
 *
 * Use from a test file:
 *   describeDataProtectionConformance('software', async () => ({ open: () => ..., cleanup: () => ... }));
 */
import { createHmac, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { expect } from '../expect.js';
import type { ConformanceTarget, SuiteHost } from '../host.js';
import type { Backend, KeyRef, NewKey } from '../../backend/port.js';
import { ff1 } from '../../dataProtection/ff1.js';
import { parseKeyName, type KeyVersion } from '../../keys/names.js';
import type { KeyMetadata, KeyPurpose, KeyType } from '../../keys/types.js';
import { wrapForImport } from '../reference/byokWrap.js';

const numerals = (s: string) => Array.from(s, (c) => parseInt(c, 36));
const text = (n: number[]) => n.map((d) => d.toString(36)).join('');

/** NIST SP 800-38G FF1 samples 1, 3, 4, 7 and 9 (AES-128, AES-192, AES-256). */
const samples: { type: KeyType; key: string; radix: number; tweak: string; plaintext: string; ciphertext: string }[] = [
  { type: 'AES_128', key: '2B7E151628AED2A6ABF7158809CF4F3C', radix: 10, tweak: '', plaintext: '0123456789', ciphertext: '2433477484' },
  { type: 'AES_128', key: '2B7E151628AED2A6ABF7158809CF4F3C', radix: 36, tweak: '3737373770717273373737', plaintext: '0123456789abcdefghi', ciphertext: 'a9tv40mll9kdu509eum' },
  { type: 'AES_192', key: '2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F', radix: 10, tweak: '', plaintext: '0123456789', ciphertext: '2830668132' },
  { type: 'AES_256', key: '2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94', radix: 10, tweak: '', plaintext: '0123456789', ciphertext: '6657667009' },
  { type: 'AES_256', key: '2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94', radix: 36, tweak: '3737373770717273373737', plaintext: '0123456789abcdefghi', ciphertext: 'xs8a0azh2avyalyzuwd' },
];

export function describeDataProtectionConformance(t: SuiteHost, label: string, makeTarget: () => Promise<ConformanceTarget>): void {
  t.describe(`data protection conformance: ${label}`, () => {
    let target: ConformanceTarget;
    let backend: Backend;
    let wrapping: { ref: KeyRef; publicKey: KeyObject } | undefined;
    let seq = 0;
    const fresh = (stem: string) => parseKeyName(`dp-${stem}-${Date.now().toString(36)}-${seq++}`);
    const refTo = (meta: KeyMetadata, version: number = meta.primaryVersion): KeyRef => ({ name: meta.name, version: version as KeyVersion, type: meta.type });
    const caps = () => backend.capabilities();
    const has = (type: KeyType) => caps().keyTypes.includes(type);
    const reopen = async () => {
      await backend.close();
      backend = await target.open();
    };
    const withVersions = async (type: KeyType, purpose: KeyPurpose, count: number) => {
      let meta = await backend.createKey({ name: fresh(type.toLowerCase()), type, purpose });
      for (let i = 1; i < count; i++) meta = await backend.rotateKey(meta.name);
      return meta;
    };
    const versionsOf = (meta: KeyMetadata) => meta.versions.map((v) => v.version);
    /** A known secret as version 1 of a new key, when the backend imports wrapped keys; undefined otherwise. */
    const importKnown = async (type: KeyType, purpose: KeyPurpose, material: Buffer): Promise<KeyMetadata | undefined> => {
      if (!wrapping) {
        t.refused('wrapped import');
        return undefined;
      }
      const scheme = caps().keyImport.wrappings[0]!;
      const key: NewKey = { name: fresh(`known-${type.toLowerCase()}`), type, purpose };
      return backend.importWrappedKey({ kind: 'create', key }, { wrappingKey: wrapping.ref, scheme, ...wrapForImport(wrapping.publicKey, scheme, material) });
    };

    t.beforeAll(async () => {
      target = await makeTarget();
      backend = await target.open();
      if (caps().keyImport.wrappings.length > 0) {
        const meta = await backend.createKey({ name: fresh('wrapping'), type: 'RSA_3072', purpose: 'wrap' });
        const der = meta.versions[0]!.publicKeySpki!;
        wrapping = { ref: refTo(meta), publicKey: createPublicKey({ key: der, format: 'der', type: 'spki' }) };
      }
    }, 120_000);
    t.afterAll(async () => {
      await backend?.close();
      await target?.cleanup();
    });

    t.describe('retired versions and trimming', () => {
      t.it('minDecryptionVersion is stored with the key: it survives rotation, disabling and a reopen, and can be lowered again', async () => {
        const [type, purpose]: [KeyType, KeyPurpose] = has('AES_256') && caps().encrypt.includes('AES_GCM') ? ['AES_256', 'encrypt'] : ['HMAC_256', 'mac'];
        if (!has(type)) return t.refused(`${type} keys`);
        const meta = await withVersions(type, purpose, 3);
        expect(meta.minDecryptionVersion ?? 1).toBe(1);
        expect((await backend.setMinDecryptionVersion(meta.name, 3 as KeyVersion)).minDecryptionVersion).toBe(3);
        expect((await backend.rotateKey(meta.name)).minDecryptionVersion).toBe(3);
        expect((await backend.setKeyState(meta.name, 'disabled')).minDecryptionVersion).toBe(3);
        await backend.setKeyState(meta.name, 'enabled');
        await reopen();
        expect((await backend.describeKey(meta.name)).minDecryptionVersion).toBe(3);
        expect((await backend.listKeys()).find((k) => k.name === meta.name)?.minDecryptionVersion).toBe(3);
        // Retiring destroys nothing: every version is still there, and still works at the backend.
        expect(versionsOf(await backend.describeKey(meta.name))).toEqual([1, 2, 3, 4]);
        expect((await backend.setMinDecryptionVersion(meta.name, 2 as KeyVersion)).minDecryptionVersion).toBe(2);
        expect((await backend.setMinDecryptionVersion(meta.name, 1 as KeyVersion)).minDecryptionVersion ?? 1).toBe(1);
        await reopen();
        expect((await backend.describeKey(meta.name)).minDecryptionVersion ?? 1).toBe(1);
      });

      t.it('trimKey destroys the versions below minDecryptionVersion, for good, and keeps the rest working', async () => {
        if (!has('AES_256') || !caps().encrypt.includes('AES_GCM')) return t.refused('AES_256 keys and encrypt AES_GCM');
        const meta = await withVersions('AES_256', 'encrypt', 4);
        const sealed = await Promise.all([1, 2, 3, 4].map((v) => backend.encrypt(refTo(meta, v), 'AES_GCM', Buffer.from(`v${v}`))));
        // Nothing below: nothing destroyed.
        expect(versionsOf(await backend.trimKey(meta.name))).toEqual([1, 2, 3, 4]);
        await backend.setMinDecryptionVersion(meta.name, 3 as KeyVersion);
        const trimmed = await backend.trimKey(meta.name);
        expect(versionsOf(trimmed)).toEqual([3, 4]);
        expect(trimmed).toMatchObject({ primaryVersion: 4, minDecryptionVersion: 3, state: 'enabled' });
        for (const v of [1, 2]) {
          await expect(backend.decrypt(refTo(meta, v), 'AES_GCM', sealed[v - 1]!)).rejects.toMatchObject({ code: expect.stringMatching(/^KEY_(VERSION_)?NOT_FOUND$/) });
        }
        expect((await backend.decrypt(refTo(meta, 3), 'AES_GCM', sealed[2]!)).toString()).toBe('v3');
        await reopen();
        expect(versionsOf(await backend.describeKey(meta.name))).toEqual([3, 4]);
        await expect(backend.decrypt(refTo(meta, 1), 'AES_GCM', sealed[0]!)).rejects.toMatchObject({ code: expect.stringMatching(/^KEY_(VERSION_)?NOT_FOUND$/) });
        expect((await backend.decrypt(refTo(meta, 4), 'AES_GCM', sealed[3]!)).toString()).toBe('v4');
        // The next version follows the newest, never reusing a trimmed number.
        expect((await backend.rotateKey(meta.name)).primaryVersion).toBe(5);
        expect(versionsOf(await backend.trimKey(meta.name))).toEqual([3, 4, 5]);
      });

      t.it('trimming a key pair removes both halves of the old versions', async () => {
        const type = (['EC_P256', 'RSA_2048'] as KeyType[]).find(has);
        if (!type) return t.refused('EC_P256 or RSA_2048 keys');
        const meta = await withVersions(type, 'sign', 2);
        await backend.setMinDecryptionVersion(meta.name, 2 as KeyVersion);
        const trimmed = await backend.trimKey(meta.name);
        expect(versionsOf(trimmed)).toEqual([2]);
        expect(trimmed.versions[0]!.publicKeySpki).toEqual(meta.versions[1]!.publicKeySpki);
        const algorithm = type === 'EC_P256' ? 'ES256' : 'RS256';
        await expect(backend.sign(refTo(meta, 1), algorithm, { kind: 'message', data: Buffer.from('m') })).rejects.toMatchObject({ code: expect.stringMatching(/^KEY_(VERSION_)?NOT_FOUND$/) });
        await reopen();
        expect(versionsOf(await backend.describeKey(meta.name))).toEqual([2]);
      });

      t.it('setMinDecryptionVersion refuses, by itself, a version above the primary or one the key does not have, and changes nothing; trim never removes the primary', async () => {
        // The core checks the same before it calls, but on what it read earlier: the key may have been
        // destroyed and made again since, with fewer versions. Only the backend's own check holds then.
        const [type, purpose]: [KeyType, KeyPurpose] = has('AES_256') && caps().encrypt.includes('AES_GCM') ? ['AES_256', 'encrypt'] : ['HMAC_256', 'mac'];
        if (!has(type)) return t.refused(`${type} keys`);
        const works = async (meta: KeyMetadata, version: number) => {
          if (type === 'AES_256') {
            const sealed = await backend.encrypt(refTo(meta, version), 'AES_GCM', Buffer.from('kept'));
            expect((await backend.decrypt(refTo(meta, version), 'AES_GCM', sealed)).toString()).toBe('kept');
          } else {
            expect(await backend.mac(refTo(meta, version), 'HMAC_SHA256', Buffer.from('kept'))).toHaveLength(32);
          }
        };
        const refused = async (name: KeyMetadata['name'], version: number, code: string) =>
          expect(backend.setMinDecryptionVersion(name, version as KeyVersion)).rejects.toMatchObject({ code });
        const meta = await withVersions(type, purpose, 2);
        for (const above of [3, 9]) await refused(meta.name, above, 'INVALID_ARGUMENT');
        expect(await backend.describeKey(meta.name)).toMatchObject({ primaryVersion: 2, versions: [{ version: 1 }, { version: 2 }] });
        expect((await backend.describeKey(meta.name)).minDecryptionVersion ?? 1).toBe(1);
        // A trim after the refusals destroys nothing.
        expect(versionsOf(await backend.trimKey(meta.name))).toEqual([1, 2]);

        // The primary itself may be the minimum; a trim then keeps it, and it keeps working.
        await backend.setMinDecryptionVersion(meta.name, 2 as KeyVersion);
        const trimmed = await backend.trimKey(meta.name);
        expect(trimmed).toMatchObject({ primaryVersion: 2, minDecryptionVersion: 2, versions: [{ version: 2 }] });
        await works(meta, 2);
        expect(versionsOf(await backend.trimKey(meta.name))).toEqual([2]);

        // Trimmed versions cannot be named again, nor can a version above the primary.
        await refused(meta.name, 1, 'KEY_VERSION_NOT_FOUND');
        await refused(meta.name, 3, 'INVALID_ARGUMENT');
        await reopen();
        expect(await backend.describeKey(meta.name)).toMatchObject({ primaryVersion: 2, minDecryptionVersion: 2, versions: [{ version: 2 }] });
        expect(versionsOf(await backend.trimKey(meta.name))).toEqual([2]);
        await works(meta, 2);
      });

      t.it('setMinDecryptionVersion and trimKey on a key that does not exist: KEY_NOT_FOUND', async () => {
        await expect(backend.setMinDecryptionVersion(fresh('none'), 1 as KeyVersion)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
        await expect(backend.trimKey(fresh('none'))).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
      });
    });

    t.describe('format-preserving encryption keys (purpose fpe)', () => {
      for (const sample of samples) {
        t.it(`FF1 with the backend's AES: NIST sample ${sample.type}, radix ${sample.radix}, tweak "${sample.tweak}"`, async () => {
          if (!caps().fpe || !has(sample.type)) return t.refused(`FF1 (fpe) and ${sample.type} keys`);
          const meta = await importKnown(sample.type, 'fpe', Buffer.from(sample.key, 'hex'));
          if (!meta) return;
          expect(meta).toMatchObject({ type: sample.type, purpose: 'fpe' });
          const ecb = (blocks: Buffer) => backend.encryptBlocks(refTo(meta), blocks);
          const tweak = Buffer.from(sample.tweak, 'hex');
          const [out] = await ff1('encrypt', ecb, sample.radix, tweak, [numerals(sample.plaintext)]);
          expect(text(out!)).toBe(sample.ciphertext);
          const [back] = await ff1('decrypt', ecb, sample.radix, tweak, [out!]);
          expect(text(back!)).toBe(sample.plaintext);
        });
      }

      t.it('a generated fpe key of each AES size encrypts many blocks per call as AES-ECB does, and survives a reopen', async () => {
        if (!caps().fpe) return t.refused('FF1 (fpe)');
        for (const type of (['AES_128', 'AES_192', 'AES_256'] as KeyType[]).filter(has)) {
          const meta = await backend.createKey({ name: fresh(`fpe-${type.toLowerCase()}`), type, purpose: 'fpe' });
          const blocks = randomBytes(16 * 5);
          blocks.copy(blocks, 32, 0, 16); // blocks 0 and 2 are equal
          const out = await backend.encryptBlocks(refTo(meta), blocks);
          expect(out.length).toBe(blocks.length);
          expect(out.subarray(0, 16)).toEqual(out.subarray(32, 48));
          expect(out.subarray(0, 16)).not.toEqual(out.subarray(16, 32));
          expect(await backend.encryptBlocks(refTo(meta), blocks.subarray(16, 32))).toEqual(out.subarray(16, 32));
          await reopen();
          expect(await backend.encryptBlocks(refTo(meta), blocks)).toEqual(out);
        }
      });

      t.it('an fpe key does nothing but encrypt blocks: no decryption of blocks, no AES-GCM, no MAC', async () => {
        if (!caps().fpe || !has('AES_256')) return t.refused('FF1 (fpe) and AES_256 keys');
        const meta = await backend.createKey({ name: fresh('fpe-only'), type: 'AES_256', purpose: 'fpe' });
        const ref = refTo(meta);
        await expect(backend.decryptBlocks(ref, Buffer.alloc(16))).rejects.toMatchObject({ code: expect.stringMatching(/^(INCOMPATIBLE_KEY|UNSUPPORTED_BY_BACKEND)$/) });
        await expect(backend.encrypt(ref, 'AES_GCM', Buffer.from('x'))).rejects.toMatchObject({ code: expect.stringMatching(/^(INCOMPATIBLE_KEY|UNSUPPORTED_BY_BACKEND)$/) });
        await expect(backend.mac(ref, 'AES_CMAC', Buffer.alloc(16))).rejects.toMatchObject({ code: expect.stringMatching(/^(INCOMPATIBLE_KEY|UNSUPPORTED_BY_BACKEND)$/) });
      });

      t.it('an AES key of another purpose does not encrypt blocks for FF1', async () => {
        if (!has('AES_256') || !caps().encrypt.includes('AES_GCM')) return t.refused('AES_256 keys and encrypt AES_GCM');
        const meta = await backend.createKey({ name: fresh('gcm-not-fpe'), type: 'AES_256', purpose: 'encrypt' });
        await expect(backend.encryptBlocks(refTo(meta), Buffer.alloc(16))).rejects.toMatchObject({ code: expect.stringMatching(/^(INCOMPATIBLE_KEY|UNSUPPORTED_BY_BACKEND)$/) });
      });
    });

    t.describe('token keys (purpose tokenize)', () => {
      t.it('an HMAC_256 key of purpose tokenize computes HMAC-SHA-256, as node:crypto does with the same key', async () => {
        if (!has('HMAC_256') || !caps().mac.includes('HMAC_SHA256')) return t.refused('HMAC_256 keys and mac HMAC_SHA256');
        const generated = await backend.createKey({ name: fresh('tokens'), type: 'HMAC_256', purpose: 'tokenize' });
        expect(generated).toMatchObject({ type: 'HMAC_256', purpose: 'tokenize', primaryVersion: 1 });
        const data = Buffer.from('context\u0000+255700000001');
        const mac = await backend.mac(refTo(generated), 'HMAC_SHA256', data);
        expect(mac.length).toBe(32);
        expect(await backend.mac(refTo(generated), 'HMAC_SHA256', data)).toEqual(mac);
        await reopen();
        expect(await backend.mac(refTo(generated), 'HMAC_SHA256', data)).toEqual(mac);
        expect((await backend.describeKey(generated.name)).purpose).toBe('tokenize');
        const secret = randomBytes(32);
        const known = await importKnown('HMAC_256', 'tokenize', secret);
        if (known) expect(await backend.mac(refTo(known), 'HMAC_SHA256', data)).toEqual(createHmac('sha256', secret).update(data).digest());
      });

      t.it('a token key encrypts no blocks', async () => {
        if (!has('HMAC_256') || !caps().mac.includes('HMAC_SHA256')) return t.refused('HMAC_256 keys and mac HMAC_SHA256');
        const meta = await backend.createKey({ name: fresh('tokens-only'), type: 'HMAC_256', purpose: 'tokenize' });
        await expect(backend.encryptBlocks(refTo(meta), Buffer.alloc(16))).rejects.toMatchObject({ code: expect.stringMatching(/^(INCOMPATIBLE_KEY|UNSUPPORTED_BY_BACKEND)$/) });
      });
    });
  });
}
