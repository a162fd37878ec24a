/**
 * The JOSE routes end to end: the real REST server, JoseService and KeyService on the software backend
 * and on a SoftHSM token. Every JWS we return is verified by the independent `jose` package with the
 * public key GET /v1/keys/{name} publishes, and through the JWKS document; every JWE we decrypt was made
 * by `jose` with our public key; what we encrypt to an external JWK, `jose` decrypts.
 */
import { generateKeyPairSync } from 'node:crypto';
import * as jose from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64, freshName, restTargets, startRest, unb64, type Reply, type RestFixture } from './restFixture.js';

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

/** The error envelope, with its status. */
const failure = (r: Reply) => ({ status: r.status, code: r.body?.error?.code as unknown });

for (const target of restTargets) {
  describe(`JOSE routes (${target.label})`, () => {
    let rest: RestFixture;
    /** What the backend can do (GET /v1/capabilities): a JWE needing more must be refused with a 4xx. */
    let caps: { encrypt: string[]; keyAgreement?: string[] };
    const create = async (type: string, purpose?: string): Promise<string> => {
      const name = freshName(type.toLowerCase().replace('_', ''));
      const r = await rest.call('POST', '/v1/keys', { name, type, ...(purpose ? { purpose } : {}) });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      return name;
    };
    /** The public key of one version, from GET /v1/keys/{name}, imported by jose. */
    const publicKeyOf = async (name: string, alg: string, version = 1) => {
      const r = await rest.call('GET', `/v1/keys/${name}`);
      const jwk = r.body.versions.find((v: { version: number }) => v.version === version).publicKeyJwk as jose.JWK;
      return jose.importJWK(jwk, alg);
    };

    beforeAll(async () => {
      // Production's request limit (1 MB), so that a JWE or JWS with very many parts reaches the JOSE checks.
      rest = await startRest(target, 1024 * 1024);
      caps = (await rest.call('GET', '/v1/capabilities')).body;
    });
    afterAll(async () => {
      await rest?.close();
    });

    describe('POST /v1/jws/sign', () => {
      const cases: Array<[string, string]> = [
        ['RS256', 'RSA_2048'], ['PS384', 'RSA_2048'], ['ES256', 'EC_P256'], ['ES384', 'EC_P384'], ['EdDSA', 'ED25519'],
      ];
      for (const [alg, type] of cases) {
        it(`${alg}: compact, flattened and general JWS verify with jose; kid is name:version`, async () => {
          const name = await create(type);
          const pub = await publicKeyOf(name, alg);
          const payload = Buffer.from(`{"amount":"12.34","alg":"${alg}"}`);

          const compact = await rest.call('POST', '/v1/jws/sign', { key: name, algorithm: alg, payload: b64(payload) });
          expect(compact.status, JSON.stringify(compact.body)).toBe(200);
          expect(compact.body).toEqual({ jws: expect.any(String), kid: `${name}:1`, keyName: name, keyVersion: 1, algorithm: alg });
          const c = await jose.compactVerify(compact.body.jws, pub, { algorithms: [alg] });
          expect(Buffer.from(c.payload)).toEqual(payload);
          expect(c.protectedHeader).toEqual({ alg, kid: `${name}:1` });

          const flat = await rest.call('POST', '/v1/jws/sign', {
            key: name,
            algorithm: alg,
            payload: b64(payload),
            protectedHeader: { typ: 'JOSE', cty: 'json' },
            unprotectedHeader: { note: 'x' },
            serialization: 'flattened',
          });
          expect(flat.status, JSON.stringify(flat.body)).toBe(200);
          expect(flat.body.jws).toMatchObject({ payload: b64url(payload), protected: expect.any(String), signature: expect.any(String), header: { note: 'x' } });
          const f = await jose.flattenedVerify(flat.body.jws, pub);
          expect(f.protectedHeader).toEqual({ alg, kid: `${name}:1`, typ: 'JOSE', cty: 'json' });

          const general = await rest.call('POST', '/v1/jws/sign', { key: name, algorithm: alg, payload: b64(payload), serialization: 'general' });
          expect(general.status).toBe(200);
          expect(general.body.jws.signatures).toHaveLength(1);
          expect(Buffer.from((await jose.generalVerify(general.body.jws, pub)).payload)).toEqual(payload);
        });
      }

      it('detached and b64:false (RFC 7797) JWS verify with jose given the payload', async () => {
        const name = await create('EC_P256');
        const pub = await publicKeyOf(name, 'ES256');
        const payload = Buffer.from('{"transferId":"abc","note":"detached"}');

        const detached = await rest.call('POST', '/v1/jws/sign', { key: name, payload: b64(payload), detached: true });
        expect(detached.status).toBe(200);
        const [h, empty, s] = (detached.body.jws as string).split('.');
        expect(empty).toBe('');
        await jose.compactVerify(`${h}.${b64url(payload)}.${s}`, pub);

        const raw = await rest.call('POST', '/v1/jws/sign', { key: name, payload: b64(payload), b64: false, detached: true, serialization: 'flattened' });
        expect(raw.status, JSON.stringify(raw.body)).toBe(200);
        expect(raw.body.jws.payload).toBeUndefined();
        const v = await jose.flattenedVerify({ ...raw.body.jws, payload: payload.toString() }, pub);
        expect(v.protectedHeader).toMatchObject({ b64: false, crit: ['b64'] });
      });

      it('a kid in protectedHeader replaces name:version, and is what the answer reports', async () => {
        const name = await create('EC_P256');
        const r = await rest.call('POST', '/v1/jws/sign', { key: name, payload: b64('x'), protectedHeader: { kid: 'partner-visible' } });
        expect(r.status).toBe(200);
        expect(r.body.kid).toBe('partner-visible');
        expect(jose.decodeProtectedHeader(r.body.jws)).toEqual({ alg: 'ES256', kid: 'partner-visible' });
      });
    });

    describe('POST /v1/jws/verify', () => {
      let name: string;
      let signed: string;
      const payload = Buffer.from('{"quote":"verify me"}');
      beforeAll(async () => {
        name = await create('EC_P256');
        signed = (await rest.call('POST', '/v1/jws/sign', { key: name, payload: b64(payload) })).body.jws;
      });

      it('a JWS of ours is valid, with the key version, header and payload; the kid finds the key', async () => {
        const r = await rest.call('POST', '/v1/jws/verify', { jws: signed });
        expect(r.status, JSON.stringify(r.body)).toBe(200);
        expect(r.body).toEqual({
          valid: true,
          kid: `${name}:1`,
          keyName: name,
          keyVersion: 1,
          algorithm: 'ES256',
          protectedHeader: { alg: 'ES256', kid: `${name}:1` },
          payload: b64(payload),
        });
        expect((await rest.call('POST', '/v1/jws/verify', { jws: signed, key: name, algorithms: ['ES256'] })).body.valid).toBe(true);
      });

      it('JSON serializations as objects, and a detached payload given as base64', async () => {
        const flat = (await rest.call('POST', '/v1/jws/sign', { key: name, payload: b64(payload), serialization: 'flattened', detached: true })).body.jws;
        const r = await rest.call('POST', '/v1/jws/verify', { jws: flat, payload: b64(payload) });
        expect(r.status, JSON.stringify(r.body)).toBe(200);
        expect(r.body).toMatchObject({ valid: true, payload: b64(payload) });
        const other = await rest.call('POST', '/v1/jws/verify', { jws: flat, payload: b64('other payload') });
        expect(other.body).toEqual({ valid: false, reason: expect.any(String) });
      });

      it('a signature that does not verify is 200 {valid: false, reason}; so is another key with the same kid', async () => {
        const [h, p, s] = signed.split('.') as [string, string, string];
        const tampered = `${h}.${b64url('{"quote":"changed"}')}.${s}`;
        const r = await rest.call('POST', '/v1/jws/verify', { jws: tampered });
        expect(r.status).toBe(200);
        expect(r.body).toEqual({ valid: false, reason: expect.any(String) });
        const sig = Buffer.from(s, 'base64url');
        sig[10]! ^= 1;
        expect((await rest.call('POST', '/v1/jws/verify', { jws: `${h}.${p}.${b64url(sig)}` })).body.valid).toBe(false);
      });

      it('a malformed JWS, a refused alg and unknown keys are errors, never 5xx', async () => {
        expect(failure(await rest.call('POST', '/v1/jws/verify', { jws: 'not.a-jws' }))).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
        expect(failure(await rest.call('POST', '/v1/jws/verify', { jws: '' }))).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
        expect(failure(await rest.call('POST', '/v1/jws/verify', { jws: { protected: 'x' } }))).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
        const wrongType = await rest.call('POST', '/v1/jws/verify', { jws: 42 });
        expect(failure(wrongType)).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
        expect(wrongType.body.error.message).toBe('jws must be of type string or object');
        const none = `${b64url('{"alg":"none"}')}.${b64url('x')}.`;
        expect(failure(await rest.call('POST', '/v1/jws/verify', { jws: none, key: name }))).toEqual({ status: 400, code: 'UNSUPPORTED_ALGORITHM' });
        const refused = await rest.call('POST', '/v1/jws/verify', { jws: signed, algorithms: ['RS256'] });
        expect(failure(refused)).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
        expect(failure(await rest.call('POST', '/v1/jws/verify', { jws: signed, algorithms: ['XS256'] }))).toEqual({ status: 400, code: 'UNSUPPORTED_ALGORITHM' });
        expect(failure(await rest.call('POST', '/v1/jws/verify', { jws: signed, key: 'no-such-key' }))).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
        const unknownKid = await new jose.CompactSign(payload).setProtectedHeader({ alg: 'ES256', kid: 'no-such-key:1' })
          .sign(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
        expect(failure(await rest.call('POST', '/v1/jws/verify', { jws: unknownKid }))).toEqual({ status: 404, code: 'KEY_NOT_FOUND' });
        expect(failure(await rest.call('POST', '/v1/jws/verify', { jws: signed, payload: 'not base64!' }))).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
      });
    });

    describe('GET /.well-known/jwks.json', () => {
      it('serves every version of every asymmetric key not destroyed (disabled ones too); jose verifies our JWS across a rotation with it', async () => {
        const name = await create('RSA_2048');
        const aes = await create('AES_256');
        const v1 = (await rest.call('POST', '/v1/jws/sign', { key: name, payload: b64('before rotation') })).body.jws;
        expect((await rest.call('POST', `/v1/keys/${name}/rotate`)).status).toBe(200);
        const v2 = (await rest.call('POST', '/v1/jws/sign', { key: name, payload: b64('after rotation') })).body;
        expect(v2.kid).toBe(`${name}:2`);

        const r = await rest.call('GET', '/.well-known/jwks.json');
        expect(r.status).toBe(200);
        expect(r.headers['content-type']).toMatch(/^application\/json/);
        const kids = r.body.keys.map((k: { kid: string }) => k.kid);
        expect(kids).toEqual(expect.arrayContaining([`${name}:1`, `${name}:2`]));
        expect(kids.some((k: string) => k.startsWith(`${aes}:`))).toBe(false);
        for (const k of r.body.keys) expect(k.d ?? k.k ?? k.p).toBeUndefined();

        const set = jose.createLocalJWKSet(r.body);
        expect(Buffer.from((await jose.compactVerify(v1, set)).payload).toString()).toBe('before rotation');
        expect(Buffer.from((await jose.compactVerify(v2.jws, set)).payload).toString()).toBe('after rotation');

        // A disabled key stays in the document (what it signed still verifies); a destroyed one leaves it.
        expect((await rest.call('POST', `/v1/keys/${name}/disable`)).status).toBe(200);
        const disabled = await rest.call('GET', '/.well-known/jwks.json');
        expect(disabled.body.keys.map((k: { kid: string }) => k.kid)).toEqual(expect.arrayContaining([`${name}:1`, `${name}:2`]));
        expect(Buffer.from((await jose.compactVerify(v1, jose.createLocalJWKSet(disabled.body))).payload).toString()).toBe('before rotation');
        expect((await rest.call('DELETE', `/v1/keys/${name}`)).status).toBe(204);
        const after = await rest.call('GET', '/.well-known/jwks.json');
        expect(after.body.keys.some((k: { kid: string }) => k.kid.startsWith(`${name}:`))).toBe(false);
      });
    });

    describe('POST /v1/jwe/decrypt and /v1/jwe/encrypt', () => {
      const plaintext = Buffer.from('{"pan":"4111111111111111","cvv":"123"}');

      for (const [alg, backendAlgorithm] of [['RSA-OAEP-256', 'RSA_OAEP_SHA256'], ['RSA-OAEP', 'RSA_OAEP_SHA1']] as const) {
        it(`${alg}: jose encrypts to our public key (compact and flattened), we decrypt in the backend`, async () => {
          const name = await create('RSA_2048', 'encrypt');
          const pub = await publicKeyOf(name, alg);
          for (const enc of ['A128GCM', 'A256GCM'] as const) {
            const compact = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg, enc, kid: `${name}:1` }).encrypt(pub);
            const r = await rest.call('POST', '/v1/jwe/decrypt', { jwe: compact });
            if (!caps.encrypt.includes(backendAlgorithm)) {
              expect(failure(r)).toEqual({ status: 400, code: 'UNSUPPORTED_BY_BACKEND' });
              return;
            }
            expect(r.status, JSON.stringify(r.body)).toBe(200);
            expect(r.body).toEqual({
              plaintext: b64(plaintext),
              protectedHeader: { alg, enc, kid: `${name}:1` },
              kid: `${name}:1`,
              keyName: name,
              keyVersion: 1,
              alg,
              enc,
            });
          }
          const flat = await new jose.FlattenedEncrypt(plaintext).setProtectedHeader({ alg, enc: 'A256GCM' })
            .setAdditionalAuthenticatedData(Buffer.from('aad')).encrypt(pub);
          const r = await rest.call('POST', '/v1/jwe/decrypt', { jwe: flat, key: name });
          expect(r.status, JSON.stringify(r.body)).toBe(200);
          expect(unb64(r.body.plaintext)).toEqual(plaintext);
        });
      }

      it('ECDH-ES: jose encrypts to our agreement key, we decrypt with ECDH in the backend (or a 4xx where it cannot)', async () => {
        const canAgree = (caps.keyAgreement ?? []).includes('EC_P256');
        const createKey = await rest.call('POST', '/v1/keys', { name: freshName('ecdh'), type: 'EC_P256', purpose: 'agree' });
        if (!canAgree && createKey.status !== 201) {
          expect(failure(createKey)).toEqual({ status: 400, code: 'UNSUPPORTED_BY_BACKEND' });
          return;
        }
        expect(createKey.status, JSON.stringify(createKey.body)).toBe(201);
        const name = createKey.body.name as string;
        const pub = await publicKeyOf(name, 'ECDH-ES');
        for (const alg of ['ECDH-ES', 'ECDH-ES+A256KW'] as const) {
          const jwe = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg, enc: 'A256GCM', kid: `${name}:1` }).encrypt(pub);
          const r = await rest.call('POST', '/v1/jwe/decrypt', { jwe });
          if (!canAgree) {
            // A backend without ECDH says so with a 4xx, never a 5xx.
            expect(failure(r), JSON.stringify(r.body)).toEqual({ status: 400, code: 'UNSUPPORTED_BY_BACKEND' });
            continue;
          }
          expect(r.status, JSON.stringify(r.body)).toBe(200);
          expect(unb64(r.body.plaintext)).toEqual(plaintext);
          expect(r.body.protectedHeader.epk).toMatchObject({ kty: 'EC', crv: 'P-256' });
        }
      });

      it('round trips through our encrypt and decrypt: RSA-OAEP-256, A256KW (a wrap key) and dir (an encrypt key); compact and JSON', async () => {
        const rsa = await create('RSA_2048', 'encrypt');
        const aes = await create('AES_256');
        const kek = await create('AES_256', 'wrap');
        const cases = [
          { key: rsa, alg: 'RSA-OAEP-256', enc: 'A256GCM' },
          { key: kek, alg: 'A256KW', enc: 'A128GCM' },
          { key: aes, alg: 'dir', enc: 'A256GCM' },
        ];
        for (const c of cases) {
          for (const serialization of ['compact', 'json'] as const) {
            const e = await rest.call('POST', '/v1/jwe/encrypt', {
              recipient: { key: c.key },
              alg: c.alg,
              enc: c.enc,
              plaintext: b64(plaintext),
              protectedHeader: { cty: 'json' },
              ...(serialization === 'json' ? { aad: b64('context'), serialization } : {}),
            });
            if (c.alg === 'A256KW' && !caps.encrypt.includes('AES_KW')) {
              expect(failure(e)).toEqual({ status: 400, code: 'UNSUPPORTED_BY_BACKEND' });
              continue;
            }
            expect(e.status, `${c.alg} ${serialization}: ${JSON.stringify(e.body)}`).toBe(200);
            expect(e.body).toMatchObject({ kid: `${c.key}:1`, keyName: c.key, keyVersion: 1 });
            expect(typeof e.body.jwe).toBe(serialization === 'compact' ? 'string' : 'object');
            if (serialization === 'json') expect(e.body.jwe.aad).toBe(b64url('context'));
            const d = await rest.call('POST', '/v1/jwe/decrypt', { jwe: e.body.jwe });
            expect(d.status, JSON.stringify(d.body)).toBe(200);
            expect(d.body).toMatchObject({ keyName: c.key, alg: c.alg, enc: c.enc, protectedHeader: { cty: 'json' } });
            expect(unb64(d.body.plaintext)).toEqual(plaintext);
          }
        }
      });

      it('a data key refuses A256KW and a wrap key refuses dir and AES_GCM: 400 INCOMPATIBLE_KEY', async () => {
        const aes = await create('AES_256');
        const kek = await create('AES_256', 'wrap');
        const encrypt = (key: string, alg: string) => rest.call('POST', '/v1/jwe/encrypt', { recipient: { key }, alg, enc: 'A256GCM', plaintext: b64(plaintext) });
        expect(failure(await encrypt(aes, 'A256KW'))).toEqual({ status: 400, code: 'INCOMPATIBLE_KEY' });
        expect(failure(await encrypt(kek, 'dir'))).toEqual({ status: 400, code: 'INCOMPATIBLE_KEY' });
        expect(failure(await rest.call('POST', `/v1/keys/${kek}/encrypt`, { plaintext: b64(plaintext), algorithm: 'AES_GCM' }))).toEqual({ status: 400, code: 'INCOMPATIBLE_KEY' });
        expect(failure(await rest.call('POST', `/v1/keys/${aes}/encrypt`, { plaintext: b64(Buffer.alloc(32)), algorithm: 'AES_KW' }))).toEqual({ status: 400, code: 'INCOMPATIBLE_KEY' });
      });

      it('a 1,000-recipient JWE and a 1,000-signature JWS get 400 INVALID_ARGUMENT at once, never a 5xx', async () => {
        const name = freshName('rsaenc');
        expect((await rest.call('POST', '/v1/keys', { name, type: 'RSA_2048', purpose: 'encrypt' })).status).toBe(201);
        const signer = freshName('ec');
        expect((await rest.call('POST', '/v1/keys', { name: signer, type: 'EC_P256' })).status).toBe(201);
        const random = (n: number) => b64url(Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + n) & 0xff)));
        const recipients = Array.from({ length: 1000 }, (_, i) => ({ header: { alg: 'RSA-OAEP', kid: `${name}:1` }, encrypted_key: random(200 + (i % 50)) + b64url(String(i)) }));
        const jwe = { protected: b64url('{"enc":"A256GCM"}'), recipients, iv: random(12), ciphertext: random(16), tag: random(16) };
        const signatures = Array.from({ length: 1000 }, (_, i) => ({ protected: b64url(JSON.stringify({ alg: 'ES256', kid: `${signer}:1` })), signature: random(64) + b64url(String(i)) }));
        const started = performance.now();
        const d = await rest.call('POST', '/v1/jwe/decrypt', { jwe });
        expect(failure(d), JSON.stringify(d.body)).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
        expect(d.body.error.message).toContain('at most 16 recipients');
        const v = await rest.call('POST', '/v1/jws/verify', { jws: { payload: b64url('{}'), signatures } });
        expect(failure(v), JSON.stringify(v.body)).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
        expect(v.body.error.message).toContain('at most 16 signatures');
        expect(performance.now() - started).toBeLessThan(1000);
      });

      it("encrypts to an external recipient's public JWK; jose decrypts with the private key", async () => {
        const external = generateKeyPairSync('rsa', { modulusLength: 2048 });
        const jwk = external.publicKey.export({ format: 'jwk' });
        const e = await rest.call('POST', '/v1/jwe/encrypt', { recipient: { jwk: { ...jwk, kid: 'partner-1' } }, alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext: b64(plaintext) });
        expect(e.status, JSON.stringify(e.body)).toBe(200);
        expect(e.body).toEqual({ jwe: expect.any(String) });
        const d = await jose.compactDecrypt(e.body.jwe, external.privateKey);
        expect(Buffer.from(d.plaintext)).toEqual(plaintext);
        expect(d.protectedHeader).toMatchObject({ alg: 'RSA-OAEP-256', enc: 'A256GCM', kid: 'partner-1' });
      });

      it('tampering, the wrong key and bad requests get their 4xx and code, never a 5xx', async () => {
        const name = await create('RSA_2048', 'encrypt');
        const other = await create('RSA_2048', 'encrypt');
        const signing = await create('EC_P256');
        const jwe = (await rest.call('POST', '/v1/jwe/encrypt', { recipient: { key: name }, alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext: b64(plaintext) })).body.jwe as string;
        const parts = jwe.split('.');
        const ct = Buffer.from(parts[3]!, 'base64url');
        ct[0]! ^= 1;
        const tampered = [...parts.slice(0, 3), b64url(ct), parts[4]].join('.');
        expect(failure(await rest.call('POST', '/v1/jwe/decrypt', { jwe: tampered }))).toEqual({ status: 400, code: 'DECRYPTION_FAILED' });
        const toOther = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg: 'RSA-OAEP-256', enc: 'A256GCM' }).encrypt(await publicKeyOf(other, 'RSA-OAEP-256'));
        expect(failure(await rest.call('POST', '/v1/jwe/decrypt', { jwe: toOther, key: name }))).toEqual({ status: 400, code: 'DECRYPTION_FAILED' });

        const bad: Array<[unknown, number, string]> = [
          [{ jwe: 'a.b.c' }, 400, 'INVALID_ARGUMENT'],
          [{ jwe: jwe, algorithms: ['A256KW'] }, 400, 'INVALID_ARGUMENT'],
          [{ jwe: 7 }, 400, 'INVALID_ARGUMENT'],
          [{}, 400, 'INVALID_ARGUMENT'],
          [{ jwe, key: 'bad name!' }, 400, 'INVALID_ARGUMENT'],
        ];
        for (const [body, status, code] of bad) {
          expect(failure(await rest.call('POST', '/v1/jwe/decrypt', body)), JSON.stringify(body)).toEqual({ status, code });
        }
        const encrypt = (overrides: Record<string, unknown>) =>
          rest.call('POST', '/v1/jwe/encrypt', { recipient: { key: name }, alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext: b64(plaintext), ...overrides });
        const encryptCases: Array<[Record<string, unknown>, number, string]> = [
          [{ alg: 'RSA1_5' }, 400, 'UNSUPPORTED_ALGORITHM'],
          [{ enc: 'A128CBC-HS256' }, 400, 'UNSUPPORTED_ALGORITHM'],
          [{ recipient: {} }, 400, 'INVALID_ARGUMENT'],
          [{ recipient: { key: name, jwk: { kty: 'RSA' } } }, 400, 'INVALID_ARGUMENT'],
          [{ recipient: { key: name, extra: 1 } }, 400, 'INVALID_ARGUMENT'],
          [{ recipient: { jwk: { kty: 'oct', k: 'AAAA' } } }, 400, 'INVALID_ARGUMENT'],
          [{ recipient: { key: 'no-such-key' } }, 404, 'KEY_NOT_FOUND'],
          [{ recipient: { key: name, keyVersion: 9 } }, 404, 'KEY_VERSION_NOT_FOUND'],
          [{ recipient: { key: signing } }, 400, 'INCOMPATIBLE_KEY'],
          [{ alg: 'dir' }, 400, 'INCOMPATIBLE_KEY'],
          [{ protectedHeader: { alg: 'dir' } }, 400, 'INVALID_ARGUMENT'],
          [{ plaintext: 'not base64!' }, 400, 'INVALID_ARGUMENT'],
          [{ serialization: 'general' }, 400, 'INVALID_ARGUMENT'],
          [{ plaintext: b64(Buffer.alloc(5000)) }, 413, 'PAYLOAD_TOO_LARGE'],
        ];
        for (const [overrides, status, code] of encryptCases) {
          expect(failure(await encrypt(overrides)), JSON.stringify(overrides)).toEqual({ status, code });
        }
      });
    });

    describe('bad JWS sign requests', () => {
      it('each gets its 4xx and stable code, never a 5xx', async () => {
        const name = await create('EC_P256');
        const disabled = await create('EC_P256');
        await rest.call('POST', `/v1/keys/${disabled}/disable`);
        const aes = await create('AES_256');
        const sign = (body: Record<string, unknown>) => rest.call('POST', '/v1/jws/sign', { key: name, payload: b64('p'), ...body });
        const cases: Array<[Record<string, unknown>, number, string]> = [
          [{ key: undefined }, 400, 'INVALID_ARGUMENT'],
          [{ payload: undefined }, 400, 'INVALID_ARGUMENT'],
          [{ payload: 'a$b' }, 400, 'INVALID_ARGUMENT'],
          [{ extra: true }, 400, 'INVALID_ARGUMENT'],
          [{ serialization: 'xml' }, 400, 'INVALID_ARGUMENT'],
          [{ protectedHeader: 'alg' }, 400, 'INVALID_ARGUMENT'],
          [{ protectedHeader: { crit: ['exp'] } }, 400, 'INVALID_ARGUMENT'],
          [{ protectedHeader: { alg: 'RS256' } }, 400, 'INVALID_ARGUMENT'],
          [{ unprotectedHeader: { note: 1 } }, 400, 'INVALID_ARGUMENT'],
          [{ b64: 'no' }, 400, 'INVALID_ARGUMENT'],
          [{ algorithm: 'HS256' }, 400, 'UNSUPPORTED_ALGORITHM'],
          [{ algorithm: 'ES384' }, 400, 'INCOMPATIBLE_KEY'],
          [{ key: aes }, 400, 'INCOMPATIBLE_KEY'],
          [{ key: 'no-such-key' }, 404, 'KEY_NOT_FOUND'],
          [{ key: '../etc' }, 400, 'INVALID_ARGUMENT'],
          [{ key: disabled }, 409, 'KEY_DISABLED'],
          [{ payload: b64(Buffer.alloc(5000)) }, 413, 'PAYLOAD_TOO_LARGE'],
        ];
        for (const [body, status, code] of cases) {
          expect(failure(await sign(body)), JSON.stringify(body)).toEqual({ status, code });
        }
        const notJson = await rest.send('POST', '/v1/jws/sign', 'key=x', { 'content-type': 'application/x-www-form-urlencoded' });
        expect(failure(notJson)).toEqual({ status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
      });
    });

    it('logs one line per request with the key name, and never a payload, plaintext or JWS', async () => {
      const name = await create('EC_P256');
      const secret = 'SECRET-PAYLOAD-4111111111111111';
      const s = await rest.call('POST', '/v1/jws/sign', { key: name, payload: b64(secret) });
      await rest.call('POST', '/v1/jws/verify', { jws: s.body.jws });
      const line = rest.logs.filter((l) => l.route === '/v1/jws/sign').at(-1);
      expect(line).toMatchObject({ method: 'POST', status: 200, keyName: name });
      const text = rest.logText();
      expect(text).not.toContain(secret);
      expect(text).not.toContain(b64(secret));
      expect(text).not.toContain(b64url(secret));
      expect(text).not.toContain(s.body.jws);
    });
  });
}
