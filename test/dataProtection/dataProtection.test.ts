/**
 * Personal-data protection (issue #14) end to end over REST and gRPC, on the software backend and a SoftHSM
 * token (batchFixture.ts serves both wires from one KeyService): FF1 against the NIST SP 800-38G samples
 * with the NIST keys imported by BYOK, and MSISDN and account-id round trips; data keys whose plaintext
 * node:crypto uses; rewrap across rotations; retired versions and trimming; tokens checked against
 * node:crypto's HMAC of the documented input with a known key. Every value-level failure is that value's
 * result; what concerns the request fails it.
 */
import { createCipheriv, createDecipheriv, createHmac, createPublicKey, randomBytes, randomInt, type CipherGCMTypes } from 'node:crypto';
import { CompactEncrypt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KeyServiceLimits } from '../../src/operations/keyService.js';
import { wrapForImport } from '../../src/conformance/reference/byokWrap.js';
import { serve, type Served } from '../transports/batchFixture.js';
import { failed, okBody, ops, wiresOf, type Wire } from './wires.js';
import { b64, freshName, restTargets } from '../transports/rest/restFixture.js';

const LIMITS: KeyServiceLimits = { maxDataBytes: 4096, maxRandomBytes: 256, maxBatchItems: 300 };

const NIST_KEYS = {
  AES_128: '2B7E151628AED2A6ABF7158809CF4F3C',
  AES_192: '2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F',
  AES_256: '2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94',
} as const;
/** All nine samples of NIST SP 800-38G (FF1samples.pdf). */
const samples = [
  { key: 'AES_128', radix: 10, tweak: '', plaintext: '0123456789', ciphertext: '2433477484' },
  { key: 'AES_128', radix: 10, tweak: '39383736353433323130', plaintext: '0123456789', ciphertext: '6124200773' },
  { key: 'AES_128', radix: 36, tweak: '3737373770717273373737', plaintext: '0123456789abcdefghi', ciphertext: 'a9tv40mll9kdu509eum' },
  { key: 'AES_192', radix: 10, tweak: '', plaintext: '0123456789', ciphertext: '2830668132' },
  { key: 'AES_192', radix: 10, tweak: '39383736353433323130', plaintext: '0123456789', ciphertext: '2496655549' },
  { key: 'AES_192', radix: 36, tweak: '3737373770717273373737', plaintext: '0123456789abcdefghi', ciphertext: 'xbj3kv35jrawxv32ysr' },
  { key: 'AES_256', radix: 10, tweak: '', plaintext: '0123456789', ciphertext: '6657667009' },
  { key: 'AES_256', radix: 10, tweak: '39383736353433323130', plaintext: '0123456789', ciphertext: '1001623463' },
  { key: 'AES_256', radix: 36, tweak: '3737373770717273373737', plaintext: '0123456789abcdefghi', ciphertext: 'xs8a0azh2avyalyzuwd' },
] as const;

const aesGcmOpen = (key: Buffer, blob: { iv: Buffer; data: Buffer; tag: Buffer }) => {
  const d = createDecipheriv(`aes-${key.length * 8}-gcm` as CipherGCMTypes, key, blob.iv);
  d.setAuthTag(blob.tag);
  return Buffer.concat([d.update(blob.data), d.final()]);
};
const aesGcmSeal = (key: Buffer, plaintext: Buffer) => {
  const iv = randomBytes(12);
  const c = createCipheriv(`aes-${key.length * 8}-gcm` as CipherGCMTypes, key, iv);
  const data = Buffer.concat([c.update(plaintext), c.final()]);
  return { iv, data, tag: c.getAuthTag() };
};
const msisdn = () => `${randomInt(1, 10)}${Array.from({ length: randomInt(9, 15) }, () => randomInt(0, 10)).join('')}`;

for (const target of restTargets) {
  describe(`personal-data protection on the ${target.label} backend`, () => {
    let opened: Awaited<ReturnType<typeof target.open>>;
    let served: Served;
    let wires: Wire[];
    /** The NIST FF1 keys (fpe) by type, and a known token key, imported by BYOK. */
    const nist: Record<string, string> = {};
    const tokenSecret = randomBytes(32);
    let knownTokens = '';

    /** A known secret as a new key, through POST /v1/keys/import as a user would (BYOK). */
    const importKnown = async (type: string, purpose: string, material: Buffer) => {
      const wrapping = okBody(await wires[0]!.rest('GET', '/v1/wrapping-key'));
      const scheme = wrapping.wrappings[0] as 'RSA_OAEP_SHA256_AES_KWP' | 'RSA_OAEP_SHA1_AES_KWP';
      const { encryptedKey, wrappedTarget } = wrapForImport(wrapping.publicKeyPem, scheme, material);
      const name = freshName(`known-${purpose}-${type.toLowerCase()}`);
      okBody(await wires[0]!.rest('POST', '/v1/keys/import', { name, type, purpose, wrapping: scheme, wrappedKey: b64(Buffer.concat([encryptedKey, wrappedTarget])) }));
      return name;
    };

    beforeAll(async () => {
      opened = await target.open();
      served = await serve(opened.backend, { limits: LIMITS, maxRequestBytes: 1024 * 1024 });
      wires = wiresOf(served);
      for (const [type, hex] of Object.entries(NIST_KEYS)) nist[type] = await importKnown(type, 'fpe', Buffer.from(hex, 'hex'));
      knownTokens = await importKnown('HMAC_256', 'tokenize', tokenSecret);
    }, 120_000);
    afterAll(async () => {
      await served?.close();
      await opened?.backend.close();
      await opened?.cleanup();
    });

    for (const wireName of ['REST', 'gRPC'] as const) {
      const on = () => ops(wires.find((w) => w.name === wireName)!);

      describe(`over ${wireName}`, () => {
        it('FF1: every NIST SP 800-38G sample, with the NIST keys imported by BYOK; decryption inverts', async () => {
          for (const s of samples) {
            const enc = okBody(await on().fpe('encrypt', nist[s.key]!, { values: [s.plaintext], radix: s.radix, tweak: s.tweak }));
            expect(enc.values, `${s.key} radix ${s.radix} tweak "${s.tweak}"`).toEqual([s.ciphertext]);
            expect(enc.keyVersion).toBe(1);
            const dec = okBody(await on().fpe('decrypt', nist[s.key]!, { values: [s.ciphertext], radix: s.radix, tweak: s.tweak }));
            expect(dec.values).toEqual([s.plaintext]);
          }
        });

        it('FF1: random MSISDNs stay 10 to 15 digits and come back; account ids keep their alphabet', async () => {
          const name = freshName('fpe-msisdn');
          okBody(await on().create(name, 'AES_256', 'fpe'));
          const numbers = Array.from({ length: 200 }, msisdn);
          const tweak = Buffer.from('msisdn').toString('hex');
          const enc = okBody(await on().fpe('encrypt', name, { values: numbers, radix: 10, tweak }));
          enc.values.forEach((v: string, i: number) => {
            expect(v).toMatch(/^\d{10,15}$/);
            expect(v.length).toBe(numbers[i]!.length);
          });
          expect(enc.values.filter((v: string, i: number) => v === numbers[i]).length).toBeLessThan(2);
          expect(okBody(await on().fpe('decrypt', name, { values: enc.values, radix: 10, tweak })).values).toEqual(numbers);
          // Deterministic: the same value, key and tweak give the same result; another tweak another one.
          expect(okBody(await on().fpe('encrypt', name, { values: numbers.slice(0, 3), radix: 10, tweak })).values).toEqual(enc.values.slice(0, 3));
          expect(okBody(await on().fpe('encrypt', name, { values: numbers.slice(0, 3), radix: 10 })).values).not.toEqual(enc.values.slice(0, 3));

          const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ';
          const accounts = Array.from({ length: 20 }, () => Array.from({ length: 12 }, () => alphabet[randomInt(0, 36)]).join(''));
          const encAccounts = okBody(await on().fpe('encrypt', name, { values: accounts, alphabet })).values as string[];
          for (const v of encAccounts) expect(v).toMatch(/^[0-9A-Z]{12}$/);
          expect(okBody(await on().fpe('decrypt', name, { values: encAccounts, alphabet })).values).toEqual(accounts);
        });

        it('FF1: a value it cannot take fails alone, with a clear error that does not repeat it', async () => {
          const enc = okBody(await on().fpe('encrypt', nist.AES_128!, { values: ['12345', '0123456789', '01234x6789', '1234567'], radix: 10 }));
          expect(enc.values[1]).toBe('2433477484');
          expect(enc.values[0].error).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('at least 6 characters in radix 10') });
          expect(enc.values[0].error.message).toMatch(/1,000,000/);
          expect(enc.values[2].error).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('outside the radix-10 alphabet') });
          expect(JSON.stringify(enc.values)).not.toContain('12345"');
          expect(JSON.stringify(enc.values)).not.toContain('01234x6789');
          expect(typeof enc.values[3]).toBe('string');
          // radix 36: at least 4 characters (36^4 > 1e6 > 36^3).
          const short = okBody(await on().fpe('encrypt', nist.AES_128!, { values: ['abc', 'abcd'], radix: 36 }));
          expect(short.values[0].error.message).toContain('at least 4 characters in radix 36');
          expect(short.values[1]).toMatch(/^[0-9a-z]{4}$/);
        });

        it('FF1: what concerns the request fails it: radix, tweak, alphabet, the key', async () => {
          const name = nist.AES_128!;
          for (const [body, code] of [
            [{ values: ['0123456789'], radix: 37 }, 'INVALID_ARGUMENT'],
            [{ values: ['0123456789'], radix: 1 }, 'INVALID_ARGUMENT'],
            [{ values: ['0123456789'], radix: 10, tweak: 'abc' }, 'INVALID_ARGUMENT'],
            [{ values: ['0123456789'], alphabet: 'aab' }, 'INVALID_ARGUMENT'],
            [{ values: ['0123456789'], alphabet: '0123456789', radix: 16 }, 'INVALID_ARGUMENT'],
            [{ values: [], radix: 10 }, 'INVALID_ARGUMENT'],
            [{ values: Array.from({ length: 301 }, () => '0123456789'), radix: 10 }, 'PAYLOAD_TOO_LARGE'],
          ] as const) {
            expect(failed(await on().fpe('encrypt', name, body as any)), JSON.stringify(body).slice(0, 80)).toMatchObject({ code });
          }
          expect(failed(await on().fpe('encrypt', knownTokens, { values: ['0123456789'], radix: 10 }))).toMatchObject({ code: 'INCOMPATIBLE_KEY' });
          expect(failed(await on().fpe('encrypt', freshName('none'), { values: ['0123456789'], radix: 10 }))).toMatchObject({ code: 'KEY_NOT_FOUND' });
        });

        it('FF1 after a rotation: the new version encrypts; the old one still decrypts what it made', async () => {
          const name = freshName('fpe-rotate');
          okBody(await on().create(name, 'AES_128', 'fpe'));
          const values = ['255700000001', '255700000002'];
          const v1 = okBody(await on().fpe('encrypt', name, { values, radix: 10 }));
          okBody(await on().rotate(name));
          const v2 = okBody(await on().fpe('encrypt', name, { values, radix: 10 }));
          expect(v2.keyVersion).toBe(2);
          expect(v2.values).not.toEqual(v1.values);
          expect(okBody(await on().fpe('decrypt', name, { values: v1.values, radix: 10, keyVersion: 1 })).values).toEqual(values);
        });

        it('data keys: the plaintext encrypts data node:crypto decrypts with the same key, and decrypt recovers it from wrapped', async () => {
          const name = freshName('dk');
          okBody(await on().create(name, 'AES_256', 'encrypt'));
          for (const bits of [128, 256]) {
            const dk = okBody(await on().datakey(name, bits));
            expect(dk).toMatchObject({ keyVersion: 1, algorithm: 'AES_GCM' });
            expect(dk.plaintext.length).toBe(bits / 8);
            const row = Buffer.from('+255 700 000 001, Amina Juma');
            const sealed = aesGcmSeal(dk.plaintext, row);
            const recovered = okBody(await on().decrypt(name, dk.wrapped)).plaintext as Buffer;
            expect(recovered).toEqual(dk.plaintext);
            expect(aesGcmOpen(recovered, sealed)).toEqual(row);
          }
          const later = okBody(await on().datakey(name, 256, false));
          expect(later.plaintext).toBeUndefined();
          expect(okBody(await on().decrypt(name, later.wrapped)).plaintext.length).toBe(32);
          // Two data keys are never the same.
          const [a, b] = [okBody(await on().datakey(name, 256)), okBody(await on().datakey(name, 256))];
          expect(a.plaintext).not.toEqual(b.plaintext);
        });

        it('data keys: 128 or 256 bits, from an AES key of purpose encrypt', async () => {
          const name = freshName('dk-refuse');
          okBody(await on().create(name, 'AES_256', 'encrypt'));
          expect(failed(await on().datakey(name, 192))).toMatchObject({ code: 'INVALID_ARGUMENT' });
          const rsa = freshName('dk-rsa');
          okBody(await on().create(rsa, 'RSA_2048', 'encrypt'));
          expect(failed(await on().datakey(rsa, 256))).toMatchObject({ code: 'INCOMPATIBLE_KEY' });
          expect(failed(await on().datakey(nist.AES_256!, 256))).toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        });

        it('rewrap across two rotations: each time under the primary version, the plaintext unchanged, aad kept', async () => {
          const name = freshName('rewrap');
          okBody(await on().create(name, 'AES_256', 'encrypt'));
          const plaintext = Buffer.from('national id 19850101-12345-00001-23');
          const aad = Buffer.from('customers.national_id');
          let ciphertext = okBody(await on().encrypt(name, plaintext, aad)).ciphertext as Buffer;
          for (const version of [2, 3]) {
            okBody(await on().rotate(name));
            const rewrapped = okBody(await on().rewrap(name, ciphertext, aad));
            expect(rewrapped).toMatchObject({ keyVersion: version, algorithm: 'AES_GCM' });
            expect(rewrapped.ciphertext).not.toEqual(ciphertext);
            ciphertext = rewrapped.ciphertext;
          }
          const opened = okBody(await on().decrypt(name, ciphertext, aad));
          expect(opened.keyVersion).toBe(3);
          expect(opened.plaintext).toEqual(plaintext);
          expect(failed(await on().rewrap(name, ciphertext, Buffer.from('another column')))).toMatchObject({ code: 'DECRYPTION_FAILED' });
        });

        it('minDecryptionVersion: versions below it refuse decrypt and rewrap with 409 KEY_VERSION_RETIRED; lowered, they work again', async () => {
          const name = freshName('retire');
          okBody(await on().create(name, 'AES_256', 'encrypt'));
          const old = okBody(await on().encrypt(name, Buffer.from('v1 data'))).ciphertext as Buffer;
          okBody(await on().rotate(name));
          const updated = okBody(await on().update(name, 2));
          expect(updated.minDecryptionVersion).toBe(2);
          const refused = await on().decrypt(name, old);
          expect(failed(refused)).toMatchObject({ code: 'KEY_VERSION_RETIRED', status: wireName === 'REST' ? 409 : 9 });
          expect(failed(await on().rewrap(name, old))).toMatchObject({ code: 'KEY_VERSION_RETIRED' });
          // Above the primary, or a version that does not exist: refused, nothing changed.
          expect(failed(await on().update(name, 3))).toMatchObject({ code: 'INVALID_ARGUMENT' });
          okBody(await on().update(name, 1));
          expect(okBody(await on().decrypt(name, old)).plaintext.toString()).toBe('v1 data');
        });

        it('minDecryptionVersion also retires old versions for verify and MAC verification', async () => {
          const ec = freshName('retire-ec');
          okBody(await on().create(ec, 'EC_P256', 'sign'));
          const message = Buffer.from('transfer 42');
          const signature = okBody(await on().sign(ec, message)).signature as Buffer;
          okBody(await on().rotate(ec));
          expect(okBody(await on().verify(ec, message, signature, 1)).valid).toBe(true);
          okBody(await on().update(ec, 2));
          expect(failed(await on().verify(ec, message, signature, 1))).toMatchObject({ code: 'KEY_VERSION_RETIRED' });

          const hmac = freshName('retire-hmac');
          okBody(await on().create(hmac, 'HMAC_256', 'mac'));
          const mac = okBody(await on().mac(hmac, message)).mac as Buffer;
          okBody(await on().rotate(hmac));
          okBody(await on().update(hmac, 2));
          expect(failed(await on().verifyMac(hmac, message, mac, 1))).toMatchObject({ code: 'KEY_VERSION_RETIRED' });
          okBody(await on().update(hmac, 1));
          expect(okBody(await on().verifyMac(hmac, message, mac, 1)).valid).toBe(true);
        });

        it('trim destroys the versions below minDecryptionVersion in the backend, for good', async () => {
          const name = freshName('trim');
          okBody(await on().create(name, 'AES_256', 'encrypt'));
          const v1 = okBody(await on().encrypt(name, Buffer.from('one'))).ciphertext as Buffer;
          okBody(await on().rotate(name));
          const v2 = okBody(await on().encrypt(name, Buffer.from('two'))).ciphertext as Buffer;
          okBody(await on().rotate(name));
          // Nothing retired: nothing destroyed.
          expect(okBody(await on().trim(name)).versions.map((v: { version: number }) => v.version)).toEqual([1, 2, 3]);
          okBody(await on().update(name, 2));
          const trimmed = okBody(await on().trim(name));
          expect(trimmed.versions.map((v: { version: number }) => v.version)).toEqual([2, 3]);
          expect(trimmed.minDecryptionVersion).toBe(2);
          // Gone from the backend itself, not only from the service's view.
          const inBackend = await opened.backend.describeKey(name as never);
          expect(inBackend.versions.map((v) => v.version)).toEqual([2, 3]);
          expect(failed(await on().decrypt(name, v1))).toMatchObject({ code: 'KEY_VERSION_NOT_FOUND' });
          // It cannot be lowered below what is left.
          expect(failed(await on().update(name, 1))).toMatchObject({ code: 'KEY_VERSION_NOT_FOUND' });
          expect(okBody(await on().decrypt(name, v2)).plaintext.toString()).toBe('two');
        });

        it('tokens: HMAC-SHA-256 of the documented input, deterministic per context, unrelated across contexts and versions', async () => {
          const values = ['+255700000001', 'Amina Juma', '+255700000001'];
          const t = okBody(await on().tokenize(knownTokens, { values, context: 'customers.msisdn' }));
          expect(t.keyVersion).toBe(1);
          const expected = (context: string, value: string) => {
            const len = Buffer.alloc(4);
            len.writeUInt32BE(Buffer.byteLength(context));
            const input = Buffer.concat([Buffer.from('hsm-bridge token v1\u0000'), len, Buffer.from(context), Buffer.from(value)]);
            return `v1:${createHmac('sha256', tokenSecret).update(input).digest('base64url')}`;
          };
          expect(t.tokens).toEqual(values.map((v) => expected('customers.msisdn', v)));
          expect(t.tokens[0]).toMatch(/^v1:[A-Za-z0-9_-]{43}$/);
          expect(t.tokens[0]).toBe(t.tokens[2]);
          const other = okBody(await on().tokenize(knownTokens, { values, context: 'quotes.payer' }));
          expect(other.tokens[0]).not.toBe(t.tokens[0]);

          const name = freshName('tokens');
          okBody(await on().create(name, 'HMAC_256', 'tokenize'));
          const before = okBody(await on().tokenize(name, { values, context: 'c' })).tokens;
          okBody(await on().rotate(name));
          const after = okBody(await on().tokenize(name, { values, context: 'c' }));
          expect(after.keyVersion).toBe(2);
          expect(after.tokens[0]).toMatch(/^v2:/);
          expect(after.tokens[0].slice(3)).not.toBe(before[0].slice(3));
          // The older version re-tokenises, to match what was stored before the rotation.
          expect(okBody(await on().tokenize(name, { values, context: 'c', keyVersion: 1 })).tokens).toEqual(before);
        });

        it('tokens: a value it cannot take fails alone; context, count and key fail the request', async () => {
          const t = okBody(await on().tokenize(knownTokens, { values: ['ok', 'x'.repeat(1025), ''], context: 'c' }));
          expect(t.tokens[0]).toMatch(/^v1:/);
          expect(t.tokens[1].error).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('1024 bytes') });
          expect(t.tokens[2].error).toMatchObject({ code: 'INVALID_ARGUMENT' });
          expect(failed(await on().tokenize(knownTokens, { values: ['a'], context: 'x'.repeat(257) }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
          expect(failed(await on().tokenize(knownTokens, { values: Array.from({ length: 301 }, () => 'a'), context: 'c' }))).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
          expect(failed(await on().tokenize(nist.AES_128!, { values: ['a'], context: 'c' }))).toMatchObject({ code: 'INCOMPATIBLE_KEY' });
          const mac = freshName('mac-not-tokens');
          okBody(await on().create(mac, 'HMAC_256', 'mac'));
          expect(failed(await on().tokenize(mac, { values: ['a'], context: 'c' }))).toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        });
      });
    }

    it('batches of datakey and rewrap: one result per item, in order; a bad item fails alone (REST and gRPC)', async () => {
      const name = freshName('dp-batch');
      await served.service.createKey({ name, type: 'AES_256', purpose: 'encrypt' });
      const rest = okBody(await wires[0]!.rest('POST', `/v1/keys/${name}/datakey/batch`, { items: [{ bits: 128 }, { bits: 256, plaintext: false }, { bits: 64 }] }));
      expect(rest.results[0].plaintext).toBeDefined();
      expect(rest.results[1].plaintext).toBeUndefined();
      expect(rest.results[2].error.code).toBe('INVALID_ARGUMENT');
      const sealed = (await served.service.encrypt({ name, plaintext: Buffer.from('row') })).ciphertext;
      await served.service.rotateKey(name);
      const grpc = okBody(await wires[1]!.rpc('RewrapBatch', { name, items: [{ ciphertext: sealed }, { ciphertext: Buffer.from('junk') }] }));
      expect(grpc.results[0].ok.keyVersion).toBe(2);
      expect(grpc.results[1].error.code).toBe('INVALID_ARGUMENT');
      expect((await served.service.decrypt({ name, ciphertext: grpc.results[0].ok.ciphertext })).plaintext.toString()).toBe('row');
    });

    it('a retired version verifies no JWS, is gone from the JWKS, and a tampered JWE still fails as DECRYPTION_FAILED', async () => {
      const rest = wires[0]!;
      const signer = freshName('retired-jws');
      await served.service.createKey({ name: signer, type: 'EC_P256' });
      const payload = b64(Buffer.from('quote 7'));
      // A kid that names no version: verification tries the newest versions that are not retired.
      const jws = okBody(await rest.rest('POST', '/v1/jws/sign', { key: signer, payload, protectedHeader: { kid: 'partner-kid' } })).jws as string;
      const byDefaultKid = okBody(await rest.rest('POST', '/v1/jws/sign', { key: signer, payload })).jws as string;
      await served.service.rotateKey(signer);
      expect(okBody(await rest.rest('POST', '/v1/jws/verify', { jws, key: signer }))).toMatchObject({ valid: true, keyVersion: 1 });
      const kids = async () => (okBody(await rest.rest('GET', '/.well-known/jwks.json')).keys as { kid: string }[]).map((k) => k.kid).filter((k) => k.startsWith(`${signer}:`));
      expect(await kids()).toEqual([`${signer}:1`, `${signer}:2`]);
      await served.service.updateKey({ name: signer, minDecryptionVersion: 2 });
      expect(okBody(await rest.rest('POST', '/v1/jws/verify', { jws, key: signer })).valid).toBe(false);
      expect(await kids()).toEqual([`${signer}:2`]);
      // With the default kid "name:1": not valid (not an error); in a general JWS, another signature still verifies.
      expect(okBody(await rest.rest('POST', '/v1/jws/verify', { jws: byDefaultKid })).valid).toBe(false);
      const byV2 = okBody(await rest.rest('POST', '/v1/jws/sign', { key: signer, payload })).jws as string;
      const [h1, p1, s1] = byDefaultKid.split('.');
      const [h2, , s2] = byV2.split('.');
      const general = { payload: p1, signatures: [{ protected: h1, signature: s1 }, { protected: h2, signature: s2 }] };
      expect(okBody(await rest.rest('POST', '/v1/jws/verify', { jws: general }))).toMatchObject({ valid: true, keyVersion: 2 });

      const recipient = freshName('retired-jwe');
      await served.service.createKey({ name: recipient, type: 'RSA_2048', purpose: 'encrypt' });
      const toV1 = okBody(await rest.rest('POST', '/v1/jwe/encrypt', { recipient: { key: recipient }, alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext: b64(Buffer.from('for v1')) })).jwe as string;
      await served.service.rotateKey(recipient);
      await served.service.updateKey({ name: recipient, minDecryptionVersion: 2 });
      // A JWE whose kid names the retired version is refused as such.
      expect(failed(await rest.rest('POST', '/v1/jwe/decrypt', { jwe: toV1 }))).toMatchObject({ code: 'KEY_VERSION_RETIRED', status: 409 });
      const pem = okBody(await rest.rest('GET', `/v1/keys/${recipient}`)).versions[1].publicKeyPem as string;
      // A JWE made elsewhere, without a kid: decryption tries the versions not retired.
      const jwe = await new CompactEncrypt(Buffer.from('otp 123456')).setProtectedHeader({ alg: 'RSA-OAEP-256', enc: 'A256GCM' }).encrypt(createPublicKey(pem));
      expect(Buffer.from(okBody(await rest.rest('POST', '/v1/jwe/decrypt', { jwe, key: recipient })).plaintext, 'base64').toString()).toBe('otp 123456');
      const parts = jwe.split('.');
      parts[4] = Buffer.from(Buffer.from(parts[4]!, 'base64url').map((b, i) => (i === 0 ? b ^ 1 : b))).toString('base64url');
      expect(failed(await rest.rest('POST', '/v1/jwe/decrypt', { jwe: parts.join('.'), key: recipient }))).toMatchObject({ code: 'DECRYPTION_FAILED' });
    });

    it('strings with a lone surrogate are refused: an alphabet, an FF1 value, a token value or context', async () => {
      const on = ops(wires[0]!);
      expect(failed(await on.fpe('encrypt', nist.AES_128!, { values: ['0123456789'], alphabet: '\ud83d0123456789\ude00' }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
      const fpe = okBody(await on.fpe('encrypt', nist.AES_128!, { values: ['01234\ud80056789', '0123456789'], radix: 10 }));
      expect(fpe.values[0].error.code).toBe('INVALID_ARGUMENT');
      expect(fpe.values[1]).toBe('2433477484');
      const t = okBody(await on.tokenize(knownTokens, { values: ['\ud800', '\ufffd'], context: 'c' }));
      expect(t.tokens[0].error.code).toBe('INVALID_ARGUMENT');
      expect(t.tokens[1]).toMatch(/^v1:/);
      expect(failed(await on.tokenize(knownTokens, { values: ['a'], context: 'c\udc00' }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    });

    it('no value, token input or data key appears in the service log', () => {
      const log = served.logText();
      for (const secret of ['+255700000001', 'Amina Juma', '255700000001', '0123456789abcdefghi', 'national id']) expect(log).not.toContain(secret);
    });
  });
}
