/**
 * hsm-bridge/mojaloop against the Mojaloop reference (`@mojaloop/sdk-standard-components` JwsSigner and
 * JwsValidator), through a running service on the software backend and on SoftHSM:
 * - what our JwsSigner does to request options is what the reference signer does (headers, body, the
 *   protected header byte for byte), and the reference validator accepts it;
 * - what the reference signer signs, our JwsValidator accepts; every refusal of interop.test.ts, and the
 *   refusals of the request's shape and of the token, throw the reference validator's exact message;
 * - a participant with two active keys during a rotation (Mojaloop issue #4301), and our key rotated.
 */
import { createPublicKey, verify } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../../src/app.js';
import { HsmBridgeClient, HsmBridgeClientError } from '../../src/client/index.js';
import { loadServiceConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { JsonWebTokenError, JwsSigner, JwsValidator, type RequestOptions } from '../../src/mojaloop/index.js';
import { generateTestKeyPair, referenceLogger, referenceSigner, referenceValidator, safeStableStringify, transferBody, type TestKeyPair } from '../fspiop/support.js';
import { createSoftwareBackendConfig } from '../helpers/software.js';
import { tempDir } from '../identity/accessSupport.js';

type Alg = 'RS256' | 'ES256';
const DATE = 'Tue, 24 Nov 2026 21:30:00 GMT';
const URL_OF_TRANSFER = 'https://switch.example:3000/transfers/0a3c5d2e-7f3b-4a4e-9b8e-6f0f3f1b2c3d';
const variants: { label: string; headers: Record<string, string> }[] = [
  { label: 'no destination, no date', headers: {} },
  { label: 'destination', headers: { 'fspiop-destination': 'payeefsp' } },
  { label: 'date', headers: { date: DATE } },
  { label: 'destination and date', headers: { 'fspiop-destination': 'payeefsp', date: DATE } },
];

/** The peers' keys, held by the reference as PEM; registered in the service as participants. */
const peers: Record<string, TestKeyPair> = {
  'payerfsp-rs': generateTestKeyPair('RSA'),
  'payerfsp-es': generateTestKeyPair('EC'),
  'rotatingfsp-old': generateTestKeyPair('RSA'),
  'rotatingfsp-new': generateTestKeyPair('RSA'),
};
const peerOf: Record<Alg, string> = { RS256: 'payerfsp-rs', ES256: 'payerfsp-es' };

interface Target {
  readonly label: string;
  backend(): Promise<{ section: Record<string, unknown>; cleanup(): Promise<void> }>;
}
const targets: Target[] = [
  {
    label: 'software',
    async backend() {
      const h = await createSoftwareBackendConfig();
      return { section: { type: 'software', software: h.config }, cleanup: () => h.cleanup() };
    },
  },
  {
    label: 'SoftHSM',
    async backend() {
      const { createSoftHsmToken } = await import('../helpers/softhsm.js');
      const token = await createSoftHsmToken();
      return { section: { type: 'pkcs11', pkcs11: token.backendConfig() }, cleanup: () => token.cleanup() };
    },
  },
];

/** What the reference validator throws for a request (undefined: it accepts). */
function referenceRefusal(keys: Record<string, string>, request: { headers: Record<string, string>; body?: unknown }): { name: string; message: string } | undefined {
  try {
    referenceValidator(keys).validate(request);
    return undefined;
  } catch (e) {
    return { name: (e as Error).name, message: (e as Error).message };
  }
}

for (const target of targets) {
  describe(`the Mojaloop drop-in on ${target.label}`, () => {
    const dir = tempDir();
    let app: RunningApp;
    let client: HsmBridgeClient;
    let cleanup: () => Promise<void>;
    let validator: JwsValidator;
    const ourKey: Record<Alg, string> = { RS256: 'dfsp-rsa', ES256: 'dfsp-ec' };
    const ourPem = {} as Record<Alg, string>;
    /** The reference validator's keys, in the order the service lists its participants. */
    let referenceKeys: Record<string, string>;

    beforeAll(async () => {
      const backend = await target.backend();
      cleanup = backend.cleanup;
      writeFileSync(dir.at('config.json'), JSON.stringify({
        rest: { host: '127.0.0.1', port: 0 },
        grpc: { enabled: false },
        ops: { enabled: false },
        backend: backend.section,
        fspiop: {
          participants: [
            { id: 'payerfsp-rs', keys: [peers['payerfsp-rs']!.publicPem] },
            { id: 'payerfsp-es', keys: [peers['payerfsp-es']!.publicPem] },
            // Same key under another id, so that a swapped FSPIOP-Source fails on the header check itself.
            { id: 'otherfsp-rs', keys: [peers['payerfsp-rs']!.publicPem] },
            { id: 'rotatingfsp', keys: [peers['rotatingfsp-old']!.publicPem] },
          ],
        },
      }));
      app = await startApp(loadServiceConfig({ file: dir.at('config.json'), env: {} }), createLogger('silent'));
      client = new HsmBridgeClient({ url: app.restUrl! });
      validator = new JwsValidator({ client, logger: referenceLogger });
      await client.createKey({ name: ourKey.RS256, type: 'RSA_2048', purpose: 'sign' });
      await client.createKey({ name: ourKey.ES256, type: 'EC_P256', purpose: 'sign' });
      for (const alg of ['RS256', 'ES256'] as const) ourPem[alg] = (await client.getKey(ourKey[alg])).versions[0]!.publicKeyPem!;
      const listed = await client.call<{ participants: { id: string }[] }>('fspiop.participants.list');
      const pemOf: Record<string, string> = { 'payerfsp-rs': peers['payerfsp-rs']!.publicPem, 'payerfsp-es': peers['payerfsp-es']!.publicPem, 'otherfsp-rs': peers['payerfsp-rs']!.publicPem, rotatingfsp: peers['rotatingfsp-old']!.publicPem };
      referenceKeys = Object.fromEntries(listed.participants.map((p) => [p.id, pemOf[p.id]!]));
    }, 60_000);
    afterAll(async () => {
      client?.close();
      await app?.close();
      await cleanup?.();
      dir.remove();
    });

    const requestOptions = (source: string, headers: Record<string, string> = {}): RequestOptions => ({
      method: 'put',
      uri: URL_OF_TRANSFER,
      headers: { 'content-type': 'application/vnd.interoperability.transfers+json;version=1.1', 'fspiop-source': source, ...headers },
      body: transferBody(),
    });
    const protectedHeaderOf = (headers: Record<string, string | undefined>) => Buffer.from((JSON.parse(headers['fspiop-signature']!) as { protectedHeader: string }).protectedHeader, 'base64url').toString();

    describe('we sign: the reference signer\'s effect on the request, and the reference validator accepts', () => {
      for (const alg of ['RS256', 'ES256'] as const) {
        for (const v of variants) {
          it(`${alg}, ${v.label}`, async () => {
            const ours = requestOptions('dfsp', v.headers);
            await new JwsSigner({ client, keyName: ourKey[alg], logger: referenceLogger }).sign(ours);
            // The reference signer, with a key of the same kind, on the same request.
            const theirs = requestOptions('dfsp', v.headers);
            referenceSigner(generateTestKeyPair(alg === 'RS256' ? 'RSA' : 'EC').privatePem).sign(theirs as never);
            expect(ours.body).toBe(theirs.body);
            expect(ours.body).toBe(safeStableStringify(transferBody()));
            const { 'fspiop-signature': ourSignature, ...ourHeaders } = ours.headers;
            const { 'fspiop-signature': theirSignature, ...theirHeaders } = theirs.headers;
            expect(ourHeaders).toEqual(theirHeaders);
            expect(protectedHeaderOf(ours.headers)).toBe(protectedHeaderOf(theirs.headers));
            expect(Object.keys(JSON.parse(ourSignature!) as object)).toEqual(Object.keys(JSON.parse(theirSignature!) as object));

            // node:crypto verifies the signature over the protected header and the body
            const { protectedHeader, signature } = JSON.parse(ourSignature!) as { protectedHeader: string; signature: string };
            const input = Buffer.from(`${protectedHeader}.${Buffer.from(ours.body as string).toString('base64url')}`);
            const key = alg === 'RS256' ? createPublicKey(ourPem.RS256) : { key: createPublicKey(ourPem.ES256), dsaEncoding: 'ieee-p1363' as const };
            expect(verify('sha256', input, key, Buffer.from(signature, 'base64url'))).toBe(true);

            const incoming = { headers: ours.headers as Record<string, string>, body: JSON.parse(ours.body as string) as unknown };
            expect(referenceRefusal({ dfsp: ourPem[alg] }, incoming)).toBeUndefined();
          });
        }
      }

      it('axios-style options (url, data) and a text body, as the reference treats them', async () => {
        const text = '{ "b": 1, "a": [1, 2] }';
        const ours: RequestOptions = { method: 'post', url: 'http://peer/quotes', headers: { 'fspiop-source': 'dfsp' }, data: text };
        await new JwsSigner({ client, keyName: ourKey.ES256 }).sign(ours);
        expect(ours.data).toBe(text); // a text body is sent as it is
        expect(ours.headers).toMatchObject({ 'fspiop-uri': '/quotes', 'fspiop-http-method': 'POST' });
        expect(referenceRefusal({ dfsp: ourPem.ES256 }, { headers: ours.headers as Record<string, string>, data: JSON.parse(text) } as never)).toBeUndefined();
      });

      it('refuses what the reference refuses, with its messages, before calling the service', async () => {
        const signer = new JwsSigner({ client, keyName: ourKey.RS256 });
        const reference = referenceSigner(peers['payerfsp-rs']!.privatePem);
        const cases: RequestOptions[] = [
          { ...requestOptions('dfsp'), body: undefined },
          { ...requestOptions('dfsp'), uri: 'no-slash-here' },
        ];
        for (const c of cases) {
          let theirs: string | undefined;
          try {
            reference.sign(structuredClone(c) as never);
          } catch (e) {
            theirs = (e as Error).message;
          }
          expect(theirs).toBeDefined();
          await expect(signer.sign(structuredClone(c))).rejects.toThrow(theirs);
        }
        expect(() => new JwsSigner({ client, keyName: '' })).toThrow(/key name/);
      });

      it('our key rotated: the new version signs; the reference validator holding only the old public key refuses', async () => {
        await client.createKey({ name: 'dfsp-rotating', type: 'RSA_2048', purpose: 'sign' });
        const oldPem = (await client.getKey('dfsp-rotating')).versions[0]!.publicKeyPem!;
        await client.rotateKey('dfsp-rotating');
        const newPem = (await client.getKey('dfsp-rotating')).versions.find((k) => k.version === 2)!.publicKeyPem!;
        const req = requestOptions('dfsp');
        await new JwsSigner({ client, keyName: 'dfsp-rotating' }).sign(req);
        const incoming = { headers: req.headers as Record<string, string>, body: JSON.parse(req.body as string) as unknown };
        expect(referenceRefusal({ dfsp: newPem }, incoming)).toBeUndefined();
        expect(referenceRefusal({ dfsp: oldPem }, incoming)).toEqual({ name: 'JsonWebTokenError', message: 'invalid signature' });
      });
    });

    describe('they sign: our validator accepts what the reference accepts, and refuses with its messages', () => {
      /** A request the reference signer signed, as a Mojaloop service receives it (body parsed). */
      const signedByPeer = (peer: string, source: string, headers: Record<string, string> = {}) => {
        const req = requestOptions(source, headers);
        referenceSigner(peers[peer]!.privatePem).sign(req as never);
        return { headers: req.headers as Record<string, string>, body: JSON.parse(req.body as string) as unknown };
      };
      /** Both validators on one request: the same outcome, the same error name and message. */
      const sameAnswer = async (request: { headers: Record<string, string>; body?: unknown }) => {
        const theirs = referenceRefusal(referenceKeys, structuredClone(request));
        let ours: { name: string; message: string } | undefined;
        try {
          expect(await validator.validate(structuredClone(request))).toBe(true);
        } catch (e) {
          ours = { name: (e as Error).name, message: (e as Error).message };
        }
        expect(ours).toEqual(theirs);
        return ours;
      };

      for (const alg of ['RS256', 'ES256'] as const) {
        for (const v of variants) {
          it(`${alg}, ${v.label}: accepted`, async () => {
            expect(await sameAnswer(signedByPeer(peerOf[alg], peerOf[alg], v.headers))).toBeUndefined();
          });
        }

        const full = { 'fspiop-destination': 'payeefsp', date: DATE };
        const headerChanges: [string, (h: Record<string, string>) => void][] = [
          ['FSPIOP-URI', (h) => { h['fspiop-uri'] = '/transfers/another-id'; }],
          ['FSPIOP-HTTP-Method', (h) => { h['fspiop-http-method'] = 'POST'; }],
          ['FSPIOP-Destination changed', (h) => { h['fspiop-destination'] = 'otherfsp'; }],
          ['FSPIOP-Destination removed', (h) => { delete h['fspiop-destination']; }],
          ['Date changed', (h) => { h.date = 'Wed, 25 Nov 2026 21:30:00 GMT'; }],
          ['Date removed', (h) => { delete h.date; }],
          ['FSPIOP-Signature removed', (h) => { delete h['fspiop-signature']; }],
          ['FSPIOP-URI removed', (h) => { delete h['fspiop-uri']; }],
          ['FSPIOP-Source removed', (h) => { delete h['fspiop-source']; }],
          ['FSPIOP-Source of an unknown participant', (h) => { h['fspiop-source'] = 'strangerfsp'; }],
          // The reference reports the unknown source before anything else is wrong with the request.
          ['FSPIOP-Source of an unknown participant, and FSPIOP-URI removed', (h) => { h['fspiop-source'] = 'strangerfsp'; delete h['fspiop-uri']; }],
          ['FSPIOP-Source of an unknown participant, and FSPIOP-Signature not JSON', (h) => { h['fspiop-source'] = 'strangerfsp'; h['fspiop-signature'] = '{"signature":'; }],
          ['FSPIOP-Source of an unknown participant, and a protected header that is not JSON', (h) => { h['fspiop-source'] = 'strangerfsp'; h['fspiop-signature'] = JSON.stringify({ ...(JSON.parse(h['fspiop-signature']!) as object), protectedHeader: 'bm90IGpzb24' }); }],
          ['FSPIOP-Signature not JSON', (h) => { h['fspiop-signature'] = '{"signature":'; }],
          ['FSPIOP-Signature without a signature', (h) => { h['fspiop-signature'] = JSON.stringify({ protectedHeader: (JSON.parse(h['fspiop-signature']!) as { protectedHeader: string }).protectedHeader, signature: '' }); }],
          ['FSPIOP-Signature with a dot in the protected header', (h) => { h['fspiop-signature'] = JSON.stringify({ ...(JSON.parse(h['fspiop-signature']!) as object), protectedHeader: 'a.b' }); }],
          ['FSPIOP-Signature with a protected header that is not JSON', (h) => { h['fspiop-signature'] = JSON.stringify({ ...(JSON.parse(h['fspiop-signature']!) as object), protectedHeader: 'bm90IGpzb24' }); }],
        ];
        for (const [what, change] of headerChanges) {
          it(`${alg}, HTTP header: ${what}`, async () => {
            const request = signedByPeer(peerOf[alg], peerOf[alg], full);
            change(request.headers);
            expect(await sameAnswer(request)).toBeDefined();
          });
        }

        it(`${alg}: FSPIOP-Source swapped to another participant (with the same key for RS256, another for ES256)`, async () => {
          const request = signedByPeer(peerOf[alg], peerOf[alg], full);
          request.headers['fspiop-source'] = 'otherfsp-rs';
          expect((await sameAnswer(request))!.message).toMatch(alg === 'RS256' ? /^FSPIOP-Source HTTP request header value/ : /^"alg" parameter for "rsa" key type must be one of/);
        });

        const memberChanges: [string, string, string][] = [
          ['FSPIOP-URI', 'fspiop-uri', '/transfers/another-id'],
          ['FSPIOP-HTTP-Method', 'fspiop-http-method', 'POST'],
          ['FSPIOP-Destination', 'fspiop-destination', 'otherfsp'],
          ['Date', 'date', 'Wed, 25 Nov 2026 21:30:00 GMT'],
          ['alg', '', 'RS512'],
          ['alg', '', 'HS256'],
        ];
        for (const [member, httpName, value] of memberChanges) {
          it(`${alg}, protected header member ${member} rewritten to ${value} (HTTP header to match)`, async () => {
            const request = signedByPeer(peerOf[alg], peerOf[alg], full);
            const sig = JSON.parse(request.headers['fspiop-signature']!) as { signature: string; protectedHeader: string };
            const header = JSON.parse(Buffer.from(sig.protectedHeader, 'base64url').toString()) as Record<string, string>;
            header[member] = value;
            if (httpName) request.headers[httpName] = value;
            request.headers['fspiop-signature'] = JSON.stringify({ ...sig, protectedHeader: Buffer.from(JSON.stringify(header)).toString('base64url') });
            expect((await sameAnswer(request))!.name).toBe('JsonWebTokenError');
          });
        }

        it(`${alg}, body: one amount digit changed; no body`, async () => {
          const request = signedByPeer(peerOf[alg], peerOf[alg], full);
          (request.body as { amount: { amount: string } }).amount.amount = '923.45';
          expect(await sameAnswer(request)).toEqual({ name: 'JsonWebTokenError', message: 'invalid signature' });
          expect((await sameAnswer({ ...request, body: undefined }))!.message).toBe('Cannot validate JWS without a body');
        });

        it(`${alg}, signature: one bit flipped`, async () => {
          const request = signedByPeer(peerOf[alg], peerOf[alg], full);
          const sig = JSON.parse(request.headers['fspiop-signature']!) as { signature: string; protectedHeader: string };
          const raw = Buffer.from(sig.signature, 'base64url');
          raw[5]! ^= 1;
          request.headers['fspiop-signature'] = JSON.stringify({ ...sig, signature: raw.toString('base64url') });
          expect(await sameAnswer(request)).toEqual({ name: 'JsonWebTokenError', message: 'invalid signature' });
        });

        it(`${alg}: an unsigned HTTP FSPIOP-Destination is refused, an unsigned Date accepted, empty headers count as absent`, async () => {
          const plain = signedByPeer(peerOf[alg], peerOf[alg]);
          const unsigned = await sameAnswer({ ...plain, headers: { ...plain.headers, 'fspiop-destination': 'payeefsp' } });
          expect(unsigned!.message).toMatch(/^HTTP fspiop-destination header is present but is not present in protected header/);
          expect(await sameAnswer({ ...plain, headers: { ...plain.headers, date: DATE } })).toBeUndefined();
          expect(await sameAnswer({ ...plain, headers: { ...plain.headers, 'fspiop-destination': '', date: '' } })).toBeUndefined();
          const signed = signedByPeer(peerOf[alg], peerOf[alg], full);
          for (const name of ['fspiop-destination', 'date']) expect(await sameAnswer({ ...signed, headers: { ...signed.headers, [name]: '' } }), name).toBeDefined();
        });
      }

      it('a participant whose only key is of another type than the signature: jsonwebtoken\'s message', async () => {
        expect((await sameAnswer(signedByPeer('payerfsp-es', 'rotatingfsp')))!.message).toMatch(/^"alg" parameter for "rsa" key type must be one of/);
      });

      it('a participant with two active keys during a rotation (Mojaloop #4301): both validate; after the old key is removed, only the new', async () => {
        const byOld = signedByPeer('rotatingfsp-old', 'rotatingfsp');
        const byNew = signedByPeer('rotatingfsp-new', 'rotatingfsp');
        expect(await validator.validate(byOld)).toBe(true);
        await expect(validator.validate(byNew)).rejects.toThrow('invalid signature');

        const added = await client.call<{ keyId: string }>('fspiop.participants.write', { id: 'rotatingfsp', publicKeyPem: peers['rotatingfsp-new']!.publicPem });
        expect(await validator.validate(byOld)).toBe(true);
        expect(await validator.validate(byNew)).toBe(true);
        // The reference holds one key per participant: it accepts one of the two at a time.
        expect(referenceRefusal({ rotatingfsp: peers['rotatingfsp-old']!.publicPem }, byNew)).toEqual({ name: 'JsonWebTokenError', message: 'invalid signature' });

        const { participants } = await client.call<{ participants: { id: string; keys: { keyId: string; source: string }[] }[] }>('fspiop.participants.list');
        const keys = participants.find((p) => p.id === 'rotatingfsp')!.keys;
        expect(keys.map((k) => k.keyId)).toContain(added.keyId);
        // The configured (old) key can only go from the configuration; the API key can be removed: then the old alone again.
        await client.call('fspiop.participants.delete', { id: 'rotatingfsp', keyId: added.keyId });
        await expect(validator.validate(byNew)).rejects.toBeInstanceOf(JsonWebTokenError);
        expect(await validator.validate(byOld)).toBe(true);
      });

      it('a caller that may not read the participant list learns that, in the refusal of an unknown source; a malformed request keeps its own refusal; an unavailable service is no refusal', async () => {
        // The service's own refusals, as the policy would give them, for the list call alone.
        const listRefusedWith = (code: string) => new JwsValidator({
          client: { fspiopSign: client.fspiopSign.bind(client), fspiopValidate: client.fspiopValidate.bind(client), call: (async (op: string, ...rest: unknown[]) => {
            if (op === 'fspiop.participants.list') throw new HsmBridgeClientError(code as never, 'refused', 403);
            return client.call(op, ...(rest as []));
          }) as HsmBridgeClient['call'] },
          logger: referenceLogger,
        });
        const request = signedByPeer(peerOf.RS256, peerOf.RS256);
        request.headers['fspiop-source'] = 'strangerfsp';
        await expect(listRefusedWith('PERMISSION_DENIED').validate(request)).rejects.toThrow("JWS public key for 'strangerfsp' not available. Unable to verify JWS. Only have keys for: (the participant list could not be read: PERMISSION_DENIED)");
        // A request refused for its own fault keeps that fault when the list cannot be read: nothing is known of the key.
        delete request.headers['fspiop-uri'];
        for (const code of ['PERMISSION_DENIED', 'BACKEND_UNAVAILABLE']) {
          await expect(listRefusedWith(code).validate(request)).rejects.toThrow(/^fspiop-uri, fspiop-http-method and fspiop-signature HTTP headers are all required/);
          const known = signedByPeer(peerOf.RS256, peerOf.RS256);
          delete known.headers['fspiop-uri'];
          await expect(listRefusedWith(code).validate(known)).rejects.toThrow(/^fspiop-uri, fspiop-http-method and fspiop-signature HTTP headers are all required/);
        }
        // An unavailable service is no answer about the request when only the service can judge it.
        const unknown = signedByPeer(peerOf.RS256, peerOf.RS256);
        unknown.headers['fspiop-source'] = 'strangerfsp';
        await expect(listRefusedWith('BACKEND_UNAVAILABLE').validate(unknown)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
        // A known source needs no list: it validates.
        expect(await listRefusedWith('PERMISSION_DENIED').validate(signedByPeer(peerOf.RS256, peerOf.RS256))).toBe(true);
      });

      it('the signer writes nothing without a logger, as the reference; with a logger whose debug is on, a debug line', async () => {
        const written: string[] = [];
        const originals = { debug: console.debug, log: console.log, info: console.info };
        console.debug = console.log = console.info = (...args: unknown[]) => void written.push(args.join(' '));
        try {
          await new JwsSigner({ client, keyName: ourKey.ES256 }).sign(requestOptions('dfsp'));
        } finally {
          Object.assign(console, originals);
        }
        expect(written).toEqual([]);
        const lines: unknown[][] = [];
        const debugLogger = { child: () => ({ isDebugEnabled: true, debug: (...args: unknown[]) => lines.push(args) }) };
        await new JwsSigner({ client, keyName: ourKey.ES256, logger: debugLogger }).sign(requestOptions('dfsp'));
        expect(lines).toHaveLength(1);
        await new JwsSigner({ client, keyName: ourKey.ES256, logger: { child: () => ({ isDebugEnabled: false, debug: (...args: unknown[]) => lines.push(args) }) } }).sign(requestOptions('dfsp'));
        expect(lines).toHaveLength(1);
      });

      it('logs each refusal at error level through logger.child(), as the reference does', async () => {
        const logged: unknown[][] = [];
        const logger = { child: () => ({ child: () => logger, error: (...args: unknown[]) => logged.push(args) }) };
        const withLogger = new JwsValidator({ client, logger });
        await expect(withLogger.validate({ headers: {}, body: { a: 1 } })).rejects.toThrow('FSPIOP-Source HTTP header not in request headers');
        expect(logged).toHaveLength(1);
        expect(logged[0]![0]).toBe('Error validating JWS: ');
        expect(() => new JwsValidator({} as never)).toThrow(/client/);
      });
    });
  });
}
