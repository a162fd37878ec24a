/**
 * What we sign with keys in the backend (software and SoftHSM) is accepted by the reference client's
 * JwsValidator and by our validate; tampering with any protected header or the body is refused by both,
 * and the header presence rules (an unsigned Date, empty headers) give the same answer in both.
 */
import { calculateJwkThumbprint } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FspiopService } from '../../src/fspiop/fspiopService.js';
import { ParticipantRegistry } from '../../src/fspiop/participants.js';
import type { KeyService } from '../../src/operations/keyService.js';
import {
  backendsUnderTest,
  keyServiceOn,
  publicKeyOfPem,
  publicPemOf,
  generateTestKeyPair,
  referenceAccepts,
  referenceSigner,
  safeStableStringify,
  silentLogger,
  transferBody,
} from './support.js';

type Alg = 'RS256' | 'ES256';
const referencePair = generateTestKeyPair('EC');
const variants: { label: string; destination?: string; date?: string }[] = [
  { label: 'no destination, no date' },
  { label: 'destination', destination: 'payeefsp' },
  { label: 'date', date: 'Tue, 24 Nov 2026 21:30:00 GMT' },
  { label: 'destination and date', destination: 'payeefsp', date: 'Tue, 24 Nov 2026 21:30:00 GMT' },
];

for (const target of backendsUnderTest) {
  describe(`we sign with ${target.label} keys, both validators check`, () => {
    let cleanup: () => Promise<void>;
    let keyService: KeyService;
    let registry: ParticipantRegistry;
    let service: FspiopService;
    const key: Record<Alg, string> = { RS256: 'fspiop-rsa', ES256: 'fspiop-ec' };
    const source: Record<Alg, string> = { RS256: 'payerfsp-rs', ES256: 'payerfsp-es' };
    const pem = {} as Record<Alg, string>;
    const keyId = {} as Record<Alg, string>;

    beforeAll(async () => {
      const opened = await target.open();
      cleanup = opened.cleanup;
      keyService = keyServiceOn(opened.backend);
      await keyService.createKey({ name: key.RS256, type: 'RSA_2048' });
      await keyService.createKey({ name: key.ES256, type: 'EC_P256' });
      for (const alg of ['RS256', 'ES256'] as const) {
        pem[alg] = await publicPemOf(keyService, key[alg]);
        keyId[alg] = await calculateJwkThumbprint(publicKeyOfPem(pem[alg]).export({ format: 'jwk' }) as never);
      }
      registry = await ParticipantRegistry.open({
        logger: silentLogger,
        participants: [
          { id: source.RS256, keys: [pem.RS256] },
          { id: source.ES256, keys: [pem.ES256] },
          // Same keys under other ids, so that a swapped FSPIOP-Source fails on the header check itself.
          { id: 'otherfsp-rs', keys: [pem.RS256] },
          { id: 'otherfsp-es', keys: [pem.ES256] },
        ],
      });
      service = new FspiopService({ keyService, registry });
    });
    afterAll(async () => {
      await registry?.close();
      await cleanup?.();
    });

    /** Signs a transfer PUT and returns the HTTP request as it would go on the wire. */
    const signed = async (alg: Alg, v: { destination?: string; date?: string }) => {
      const r = await service.sign({
        key: key[alg],
        method: 'put',
        uri: 'https://switch.example:3000/transfers/0a3c5d2e-7f3b-4a4e-9b8e-6f0f3f1b2c3d',
        source: source[alg],
        ...v,
        body: transferBody(),
      });
      const headers: Record<string, string> = {
        'content-type': 'application/vnd.interoperability.transfers+json;version=1.1',
        'fspiop-source': source[alg],
        ...(v.destination ? { 'fspiop-destination': v.destination } : {}),
        ...(v.date ? { date: v.date } : {}),
        ...r.headers,
      };
      return { r, headers, body: r.body };
    };
    const refKeys = () => ({ [source.RS256]: pem.RS256, [source.ES256]: pem.ES256, 'otherfsp-rs': pem.RS256, 'otherfsp-es': pem.ES256 });
    /** The reference validator gets the parsed body, as Mojaloop services hand it over. */
    const bothAccept = async (headers: Record<string, string>, body: string) => {
      const reference = referenceAccepts(refKeys(), { headers, body: JSON.parse(body) });
      const ours = await service.validate({ headers, body });
      return { reference, ours };
    };

    for (const alg of ['RS256', 'ES256'] as const) {
      for (const v of variants) {
        it(`${alg}, ${v.label}: accepted by the reference JwsValidator and by us`, async () => {
          const { r, headers, body } = await signed(alg, v);
          expect(body).toBe(safeStableStringify(transferBody()));
          const sig = JSON.parse(r.signatureHeader) as { signature: string; protectedHeader: string };
          // The same member order as the reference signer's header (it serialises with sorted keys).
          const refReq = { method: 'put', uri: '/transfers/1', headers: { 'fspiop-source': 'x' } as Record<string, string>, body: { a: 1 } };
          referenceSigner(referencePair.privatePem).sign(refReq);
          expect(Object.keys(sig)).toEqual(Object.keys(JSON.parse(refReq.headers['fspiop-signature']!) as object));
          const header = JSON.parse(Buffer.from(sig.protectedHeader, 'base64url').toString()) as Record<string, string>;
          expect(Object.keys(header)).toEqual([
            'alg', 'FSPIOP-URI', 'FSPIOP-HTTP-Method', 'FSPIOP-Source',
            ...('destination' in v ? ['FSPIOP-Destination'] : []),
            ...('date' in v ? ['Date'] : []),
          ]);
          expect(header).toMatchObject({ alg, 'FSPIOP-URI': '/transfers/0a3c5d2e-7f3b-4a4e-9b8e-6f0f3f1b2c3d', 'FSPIOP-HTTP-Method': 'PUT', 'FSPIOP-Source': source[alg] });
          expect(r.headers['fspiop-uri']).toBe(header['FSPIOP-URI']);
          expect(r.headers['fspiop-http-method']).toBe('PUT');

          const { reference, ours } = await bothAccept(headers, body);
          expect(reference).toBe(true);
          expect(ours).toEqual({ valid: true, participant: source[alg], keyId: keyId[alg], algorithm: alg });
          // Header names in any case, and the body as a Buffer.
          const upper = Object.fromEntries(Object.entries(headers).map(([k, val]) => [k.toUpperCase(), val]));
          expect(await service.validate({ headers: upper, body: Buffer.from(body) })).toMatchObject({ valid: true });
        });
      }

      describe(`${alg}: tampering is refused by both`, () => {
        const full = { destination: 'payeefsp', date: 'Tue, 24 Nov 2026 21:30:00 GMT' };
        const headerChanges: [string, (h: Record<string, string>) => void][] = [
          ['FSPIOP-URI', (h) => { h['fspiop-uri'] = '/transfers/another-id'; }],
          ['FSPIOP-HTTP-Method', (h) => { h['fspiop-http-method'] = 'POST'; }],
          ['FSPIOP-Source', (h) => { h['fspiop-source'] = alg === 'RS256' ? 'otherfsp-rs' : 'otherfsp-es'; }],
          ['FSPIOP-Destination changed', (h) => { h['fspiop-destination'] = 'otherfsp'; }],
          ['FSPIOP-Destination removed', (h) => { delete h['fspiop-destination']; }],
          ['Date changed', (h) => { h.date = 'Wed, 25 Nov 2026 21:30:00 GMT'; }],
          ['Date removed', (h) => { delete h.date; }],
        ];
        for (const [what, change] of headerChanges) {
          it(`HTTP header: ${what}`, async () => {
            const { headers, body } = await signed(alg, full);
            change(headers);
            const { reference, ours } = await bothAccept(headers, body);
            expect(reference).toBe(false);
            expect(ours).toMatchObject({ valid: false, errorCode: '3105' });
          });
        }

        const memberChanges: [string, string, string][] = [
          ['FSPIOP-URI', 'fspiop-uri', '/transfers/another-id'],
          ['FSPIOP-HTTP-Method', 'fspiop-http-method', 'POST'],
          ['FSPIOP-Source', 'fspiop-source', alg === 'RS256' ? 'otherfsp-rs' : 'otherfsp-es'],
          ['FSPIOP-Destination', 'fspiop-destination', 'otherfsp'],
          ['Date', 'date', 'Wed, 25 Nov 2026 21:30:00 GMT'],
        ];
        for (const [member, httpName, value] of memberChanges) {
          it(`protected header member ${member} rewritten (HTTP header to match)`, async () => {
            const { headers, body } = await signed(alg, full);
            const sig = JSON.parse(headers['fspiop-signature']!) as { signature: string; protectedHeader: string };
            const header = JSON.parse(Buffer.from(sig.protectedHeader, 'base64url').toString()) as Record<string, string>;
            header[member] = value;
            headers[httpName] = value;
            headers['fspiop-signature'] = JSON.stringify({ ...sig, protectedHeader: Buffer.from(JSON.stringify(header)).toString('base64url') });
            const { reference, ours } = await bothAccept(headers, body);
            expect(reference).toBe(false);
            expect(ours).toMatchObject({ valid: false, errorCode: '3105', reason: expect.stringContaining('does not verify') });
          });
        }

        it('body: one amount digit changed', async () => {
          const { headers, body } = await signed(alg, full);
          const tampered = body.replace('"amount":"123.45"', '"amount":"923.45"');
          expect(tampered).not.toBe(body);
          const { reference, ours } = await bothAccept(headers, tampered);
          expect(reference).toBe(false);
          expect(ours).toMatchObject({ valid: false, reason: expect.stringContaining('does not verify') });
        });

        it('signature: one bit flipped', async () => {
          const { headers, body } = await signed(alg, full);
          const sig = JSON.parse(headers['fspiop-signature']!) as { signature: string; protectedHeader: string };
          const raw = Buffer.from(sig.signature, 'base64url');
          raw[5]! ^= 1;
          headers['fspiop-signature'] = JSON.stringify({ ...sig, signature: raw.toString('base64url') });
          const { reference, ours } = await bothAccept(headers, body);
          expect(reference).toBe(false);
          expect(ours).toMatchObject({ valid: false });
        });

        it('an HTTP FSPIOP-Destination the signature does not cover is refused by both', async () => {
          const { headers, body } = await signed(alg, {});
          headers['fspiop-destination'] = 'payeefsp';
          const { reference, ours } = await bothAccept(headers, body);
          expect(reference).toBe(false);
          expect(ours).toMatchObject({ valid: false, reason: expect.stringContaining('FSPIOP-Destination') });
        });

        it('an HTTP Date the signature does not cover is accepted by both (a proxy may add one)', async () => {
          const { headers, body } = await signed(alg, {});
          headers.date = 'Tue, 24 Nov 2026 21:30:00 GMT';
          const { reference, ours } = await bothAccept(headers, body);
          expect(reference).toBe(true);
          expect(ours).toMatchObject({ valid: true });
        });

        it('empty HTTP headers count as absent for both', async () => {
          const unsigned = await signed(alg, {});
          const { reference, ours } = await bothAccept({ ...unsigned.headers, 'fspiop-destination': '', date: '' }, unsigned.body);
          expect(reference).toBe(true);
          expect(ours).toMatchObject({ valid: true });
          // Signed values, sent empty: missing, so refused by both.
          for (const name of ['fspiop-destination', 'date']) {
            const { headers, body } = await signed(alg, full);
            headers[name] = '';
            const both = await bothAccept(headers, body);
            expect(both.reference, name).toBe(false);
            expect(both.ours, name).toMatchObject({ valid: false, reason: expect.stringContaining('request has no') });
          }
        });
      });
    }

    it('sign refuses keys FSPIOP cannot use and bad requests with clear errors', async () => {
      await keyService.createKey({ name: 'fspiop-aes', type: 'AES_256' });
      const base = { key: key.RS256, method: 'PUT', uri: '/transfers/1', source: 'payerfsp', body: { a: 1 } };
      await expect(service.sign({ ...base, key: 'fspiop-aes' })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
      await expect(service.sign({ ...base, key: 'no-such-key' })).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
      await expect(service.sign({ ...base, method: 'PU T' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(service.sign({ ...base, uri: 'no-path' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(service.sign({ ...base, source: '../etc' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(service.sign({ ...base, date: 'x\r\nInjected: 1' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(service.sign({ ...base, body: '{"a":' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(service.sign({ ...base, encryptFields: { fields: ['a'], recipient: 'nobody' } })).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
      // A body nested 100,000 levels deep is refused before anything walks it (field encryption would clone it).
      const deep = JSON.parse('{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000)) as object;
      for (const body of [deep, '['.repeat(100_000) + ']'.repeat(100_000)]) {
        await expect(service.sign({ ...base, body })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('nested too deeply') });
        await expect(service.sign({ ...base, body, encryptFields: { fields: ['a'], recipient: 'nobody' } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      }
    });

    it('a JSON text body is signed in its canonical form', async () => {
      const text = '{ "b": 1,\n  "a": [ 1, 2 ] }';
      const r = await service.sign({ key: key.ES256, method: 'post', uri: '/quotes', source: source.ES256, body: text });
      expect(r.body).toBe('{"a":[1,2],"b":1}');
      const headers = { 'fspiop-source': source.ES256, ...r.headers };
      expect(referenceAccepts({ [source.ES256]: pem.ES256 }, { headers, body: JSON.parse(r.body) })).toBe(true);
      expect(await service.validate({ headers, body: r.body })).toMatchObject({ valid: true });
    });
  });
}
