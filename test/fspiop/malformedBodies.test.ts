/**
 * validate answers every message, however malformed, with valid or a 3105 refusal, and never throws:
 * bodies nested 100,000 levels deep, huge arrays and objects, a few hundred fuzzed bodies and headers
 * (with and without decryptWith). On the canonical-body fallback a body with a duplicate member name is
 * refused, and names that only look alike (escapes, strings holding quotes) are not mistaken for one.
 */
import { createPublicKey, randomBytes, sign as nodeSign } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH } from '../../src/fspiop/canonicalJson.js';
import { encryptFields } from '../../src/fspiop/fieldEncryption.js';
import { FspiopService, type FspiopValidation } from '../../src/fspiop/fspiopService.js';
import { ParticipantRegistry } from '../../src/fspiop/participants.js';
import type { KeyService } from '../../src/operations/keyService.js';
import { backendsUnderTest, generateTestKeyPair, keyServiceOn, publicPemOf, safeStableStringify, silentLogger, transferBody } from './support.js';

const rsa = generateTestKeyPair('RSA');
const ec = generateTestKeyPair('EC');
const b64u = (data: Buffer | string) => Buffer.from(data).toString('base64url');

/** Deterministic PRNG (mulberry32) so that a failure reproduces. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Message { headers: Record<string, string | string[]>; body: string | Buffer }

/**
 * A request from dfsp-rs with a real RS256 signature over `signedBody` (the bytes sent by default), and
 * `members` added to the protected header; `http` overrides or adds HTTP headers.
 */
function message(signedBody: string, options: { sent?: string | Buffer; members?: Record<string, unknown>; http?: Record<string, string> } = {}): Message {
  const protectedHeader = b64u(JSON.stringify({ alg: 'RS256', 'FSPIOP-URI': '/transfers', 'FSPIOP-HTTP-Method': 'POST', 'FSPIOP-Source': 'dfsp-rs', ...options.members }));
  const signature = b64u(nodeSign('sha256', Buffer.from(`${protectedHeader}.${b64u(signedBody)}`), rsa.privatePem));
  return {
    headers: {
      'fspiop-source': 'dfsp-rs',
      'fspiop-uri': '/transfers',
      'fspiop-http-method': 'POST',
      'fspiop-signature': JSON.stringify({ protectedHeader, signature }),
      ...options.http,
    },
    body: options.sent ?? signedBody,
  };
}

const deepArray = (levels: number) => '['.repeat(levels) + ']'.repeat(levels);
const deepObject = (levels: number) => '{"a":'.repeat(levels) + '1' + '}'.repeat(levels);
const deepMixed = (levels: number) => '{"a":['.repeat(levels / 2) + '{}' + ']}'.repeat(levels / 2);

for (const target of backendsUnderTest) {
  describe(`validate never throws for a bad message (${target.label})`, () => {
    let cleanup: () => Promise<void>;
    let keyService: KeyService;
    let registry: ParticipantRegistry;
    let service: FspiopService;
    let encPem: string;

    beforeAll(async () => {
      const opened = await target.open();
      cleanup = opened.cleanup;
      keyService = keyServiceOn(opened.backend);
      await keyService.createKey({ name: 'fspiop-enc', type: 'RSA_2048', purpose: 'encrypt' });
      encPem = await publicPemOf(keyService, 'fspiop-enc');
      registry = await ParticipantRegistry.open({ logger: silentLogger, participants: [{ id: 'dfsp-rs', keys: [rsa.publicPem, ec.publicPem] }] });
      service = new FspiopService({ keyService, registry });
    });
    afterAll(async () => {
      await registry?.close();
      await cleanup?.();
    });

    const refusal = (reason: unknown = expect.any(String)) => ({ valid: false, errorCode: '3105', reason });

    it('bodies nested 100,000 levels deep are refused with a reason, on every path that reads the body', async () => {
      for (const deep of [deepArray(100_000), deepObject(100_000), deepMixed(100_000)]) {
        // Signed over other bytes: the canonical fallback must read the body, and refuses it.
        expect(await service.validate(message('{"other":1}', { sent: deep }))).toEqual(refusal(expect.stringContaining('nested too deeply')));
        // Signed over exactly these bytes: the signature holds without reading the body...
        expect(await service.validate(message(deep))).toMatchObject({ valid: true });
        // ...but a body handed back parsed (decryptWith) must be readable.
        expect(await service.validate({ ...message(deep), decryptWith: 'fspiop-enc' })).toEqual(refusal(expect.stringContaining('nested too deeply')));
      }
    });

    it(`the depth limit is ${MAX_JSON_DEPTH} levels: at the limit the canonical form still verifies, one more is refused`, async () => {
      const atLimit = JSON.parse(deepArray(MAX_JSON_DEPTH)) as unknown;
      const canonical = safeStableStringify(atLimit);
      const spaced = JSON.stringify(atLimit, null, 1);
      expect(await service.validate(message(canonical, { sent: spaced }))).toMatchObject({ valid: true });
      const over = deepArray(MAX_JSON_DEPTH + 1);
      expect(await service.validate(message(over, { sent: ` ${over}` }))).toEqual(refusal(expect.stringContaining('nested too deeply')));
    });

    it('huge arrays and wide objects get an answer', async () => {
      const huge = `[${'0,'.repeat(1_000_000)}0]`;
      const wide = JSON.stringify(Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`k${100_000 - i}`, i])));
      for (const body of [huge, wide]) {
        expect(await service.validate(message('{"other":1}', { sent: body }))).toEqual(refusal(expect.stringContaining('does not verify')));
        // The fallback copes with them too: signed in canonical form, sent otherwise.
        const canonical = safeStableStringify(JSON.parse(body));
        expect(await service.validate(message(canonical, { sent: ` ${body}` }))).toMatchObject({ valid: true });
      }
    });

    it('duplicate member names are refused on the canonical fallback; look-alikes are not mistaken for them', async () => {
      // The attack: a signature over {"amount":"1000"}; JSON.parse keeps the last duplicate, a first-wins parser reads "1".
      const duplicates = [
        '{"amount":"1","amount":"1000"}',
        '{"payer":{"x":1,"y":2,"x":3}}',
        '[{"a":1},{"b":1,"b":1}]',
        '{"a\\u0061":1,"aa":2}', // the same name, escaped once
        '{"q\\"":1, "q\\u0022" :2}', // a name holding a quote, written two ways
        '{"\\\\":1,"\\u005c":2}', // a backslash, written two ways
        '{"__proto__":1,"__proto__":2}',
      ];
      for (const text of duplicates) {
        const canonical = safeStableStringify(JSON.parse(text));
        expect(await service.validate(message(canonical, { sent: text })), text).toEqual(refusal('the body has a duplicate member name'));
        // The received bytes themselves were signed: nothing was re-serialised, nothing to confuse.
        expect(await service.validate(message(text)), text).toMatchObject({ valid: true });
      }
      const distinct = [
        '{"a":"\\"a\\":1","b":{"a":2}}', // a value that reads like a member, and the same name in another object
        '{"x":["y","y"],"y":{"x":1}}', // repeated strings in an array are values, not names
        '{"k\\\\":1,"k":2}', // an escaped backslash before the closing quote: "k\" and "k" differ
        '{"k\\"":1,"k":2}',
        '{"a" : 1 , "A":2, "a ":3}',
        '[{"a":1},{"a":1}]', // the same name in sibling objects
        '{"\\ud800":1,"\\udc00":2}',
      ];
      for (const text of distinct) {
        // Sent with a leading space, so that only the canonical form verifies.
        expect(await service.validate(message(safeStableStringify(JSON.parse(text)), { sent: ` ${text}` })), text).toMatchObject({ valid: true });
      }
    });

    it('a few hundred fuzzed bodies and headers: always valid:false with a reason, never an exception', async () => {
      const rand = prng(31_337);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;
      const base = safeStableStringify(transferBody());
      const junk = ['{', '}', '[', ']', '"', '\\', ':', ',', '\\u', '\u0000', '\ud800', '😀', ' ', 'null', '1e999', '-', '{"a":', '"\\"'];
      const mutate = (text: string) => {
        let out = text;
        for (let n = 1 + Math.floor(rand() * 4); n > 0; n--) {
          const at = Math.floor(rand() * (out.length + 1));
          const op = rand();
          if (op < 0.4) out = out.slice(0, at) + pick(junk) + out.slice(at);
          else if (op < 0.7) out = out.slice(0, at) + out.slice(at + 1 + Math.floor(rand() * 8));
          else out = out.slice(0, at) + String.fromCharCode(Math.floor(rand() * 0x10000)) + out.slice(at + 1);
        }
        return out;
      };
      const bodies: (() => string | Buffer)[] = [
        () => mutate(base),
        () => randomBytes(Math.floor(rand() * 512)),
        () => pick(['[', '{']).repeat(Math.floor(rand() * 200_000)),
        () => deepArray(65 + Math.floor(rand() * 1000)),
        () => JSON.stringify(Array.from({ length: Math.floor(rand() * 50_000) }, () => rand())),
        () => pick(['null', '0', '""', '[]', '{}', 'true', '"x"', '1e999', '{"a":1,"a":2}']),
      ];
      const goodHeaders = message('{"never":"sent"}').headers as Record<string, string>;
      const protectedHeaderOf = (members: Record<string, unknown>) => b64u(JSON.stringify({ alg: 'RS256', 'FSPIOP-URI': '/transfers', 'FSPIOP-HTTP-Method': 'POST', 'FSPIOP-Source': 'dfsp-rs', ...members }));
      const headerFuzz: ((h: Record<string, string | string[]>) => void)[] = [
        () => undefined,
        (h) => { h['fspiop-signature'] = mutate(h['fspiop-signature'] as string); },
        (h) => { h['fspiop-signature'] = JSON.stringify({ protectedHeader: b64u(mutate('{"alg":"RS256","FSPIOP-URI":"/transfers"}')), signature: b64u(randomBytes(256)) }); },
        (h) => { h['fspiop-signature'] = JSON.stringify({ protectedHeader: protectedHeaderOf({ [pick(['alg', 'FSPIOP-URI', 'Date', 'FSPIOP-Destination', 'FSPIOP-Encryption', 'crit'])]: pick([null, 0, 1, [], {}, '', 'x', true]) }), signature: b64u(randomBytes(256)) }); },
        (h) => { h['fspiop-signature'] = JSON.stringify({ protectedHeader: protectedHeaderOf({}), signature: pick(['', '=', 'AB', 'A', 'a+b/', 'AAAA====', b64u(randomBytes(64)) + '\n']) }); },
        (h) => { h['fspiop-signature'] = pick(['', '[]', '1', '"x"', 'null', '{"protectedHeader":[],"signature":{}}', '{'.repeat(10_000)]); },
        (h) => { h[pick(['fspiop-source', 'fspiop-uri', 'fspiop-http-method', 'date', 'fspiop-destination', 'fspiop-encryption'])] = pick(['', ' ', 'x', '\u0000', '\r\n', 'é'.repeat(300), 'dfsp-rs']); },
        (h) => { h[pick(['fspiop-source', 'fspiop-uri', 'FSPIOP-Signature'])] = ['a', 'b']; },
        (h) => { delete h[pick(Object.keys(h))]; },
        (h) => { h['FSPIOP-Source'] = 'dfsp-rs'; },
      ];
      const answers: FspiopValidation[] = [];
      for (let i = 0; i < 300; i++) {
        const headers: Record<string, string | string[]> = { ...goodHeaders };
        for (let n = 1 + Math.floor(rand() * 2); n > 0; n--) pick(headerFuzz)(headers);
        const input = { headers, body: pick(bodies)(), ...(rand() < 0.3 ? { decryptWith: 'fspiop-enc' } : {}) };
        const answer = await service.validate(input).catch((e: unknown) => ({ threw: e }));
        expect(answer, `case ${i}`).toEqual(refusal());
        answers.push(answer as FspiopValidation);
      }
      // The fuzz reached past the header checks: body refusals are among the answers.
      const reasons = new Set(answers.map((a) => (a.valid ? '' : a.reason)));
      expect([...reasons].some((r) => r.includes('nested too deeply'))).toBe(true);
      expect([...reasons].some((r) => r.includes('does not verify'))).toBe(true);
    });

    it('signed messages with fuzzed FSPIOP-Encryption and bodies, decrypted with our key: refused, never an exception', async () => {
      const rand = prng(4242);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;
      const entry = () => ({
        fieldName: pick(['ilpPacket', 'amount.amount', 'amount', 'missing', '__proto__', 'a..b', '', 'extensionList.extension.0.value']),
        encryptedKey: pick([b64u(randomBytes(256)), b64u(randomBytes(255)), b64u(randomBytes(300)), 'AB', '', 'A', '+/']),
        protectedHeader: pick([b64u('{"alg":"RSA-OAEP-256","enc":"A256GCM"}'), b64u('{"alg":"RSA-OAEP","enc":"A256GCM"}'), b64u('[]'), 'e30', '']),
        initializationVector: pick([b64u(randomBytes(12)), b64u(randomBytes(16)), b64u(randomBytes(8)), 'A']),
        authenticationTag: pick([b64u(randomBytes(16)), b64u(randomBytes(15)), '']),
      });
      const headerValues = [
        () => JSON.stringify({ encryptedFields: Array.from({ length: 1 + Math.floor(rand() * 5) }, entry) }),
        () => JSON.stringify({ encryptedFields: { encryptedField: [entry()] } }),
        () => JSON.stringify({ encryptedFields: Array.from({ length: 65 }, entry) }),
        () => pick(['not json', '{}', '[]', 'null', '{"encryptedFields":null}', '{"encryptedFields":[null]}', '{"encryptedFields":[1]}']),
      ];
      const bodies = [
        () => safeStableStringify({ ...transferBody(), ilpPacket: b64u(randomBytes(40)) }),
        () => safeStableStringify(transferBody()),
        () => pick(['[]', '"x"', '1', 'not json', '{"a":1,"a":2}', deepArray(70)]),
      ];
      for (let i = 0; i < 150; i++) {
        const encryption = pick(headerValues)();
        const body = pick(bodies)();
        const input = { ...message(body, { members: { 'FSPIOP-Encryption': encryption }, http: { 'fspiop-encryption': encryption } }), decryptWith: 'fspiop-enc' };
        const answer = await service.validate(input).catch((e: unknown) => ({ threw: e }));
        expect(answer, `case ${i}: ${encryption.slice(0, 120)}`).toEqual(refusal());
      }
      // And the same path does decrypt a well-formed field: the refusals above are not the only answer.
      const sealed = await encryptFields(transferBody(), ['ilpPacket'], createPublicKey(encPem));
      const sent = safeStableStringify(sealed.body);
      const ok = await service.validate({ ...message(sent, { members: { 'FSPIOP-Encryption': sealed.header }, http: { 'fspiop-encryption': sealed.header } }), decryptWith: 'fspiop-enc' });
      expect(ok).toMatchObject({ valid: true, body: transferBody() });
    });

    it('a body that is neither text nor bytes is refused, not thrown on', async () => {
      const good = message('{"a":1}');
      for (const body of [42, null, undefined, { a: 1 }, ['x']]) {
        expect(await service.validate({ headers: good.headers, body: body as unknown as string })).toEqual(refusal('the body must be text or bytes'));
      }
    });
  });
}
