/**
 * What the reference client's JwsSigner signs is accepted by our validate; the header presence rules give
 * the reference validator's answers; rotation (several keys per participant), the algorithm policy, the
 * canonical-body option and malformed headers. On each backend: validation itself uses only the
 * participants' public keys, and the backend must not change that.
 */
import { createHmac, sign as nodeSign } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FspiopService } from '../../src/fspiop/fspiopService.js';
import { ParticipantRegistry } from '../../src/fspiop/participants.js';
import type { KeyService } from '../../src/operations/keyService.js';
import {
  backendsUnderTest,
  generateTestKeyPair,
  keyServiceOn,
  referenceAccepts,
  referenceSigner,
  safeStableStringify,
  silentLogger,
  transferBody,
  type TestKeyPair,
} from './support.js';

const rsa = generateTestKeyPair('RSA');
const ec = generateTestKeyPair('EC');
const date = 'Tue, 24 Nov 2026 21:30:00 GMT';

interface Wire { headers: Record<string, string>; body: string }

/** A request signed by the reference JwsSigner, as it goes on the wire. */
function referenceSigned(pair: TestKeyPair, source: string, extra: Record<string, string> = {}, body: object = transferBody()): Wire {
  const req = { method: 'put', uri: 'http://switch:3000/transfers/0a3c5d2e', headers: { 'fspiop-source': source, ...extra }, body: body as unknown };
  referenceSigner(pair.privatePem).sign(req);
  return { headers: req.headers, body: req.body as string };
}

const thumbprint = (pair: TestKeyPair) => calculateJwkThumbprint(pair.publicKey.export({ format: 'jwk' }) as never);

for (const target of backendsUnderTest) describe(`the reference JwsSigner signs, we validate (${target.label})`, () => {
  let keyService: KeyService;
  let cleanup: () => Promise<void>;
  let registry: ParticipantRegistry;
  let service: FspiopService;

  beforeAll(async () => {
    const opened = await target.open();
    cleanup = opened.cleanup;
    keyService = keyServiceOn(opened.backend);
    registry = await ParticipantRegistry.open({
      logger: silentLogger,
      participants: [
        { id: 'dfsp-rs', keys: [rsa.publicPem] },
        { id: 'dfsp-es', keys: [ec.publicPem] },
      ],
    });
    service = new FspiopService({ keyService, registry });
  });
  afterAll(async () => {
    await registry?.close();
    await cleanup?.();
  });

  const variants: [string, Record<string, string>][] = [
    ['no destination, no date', {}],
    ['destination', { 'fspiop-destination': 'payeefsp' }],
    ['date', { date }],
    ['destination and date', { 'fspiop-destination': 'payeefsp', date }],
  ];
  for (const [alg, pair, source] of [['RS256', rsa, 'dfsp-rs'], ['ES256', ec, 'dfsp-es']] as const) {
    for (const [label, extra] of variants) {
      it(`${alg}, ${label}`, async () => {
        const wire = referenceSigned(pair, source, extra);
        expect(await service.validate(wire)).toEqual({ valid: true, participant: source, keyId: await thumbprint(pair), algorithm: alg });
      });
    }

    it(`${alg}: tampering with any protected header or the body is refused`, async () => {
      const changes: ((w: Wire) => void)[] = [
        (w) => { w.headers['fspiop-uri'] = '/transfers/x'; },
        (w) => { w.headers['fspiop-http-method'] = 'POST'; },
        (w) => { w.headers['fspiop-destination'] = 'otherfsp'; },
        (w) => { delete w.headers['fspiop-destination']; },
        (w) => { w.headers.date = 'Wed, 25 Nov 2026 21:30:00 GMT'; },
        (w) => { delete w.headers.date; },
        (w) => { w.body = w.body.replace('123.45', '923.45'); },
      ];
      for (const [i, change] of changes.entries()) {
        const wire = referenceSigned(pair, source, { 'fspiop-destination': 'payeefsp', date });
        change(wire);
        const ours = await service.validate(wire);
        expect(ours, `change ${i}`).toMatchObject({ valid: false, errorCode: '3105' });
        expect(referenceAccepts({ [source]: pair.publicPem }, { headers: wire.headers, body: JSON.parse(wire.body) }), `change ${i}`).toBe(false);
      }
    });
  }

  it('header presence rules give the reference validator\'s answer, both ways (an unsigned Date passes, empty counts as absent)', async () => {
    const body = safeStableStringify(transferBody());
    /** A request whose protected header holds `members` (beyond the mandatory ones), with `http` headers added. */
    const request = (members: Record<string, unknown>, http: Record<string, string>) => {
      const protectedHeader = Buffer.from(JSON.stringify({ alg: 'RS256', 'FSPIOP-URI': '/transfers/1', 'FSPIOP-HTTP-Method': 'PUT', 'FSPIOP-Source': 'dfsp-rs', ...members })).toString('base64url');
      const signature = nodeSign('sha256', Buffer.from(`${protectedHeader}.${Buffer.from(body).toString('base64url')}`), rsa.privatePem).toString('base64url');
      return {
        headers: { 'fspiop-source': 'dfsp-rs', 'fspiop-uri': '/transfers/1', 'fspiop-http-method': 'PUT', 'fspiop-signature': JSON.stringify({ protectedHeader, signature }), ...http },
        body,
      };
    };
    const other = 'Wed, 25 Nov 2026 21:30:00 GMT';
    const cases: [string, Record<string, unknown>, Record<string, string>, boolean][] = [
      ['Date sent, not signed', {}, { date }, true],
      ['Date signed and sent', { Date: date }, { date }, true],
      ['Date signed, not sent', { Date: date }, {}, false],
      ['Date signed, sent empty', { Date: date }, { date: '' }, false],
      ['Date signed, another sent', { Date: date }, { date: other }, false],
      ['empty Date signed, Date sent', { Date: '' }, { date }, true],
      ['destination sent empty, not signed', {}, { 'fspiop-destination': '' }, true],
      ['destination sent, not signed', {}, { 'fspiop-destination': 'payeefsp' }, false],
      ['destination signed and sent', { 'FSPIOP-Destination': 'payeefsp' }, { 'fspiop-destination': 'payeefsp' }, true],
      ['destination signed, not sent', { 'FSPIOP-Destination': 'payeefsp' }, {}, false],
      ['destination signed, sent empty', { 'FSPIOP-Destination': 'payeefsp' }, { 'fspiop-destination': '' }, false],
      ['empty destination signed, none sent', { 'FSPIOP-Destination': '' }, {}, true],
      ['empty destination signed, one sent', { 'FSPIOP-Destination': '' }, { 'fspiop-destination': 'payeefsp' }, false],
      ['destination signed, another sent', { 'FSPIOP-Destination': 'payeefsp' }, { 'fspiop-destination': 'otherfsp' }, false],
    ];
    for (const [label, members, http, accepted] of cases) {
      const req = request(members, http);
      expect(referenceAccepts({ 'dfsp-rs': rsa.publicPem }, { headers: req.headers, body: JSON.parse(body) }), `reference: ${label}`).toBe(accepted);
      expect(await service.validate(req), label).toMatchObject(accepted ? { valid: true, participant: 'dfsp-rs' } : { valid: false, errorCode: '3105' });
    }
  });

  it('byte fidelity: the received bytes are verified as they are, the canonical form as well by default', async () => {
    // A signer that signs the exact bytes it sends (pretty-printed, unsorted): JWS-correct, and accepted.
    const text = JSON.stringify(transferBody(), null, 2);
    const protectedHeader = Buffer.from(JSON.stringify({ alg: 'RS256', 'FSPIOP-URI': '/transfers/1', 'FSPIOP-HTTP-Method': 'PUT', 'FSPIOP-Source': 'dfsp-rs' })).toString('base64url');
    const signature = nodeSign('sha256', Buffer.from(`${protectedHeader}.${Buffer.from(text).toString('base64url')}`), rsa.privatePem).toString('base64url');
    const headers = { 'fspiop-source': 'dfsp-rs', 'fspiop-uri': '/transfers/1', 'fspiop-http-method': 'PUT', 'fspiop-signature': JSON.stringify({ signature, protectedHeader }) };
    expect(await service.validate({ headers, body: text })).toMatchObject({ valid: true });
    // The reference validator only ever verifies the canonical form: the trap of FIELD-NOTES 4.
    expect(referenceAccepts({ 'dfsp-rs': rsa.publicPem }, { headers, body: JSON.parse(text) })).toBe(false);

    // The reference signer signs the canonical form; a proxy that pretty-prints the body changes the bytes.
    const wire = referenceSigned(rsa, 'dfsp-rs');
    const reformatted = JSON.stringify(JSON.parse(wire.body), null, 1);
    expect(await service.validate({ headers: wire.headers, body: reformatted })).toMatchObject({ valid: true });
    const strict = new FspiopService({ keyService, registry, acceptCanonicalBody: false });
    expect(await strict.validate({ headers: wire.headers, body: reformatted })).toMatchObject({ valid: false, reason: expect.stringContaining('does not verify') });
    expect(await strict.validate(wire)).toMatchObject({ valid: true });
  });

  it('allowed algorithms are configurable; HS256 and none are never accepted', async () => {
    const rsOnly = new FspiopService({ keyService, registry, allowedAlgorithms: ['RS256'] });
    expect(await rsOnly.validate(referenceSigned(ec, 'dfsp-es'))).toMatchObject({ valid: false, reason: expect.stringContaining('alg "ES256" is not allowed') });
    expect(await rsOnly.validate(referenceSigned(rsa, 'dfsp-rs'))).toMatchObject({ valid: true });

    // The classic confusion: HMAC with the public key as the secret.
    const wire = referenceSigned(rsa, 'dfsp-rs');
    const sig = JSON.parse(wire.headers['fspiop-signature']!) as { protectedHeader: string };
    for (const alg of ['HS256', 'none', 'PS256']) {
      const header = { ...(JSON.parse(Buffer.from(sig.protectedHeader, 'base64url').toString()) as object), alg };
      const protectedHeader = Buffer.from(JSON.stringify(header)).toString('base64url');
      const mac = createHmac('sha256', rsa.publicPem).update(`${protectedHeader}.${Buffer.from(wire.body).toString('base64url')}`).digest('base64url');
      const forged = { ...wire, headers: { ...wire.headers, 'fspiop-signature': JSON.stringify({ signature: mac, protectedHeader }) } };
      expect(await service.validate(forged)).toMatchObject({ valid: false, reason: expect.stringContaining('is not allowed') });
    }
  });

  it('a key of the other family is not tried: an ES256 header with only an RSA key registered is refused', async () => {
    const wire = referenceSigned(ec, 'dfsp-rs');
    expect(await service.validate(wire)).toMatchObject({ valid: false, reason: 'participant dfsp-rs has no registered EC signature key' });
  });

  it('malformed or missing parts get a clear reason, never an exception', async () => {
    const good = referenceSigned(rsa, 'dfsp-rs', { 'fspiop-destination': 'payeefsp' });
    const sig = JSON.parse(good.headers['fspiop-signature']!) as { signature: string; protectedHeader: string };
    const withHeaders = (h: Record<string, string | undefined>, body = good.body) => ({
      headers: Object.fromEntries(Object.entries({ ...good.headers, ...h }).filter(([, v]) => v !== undefined)) as Record<string, string>,
      body,
    });
    const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const cases: [Record<string, string | undefined>, string, string?][] = [
      [{ 'fspiop-signature': undefined }, 'FSPIOP-Signature header is missing'],
      [{ 'fspiop-signature': 'not json' }, 'not JSON'],
      [{ 'fspiop-signature': 'null' }, 'must hold base64url'],
      [{ 'fspiop-signature': JSON.stringify({ signature: sig.signature }) }, 'must hold base64url'],
      [{ 'fspiop-signature': JSON.stringify({ ...sig, signature: 'a+b/' }) }, 'must hold base64url'],
      // Non-canonical base64url (stray bits in the last character) decodes to the same bytes in lenient decoders: refused.
      [{ 'fspiop-signature': JSON.stringify({ ...sig, signature: sig.signature.slice(0, -1) + ({ A: 'B', Q: 'R', g: 'h', w: 'x' } as Record<string, string>)[sig.signature.at(-1)!] }) }, 'must hold base64url'],
      [{ 'fspiop-signature': JSON.stringify({ ...sig, signature: `${sig.signature}==` }) }, 'must hold base64url'],
      [{ 'fspiop-signature': JSON.stringify({ ...sig, protectedHeader: enc('x').slice(0, 3) + '!' }) }, 'must hold base64url'],
      [{ 'fspiop-signature': JSON.stringify({ ...sig, protectedHeader: Buffer.from('{not json').toString('base64url') }) }, 'not base64url JSON'],
      [{ 'fspiop-signature': JSON.stringify({ ...sig, protectedHeader: enc([1]) }) }, 'not a JSON object'],
      [{ 'fspiop-signature': JSON.stringify({ ...sig, protectedHeader: enc({ 'FSPIOP-URI': '/transfers/0a3c5d2e' }) }) }, 'has no alg'],
      [{ 'fspiop-signature': JSON.stringify({ ...sig, protectedHeader: enc({ alg: 'RS256', crit: ['b64'], b64: false }) }) }, 'JWS extension'],
      [{ 'fspiop-signature': JSON.stringify({ ...sig, protectedHeader: enc({ alg: 'RS256' }) }) }, 'has no FSPIOP-URI'],
      [{ 'fspiop-signature': 'x'.repeat(20000) }, 'too long'],
      [{ 'fspiop-uri': undefined }, 'FSPIOP-URI header is missing'],
      [{ 'fspiop-http-method': undefined }, 'FSPIOP-HTTP-Method header is missing'],
      [{ 'fspiop-source': undefined }, 'FSPIOP-Source header is missing'],
      [{ 'fspiop-source': 'unknownfsp' }, 'does not match'],
      [{}, 'no body', ''],
    ];
    for (const [h, reason, body] of cases) {
      const result = await service.validate(withHeaders(h, body));
      expect(result, reason).toMatchObject({ valid: false, errorCode: '3105', reason: expect.stringContaining(reason) });
    }
    // A repeated header (as Node gives it for duplicates) is refused, not guessed at.
    expect(await service.validate({ headers: { ...good.headers, 'FSPIOP-Source': 'dfsp-rs' }, body: good.body })).toMatchObject({ valid: false, reason: expect.stringContaining('repeated') });
    expect(await service.validate({ headers: { ...good.headers, 'fspiop-uri': ['/a', '/b'] }, body: good.body })).toMatchObject({ valid: false, reason: expect.stringContaining('repeated') });
    // An FSPIOP-Source that cannot be a participant id is refused before any lookup, and not echoed.
    const odd = referenceSigned(rsa, 'not a participant id, and long: ' + 'x'.repeat(200));
    expect(await service.validate(odd)).toEqual({ valid: false, errorCode: '3105', reason: 'FSPIOP-Source is not a valid participant id' });
    // A participant with no keys at all.
    const stranger = referenceSigned(rsa, 'strangerfsp');
    expect(await service.validate(stranger)).toMatchObject({ valid: false, reason: 'participant strangerfsp has no registered RSA signature key' });
  });
});

for (const target of backendsUnderTest) describe(`several active keys per participant (rotation overlap, ${target.label})`, () => {
  it('each active key validates, the key used is reported, and a removed key no longer validates', async () => {
    const oldKey = generateTestKeyPair('RSA');
    const newKey = generateTestKeyPair('RSA');
    const ecKey = generateTestKeyPair('EC');
    const registry = await ParticipantRegistry.open({ logger: silentLogger, participants: [{ id: 'rotfsp', keys: [oldKey.publicPem] }] });
    const opened = await target.open();
    try {
      const service = new FspiopService({ keyService: keyServiceOn(opened.backend), registry });
      const added = await registry.addKey('rotfsp', newKey.publicPem);
      await registry.addKey('rotfsp', ecKey.publicPem);
      expect(registry.persistent).toBe(false);
      expect(registry.keysFor('rotfsp').map((k) => k.keyId)).toEqual([await thumbprint(oldKey), await thumbprint(newKey), await thumbprint(ecKey)]);
      for (const pair of [oldKey, newKey, ecKey]) {
        expect(await service.validate(referenceSigned(pair, 'rotfsp'))).toMatchObject({ valid: true, keyId: await thumbprint(pair) });
      }
      await registry.deleteKey('rotfsp', added.keyId);
      expect(await service.validate(referenceSigned(newKey, 'rotfsp'))).toMatchObject({ valid: false });
      expect(await service.validate(referenceSigned(oldKey, 'rotfsp'))).toMatchObject({ valid: true });
      // The configuration's key can only go through the configuration.
      await expect(registry.deleteKey('rotfsp', await thumbprint(oldKey))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    } finally {
      await registry.close();
      await opened.cleanup();
    }
  });
});
