/**
 * The FSPIOP routes end to end, on the software backend and on a SoftHSM token: what /v1/fspiop/sign
 * returns is accepted by the Mojaloop reference JwsValidator, what the reference JwsSigner signs is
 * accepted by /v1/fspiop/validate, tampering is refused by both, the participants API round-trips, and
 * bad input gets its 4xx and code. Last, startApp's wiring of the `fspiop` configuration section.
 */
import { createPublicKey, generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp } from '../../../src/app.js';
import { loadServiceConfig } from '../../../src/config/load.js';
import {
  eventually,
  generateTestKeyPair,
  referenceAccepts,
  referenceSigner,
  safeStableStringify,
  silentLogger,
  transferBody,
} from '../../fspiop/support.js';
import { createSoftwareBackendConfig } from '../../helpers/software.js';
import { freshName, restTargets, softHsmWithoutRawRsa, startRest, type Reply, type RestFixture } from './restFixture.js';

const failure = (r: Reply) => ({ status: r.status, code: r.body?.error?.code as unknown });
const thumbprint = (pem: string) => calculateJwkThumbprint(createPublicKey(pem).export({ format: 'jwk' }) as never);
const DATE = 'Tue, 24 Nov 2026 21:30:00 GMT';
const URI = 'https://switch.example:3000/transfers/0a3c5d2e-7f3b-4a4e-9b8e-6f0f3f1b2c3d';

for (const target of restTargets) {
  describe(`FSPIOP routes (${target.label})`, () => {
    let rest: RestFixture;
    /** Our keys and the participant ids their public keys are registered under. */
    const ours = { RS256: { key: '', source: '', pem: '' }, ES256: { key: '', source: '', pem: '' } };
    /** A peer with its own keys, signing with the reference JwsSigner. */
    const peer = { RS256: generateTestKeyPair('RSA'), ES256: generateTestKeyPair('EC') };
    const peerId = { RS256: 'peer-rs', ES256: 'peer-es' };
    const referenceKeys = () => ({ [ours.RS256.source]: ours.RS256.pem, [ours.ES256.source]: ours.ES256.pem });

    beforeAll(async () => {
      rest = await startRest(target, { maxRequestBytes: 64 * 1024, limits: { maxDataBytes: 32 * 1024, maxRandomBytes: 256 } });
      for (const [alg, type] of [['RS256', 'RSA_2048'], ['ES256', 'EC_P256']] as const) {
        const key = freshName(`fspiop-${alg.toLowerCase()}`);
        const created = await rest.call('POST', '/v1/keys', { name: key, type });
        expect(created.status).toBe(201);
        ours[alg] = { key, source: `hsmb-${alg.toLowerCase()}`, pem: created.body.versions[0].publicKeyPem };
        for (const [id, pem] of [[ours[alg].source, ours[alg].pem], [peerId[alg], peer[alg].publicPem]] as const) {
          const r = await rest.call('POST', '/v1/fspiop/participants', { id, publicKeyPem: pem });
          expect(r.status, JSON.stringify(r.body)).toBe(201);
        }
      }
    });
    afterAll(async () => {
      await rest?.close();
    });

    for (const alg of ['RS256', 'ES256'] as const) {
      for (const v of [{}, { destination: 'payeefsp' }, { date: DATE }, { destination: 'payeefsp', date: DATE }] as Array<{ destination?: string; date?: string }>) {
        const label = `${alg}${v.destination ? ', destination' : ''}${v.date ? ', date' : ''}`;

        it(`${label}: what /v1/fspiop/sign returns validates with the reference JwsValidator and with /v1/fspiop/validate`, async () => {
          const r = await rest.call('POST', '/v1/fspiop/sign', { key: ours[alg].key, method: 'put', uri: URI, source: ours[alg].source, ...v, body: transferBody() });
          expect(r.status, JSON.stringify(r.body)).toBe(200);
          expect(r.body.body).toBe(safeStableStringify(transferBody()));
          expect(r.body.headers).toEqual({
            'fspiop-signature': expect.any(String),
            'fspiop-uri': '/transfers/0a3c5d2e-7f3b-4a4e-9b8e-6f0f3f1b2c3d',
            'fspiop-http-method': 'PUT',
          });
          const headers: Record<string, string> = {
            'content-type': 'application/vnd.interoperability.transfers+json;version=1.1',
            'fspiop-source': ours[alg].source,
            ...(v.destination ? { 'fspiop-destination': v.destination } : {}),
            ...(v.date ? { date: v.date } : {}),
            ...r.body.headers,
          };
          expect(referenceAccepts(referenceKeys(), { headers, body: JSON.parse(r.body.body) })).toBe(true);
          const ourCheck = await rest.call('POST', '/v1/fspiop/validate', { headers, body: r.body.body });
          expect(ourCheck.status).toBe(200);
          expect(ourCheck.body).toEqual({ valid: true, participant: ours[alg].source, keyId: await thumbprint(ours[alg].pem), algorithm: alg });

          // Tampering with the body or any protected header is refused by both.
          const tampered: Array<[string, Record<string, string>, string]> = [
            ['body', headers, r.body.body.replace('123.45', '123.46')],
            ['FSPIOP-URI', { ...headers, 'fspiop-uri': '/transfers/other' }, r.body.body],
            ['FSPIOP-HTTP-Method', { ...headers, 'fspiop-http-method': 'POST' }, r.body.body],
            ['FSPIOP-Source', { ...headers, 'fspiop-source': peerId[alg] }, r.body.body],
            ['FSPIOP-Destination', v.destination ? { ...headers, 'fspiop-destination': 'otherfsp' } : { ...headers, 'fspiop-destination': 'payeefsp' }, r.body.body],
            ['Date', v.date ? { ...headers, date: 'Wed, 25 Nov 2026 00:00:00 GMT' } : { ...headers, date: DATE }, r.body.body],
          ];
          for (const [what, h, body] of tampered) {
            // A Date header the signer did not cover is not part of the message: both validators let it through.
            const accepted = what === 'Date' && !v.date;
            expect(referenceAccepts(referenceKeys(), { headers: h, body: JSON.parse(body) }), `reference, ${what}`).toBe(accepted);
            const answer = await rest.call('POST', '/v1/fspiop/validate', { headers: h, body });
            expect(answer.status, what).toBe(200);
            expect(answer.body, what).toEqual(accepted ? ourCheck.body : { valid: false, errorCode: '3105', reason: expect.any(String) });
          }
        });

        it(`${label}: what the reference JwsSigner signs validates through /v1/fspiop/validate`, async () => {
          const req = {
            method: 'put',
            uri: URI,
            headers: {
              'fspiop-source': peerId[alg],
              ...(v.destination ? { 'fspiop-destination': v.destination } : {}),
              ...(v.date ? { date: v.date } : {}),
            } as Record<string, string>,
            body: transferBody(),
          };
          referenceSigner(peer[alg].privatePem).sign(req);
          const body = typeof req.body === 'string' ? req.body : JSON.stringify(req.body);
          const r = await rest.call('POST', '/v1/fspiop/validate', { headers: req.headers, body });
          expect(r.status).toBe(200);
          expect(r.body).toEqual({ valid: true, participant: peerId[alg], keyId: await thumbprint(peer[alg].publicPem), algorithm: alg });
          // The same signature presented for another participant, or over other bytes, is refused.
          const other = await rest.call('POST', '/v1/fspiop/validate', { headers: { ...req.headers, 'fspiop-source': ours[alg].source }, body });
          expect(other.body).toMatchObject({ valid: false, errorCode: '3105' });
          const changed = await rest.call('POST', '/v1/fspiop/validate', { headers: req.headers, body: body.replace('payerfsp', 'payerfsq') });
          expect(changed.body).toMatchObject({ valid: false, errorCode: '3105' });
        });
      }
    }

    it('refusals name the reason: no signature header, unknown participant, a key of another type', async () => {
      const signed = await rest.call('POST', '/v1/fspiop/sign', { key: ours.RS256.key, method: 'post', uri: '/transfers', source: ours.RS256.source, body: '{"b":1,"a":2}' });
      expect(signed.body.body).toBe('{"a":2,"b":1}');
      const headers = { 'fspiop-source': ours.RS256.source, ...signed.body.headers };
      const cases: Array<Record<string, string>> = [
        { ...headers, 'fspiop-signature': undefined as unknown as string },
        { ...headers, 'fspiop-source': 'nobody' },
        { ...headers, 'fspiop-signature': 'not json' },
      ];
      for (const h of cases) {
        const r = await rest.call('POST', '/v1/fspiop/validate', { headers: JSON.parse(JSON.stringify(h)), body: signed.body.body });
        expect(r.status).toBe(200);
        expect(r.body).toEqual({ valid: false, errorCode: '3105', reason: expect.any(String) });
      }
    });

    it('rotation overlap: two active keys for one participant both validate; deleting one leaves the other', async () => {
      const id = 'rotating-fsp';
      const oldKey = generateTestKeyPair('RSA');
      const newKey = generateTestKeyPair('RSA');
      const added = [];
      for (const pair of [oldKey, newKey]) {
        const r = await rest.call('POST', '/v1/fspiop/participants', { id, publicKeyPem: pair.publicPem });
        expect(r.status).toBe(201);
        added.push(r.body.keyId as string);
      }
      const signedBy = (pair: typeof oldKey) => {
        const req = { method: 'post', uri: '/quotes', headers: { 'fspiop-source': id } as Record<string, string>, body: { quoteId: '1' } };
        referenceSigner(pair.privatePem).sign(req);
        return { headers: req.headers, body: req.body as unknown as string };
      };
      for (const [i, pair] of [oldKey, newKey].entries()) {
        const r = await rest.call('POST', '/v1/fspiop/validate', signedBy(pair));
        expect(r.body).toMatchObject({ valid: true, participant: id, keyId: added[i] });
      }
      expect((await rest.call('DELETE', `/v1/fspiop/participants/${id}/keys/${added[0]}`)).status).toBe(204);
      expect((await rest.call('POST', '/v1/fspiop/validate', signedBy(oldKey))).body).toMatchObject({ valid: false, errorCode: '3105' });
      expect((await rest.call('POST', '/v1/fspiop/validate', signedBy(newKey))).body).toMatchObject({ valid: true, keyId: added[1] });
    });

    it('participants API: add, list, get, delete, with 404 and 409 where they belong', async () => {
      const id = 'roundtrip-fsp';
      const pair = generateTestKeyPair('EC');
      const add = await rest.call('POST', '/v1/fspiop/participants', { id, publicKeyPem: pair.publicPem });
      expect(add.status).toBe(201);
      const keyId = await thumbprint(pair.publicPem);
      expect(add.body).toEqual({ participant: id, keyId, use: 'sig', kty: 'EC', bits: 256, source: 'api', publicKeyPem: pair.publicKey.export({ format: 'pem', type: 'spki' }) });

      const list = await rest.call('GET', '/v1/fspiop/participants');
      expect(list.status).toBe(200);
      expect(list.body.participants).toEqual(expect.arrayContaining([{ id, keys: [add.body] }]));
      expect(list.body.participants.map((p: { id: string }) => p.id)).toEqual(expect.arrayContaining([peerId.RS256, peerId.ES256, ours.RS256.source]));

      expect(await rest.call('GET', `/v1/fspiop/participants/${id}/keys/${keyId}`)).toMatchObject({ status: 200, body: add.body });
      expect(failure(await rest.call('POST', '/v1/fspiop/participants', { id, publicKeyPem: pair.publicPem }))).toEqual({ status: 409, code: 'KEY_ALREADY_EXISTS' });

      expect((await rest.call('DELETE', `/v1/fspiop/participants/${id}/keys/${keyId}`)).status).toBe(204);
      expect(failure(await rest.call('GET', `/v1/fspiop/participants/${id}/keys/${keyId}`))).toEqual({ status: 404, code: 'KEY_NOT_FOUND' });
      expect(failure(await rest.call('DELETE', `/v1/fspiop/participants/${id}/keys/${keyId}`))).toEqual({ status: 404, code: 'KEY_NOT_FOUND' });
      expect((await rest.call('GET', '/v1/fspiop/participants')).body.participants.some((p: { id: string }) => p.id === id)).toBe(false);

      // An RSA encryption key for field encryption.
      const enc = generateTestKeyPair('RSA');
      const encAdded = await rest.call('POST', '/v1/fspiop/participants', { id, publicKeyPem: enc.publicPem, use: 'enc' });
      expect(encAdded.status).toBe(201);
      expect(encAdded.body).toMatchObject({ use: 'enc', kty: 'RSA', bits: 2048 });
    });

    it('participants API refuses bad keys and ids with 400', async () => {
      const short = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'pem', type: 'spki' }).toString();
      const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ format: 'pem', type: 'spki' }).toString();
      const ec = generateTestKeyPair('EC');
      const bad: Array<Record<string, unknown>> = [
        { id: 'fsp', publicKeyPem: 'not a pem' },
        { id: 'fsp', publicKeyPem: short },
        { id: 'fsp', publicKeyPem: p384 },
        { id: 'fsp', publicKeyPem: ec.privatePem },
        { id: 'fsp', publicKeyPem: ec.publicPem, use: 'enc' },
        { id: 'fsp', publicKeyPem: ec.publicPem, use: 'both' },
        { id: '../etc', publicKeyPem: ec.publicPem },
        { id: 'a'.repeat(33), publicKeyPem: ec.publicPem },
        { id: 'fsp' },
        { id: 'fsp', publicKeyPem: ec.publicPem, extra: 1 },
      ];
      for (const body of bad) {
        const r = await rest.call('POST', '/v1/fspiop/participants', body);
        expect(failure(r), JSON.stringify(body).slice(0, 80)).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
        expect(r.raw).not.toContain('PRIVATE KEY');
      }
      expect(failure(await rest.call('GET', '/v1/fspiop/participants/..%2Fetc/keys/x'))).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
      expect(failure(await rest.call('DELETE', '/v1/fspiop/participants/bad%20id/keys/x'))).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
    });

    it('field encryption: sign with encryptFields, validate with decryptWith gives the fields back', async () => {
      const enc = freshName('fspiop-enc');
      const created = await rest.call('POST', '/v1/keys', { name: enc, type: 'RSA_2048', purpose: 'encrypt' });
      expect(created.status).toBe(201);
      // Both targets offer RSA-OAEP-256: SoftHSM through the raw-RSA fallback the test harness turns on.
      expect((await rest.call('GET', '/v1/capabilities')).body.encrypt).toContain('RSA_OAEP_SHA256');
      const added = await rest.call('POST', '/v1/fspiop/participants', { id: ours.RS256.source, publicKeyPem: created.body.versions[0].publicKeyPem, use: 'enc' });
      expect(added.status).toBe(201);
      const body = { ...transferBody(), payer: { pan: '4111111111111111', name: 'Ana' } };
      const r = await rest.call('POST', '/v1/fspiop/sign', {
        key: ours.ES256.key,
        method: 'post',
        uri: '/transfers',
        source: ours.ES256.source,
        destination: ours.RS256.source,
        body,
        encryptFields: { fields: ['payer.pan'], recipient: ours.RS256.source },
      });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body.headers['fspiop-encryption']).toEqual(expect.any(String));
      expect(r.body.body).not.toContain('4111111111111111');
      const headers = { 'fspiop-source': ours.ES256.source, 'fspiop-destination': ours.RS256.source, ...r.body.headers };
      expect(referenceAccepts(referenceKeys(), { headers, body: JSON.parse(r.body.body) })).toBe(true);
      const v = await rest.call('POST', '/v1/fspiop/validate', { headers, body: r.body.body, decryptWith: enc });
      expect(v.status, JSON.stringify(v.body)).toBe(200);
      expect(v.body).toMatchObject({ valid: true, participant: ours.ES256.source, body: { payer: { pan: '4111111111111111', name: 'Ana' } } });
      expect(rest.logText()).not.toContain('4111111111111111');
    });

    it('malformed bodies and headers get an answer, never a 5xx: deep nesting, huge arrays, duplicate names, fuzz', async () => {
      const b64u = (data: Buffer | string) => Buffer.from(data).toString('base64url');
      const protectedHeader = b64u(JSON.stringify({ alg: 'RS256', 'FSPIOP-URI': '/transfers', 'FSPIOP-HTTP-Method': 'POST', 'FSPIOP-Source': peerId.RS256 }));
      const headersSigning = (signed: string) => ({
        'fspiop-source': peerId.RS256,
        'fspiop-uri': '/transfers',
        'fspiop-http-method': 'POST',
        'fspiop-signature': JSON.stringify({ protectedHeader, signature: b64u(nodeSign('sha256', Buffer.from(`${protectedHeader}.${b64u(signed)}`), peer.RS256.privatePem)) }),
      });
      const levels = 30_000; // as deep as the 64 KiB request limit allows
      const bodies: Array<[string, string, string]> = [
        ['deep arrays', '['.repeat(levels) + ']'.repeat(levels), 'nested too deeply'],
        ['deep objects', '{"a":'.repeat(levels / 6) + '1' + '}'.repeat(levels / 6), 'nested too deeply'],
        ['a huge array', `[${'0,'.repeat(30_000)}0]`, 'does not verify'],
        ['a duplicate member name', '{"amount":"1","amount":"1000"}', 'duplicate member name'],
      ];
      for (const [what, body, reason] of bodies) {
        // Signed over other bytes, so that the canonical fallback reads the body.
        const r = await rest.call('POST', '/v1/fspiop/validate', { headers: headersSigning('{"amount":"1000"}'), body });
        expect(r.status, what).toBe(200);
        expect(r.body, what).toEqual({ valid: false, errorCode: '3105', reason: expect.stringContaining(reason) });
        // Signed over these very bytes, and handed back parsed: refused unless it can be read unambiguously.
        const back = await rest.call('POST', '/v1/fspiop/validate', { headers: headersSigning(body), body, decryptWith: freshName('no-such-key') });
        expect(back.status, what).toBe(200);
        if (reason === 'does not verify') expect(back.body, what).toMatchObject({ valid: true, body: JSON.parse(body) });
        else expect(back.body, what).toEqual({ valid: false, errorCode: '3105', reason: expect.stringContaining(reason) });
      }
      const deep = await rest.call('POST', '/v1/fspiop/sign', { key: ours.RS256.key, method: 'post', uri: '/transfers', source: ours.RS256.source, body: bodies[0]![1] });
      expect(failure(deep)).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
      expect(deep.body.error.message).toContain('nested too deeply');

      let seed = 7;
      const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      const junk = ['{', '}', '[', ']', '"', '\\', ':', ',', '\u0000', '\ud800', ' ', '1e999'];
      for (let i = 0; i < 60; i++) {
        const headers: Record<string, string> = headersSigning('{"x":1}');
        const names = Object.keys(headers);
        const name = names[Math.floor(rand() * names.length)]!;
        headers[name] = rand() < 0.5 ? '' : headers[name]!.slice(0, Math.floor(rand() * headers[name]!.length)) + junk[Math.floor(rand() * junk.length)];
        let body = safeStableStringify(transferBody());
        const at = Math.floor(rand() * body.length);
        body = body.slice(0, at) + junk[Math.floor(rand() * junk.length)] + body.slice(at + 1);
        const r = await rest.call('POST', '/v1/fspiop/validate', { headers, body });
        expect(r.status, `case ${i}`).toBe(200);
        expect(r.body, `case ${i}`).toEqual({ valid: false, errorCode: '3105', reason: expect.any(String) });
      }
    });

    it('bad sign and validate requests get their 4xx and stable code, never a 5xx', async () => {
      const aes = freshName('fspiop-aes');
      await rest.call('POST', '/v1/keys', { name: aes, type: 'AES_256' });
      const sign = (o: Record<string, unknown>) =>
        rest.call('POST', '/v1/fspiop/sign', { key: ours.RS256.key, method: 'put', uri: '/transfers/1', source: 'payerfsp', body: { a: 1 }, ...o });
      const signCases: Array<[Record<string, unknown>, number, string]> = [
        [{ key: undefined }, 400, 'INVALID_ARGUMENT'],
        [{ body: undefined }, 400, 'INVALID_ARGUMENT'],
        [{ body: 42 }, 400, 'INVALID_ARGUMENT'],
        [{ body: '{not json' }, 400, 'INVALID_ARGUMENT'],
        [{ body: '' }, 400, 'INVALID_ARGUMENT'],
        [{ method: 'PU T' }, 400, 'INVALID_ARGUMENT'],
        [{ uri: '' }, 400, 'INVALID_ARGUMENT'],
        [{ source: 'bad id!' }, 400, 'INVALID_ARGUMENT'],
        [{ destination: '' }, 400, 'INVALID_ARGUMENT'],
        [{ date: 'Tue\r\nX-Injected: 1' }, 400, 'INVALID_ARGUMENT'],
        [{ extra: 1 }, 400, 'INVALID_ARGUMENT'],
        [{ encryptFields: { fields: ['a'] } }, 400, 'INVALID_ARGUMENT'],
        [{ encryptFields: { fields: ['a'], recipient: 'nobody' } }, 404, 'KEY_NOT_FOUND'],
        [{ key: 'no-such-key' }, 404, 'KEY_NOT_FOUND'],
        [{ key: aes }, 400, 'INCOMPATIBLE_KEY'],
      ];
      for (const [o, status, code] of signCases) {
        expect(failure(await sign(o)), JSON.stringify(o)).toEqual({ status, code });
      }
      const validate = (o: Record<string, unknown>) => rest.call('POST', '/v1/fspiop/validate', { headers: { 'fspiop-source': 'x' }, body: '{}', ...o });
      const validateCases: Array<[Record<string, unknown>, number, string]> = [
        [{ headers: undefined }, 400, 'INVALID_ARGUMENT'],
        [{ headers: { 'fspiop-source': 1 } }, 400, 'INVALID_ARGUMENT'],
        [{ headers: 'fspiop-source: x' }, 400, 'INVALID_ARGUMENT'],
        [{ body: { a: 1 } }, 400, 'INVALID_ARGUMENT'],
        [{ decryptWith: 'bad name!' }, 400, 'INVALID_ARGUMENT'],
        [{ extra: 1 }, 400, 'INVALID_ARGUMENT'],
      ];
      for (const [o, status, code] of validateCases) {
        expect(failure(await validate(o)), JSON.stringify(o)).toEqual({ status, code });
      }
      const tooBig = await rest.call('POST', '/v1/fspiop/validate', { headers: {}, body: 'x'.repeat(70 * 1024) });
      expect(failure(tooBig)).toEqual({ status: 413, code: 'PAYLOAD_TOO_LARGE' });
    });

    it('logs one line per request with the signing key name, never a body or signature', async () => {
      const r = await rest.call('POST', '/v1/fspiop/sign', { key: ours.ES256.key, method: 'put', uri: '/transfers/7', source: ours.ES256.source, body: { secretNote: 'NEVER-LOGGED-4111' } });
      expect(r.status).toBe(200);
      await rest.call('POST', '/v1/fspiop/validate', { headers: { 'fspiop-source': ours.ES256.source, ...r.body.headers }, body: r.body.body });
      expect(rest.logs.filter((l) => l.route === '/v1/fspiop/sign').at(-1)).toMatchObject({ status: 200, keyName: ours.ES256.key });
      expect(rest.logs.filter((l) => l.route === '/v1/fspiop/validate').at(-1)).toMatchObject({ status: 200 });
      expect(rest.logText()).not.toContain('NEVER-LOGGED-4111');
      expect(rest.logText()).not.toContain(JSON.parse(r.body.headers['fspiop-signature']).signature);
    });
  });
}

describe(`FSPIOP field decryption on ${softHsmWithoutRawRsa.label}`, () => {
  it('RSA-OAEP-256 is not offered, and decryptWith is refused with UNSUPPORTED_BY_BACKEND rather than failing the fields', async () => {
    const rest = await startRest(softHsmWithoutRawRsa, { maxRequestBytes: 64 * 1024, limits: { maxDataBytes: 32 * 1024, maxRandomBytes: 256 } });
    try {
      expect((await rest.call('GET', '/v1/capabilities')).body.encrypt).not.toContain('RSA_OAEP_SHA256');
      const signer = freshName('sig');
      const enc = freshName('enc');
      expect((await rest.call('POST', '/v1/keys', { name: signer, type: 'EC_P256' })).status).toBe(201);
      const created = await rest.call('POST', '/v1/keys', { name: enc, type: 'RSA_2048', purpose: 'encrypt' });
      expect(created.status).toBe(201);
      const signerPem = (await rest.call('GET', `/v1/keys/${signer}`)).body.versions[0].publicKeyPem;
      expect((await rest.call('POST', '/v1/fspiop/participants', { id: 'sender', publicKeyPem: signerPem })).status).toBe(201);
      expect((await rest.call('POST', '/v1/fspiop/participants', { id: 'receiver', publicKeyPem: created.body.versions[0].publicKeyPem, use: 'enc' })).status).toBe(201);
      const r = await rest.call('POST', '/v1/fspiop/sign', {
        key: signer, method: 'post', uri: '/transfers', source: 'sender', body: { payer: { pan: '4111111111111111' } },
        encryptFields: { fields: ['payer.pan'], recipient: 'receiver' },
      });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      const headers = { 'fspiop-source': 'sender', ...r.body.headers };
      expect((await rest.call('POST', '/v1/fspiop/validate', { headers, body: r.body.body })).body).toMatchObject({ valid: true });
      expect(failure(await rest.call('POST', '/v1/fspiop/validate', { headers, body: r.body.body, decryptWith: enc }))).toEqual({ status: 400, code: 'UNSUPPORTED_BY_BACKEND' });
    } finally {
      await rest.close();
    }
  });
});

describe('startApp wiring of the fspiop configuration', () => {
  it('defaults need no config; configured participants validate; the participants directory is watched and written', async () => {
    const defaults = loadServiceConfig({ env: {} });
    expect(defaults.fspiop).toEqual({ participants: [], allowedAlgorithms: ['RS256', 'RS384', 'RS512', 'ES256'], acceptCanonicalBody: true, rescanIntervalMs: 60_000 });

    const soft = await createSoftwareBackendConfig();
    const dir = await mkdtemp(join(tmpdir(), 'hsmb-participants-'));
    const configured = generateTestKeyPair('EC');
    const dropped = generateTestKeyPair('RSA');
    const file = join(soft.dir, 'config.json');
    await writeFile(file, JSON.stringify({
      rest: { port: 0 },
      grpc: { port: 0 },
      ops: { port: 0 },
      log: { level: 'silent' },
      backend: { type: 'software', software: soft.config },
      fspiop: { participants: [{ id: 'configured-fsp', keys: [configured.publicPem] }], participantsDir: dir, allowedAlgorithms: ['ES256', 'RS256'] },
    }));
    const app = await startApp(loadServiceConfig({ file, env: {} }), silentLogger);
    const call = async (method: string, path: string, body?: unknown) => {
      const r = await fetch(`${app.restUrl}${path}`, { method, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }) });
      return { status: r.status, body: r.status === 204 ? undefined : ((await r.json()) as any) };
    };
    try {
      const req = { method: 'put', uri: '/parties/MSISDN/123', headers: { 'fspiop-source': 'configured-fsp' } as Record<string, string>, body: { party: { name: 'x' } } };
      referenceSigner(configured.privatePem).sign(req);
      expect((await call('POST', '/v1/fspiop/validate', { headers: req.headers, body: req.body })).body).toMatchObject({ valid: true, participant: 'configured-fsp' });

      // A PEM dropped into the directory is picked up without a restart.
      await writeFile(join(dir, 'dropped-fsp.pem'), dropped.publicPem);
      await eventually(async () => (await call('GET', '/v1/fspiop/participants')).body.participants.some((p: { id: string }) => p.id === 'dropped-fsp'), 5000, 'the dropped key to load');
      // A key added through the API is written to the directory.
      const added = await call('POST', '/v1/fspiop/participants', { id: 'api-fsp', publicKeyPem: generateTestKeyPair('EC').publicPem });
      expect(added.body).toMatchObject({ participant: 'api-fsp', source: 'directory' });
      expect(await readdir(join(dir, 'api-fsp'))).toEqual([`${added.body.keyId}.pem`]);
      // A configuration key cannot be removed through the API.
      const configuredId = await thumbprint(configured.publicPem);
      expect(await call('DELETE', `/v1/fspiop/participants/configured-fsp/keys/${configuredId}`)).toMatchObject({ status: 400, body: { error: { code: 'INVALID_ARGUMENT' } } });
      // The service's JWKS and JWS routes are there too.
      expect((await call('GET', '/.well-known/jwks.json')).body).toEqual({ keys: [] });
    } finally {
      await app.close();
      await rm(dir, { recursive: true, force: true });
      await soft.cleanup();
    }
  });
});
