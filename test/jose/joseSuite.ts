/**
 * JoseService against a real backend (software adapter or SoftHSM), with every output checked by the
 * independent `jose` package: what we sign, jose verifies; what jose encrypts to our keys, we decrypt;
 * what we encrypt to an external key, jose decrypts. Used by software.test.ts and softhsm.test.ts.
 */
import { createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import * as jose from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backend/port.js';
import { decode, encode } from '../../src/jose/base64url.js';
import { JoseService } from '../../src/jose/joseService.js';
import type { FlattenedJwe } from '../../src/jose/jwe.js';
import type { FlattenedJws, GeneralJws } from '../../src/jose/jws.js';
import type { JweEnc, JwsAlgorithm } from '../../src/jose/registry.js';
import type { KeyPurpose, KeyType } from '../../src/keys/types.js';
import { KeyService } from '../../src/operations/keyService.js';

export interface JoseTarget {
  open(): Promise<Backend>;
  cleanup(): Promise<void>;
}

const jwsKeyType: Record<JwsAlgorithm, KeyType> = {
  RS256: 'RSA_2048', RS384: 'RSA_2048', RS512: 'RSA_2048', PS256: 'RSA_2048', PS384: 'RSA_2048', PS512: 'RSA_2048',
  ES256: 'EC_P256', ES384: 'EC_P384', EdDSA: 'ED25519',
};

const flipChar = (s: string, at: number) => s.slice(0, at) + (s[at] === 'A' ? 'B' : 'A') + s.slice(at + 1);

export function describeJose(label: string, makeTarget: () => Promise<JoseTarget>): void {
  describe(`JOSE on ${label}`, () => {
    let target: JoseTarget;
    let backend: Backend;
    let keys: KeyService;
    let service: JoseService;
    let seq = 0;
    const keyCache = new Map<string, string>();
    const fresh = (stem: string) => `jose-${stem}-${Date.now().toString(36)}-${seq++}`;
    const create = async (type: KeyType, purpose?: KeyPurpose) => {
      const name = fresh(type.toLowerCase());
      await keys.createKey({ name, type, purpose });
      return name;
    };
    /** One key per type and purpose, shared by the tests that only read it (RSA generation is slow on SoftHSM). */
    const shared = async (type: KeyType, purpose?: KeyPurpose) => {
      const id = `${type}/${purpose ?? ''}`;
      if (!keyCache.has(id)) keyCache.set(id, await create(type, purpose));
      return keyCache.get(id)!;
    };
    const publicKeyOf = async (name: string, version = 1): Promise<KeyObject> => {
      const meta = await keys.getKey(name);
      return createPublicKey({ key: meta.versions.find((v) => v.version === version)!.publicKeySpki!, format: 'der', type: 'spki' });
    };
    const caps = () => backend.capabilities();
    const canAgree = () => caps().keyAgreement.includes('EC_P256');

    beforeAll(async () => {
      target = await makeTarget();
      backend = await target.open();
      keys = new KeyService(backend, { limits: { maxDataBytes: 64 * 1024, maxRandomBytes: 1024 }, metadataCacheTtlMs: 1000 });
      service = new JoseService(keys);
    });
    afterAll(async () => {
      await backend?.close();
      await target?.cleanup();
    });

    const payload = Buffer.from('{"transferId":"b51ec534-ee48-4575-b6a9-ead2955b8069","amount":{"amount":"100","currency":"USD"}}');

    describe('JWS', () => {
      for (const alg of Object.keys(jwsKeyType) as JwsAlgorithm[]) {
        it(`${alg}: compact, flattened and general verify with jose; kid is name:version; we verify our own (or the backend refuses it)`, async () => {
          const type = jwsKeyType[alg];
          if (!caps().keyTypes.includes(type)) {
            await expect(create(type)).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
            return;
          }
          const name = await shared(type);
          if (!caps().sign.includes(alg)) {
            await expect(service.signJws({ key: name, algorithm: alg, payload, serialization: 'compact' })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
            return;
          }
          const pub = await publicKeyOf(name);
          const compact = await service.signJws({ key: name, algorithm: alg, payload, serialization: 'compact' });
          expect(compact.signatures).toEqual([{ keyName: name, keyVersion: 1, algorithm: alg }]);
          const c = await jose.compactVerify(compact.jws as string, pub, { algorithms: [alg] });
          expect(Buffer.from(c.payload)).toEqual(payload);
          expect(c.protectedHeader).toEqual({ alg, kid: `${name}:1` });
          expect(JSON.stringify(c.protectedHeader)).toBe(`{"alg":"${alg}","kid":"${name}:1"}`);

          const flat = await service.signJws({ key: name, algorithm: alg, payload, serialization: 'flattened', unprotectedHeader: { note: 'x' } });
          expect((await jose.flattenedVerify(flat.jws as jose.FlattenedJWSInput, pub)).unprotectedHeader).toEqual({ note: 'x' });
          const general = await service.signJws({ key: name, algorithm: alg, payload, serialization: 'general' });
          expect(Buffer.from((await jose.generalVerify(general.jws as jose.GeneralJWSInput, pub)).payload)).toEqual(payload);

          for (const jws of [compact.jws, flat.jws, general.jws]) {
            expect(await service.verifyJws({ jws })).toMatchObject({ valid: true, keyName: name, keyVersion: 1, algorithm: alg, payload });
          }
          // tampering: payload, header, signature
          const [h, p, s] = (compact.jws as string).split('.');
          expect((await service.verifyJws({ jws: `${h}.${encode(Buffer.from('{"amount":"999"}'))}.${s}` })).valid).toBe(false);
          const sig = decode(s, 's');
          sig[sig.length - 1]! ^= 1;
          expect((await service.verifyJws({ jws: `${h}.${p}.${encode(sig)}` })).valid).toBe(false);
          const otherHeader = encode(JSON.stringify({ alg, kid: `${name}:1`, typ: 'JOSE' }));
          expect((await service.verifyJws({ jws: `${otherHeader}.${p}.${s}` })).valid).toBe(false);
        });
      }

      it('detached payloads, and b64:false (RFC 7797) in compact and JSON forms, verify with jose', async () => {
        const name = await shared('EC_P256');
        const pub = await publicKeyOf(name);
        const detached = await service.signJws({ key: name, payload, detached: true, serialization: 'compact' });
        const [h, empty, s] = (detached.jws as string).split('.');
        expect(empty).toBe('');
        await jose.compactVerify(`${h}.${encode(payload)}.${s}`, pub);
        expect(await service.verifyJws({ jws: detached.jws, payload })).toMatchObject({ valid: true });
        expect((await service.verifyJws({ jws: detached.jws, payload: Buffer.from('other') })).valid).toBe(false);

        const raw = await service.signJws({ key: name, payload, b64: false, detached: true, serialization: 'compact' });
        const [rh, , rs] = (raw.jws as string).split('.');
        expect(JSON.parse(decode(rh, 'h').toString())).toEqual({ alg: 'ES256', kid: `${name}:1`, b64: false, crit: ['b64'] });
        const fromJose = await jose.flattenedVerify({ protected: rh!, payload, signature: rs! }, pub);
        expect(Buffer.from(fromJose.payload)).toEqual(payload);
        expect(await service.verifyJws({ jws: raw.jws, payload })).toMatchObject({ valid: true });

        const inline = await service.signJws({ key: name, payload: Buffer.from('$02'), b64: false, serialization: 'compact' });
        expect(inline.jws).toMatch(/^[^.]+\.\$02\.[^.]+$/);
        expect(await service.verifyJws({ jws: inline.jws })).toMatchObject({ valid: true, payload: Buffer.from('$02') });
        // the compact form cannot hold a '.' in an unencoded payload
        await expect(service.signJws({ key: name, payload: Buffer.from('a.b'), b64: false, serialization: 'compact' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        const json = await service.signJws({ key: name, payload, b64: false, serialization: 'flattened' });
        expect((json.jws as FlattenedJws).payload).toBe(payload.toString());
        expect(Buffer.from((await jose.flattenedVerify(json.jws as jose.FlattenedJWSInput, pub)).payload)).toEqual(payload);
        await expect(service.signJws({ key: name, payload: Buffer.from([0xff, 0xfe]), b64: false, serialization: 'flattened' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      });

      it('general JSON with several signers (RSA, EC, Ed25519): jose verifies each signature with its key', async () => {
        const names = [await shared('RSA_2048'), await shared('EC_P256')];
        if (caps().keyTypes.includes('ED25519')) names.push(await shared('ED25519'));
        const r = await service.signJws({ payload, serialization: 'general', signers: names.map((key) => ({ key, protectedHeader: { typ: 'JOSE' } })) });
        const jws = r.jws as GeneralJws;
        expect(jws.signatures).toHaveLength(names.length);
        for (const [i, name] of names.entries()) {
          const pub = await publicKeyOf(name);
          await jose.flattenedVerify({ payload: jws.payload!, ...jws.signatures[i]! } as jose.FlattenedJWSInput, pub);
          expect(JSON.parse(decode(jws.signatures[i]!.protected, 'h').toString()).kid).toBe(`${name}:1`);
        }
        expect(await service.verifyJws({ jws, key: names[1] })).toMatchObject({ valid: true, keyName: names[1], signatureIndex: 1 });
      });

      it('FSPIOP form: kid false keeps exactly alg then the caller members; a named key verifies it', async () => {
        const name = await shared('RSA_2048');
        const headers = { 'FSPIOP-URI': '/transfers', 'FSPIOP-HTTP-Method': 'POST', 'FSPIOP-Source': 'payerfsp', 'FSPIOP-Destination': 'payeefsp', Date: 'Tue, 24 Nov 2026 21:00:00 GMT' };
        const r = await service.signJws({ key: name, payload, detached: true, kid: false, protectedHeader: headers, serialization: 'flattened' });
        const flat = r.jws as FlattenedJws;
        expect(decode(flat.protected, 'h').toString()).toBe(JSON.stringify({ alg: 'RS256', ...headers }));
        expect(flat.payload).toBeUndefined();
        await jose.flattenedVerify({ ...flat, payload: encode(payload) }, await publicKeyOf(name));
        expect(await service.verifyJws({ jws: flat, payload, key: name })).toMatchObject({ valid: true, keyName: name, keyVersion: 1 });
        await expect(service.verifyJws({ jws: flat, payload })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' }); // no kid, no key
      });

      it('rotation: a JWS names the version that signed; the JWKS lets jose verify old and new', async () => {
        const name = await create('EC_P256');
        const v1 = await service.signJws({ key: name, payload, serialization: 'compact' });
        await keys.rotateKey(name);
        const v2 = await service.signJws({ key: name, payload, serialization: 'compact' });
        const pinned = await service.signJws({ key: name, keyVersion: 1, payload, serialization: 'compact' });
        expect(v2.signatures[0]!.keyVersion).toBe(2);
        expect(pinned.signatures[0]!.keyVersion).toBe(1);
        const set = jose.createLocalJWKSet((await service.jwks()) as jose.JSONWebKeySet);
        for (const [jws, version] of [[v1.jws, 1], [v2.jws, 2], [pinned.jws, 1]] as const) {
          const r = await jose.compactVerify(jws as string, set);
          expect(r.protectedHeader.kid).toBe(`${name}:${version}`);
          expect(await service.verifyJws({ jws })).toMatchObject({ valid: true, keyVersion: version });
        }
        await expect(service.signJws({ key: name, keyVersion: 3, payload, serialization: 'compact' })).rejects.toMatchObject({ code: 'KEY_VERSION_NOT_FOUND' });
      });

      it('verifies a jose-made JWS with an external key (KeyObject, JWK, PEM), and refuses what it must', async () => {
        const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
        const jws = await new jose.CompactSign(payload).setProtectedHeader({ alg: 'ES256', typ: 'JOSE' }).sign(privateKey);
        for (const key of [publicKey, publicKey.export({ format: 'jwk' }), publicKey.export({ format: 'pem', type: 'spki' }).toString()]) {
          expect(service.verifyJwsWithPublicKey(jws, key)).toMatchObject({ valid: true, payload, algorithm: 'ES256' });
        }
        // jose leaves an unencoded payload out of its output ("payload": ""): it is detached
        const flat = await new jose.FlattenedSign(payload).setProtectedHeader({ alg: 'ES256', b64: false, crit: ['b64'] }).sign(privateKey);
        expect(service.verifyJwsWithPublicKey(flat, publicKey, { payload })).toMatchObject({ valid: true, payload });
        expect(service.verifyJwsWithPublicKey(flat, publicKey, { payload: Buffer.from('other') }).valid).toBe(false);
        const general = await new jose.GeneralSign(payload).addSignature(privateKey).setProtectedHeader({ alg: 'ES256' }).sign();
        expect(service.verifyJwsWithPublicKey(general, publicKey).valid).toBe(true);
        const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey;
        expect(service.verifyJwsWithPublicKey(jws, other).valid).toBe(false);
        expect(() => service.verifyJwsWithPublicKey(jws, publicKey, { algorithms: ['RS256'] })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
        expect(() => service.verifyJwsWithPublicKey(jws, privateKey as unknown as KeyObject)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
        expect(() => service.verifyJwsWithPublicKey(jws, { kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
      });

      it('refusals: disabled key, unknown key, alg that does not fit the key, bad requests', async () => {
        const ec = await create('EC_P256');
        const rsa = await shared('RSA_2048');
        const signed = await service.signJws({ key: ec, payload, serialization: 'compact' });
        // a header claiming another key of another type: refused, not merely invalid
        const [h, p, s] = (signed.jws as string).split('.');
        const forged = encode(JSON.stringify({ alg: 'ES256', kid: `${rsa}:1` }));
        await expect(service.verifyJws({ jws: `${forged}.${p}.${s}` })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        await expect(service.verifyJws({ jws: signed.jws, algorithms: ['RS256'] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        await expect(service.verifyJws({ jws: signed.jws, algorithms: ['none'] })).rejects.toMatchObject({ code: 'UNSUPPORTED_ALGORITHM' });
        await expect(service.verifyJws({ jws: `${encode('{"alg":"ES256","kid":"no-such-key:1"}')}.${p}.${s}` })).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
        await expect(service.verifyJws({ jws: `${h}.${p}.${s}`, key: rsa })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' }); // kid names another key
        await expect(service.signJws({ key: ec, algorithm: 'RS256', payload, serialization: 'compact' })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        await expect(service.signJws({ key: ec, payload, serialization: 'compact', unprotectedHeader: { x: 1 } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        await expect(service.signJws({ key: ec, payload, serialization: 'compact', signers: [{ key: ec }] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        await expect(service.signJws({ payload, serialization: 'compact', signers: [{ key: ec }, { key: rsa }] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        await expect(service.signJws({ key: ec, payload, serialization: 'flattened', unprotectedHeader: { kid: 'x' } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        await expect(service.signJws({ key: ec, payload, serialization: 'compact', protectedHeader: { crit: ['exp'] } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        await expect(service.signJws({ key: ec, payload, serialization: 'compact', kid: '' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        await expect(service.signJws({ key: ec, payload: Buffer.alloc(64 * 1024 + 1), serialization: 'compact' })).rejects.toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
        const own = await service.signJws({ key: ec, payload, serialization: 'compact', kid: 'partner-visible-id' });
        expect(JSON.parse(decode((own.jws as string).split('.')[0]!, 'h').toString())).toEqual({ alg: 'ES256', kid: 'partner-visible-id' });
        expect(await service.verifyJws({ jws: own.jws, key: ec })).toMatchObject({ valid: true }); // a kid that is not name:version: the named key
        await keys.disableKey(ec);
        await expect(service.signJws({ key: ec, payload, serialization: 'compact' })).rejects.toMatchObject({ code: 'KEY_DISABLED' });
        await expect(service.verifyJws({ jws: signed.jws })).rejects.toMatchObject({ code: 'KEY_DISABLED' });
        // the public key stays published while the key is disabled (only destroying it removes it)
        expect((await service.jwks()).keys.map((k) => k.kid)).toContain(`${ec}:1`);
        await keys.destroyKey(ec);
        expect((await service.jwks()).keys.map((k) => k.kid)).not.toContain(`${ec}:1`);
      });
    });

    describe('JWE', () => {
      const plaintext = Buffer.from('{"payer":{"partyIdInfo":{"partyIdType":"MSISDN","partyIdentifier":"16135551212"}}}');
      const rsaAlgs = [['RSA-OAEP-256', 'RSA_OAEP_SHA256'], ['RSA-OAEP', 'RSA_OAEP_SHA1']] as const;
      const ecdhAlgs = ['ECDH-ES', 'ECDH-ES+A128KW', 'ECDH-ES+A256KW'] as const;
      const encs: JweEnc[] = ['A128GCM', 'A256GCM'];

      for (const [alg, backendAlg] of rsaAlgs) {
        it(`${alg}: jose encrypts to our public key, we decrypt in the backend (compact and flattened, both enc)`, async () => {
          const name = await shared('RSA_2048', 'encrypt');
          if (!caps().encrypt.includes(backendAlg)) {
            const jwe = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg, enc: 'A256GCM', kid: `${name}:1` }).encrypt(await publicKeyOf(name));
            await expect(service.decryptJwe({ jwe })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
            return;
          }
          const pub = await publicKeyOf(name);
          for (const enc of encs) {
            const compact = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg, enc, kid: `${name}:1` }).encrypt(pub);
            expect(await service.decryptJwe({ jwe: compact })).toMatchObject({ plaintext, alg, enc, keyName: name, keyVersion: 1 });
            const flat = await new jose.FlattenedEncrypt(plaintext).setProtectedHeader({ alg, enc }).setAdditionalAuthenticatedData(Buffer.from('aad')).encrypt(pub);
            expect((await service.decryptJwe({ jwe: flat, key: name })).plaintext).toEqual(plaintext);
            // general JSON with two recipients: an external one, and ours with alg and kid in its own header
            const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
            const general = await new jose.GeneralEncrypt(plaintext).setProtectedHeader({ enc })
              .addRecipient(stranger).setUnprotectedHeader({ alg, kid: 'someone-else' })
              .addRecipient(pub).setUnprotectedHeader({ alg, kid: `${name}:1` })
              .encrypt();
            expect(await service.decryptJwe({ jwe: general })).toMatchObject({ plaintext, alg, enc, keyName: name });
            // tampered: one code for everything
            const parts = compact.split('.');
            for (const i of [1, 2, 3, 4]) {
              const t = parts.map((p, j) => (j === i ? flipChar(p, 5) : p)).join('.');
              await expect(service.decryptJwe({ jwe: t })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
            }
            await expect(service.decryptJwe({ jwe: { ...flat, aad: encode(Buffer.from('other')) } as object, key: name })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
          }
          // ours, to our key, round trip; and to an external JWK, which jose decrypts
          const ours = await service.encryptJwe({ recipient: { key: name }, alg, enc: 'A256GCM', plaintext, serialization: 'compact' });
          expect(ours).toMatchObject({ keyName: name, keyVersion: 1 });
          expect((await service.decryptJwe({ jwe: ours.jwe })).plaintext).toEqual(plaintext);
          const external = generateKeyPairSync('rsa', { modulusLength: 2048 });
          const jwk = { ...external.publicKey.export({ format: 'jwk' }), kid: 'partner-1' };
          const toThem = await service.encryptJwe({ recipient: { jwk }, alg, enc: 'A128GCM', plaintext, serialization: 'json', aad: Buffer.from('hdr') });
          const r = await jose.flattenedDecrypt(toThem.jwe as FlattenedJwe, external.privateKey);
          expect(Buffer.from(r.plaintext)).toEqual(plaintext);
          expect(r.protectedHeader).toEqual({ alg, enc: 'A128GCM', kid: 'partner-1' });
          // a wrong key of the same type
          const other = await create('RSA_2048', 'encrypt');
          const toOther = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg, enc: 'A256GCM', kid: `${other}:1` }).encrypt(pub);
          await expect(service.decryptJwe({ jwe: toOther })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
        });
      }

      it('A192GCM: jose encrypts to our RSA key, we decrypt in the backend; ours to our key round-trips; no key type for dir', async () => {
        const name = await shared('RSA_2048', 'encrypt');
        const [alg, backendAlg] = caps().encrypt.includes('RSA_OAEP_SHA256') ? (['RSA-OAEP-256', 'RSA_OAEP_SHA256'] as const) : (['RSA-OAEP', 'RSA_OAEP_SHA1'] as const);
        if (caps().encrypt.includes(backendAlg)) {
          const compact = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg, enc: 'A192GCM', kid: `${name}:1` }).encrypt(await publicKeyOf(name));
          expect(await service.decryptJwe({ jwe: compact })).toMatchObject({ plaintext, alg, enc: 'A192GCM', keyName: name });
          const ours = await service.encryptJwe({ recipient: { key: name }, alg, enc: 'A192GCM', plaintext, serialization: 'compact' });
          expect(JSON.parse(decode((ours.jwe as string).split('.')[0], 'h').toString())).toMatchObject({ alg, enc: 'A192GCM' });
          expect((await service.decryptJwe({ jwe: ours.jwe })).plaintext).toEqual(plaintext);
        }
        await expect(service.encryptJwe({ recipient: { key: await shared('AES_256') }, alg: 'dir', enc: 'A192GCM', plaintext, serialization: 'compact' })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
      });

      it('ECDH-ES, ECDH-ES+A128KW, ECDH-ES+A256KW: jose encrypts to our agreement key, we decrypt with ECDH in the backend', async () => {
        const name = await shared('EC_P256', 'agree');
        const pub = await publicKeyOf(name);
        if (!canAgree()) {
          const jwe = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg: 'ECDH-ES', enc: 'A256GCM', kid: `${name}:1` }).encrypt(pub);
          await expect(service.decryptJwe({ jwe })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
          return;
        }
        for (const alg of ecdhAlgs) {
          for (const enc of encs) {
            const compact = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg, enc, kid: `${name}:1` }).setKeyManagementParameters({ apu: Buffer.from('payer'), apv: Buffer.from('payee') }).encrypt(pub);
            expect(await service.decryptJwe({ jwe: compact })).toMatchObject({ plaintext, alg, enc, keyName: name });
            const parts = compact.split('.');
            const t = parts.map((p, j) => (j === 4 ? flipChar(p, 3) : p)).join('.');
            await expect(service.decryptJwe({ jwe: t })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
            const ours = await service.encryptJwe({ recipient: { key: name }, alg, enc, plaintext, serialization: 'json' });
            expect((await service.decryptJwe({ jwe: ours.jwe })).plaintext).toEqual(plaintext);
          }
        }
        // external recipient: jose decrypts
        const external = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
        for (const alg of ecdhAlgs) {
          const jwe = await service.encryptJwe({ recipient: { jwk: external.publicKey.export({ format: 'jwk' }) }, alg, enc: 'A256GCM', plaintext, serialization: 'compact' });
          expect(Buffer.from((await jose.compactDecrypt(jwe.jwe as string, external.privateKey)).plaintext)).toEqual(plaintext);
        }
      });

      it('ECDH-ES refusals: an epk off the curve, on another curve, or a key of another purpose', async () => {
        const name = await shared('EC_P256', 'agree');
        const pub = await publicKeyOf(name);
        if (!canAgree()) {
          const jwe = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg: 'ECDH-ES', enc: 'A256GCM', kid: `${name}:1` }).encrypt(pub);
          await expect(service.decryptJwe({ jwe })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
          return;
        }
        const good = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg: 'ECDH-ES', enc: 'A256GCM', kid: `${name}:1` }).encrypt(pub);
        const [h, ...rest] = good.split('.');
        const header = JSON.parse(decode(h, 'h').toString()) as { epk: Record<string, string> };
        const offCurve = { ...header, epk: { ...header.epk, y: flipChar(header.epk.y as string, 10) } };
        await expect(service.decryptJwe({ jwe: [encode(JSON.stringify(offCurve)), ...rest].join('.') })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey.export({ format: 'jwk' });
        const otherCurve = { ...header, epk: { kty: 'EC', crv: 'P-384', x: p384.x, y: p384.y } };
        await expect(service.decryptJwe({ jwe: [encode(JSON.stringify(otherCurve)), ...rest].join('.') })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        const signing = await shared('EC_P256');
        await expect(service.encryptJwe({ recipient: { key: signing }, alg: 'ECDH-ES', enc: 'A256GCM', plaintext, serialization: 'compact' })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        await expect(service.decryptJwe({ jwe: good, algorithms: ['RSA-OAEP-256'] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      });

      for (const [alg, type] of [['A256KW', 'AES_256'], ['A128KW', 'AES_128']] as const) {
        it(`${alg} with a backend ${type} wrap key: round trip, structure, tampering, the wrong key size and a data key refused`, async () => {
          const name = await shared(type, 'wrap');
          if (!caps().encrypt.includes('AES_KW')) {
            await expect(service.encryptJwe({ recipient: { key: name }, alg, enc: 'A256GCM', plaintext, serialization: 'compact' })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
            return;
          }
          for (const enc of encs) {
            const r = await service.encryptJwe({ recipient: { key: name }, alg, enc, plaintext, serialization: 'compact', protectedHeader: { typ: 'JOSE' } });
            const [h, ek, iv, ct, tag] = (r.jwe as string).split('.') as [string, string, string, string, string];
            expect(JSON.parse(decode(h, 'h').toString())).toEqual({ alg, enc, kid: `${name}:1`, typ: 'JOSE' });
            expect(decode(ek, 'ek')).toHaveLength(enc === 'A128GCM' ? 24 : 40);
            expect(decode(iv, 'iv')).toHaveLength(12);
            expect(decode(ct, 'ct')).toHaveLength(plaintext.length);
            expect(decode(tag, 'tag')).toHaveLength(16);
            expect((await service.decryptJwe({ jwe: r.jwe })).plaintext).toEqual(plaintext);
            await expect(service.decryptJwe({ jwe: [h, flipChar(ek, 4), iv, ct, tag].join('.') })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
            await expect(service.decryptJwe({ jwe: [h, ek, iv, flipChar(ct, 2), tag].join('.') })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
          }
          const wrongSize = await shared(type === 'AES_256' ? 'AES_128' : 'AES_256', 'wrap');
          await expect(service.encryptJwe({ recipient: { key: wrongSize }, alg, enc: 'A256GCM', plaintext, serialization: 'compact' })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
          // one purpose per key: a data key does not wrap, and a wrap key is not a "dir" content key
          await expect(service.encryptJwe({ recipient: { key: await shared(type) }, alg, enc: 'A256GCM', plaintext, serialization: 'compact' })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
          const dirEnc = type === 'AES_256' ? 'A256GCM' : 'A128GCM';
          await expect(service.encryptJwe({ recipient: { key: name }, alg: 'dir', enc: dirEnc, plaintext, serialization: 'compact' })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
          await expect(service.encryptJwe({ recipient: { jwk: { kty: 'oct', k: encode(Buffer.alloc(32)) } }, alg, enc: 'A256GCM', plaintext, serialization: 'compact' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        });
      }

      it('dir with a backend AES key: the backend encrypts the content under the JWE AAD; structure and tampering', async () => {
        for (const [enc, type] of [['A256GCM', 'AES_256'], ['A128GCM', 'AES_128']] as const) {
          const name = await shared(type);
          const r = await service.encryptJwe({ recipient: { key: name }, alg: 'dir', enc, plaintext, serialization: 'json', aad: Buffer.from('extra') });
          const jwe = r.jwe as FlattenedJwe;
          expect(jwe.encrypted_key).toBeUndefined();
          expect(JSON.parse(decode(jwe.protected, 'h').toString())).toEqual({ alg: 'dir', enc, kid: `${name}:1` });
          expect((await service.decryptJwe({ jwe })).plaintext).toEqual(plaintext);
          await expect(service.decryptJwe({ jwe: { ...jwe, aad: encode(Buffer.from('other')) } })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
          await expect(service.decryptJwe({ jwe: { ...jwe, protected: encode(JSON.stringify({ alg: 'dir', enc, kid: `${name}:1`, x: 1 })) } })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
          await expect(service.decryptJwe({ jwe: { ...jwe, tag: flipChar(jwe.tag, 3) } })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
          await expect(service.encryptJwe({ recipient: { key: name }, alg: 'dir', enc: enc === 'A256GCM' ? 'A128GCM' : 'A256GCM', plaintext, serialization: 'compact' })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        }
        await expect(service.encryptJwe({ recipient: { jwk: generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ format: 'jwk' }) }, alg: 'dir', enc: 'A256GCM', plaintext, serialization: 'compact' })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
      });

      it('rotation: a JWE to version 1 still decrypts after rotation; kid picks the version', async () => {
        const name = await create('AES_256');
        const v1 = await service.encryptJwe({ recipient: { key: name }, alg: 'dir', enc: 'A256GCM', plaintext, serialization: 'compact' });
        await keys.rotateKey(name);
        const v2 = await service.encryptJwe({ recipient: { key: name }, alg: 'dir', enc: 'A256GCM', plaintext, serialization: 'compact' });
        expect(v2.keyVersion).toBe(2);
        expect(await service.decryptJwe({ jwe: v1.jwe })).toMatchObject({ keyVersion: 1, plaintext });
        expect(await service.decryptJwe({ jwe: v2.jwe })).toMatchObject({ keyVersion: 2, plaintext });
      });

      it('refusals: bad alg and enc names, reserved header members, wrong key types, unknown recipients', async () => {
        const rsa = await shared('RSA_2048', 'encrypt');
        const aes = await shared('AES_256');
        await expect(service.encryptJwe({ recipient: { key: rsa }, alg: 'RSA1_5', enc: 'A256GCM', plaintext, serialization: 'compact' })).rejects.toMatchObject({ code: 'UNSUPPORTED_ALGORITHM' });
        await expect(service.encryptJwe({ recipient: { key: rsa }, alg: 'RSA-OAEP-256', enc: 'A128CBC-HS256', plaintext, serialization: 'compact' })).rejects.toMatchObject({ code: 'UNSUPPORTED_ALGORITHM' });
        await expect(service.encryptJwe({ recipient: { key: rsa }, alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext, serialization: 'compact', protectedHeader: { zip: 'DEF' } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        await expect(service.encryptJwe({ recipient: { key: rsa }, alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext, serialization: 'compact', aad: Buffer.from('x') })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        await expect(service.encryptJwe({ recipient: { key: aes }, alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext, serialization: 'compact' })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        await expect(service.encryptJwe({ recipient: { key: rsa }, alg: 'A256KW', enc: 'A256GCM', plaintext, serialization: 'compact' })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        await expect(service.encryptJwe({ recipient: {} as never, alg: 'dir', enc: 'A256GCM', plaintext, serialization: 'compact' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        await expect(service.encryptJwe({ recipient: { key: aes, jwk: {} } as never, alg: 'dir', enc: 'A256GCM', plaintext, serialization: 'compact' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
        await expect(service.encryptJwe({ recipient: { jwk: small }, alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext, serialization: 'compact' })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        const r = await service.encryptJwe({ recipient: { key: aes }, alg: 'dir', enc: 'A256GCM', plaintext, serialization: 'compact' });
        const [, ...rest] = (r.jwe as string).split('.');
        await expect(service.decryptJwe({ jwe: [encode('{"alg":"dir","enc":"A256GCM"}'), ...rest].join('.') })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' }); // no kid, no key
        await expect(service.decryptJwe({ jwe: [encode('{"alg":"dir","enc":"A256GCM","kid":"nope:1"}'), ...rest].join('.') })).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
        await expect(service.decryptJwe({ jwe: r.jwe, key: rsa })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' }); // kid names another key
      });
    });

    describe('limits on the work one request can ask for (review finding 2)', () => {
      /** A KeyService and JoseService over the same backend that count the key operations reaching it. */
      const counting = () => {
        const counts = { sign: 0, decrypt: 0, deriveSharedSecret: 0 };
        const counted = new Proxy(backend, {
          get(target, property, receiver) {
            const value = Reflect.get(target, property, receiver) as unknown;
            if (typeof value !== 'function') return value;
            return (...args: unknown[]) => {
              if (Object.hasOwn(counts, property)) counts[property as keyof typeof counts]++;
              return (value as (...a: unknown[]) => unknown).apply(target, args);
            };
          },
        });
        const countedKeys = new KeyService(counted, { limits: { maxDataBytes: 64 * 1024, maxRandomBytes: 1024 }, metadataCacheTtlMs: 1000 });
        return { counts, jose: new JoseService(countedKeys) };
      };
      const b64 = (n: number) => encode(randomBytes(n));

      it('a 1,000-recipient JWE and a 1,000-signature JWS are refused at once with INVALID_ARGUMENT, before any key operation', async () => {
        const name = await shared('RSA_2048', 'encrypt');
        const { counts, jose: service } = counting();
        const recipients = Array.from({ length: 1000 }, () => ({ header: { alg: 'RSA-OAEP', kid: `${name}:1` }, encrypted_key: b64(256) }));
        const jwe = { protected: encode('{"enc":"A256GCM"}'), recipients, iv: b64(12), ciphertext: b64(16), tag: b64(16) };
        const signatures = Array.from({ length: 1000 }, () => ({ protected: encode(JSON.stringify({ alg: 'RS256', kid: `${name}:1` })), signature: b64(256) }));
        const started = performance.now();
        await expect(service.decryptJwe({ jwe })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('at most 16 recipients') });
        await expect(service.decryptJwe({ jwe, key: name })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        await expect(service.verifyJws({ jws: { payload: encode(payload), signatures } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('at most 16 signatures') });
        await expect(service.verifyJws({ jws: { payload: encode(payload), signatures }, key: name })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        expect(performance.now() - started).toBeLessThan(500);
        expect(counts).toEqual({ sign: 0, decrypt: 0, deriveSharedSecret: 0 });
        // at the limit, the parse goes through (and fails later, on the content)
        await expect(service.verifyJws({ jws: { payload: encode(payload), signatures: signatures.slice(0, 16).map((x, i) => ({ ...x, protected: encode(JSON.stringify({ alg: 'RS256', kid: `other-${i}:1` })) })) }, key: name })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('no signature is by key') });
        const signers = Array.from({ length: 17 }, () => ({ key: name }));
        await expect(service.signJws({ payload, serialization: 'general', signers })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        expect(counts.sign).toBe(0);
      });

      it('repeats are refused: two recipients or signatures with one kid, two identical encrypted keys or signatures, one signer twice', async () => {
        const name = await shared('RSA_2048', 'encrypt');
        const { counts, jose: service } = counting();
        const ek = b64(256);
        const base = { protected: encode('{"enc":"A256GCM"}'), iv: b64(12), ciphertext: b64(16), tag: b64(16) };
        const sameKid = [{ header: { alg: 'RSA-OAEP', kid: `${name}:1` }, encrypted_key: b64(256) }, { header: { alg: 'RSA-OAEP', kid: `${name}:1` }, encrypted_key: b64(256) }];
        await expect(service.decryptJwe({ jwe: { ...base, recipients: sameKid } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('same "kid"') });
        const sameKey = [{ header: { alg: 'RSA-OAEP' }, encrypted_key: ek }, { header: { alg: 'RSA-OAEP' }, encrypted_key: ek }];
        await expect(service.decryptJwe({ jwe: { ...base, recipients: sameKey }, key: name })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('same encrypted key') });
        const sig = { protected: encode(JSON.stringify({ alg: 'RS256' })), signature: b64(256) };
        await expect(service.verifyJws({ jws: { payload: encode(payload), signatures: [sig, { ...sig }] }, key: name })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('identical') });
        const kidSig = (alg: string) => ({ protected: encode(JSON.stringify({ alg, kid: `${name}:1` })), signature: b64(256) });
        await expect(service.verifyJws({ jws: { payload: encode(payload), signatures: [kidSig('RS256'), kidSig('PS256')] } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('same "kid"') });
        const signer = await shared('EC_P256');
        await expect(service.signJws({ payload, serialization: 'general', signers: [{ key: signer }, { key: signer, algorithm: 'ES256' }] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        expect(counts).toEqual({ sign: 0, decrypt: 0, deriveSharedSecret: 0 });
      });

      it('JWE: only one recipient is tried, the first whose kid names our key, at that version only', async () => {
        const name = await shared('RSA_2048', 'encrypt');
        const { counts, jose: service } = counting();
        const withKid = { protected: encode('{"enc":"A256GCM"}'), header: { alg: 'RSA-OAEP', kid: `${name}:1` }, encrypted_key: b64(256), iv: b64(12), ciphertext: b64(16), tag: b64(16) };
        if (!caps().encrypt.includes('RSA_OAEP_SHA1')) {
          await expect(service.decryptJwe({ jwe: withKid })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
          return;
        }
        const pub = await publicKeyOf(name);
        const good = await new jose.GeneralEncrypt(payload).setProtectedHeader({ enc: 'A256GCM' })
          .addRecipient(pub).setUnprotectedHeader({ alg: 'RSA-OAEP', kid: `${name}:1` })
          .addRecipient(pub).setUnprotectedHeader({ alg: 'RSA-OAEP' })
          .encrypt();
        const [named, unnamed] = good.recipients as [jose.GeneralJWE['recipients'][number], jose.GeneralJWE['recipients'][number]];
        // the recipient whose kid names our key has a garbage encrypted key: the good one without a kid is not tried
        await expect(service.decryptJwe({ jwe: { ...good, recipients: [{ ...named, encrypted_key: b64(256) }, unnamed] }, key: name })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
        expect(counts.decrypt).toBe(1);
        // the one whose kid names our key goes first, wherever it is
        expect(await service.decryptJwe({ jwe: { ...good, recipients: [{ ...unnamed, encrypted_key: b64(256) }, named] }, key: name })).toMatchObject({ plaintext: payload, keyVersion: 1 });
        expect(counts.decrypt).toBe(2);
        // a kid naming a version the key does not have is refused before any decryption
        await expect(service.decryptJwe({ jwe: { ...withKid, header: { alg: 'RSA-OAEP', kid: `${name}:9` } } })).rejects.toMatchObject({ code: 'KEY_VERSION_NOT_FOUND' });
        expect(counts.decrypt).toBe(2);
      });

      it('JWS: without a kid the two newest versions are tried, with one only the version it names', async () => {
        const name = await create('EC_P256');
        const v1 = await service.signJws({ key: name, payload, serialization: 'compact', kid: false });
        const v1WithKid = await service.signJws({ key: name, payload, serialization: 'compact' });
        await keys.rotateKey(name);
        const v2 = await service.signJws({ key: name, payload, serialization: 'compact', kid: false });
        expect(await service.verifyJws({ jws: v1.jws, key: name })).toMatchObject({ valid: true, keyVersion: 1 });
        await keys.rotateKey(name);
        // versions 3 and 2 are tried; version 1 no longer is without a kid
        expect(await service.verifyJws({ jws: v2.jws, key: name })).toMatchObject({ valid: true, keyVersion: 2 });
        expect(await service.verifyJws({ jws: v1.jws, key: name })).toEqual({ valid: false });
        expect(await service.verifyJws({ jws: v1WithKid.jws })).toMatchObject({ valid: true, keyVersion: 1 });
      });
    });

    describe('JWKS', () => {
      it('lists every version of every asymmetric key not destroyed, with kid, use and alg; no secret keys', async () => {
        const ec = await create('EC_P256');
        await keys.rotateKey(ec);
        const rsaEnc = await shared('RSA_2048', 'encrypt');
        const aes = await shared('AES_256');
        const set = await service.jwks();
        const byKid = new Map(set.keys.map((k) => [k.kid as string, k]));
        expect(byKid.get(`${ec}:1`)).toMatchObject({ kty: 'EC', crv: 'P-256', use: 'sig', alg: 'ES256' });
        expect(byKid.get(`${ec}:2`)).toMatchObject({ kty: 'EC', use: 'sig', alg: 'ES256' });
        expect(byKid.get(`${rsaEnc}:1`)).toMatchObject({ kty: 'RSA', use: 'enc' });
        expect(byKid.get(`${rsaEnc}:1`)?.alg).toBeUndefined();
        expect([...byKid.keys()].some((k) => k.startsWith(`${aes}:`))).toBe(false);
        for (const k of set.keys) {
          expect(k.d).toBeUndefined();
          expect(await jose.importJWK(k as jose.JWK, (k.alg as string | undefined) ?? (k.kty === 'RSA' ? 'RSA-OAEP-256' : k.kty === 'EC' ? 'ECDH-ES' : 'EdDSA'))).toBeDefined();
        }
        if (canAgree()) {
          const agree = await shared('EC_P256', 'agree');
          expect((await service.jwks()).keys.find((k) => k.kid === `${agree}:1`)).toMatchObject({ use: 'enc' });
        }
      });
    });
  });
}
