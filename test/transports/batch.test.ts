/**
 * Batch operations (issue #13) end to end over REST and gRPC, on the software backend and on a SoftHSM
 * token, one service per backend serving both wires (batchFixture.ts): results come back one per item,
 * in order, each checked with node:crypto (ES256 as raw r||s) or the Mojaloop reference JwsValidator;
 * each batch result equals the single operation's answer for the same item; one item's failure is that
 * item's error and never fails the batch; an item the backend refuses for load (BACKEND_BUSY) is tried
 * again; what concerns the whole request (the key, the item count, the body size, the HSM) fails it as
 * the single operation would, without results. Policy and audit are in
 * test/audit/batchAudit.test.ts, declarations and secret zeroing in test/api/batch.test.ts.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SignAlgorithm } from '../../src/algorithms/registry.js';
import type { KeyServiceLimits } from '../../src/operations/keyService.js';
import { publicPemOf, referenceAccepts, safeStableStringify, transferBody } from '../fspiop/support.js';
import { nodeVerifies } from '../../src/conformance/reference/nodeVerify.js';
import { keyOps, resultsOf, serve, switchableBackend, type FspiopItem, type Item, type KeyOp, type Outcome, type Served, type Wire } from './batchFixture.js';
import { freshName, restTargets } from './rest/restFixture.js';

const LIMITS: KeyServiceLimits = { maxDataBytes: 4096, maxRandomBytes: 256 };
/** Room for 257 items on either wire. */
const MAX_REQUEST_BYTES = 256 * 1024;
/** The service with a small batch limit, and a body limit that five large items exceed. */
const SMALL = { maxBatchItems: 5, maxRequestBytes: 16 * 1024 };

const m = (text: string) => Buffer.from(text);
const flip = (b: Buffer, at: number) => {
  const copy = Buffer.from(b);
  copy[at] = (copy[at] as number) ^ 0x01;
  return copy;
};
/** A whole-request failure, as {status, code}. */
const failure = (o: Outcome) => (o.ok ? { status: 'answered', code: undefined } : { status: o.status, code: o.code });
const errorCodes = (results: ReturnType<typeof resultsOf>) => results.map((r) => ('error' in r ? r.error.code : 'ok'));

for (const target of restTargets) {
  describe(`batch operations on the ${target.label} backend`, () => {
    let opened: Awaited<ReturnType<typeof target.open>>;
    let hsm: ReturnType<typeof switchableBackend>;
    let main: Served;
    let small: Served;
    const keys = { ec: '', rsa: '', aes: '', hmac: '', ecOff: '', aesOff: '', hmacOff: '', ec384: '', ed25519: '' };
    const publicKeys: Record<string, KeyObject> = {};
    const pems: Record<string, string> = {};
    /** FSPIOP participant ids our two signing keys are registered under. */
    const source = { rsa: 'bfsp-rs', ec: 'bfsp-es' };

    beforeAll(async () => {
      opened = await target.open();
      hsm = switchableBackend(opened.backend);
      main = await serve(hsm.backend, { limits: LIMITS, maxRequestBytes: MAX_REQUEST_BYTES });
      small = await serve(hsm.backend, { limits: { ...LIMITS, maxBatchItems: SMALL.maxBatchItems } as KeyServiceLimits, maxRequestBytes: SMALL.maxRequestBytes });
      const make = async (slot: keyof typeof keys, type: string, off = false) => {
        const name = freshName(`batch-${slot.toLowerCase()}`);
        await main.service.createKey({ name, type });
        if (off) await main.service.disableKey(name);
        keys[slot] = name;
      };
      await make('ec', 'EC_P256');
      await make('rsa', 'RSA_2048');
      await make('aes', 'AES_256');
      await make('hmac', 'HMAC_256');
      await make('ecOff', 'EC_P256', true);
      await make('aesOff', 'AES_256', true);
      await make('hmacOff', 'HMAC_256', true);
      // Signing keys FSPIOP cannot sign with, where the backend has them.
      const { keyTypes } = main.service.capabilities();
      if (keyTypes.includes('EC_P384')) await make('ec384', 'EC_P384');
      if (keyTypes.includes('ED25519')) await make('ed25519', 'ED25519');
      for (const slot of ['ec', 'rsa'] as const) {
        pems[slot] = await publicPemOf(main.service, keys[slot]);
        publicKeys[slot] = createPublicKey(pems[slot]);
        await main.participants.addKey(source[slot], pems[slot]);
      }
    }, 120_000);
    afterAll(async () => {
      await small?.close();
      await main?.close();
      await opened?.backend.close();
      await opened?.cleanup();
    });

    const wires = () => main.wires;
    /** A batch that must succeed as a whole, as results. */
    const run = async (wire: Wire, op: KeyOp, name: string, items: readonly Item[]) => {
      const results = resultsOf(wire, await wire.batch(op, name, items));
      expect(results, `${wire.name} ${op}: one result per item`).toHaveLength(items.length);
      return results;
    };
    const ok = (r: ReturnType<typeof resultsOf>[number], what = 'item'): Record<string, any> => {
      expect(r, what).toHaveProperty('ok');
      return (r as { ok: Record<string, any> }).ok;
    };

    for (const which of [0, 1] as const) {
      const wireName = which === 0 ? 'REST' : 'gRPC';
      describe(wireName, () => {
        const wire = () => wires()[which];

        it('sign: 20 distinct messages come back in order, each ES256 signature (raw r||s) verifying its own message only', async () => {
          const w = wire();
          const messages = Array.from({ length: 20 }, (_, i) => m(`batch message ${i} of ${w.name}`));
          const results = await run(w, 'sign', keys.ec, messages.map((message) => ({ message })));
          const signatures = results.map((r, i) => {
            const answer = ok(r, `item ${i}`);
            expect(answer).toMatchObject({ keyName: keys.ec, keyVersion: 1, algorithm: 'ES256' });
            return w.bytes(answer.signature);
          });
          for (const [i, signature] of signatures.entries()) {
            expect(signature, `item ${i} is r||s`).toHaveLength(64);
            expect(nodeVerifies('ES256', publicKeys.ec!, messages[i]!, signature), `item ${i}`).toBe(true);
            expect(nodeVerifies('ES256', publicKeys.ec!, messages[(i + 1) % 20]!, signature), `item ${i} against its neighbour`).toBe(false);
          }
        });

        it('sign: items choose their own algorithm (RS256, PS256, RS512) and digest signing, as the single operation does', async () => {
          const w = wire();
          const algorithms: SignAlgorithm[] = ['RS256', 'PS256', 'RS512', 'RS256'];
          const messages = algorithms.map((a, i) => m(`${a} item ${i}`));
          const digestMessage = m('signed as a precomputed digest');
          const digestItem = { algorithm: 'RS256', digest: createHash('sha256').update(digestMessage).digest() };
          const results = await run(w, 'sign', keys.rsa, [...algorithms.map((algorithm, i) => ({ algorithm, message: messages[i] })), digestItem]);
          for (const [i, algorithm] of algorithms.entries()) {
            const answer = ok(results[i]!, `item ${i}`);
            expect(answer.algorithm).toBe(algorithm);
            expect(nodeVerifies(algorithm, publicKeys.rsa!, messages[i]!, w.bytes(answer.signature)), `item ${i}`).toBe(true);
          }
          if (main.service.capabilities().signDigest.includes('RS256')) {
            expect(nodeVerifies('RS256', publicKeys.rsa!, digestMessage, w.bytes(ok(results[4]!).signature))).toBe(true);
          } else {
            expect(errorCodes(results)[4]).toBe('UNSUPPORTED_BY_BACKEND');
          }
        });

        it('each result equals the single operation\'s answer for the same item (same fields; same values where deterministic)', async () => {
          const w = wire();
          const signed = await w.single('sign', keys.ec, { message: m('for verify') });
          expect(signed.ok).toBe(true);
          const signature = w.bytes((signed as { answer: any }).answer.signature);
          const macOf = await w.single('mac', keys.hmac, { data: m('mac data') });
          const mac = w.bytes((macOf as { answer: any }).answer.mac);
          const encrypted = await w.single('encrypt', keys.aes, { plaintext: m('clear'), aad: m('aad') });
          const ciphertext = w.bytes((encrypted as { answer: any }).answer.ciphertext);
          const cases: Array<{ op: KeyOp; key: string; item: Item; deterministic: boolean }> = [
            { op: 'sign', key: keys.rsa, item: { algorithm: 'RS256', message: m('deterministic') }, deterministic: true },
            { op: 'sign', key: keys.ec, item: { message: m('randomised') }, deterministic: false },
            { op: 'verify', key: keys.ec, item: { message: m('for verify'), signature }, deterministic: true },
            { op: 'verify', key: keys.ec, item: { message: m('not what was signed'), signature }, deterministic: true },
            { op: 'encrypt', key: keys.aes, item: { plaintext: m('clear'), aad: m('aad') }, deterministic: false },
            { op: 'decrypt', key: keys.aes, item: { ciphertext, aad: m('aad') }, deterministic: true },
            { op: 'mac', key: keys.hmac, item: { data: m('mac data') }, deterministic: true },
            { op: 'verifyMac', key: keys.hmac, item: { data: m('mac data'), mac }, deterministic: true },
            { op: 'verifyMac', key: keys.hmac, item: { data: m('other data'), mac }, deterministic: true },
          ];
          for (const c of cases) {
            const single = await w.single(c.op, c.key, c.item);
            expect(single.ok, `${c.op} single`).toBe(true);
            const expected = (single as { answer: Record<string, unknown> }).answer;
            const [result] = await run(w, c.op, c.key, [c.item]);
            const answer = ok(result!, c.op);
            expect(Object.keys(answer).sort(), c.op).toEqual(Object.keys(expected).sort());
            if (c.deterministic) expect(answer, c.op).toEqual(expected);
            else expect({ ...answer, signature: undefined, ciphertext: undefined }, c.op).toEqual({ ...expected, signature: undefined, ciphertext: undefined });
          }
        });

        it('one bad item is that item\'s error; the items around it succeed', async () => {
          const w = wire();
          const good = (i: number): Item => ({ message: m(`good ${i}`) });
          const items: Item[] = [
            good(0),
            { algorithm: 'XS999', message: m('unknown algorithm') },
            good(2),
            {},
            { message: Buffer.alloc(LIMITS.maxDataBytes + 1) },
            good(5),
          ];
          const expected = ['ok', 'UNSUPPORTED_ALGORITHM', 'ok', 'INVALID_ARGUMENT', 'PAYLOAD_TOO_LARGE', 'ok'];
          if (w.name === 'REST') {
            items.push({ message: '!!not base64!!' }, { message: m('both'), digest: Buffer.alloc(32) }, good(8));
            expected.push('INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'ok');
          } else {
            // The batch names the key; an item may repeat that name, never name another key.
            items.push({ name: keys.rsa, message: m('another key') }, { name: keys.ec, message: m('same key') }, good(8));
            expected.push('INVALID_ARGUMENT', 'ok', 'ok');
          }
          const results = await run(w, 'sign', keys.ec, items);
          expect(errorCodes(results)).toEqual(expected);
          for (const [i, r] of results.entries()) {
            if ('error' in r) {
              expect(r.error.message.length, `item ${i} says what is wrong`).toBeGreaterThan(0);
              continue;
            }
            const message = (items[i]!.message as Buffer);
            expect(nodeVerifies('ES256', publicKeys.ec!, message, w.bytes(r.ok.signature)), `item ${i}`).toBe(true);
          }
        });

        it('verify: a signature that does not verify is {valid: false} in its place; a missing key version is that item\'s error', async () => {
          const w = wire();
          const messages = Array.from({ length: 6 }, (_, i) => m(`to verify ${i}`));
          const signatures = (await run(w, 'sign', keys.ec, messages.map((message) => ({ message })))).map((r) => w.bytes(ok(r).signature));
          const results = await run(w, 'verify', keys.ec, [
            { message: messages[0], signature: signatures[0] },
            { message: messages[1], signature: signatures[2] },
            { message: messages[2], signature: signatures[2] },
            { message: messages[3], signature: flip(signatures[3]!, 10) },
            { message: messages[4], signature: signatures[4], keyVersion: 9 },
            { message: messages[5], signature: signatures[5], keyVersion: 1 },
          ]);
          expect(results.map((r) => ('error' in r ? r.error.code : r.ok.valid))).toEqual([true, false, true, false, 'KEY_VERSION_NOT_FOUND', true]);
          expect(ok(results[1]!)).toMatchObject({ keyName: keys.ec, keyVersion: 1, algorithm: 'ES256', valid: false });
        });

        it('decrypt: an encrypt batch round-trips; a tampered ciphertext or a wrong AAD is DECRYPTION_FAILED in its place only', async () => {
          const w = wire();
          const plaintexts = Array.from({ length: 8 }, (_, i) => m(`secret ${i} ${'x'.repeat(i * 7)}`));
          const aad = (i: number) => (i % 2 === 0 ? { aad: m(`aad ${i}`) } : {});
          const encrypted = await run(w, 'encrypt', keys.aes, plaintexts.map((plaintext, i) => ({ plaintext: Buffer.from(plaintext), ...aad(i) })));
          const ciphertexts = encrypted.map((r, i) => {
            expect(ok(r, `item ${i}`)).toMatchObject({ keyName: keys.aes, keyVersion: 1, algorithm: 'AES_GCM' });
            return w.bytes(ok(r).ciphertext);
          });
          expect(new Set(ciphertexts.map((c) => c.toString('hex'))).size).toBe(8);
          const items: Item[] = ciphertexts.map((ciphertext, i) => ({ ciphertext, ...aad(i) }));
          items[3] = { ciphertext: flip(ciphertexts[3]!, ciphertexts[3]!.length - 1) };
          items[4] = { ciphertext: ciphertexts[4], aad: m('not the aad') };
          const results = await run(w, 'decrypt', keys.aes, items);
          expect(errorCodes(results)).toEqual(['ok', 'ok', 'ok', 'DECRYPTION_FAILED', 'DECRYPTION_FAILED', 'ok', 'ok', 'ok']);
          for (const [i, r] of results.entries()) {
            if ('ok' in r) expect(w.bytes(r.ok.plaintext), `item ${i}`).toEqual(plaintexts[i]);
          }
          // Neither plaintext form reaches the log.
          for (const p of plaintexts) for (const form of [p.toString(), p.toString('base64')]) expect(main.logText().includes(form), form).toBe(false);
        });

        it('mac: equal to the single MAC of each item; mac verify: a wrong MAC is {valid: false} in its place', async () => {
          const w = wire();
          const data = Array.from({ length: 10 }, (_, i) => m(`amount=${i}.00;currency=EUR`));
          const results = await run(w, 'mac', keys.hmac, data.map((d) => ({ data: d })));
          const macs = results.map((r) => w.bytes(ok(r).mac));
          for (const [i, d] of data.entries()) {
            const single = await w.single('mac', keys.hmac, { data: d });
            expect(ok(results[i]!), `item ${i}`).toEqual((single as { answer: unknown }).answer);
          }
          const checks = data.map((d, i) => ({ data: d, mac: i === 6 ? flip(macs[i]!, 0) : macs[i] }));
          const verified = await run(w, 'verifyMac', keys.hmac, checks);
          expect(verified.map((r) => ok(r).valid)).toEqual(data.map((_, i) => i !== 6));
        });

        it('an item refused for load (BACKEND_BUSY) waits and is tried again: every item is answered, each signature verifying', async () => {
          const w = wire();
          const messages = Array.from({ length: 12 }, (_, i) => m(`busy ${i} of ${w.name}`));
          const refusedBefore = hsm.busyRefusals();
          hsm.refuseSigns(5);
          let results: ReturnType<typeof resultsOf>;
          try {
            results = await run(w, 'sign', keys.ec, messages.map((message) => ({ message })));
          } finally {
            hsm.refuseSigns(0);
          }
          expect(hsm.busyRefusals() - refusedBefore, 'the backend did refuse').toBe(5);
          expect(errorCodes(results)).toEqual(messages.map(() => 'ok'));
          for (const [i, r] of results.entries()) expect(nodeVerifies('ES256', publicKeys.ec!, messages[i]!, w.bytes(ok(r).signature)), `item ${i}`).toBe(true);
        });

        describe('whole-request failures: answered as the single operation would fail, without results', () => {
          const itemFor: Record<KeyOp, Item> = {
            sign: { message: m('x') },
            verify: { message: m('x'), signature: Buffer.alloc(64, 1) },
            encrypt: { plaintext: m('x') },
            decrypt: { ciphertext: Buffer.alloc(40, 1) },
            mac: { data: m('x') },
            verifyMac: { data: m('x'), mac: Buffer.alloc(32, 1) },
          };
          const keyFor = (op: KeyOp, state: 'on' | 'off' | 'wrong'): string => {
            const family = op === 'sign' || op === 'verify' ? 'ec' : op === 'encrypt' || op === 'decrypt' ? 'aes' : 'hmac';
            if (state === 'wrong') return family === 'ec' ? keys.aes : family === 'aes' ? keys.hmac : keys.ec;
            return keys[state === 'off' ? (`${family}Off` as const) : family];
          };

          it.each(keyOps)('%s: an unknown key, a disabled key, a key of another purpose', async (op) => {
            const w = wire();
            const cases: Array<[string, string]> = [
              [freshName('no-such-key'), 'KEY_NOT_FOUND'],
              [keyFor(op, 'off'), 'KEY_DISABLED'],
              [keyFor(op, 'wrong'), 'INCOMPATIBLE_KEY'],
            ];
            for (const [name, code] of cases) {
              const batch = await w.batch(op, name, [itemFor[op], itemFor[op]]);
              expect(failure(batch), `${op} on ${name}`).toEqual({ status: w.status(code), code });
              expect(failure(batch), `${op} on ${name}: as the single operation`).toEqual(failure(await w.single(op, name, itemFor[op])));
            }
          });

          it('items empty (and over REST: missing, or not an array) is INVALID_ARGUMENT', async () => {
            const w = wire();
            expect(failure(await w.batch('sign', keys.ec, []))).toEqual({ status: w.status('INVALID_ARGUMENT'), code: 'INVALID_ARGUMENT' });
            if (w.name !== 'REST') return;
            for (const payload of [{}, { items: { message: 'eA==' } }, { items: 'eA==' }, { items: null }]) {
              const r = await main.rest.inject({ method: 'POST', url: `/v1/keys/${keys.ec}/sign/batch`, payload });
              expect({ status: r.statusCode, code: JSON.parse(r.body).error?.code }, JSON.stringify(payload)).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
            }
          });

          it('items beyond limits.maxBatchItems: 256 pass and 257 are PAYLOAD_TOO_LARGE by default; a configured limit of 5 holds', async () => {
            const w = wire();
            const items = (n: number) => Array.from({ length: n }, (_, i) => ({ data: m(`d${i}`) }));
            expect(resultsOf(w, await w.batch('mac', keys.hmac, items(256))).every((r) => 'ok' in r)).toBe(true);
            const over = await w.batch('mac', keys.hmac, items(257));
            expect(failure(over)).toEqual({ status: w.status('PAYLOAD_TOO_LARGE'), code: 'PAYLOAD_TOO_LARGE' });
            const smallWire = small.wires[which];
            expect(resultsOf(smallWire, await smallWire.batch('mac', keys.hmac, items(5)))).toHaveLength(5);
            expect(failure(await smallWire.batch('mac', keys.hmac, items(6)))).toEqual({ status: w.status('PAYLOAD_TOO_LARGE'), code: 'PAYLOAD_TOO_LARGE' });
          });

          it('limit + 1 items that are all invalid are PAYLOAD_TOO_LARGE as a whole: the count is checked before any item is read', async () => {
            const smallWire = small.wires[which];
            // REST: bad base64; gRPC: an item naming another key than its batch's.
            const bad = (i: number): Item => (smallWire.name === 'REST' ? { data: `!!not base64 ${i}!!` } : { name: keys.ec, data: m(`d${i}`) });
            const items = (n: number) => Array.from({ length: n }, (_, i) => bad(i));
            expect(errorCodes(resultsOf(smallWire, await smallWire.batch('mac', keys.hmac, items(SMALL.maxBatchItems))))).toEqual(items(SMALL.maxBatchItems).map(() => 'INVALID_ARGUMENT'));
            const over = await smallWire.batch('mac', keys.hmac, items(SMALL.maxBatchItems + 1));
            expect(failure(over)).toEqual({ status: smallWire.status('PAYLOAD_TOO_LARGE'), code: 'PAYLOAD_TOO_LARGE' });
            // An FSPIOP batch (items naming their own keys) likewise: bodies that are not JSON.
            const fspiopItems = Array.from({ length: SMALL.maxBatchItems + 1 }, (_, i) => ({ key: keys.ec, method: 'put', uri: `/transfers/${i}`, source: source.ec, body: '{oops' }));
            expect(failure(await smallWire.fspiopBatch('sign', fspiopItems))).toEqual({ status: smallWire.status('PAYLOAD_TOO_LARGE'), code: 'PAYLOAD_TOO_LARGE' });
          });

          it('a body over the request size limit is refused (413 over REST, RESOURCE_EXHAUSTED over gRPC)', async () => {
            const smallWire = small.wires[which];
            // Five items (within the item limit) of 3.5 KiB each (within the data limit): 17.5 KiB of data, 24 KiB as base64.
            const items = Array.from({ length: 5 }, (_, i) => ({ data: Buffer.alloc(3584, i) }));
            const r = await smallWire.batch('mac', keys.hmac, items);
            expect(r.ok).toBe(false);
            expect((r as { status: number }).status).toBe(smallWire.status('PAYLOAD_TOO_LARGE'));
            if (smallWire.name === 'REST') expect(failure(r).code).toBe('PAYLOAD_TOO_LARGE');
          });

          it('an unavailable HSM is BACKEND_UNAVAILABLE for the whole request', async () => {
            const w = wire();
            hsm.setDown(true);
            try {
              for (const op of ['sign', 'mac'] as const) {
                const batch = await w.batch(op, keyFor(op, 'on'), [itemFor[op], itemFor[op]]);
                expect(failure(batch), op).toEqual({ status: w.status('BACKEND_UNAVAILABLE'), code: 'BACKEND_UNAVAILABLE' });
              }
            } finally {
              hsm.setDown(false);
            }
            expect(resultsOf(w, await w.batch('sign', keys.ec, [itemFor.sign]))).toHaveLength(1);
          });

          // One case only: it waits out the batch's retries (5 s) before the 503.
          it.runIf(which === 0 && target.label === 'software')('a backend that stays busy (BACKEND_BUSY) fails the whole request with BACKEND_UNAVAILABLE once the retries run out', async () => {
            const w = wire();
            hsm.refuseSigns(Infinity);
            try {
              const batch = await w.batch('sign', keys.ec, [itemFor.sign, itemFor.sign]);
              expect(failure(batch)).toEqual({ status: w.status('BACKEND_UNAVAILABLE'), code: 'BACKEND_UNAVAILABLE' });
            } finally {
              hsm.refuseSigns(0);
            }
            expect(resultsOf(w, await w.batch('sign', keys.ec, [itemFor.sign]))).toHaveLength(1);
          }, 20_000);
        });

        describe('FSPIOP', () => {
          const URI = 'https://switch.example/transfers/';
          const signItem = (slot: 'ec' | 'rsa', i: number, extra: Record<string, string> = {}): FspiopItem => ({
            key: keys[slot],
            method: i % 2 === 0 ? 'put' : 'post',
            uri: `${URI}${i}`,
            source: source[slot],
            ...extra,
            body: JSON.stringify(transferBody(`t-${i}`)),
          });
          const referenceKeys = () => ({ [source.ec]: pems.ec!, [source.rsa]: pems.rsa! });
          /** The request the signed answer goes out as. */
          const request = (w: Wire, item: FspiopItem, answer: Record<string, any>) => ({
            headers: {
              'fspiop-source': item.source as string,
              ...(item.destination ? { 'fspiop-destination': item.destination as string } : {}),
              ...(item.date ? { date: item.date as string } : {}),
              ...answer.headers,
            } as Record<string, string>,
            body: w.name === 'REST' ? (answer.body as string) : (answer.body as Buffer).toString('utf8'),
          });

          it('sign batch: each item signed with its own key validates with the reference JwsValidator; a bad body is that item\'s error', async () => {
            const w = wire();
            const items = [
              signItem('rsa', 0, { destination: 'payeefsp' }),
              signItem('ec', 1),
              { ...signItem('ec', 2), body: '{oops' },
              signItem('ec', 3, { destination: 'payeefsp', date: 'Tue, 24 Nov 2026 21:30:00 GMT' }),
              signItem('rsa', 4),
            ];
            const results = resultsOf(w, await w.fspiopBatch('sign', items));
            expect(errorCodes(results)).toEqual(['ok', 'ok', 'INVALID_ARGUMENT', 'ok', 'ok']);
            for (const i of [0, 1, 3, 4]) {
              const req = request(w, items[i]!, ok(results[i]!));
              expect(req.body, `item ${i}`).toBe(safeStableStringify(JSON.parse(items[i]!.body)));
              expect(req.headers['fspiop-uri']).toBe(`/transfers/${i}`);
              expect(referenceAccepts(referenceKeys(), { headers: req.headers, body: JSON.parse(req.body) }), `item ${i}`).toBe(true);
              // Each signature covers its own request only: not the URI of the item next to it.
              const neighbour = `/transfers/${i === 0 ? 1 : 0}`;
              expect(referenceAccepts(referenceKeys(), { headers: { ...req.headers, 'fspiop-uri': neighbour }, body: JSON.parse(req.body) }), `item ${i}, another URI`).toBe(false);
            }
          });

          it('sign batch: an RS256 item (deterministic) answers exactly as the single sign', async () => {
            const w = wire();
            const item = signItem('rsa', 30, { destination: 'payeefsp', date: 'Tue, 24 Nov 2026 21:30:00 GMT' });
            const [result] = resultsOf(w, await w.fspiopBatch('sign', [item]));
            const single = await w.fspiopSingle('sign', item);
            expect(ok(result!)).toEqual((single as { answer: unknown }).answer);
          });

          it('validate batch: valid and tampered items, each as the single validate answers', async () => {
            const w = wire();
            const items = [signItem('rsa', 10), signItem('ec', 11, { destination: 'payeefsp' })];
            const signed = resultsOf(w, await w.fspiopBatch('sign', items)).map((r, i) => request(w, items[i]!, ok(r)));
            const checks: FspiopItem[] = [
              { headers: signed[0]!.headers, body: signed[0]!.body },
              { headers: signed[1]!.headers, body: signed[1]!.body.replace('123.45', '999.45') },
              { headers: signed[1]!.headers, body: signed[1]!.body },
              { headers: { ...signed[0]!.headers, 'fspiop-uri': '/transfers/other' }, body: signed[0]!.body },
              { headers: { ...signed[0]!.headers, 'fspiop-source': 'nobodyfsp' }, body: signed[0]!.body },
            ];
            const results = resultsOf(w, await w.fspiopBatch('validate', checks));
            expect(results.map((r) => ok(r).valid)).toEqual([true, false, true, false, false]);
            expect(ok(results[0]!)).toMatchObject({ valid: true, participant: source.rsa, algorithm: 'RS256' });
            expect(ok(results[2]!)).toMatchObject({ valid: true, participant: source.ec, algorithm: 'ES256' });
            expect(ok(results[1]!)).toMatchObject({ valid: false, errorCode: '3105' });
            for (const [i, check] of checks.entries()) {
              const single = await w.fspiopSingle('validate', check);
              expect(ok(results[i]!), `item ${i}`).toEqual((single as { answer: unknown }).answer);
            }
          });

          it('an unknown or disabled key in any item fails the whole request, as the single sign would', async () => {
            const w = wire();
            for (const [key, code] of [[freshName('no-such-key'), 'KEY_NOT_FOUND'], [keys.ecOff, 'KEY_DISABLED']] as const) {
              const items = [signItem('ec', 20), { ...signItem('ec', 21), key }, signItem('rsa', 22)];
              const batch = await w.fspiopBatch('sign', items);
              expect(failure(batch), code).toEqual({ status: w.status(code), code });
              expect(failure(batch)).toEqual(failure(await w.fspiopSingle('sign', items[1]!)));
            }
            expect(failure(await w.fspiopBatch('sign', []))).toEqual({ status: w.status('INVALID_ARGUMENT'), code: 'INVALID_ARGUMENT' });
            expect(failure(await w.fspiopBatch('validate', []))).toEqual({ status: w.status('INVALID_ARGUMENT'), code: 'INVALID_ARGUMENT' });
          });

          it('a sign item whose key FSPIOP cannot sign with (EC P-384, Ed25519: purpose sign) fails the whole request with INCOMPATIBLE_KEY, as the single sign does', async () => {
            const w = wire();
            const unfit = [keys.ec384, keys.ed25519].filter((key) => key !== '');
            expect(unfit.length, 'the backend has at least one such key type').toBeGreaterThan(0);
            for (const key of unfit) {
              const items = [signItem('ec', 50), { ...signItem('ec', 51), key }, signItem('rsa', 52)];
              const batch = await w.fspiopBatch('sign', items);
              expect(failure(batch), key).toEqual({ status: w.status('INCOMPATIBLE_KEY'), code: 'INCOMPATIBLE_KEY' });
              expect(failure(batch), `${key}: as the single sign`).toEqual(failure(await w.fspiopSingle('sign', items[1]!)));
            }
          });

          it('a validate item whose decryptWith is not an RSA key of purpose encrypt (AES; RSA of purpose sign) fails the whole request with INCOMPATIBLE_KEY', async () => {
            const w = wire();
            const item = signItem('rsa', 60);
            const [signed] = resultsOf(w, await w.fspiopBatch('sign', [item]));
            const req = request(w, item, ok(signed!));
            for (const decryptWith of [keys.aes, keys.rsa]) {
              const checks: FspiopItem[] = [{ headers: req.headers, body: req.body }, { headers: req.headers, body: req.body, decryptWith }];
              expect(failure(await w.fspiopBatch('validate', checks)), decryptWith).toEqual({ status: w.status('INCOMPATIBLE_KEY'), code: 'INCOMPATIBLE_KEY' });
            }
          });

          it('a malformed key name in one item (sign: key; validate: decryptWith) is that item\'s INVALID_ARGUMENT; the other items are answered', async () => {
            const w = wire();
            const items = [signItem('ec', 70), { ...signItem('ec', 71), key: 'bad name!' }, signItem('rsa', 72)];
            const results = resultsOf(w, await w.fspiopBatch('sign', items));
            expect(errorCodes(results)).toEqual(['ok', 'INVALID_ARGUMENT', 'ok']);
            const signed = [0, 2].map((i) => request(w, items[i]!, ok(results[i]!)));
            for (const req of signed) expect(referenceAccepts(referenceKeys(), { headers: req.headers, body: JSON.parse(req.body) })).toBe(true);
            const checks: FspiopItem[] = [
              { headers: signed[0]!.headers, body: signed[0]!.body },
              { headers: signed[0]!.headers, body: signed[0]!.body, decryptWith: '../x' },
              { headers: signed[1]!.headers, body: signed[1]!.body },
            ];
            const validated = resultsOf(w, await w.fspiopBatch('validate', checks));
            expect(validated.map((r) => ('error' in r ? r.error.code : r.ok.valid))).toEqual([true, 'INVALID_ARGUMENT', true]);
          });
        });
      });
    }
  });
}
