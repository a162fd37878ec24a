/**
 * FSPIOP Encryption v1.1 both ways, with our RSA key in the backend (software and SoftHSM): encrypt then
 * sign, validate then decrypt; an external party's message built by hand with node:crypto (the spec's
 * other header shape, a 128-bit IV) decrypts with us; our fields decrypt with jose; tampering is refused;
 * fields jose encrypts decrypt with every enc the spec allows, and with "zip" or an unknown "crit" are refused.
 */
import { constants, createCipheriv, privateDecrypt, publicEncrypt, randomBytes, sign as nodeSign, type KeyObject } from 'node:crypto';
import { compactDecrypt, FlattenedEncrypt, type JWEHeaderParameters } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encryptFields, decryptFields, FieldDecryptionError } from '../../src/fspiop/fieldEncryption.js';
import { FspiopService } from '../../src/fspiop/fspiopService.js';
import { ParticipantRegistry } from '../../src/fspiop/participants.js';
import type { Backend } from '../../src/backend/port.js';
import type { KeyService } from '../../src/operations/keyService.js';
import { backendsUnderTest, generateTestKeyPair, keyServiceOn, publicKeyOfPem, publicPemOf, referenceAccepts, silentLogger, transferBody, type TestKeyPair } from './support.js';

const b64u = (b: Buffer | string) => Buffer.from(b).toString('base64url');

function partyBody(): Record<string, unknown> {
  return { ...transferBody(), payee: { partyIdInfo: { partyIdType: 'MSISDN', partyIdentifier: '+44 7700 900123' }, name: 'Zoë “Q” Ωmega' } };
}

/** An external party's FSPIOP encryption, written from the spec with node:crypto only. */
function encryptByHand(body: Record<string, unknown>, field: string[], recipientPem: string, ivBytes: number) {
  const protectedHeader = b64u(JSON.stringify({ alg: 'RSA-OAEP-256', enc: 'A256GCM' }));
  const entries = field.map((path) => {
    const parts = path.split('.');
    let parent = body as Record<string, unknown>;
    for (const p of parts.slice(0, -1)) parent = parent[p] as Record<string, unknown>;
    const last = parts[parts.length - 1]!;
    const value = parent[last];
    const plaintext = Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));
    const cek = randomBytes(32);
    const iv = randomBytes(ivBytes);
    const cipher = createCipheriv('aes-256-gcm', cek, iv);
    cipher.setAAD(Buffer.from(protectedHeader, 'ascii'));
    parent[last] = b64u(Buffer.concat([cipher.update(plaintext), cipher.final()]));
    return {
      fieldName: path,
      encryptedKey: b64u(publicEncrypt({ key: recipientPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, cek)),
      protectedHeader,
      initializationVector: b64u(iv),
      authenticationTag: b64u(cipher.getAuthTag()),
    };
  });
  return entries;
}

/** Signs by hand, FSPIOP-Encryption inside the protected header (encrypt first, then sign). */
function signByHand(pair: TestKeyPair, source: string, body: string, encryption: string) {
  const header = { alg: 'RS256', 'FSPIOP-URI': '/transfers', 'FSPIOP-HTTP-Method': 'POST', 'FSPIOP-Source': source, 'FSPIOP-Encryption': encryption };
  const protectedHeader = b64u(JSON.stringify(header));
  const signature = b64u(nodeSign('sha256', Buffer.from(`${protectedHeader}.${b64u(body)}`), pair.privatePem));
  return {
    'fspiop-source': source,
    'fspiop-uri': '/transfers',
    'fspiop-http-method': 'POST',
    'fspiop-encryption': encryption,
    'fspiop-signature': JSON.stringify({ protectedHeader, signature }),
  };
}

for (const target of backendsUnderTest) {
  describe(`FSPIOP field encryption with ${target.label} keys`, () => {
    let cleanup: () => Promise<void>;
    let backend: Backend;
    let keyService: KeyService;
    let registry: ParticipantRegistry;
    let service: FspiopService;
    const external = generateTestKeyPair('RSA');
    let ourEncPem: string;

    beforeAll(async () => {
      const opened = await target.open();
      cleanup = opened.cleanup;
      backend = opened.backend;
      keyService = keyServiceOn(opened.backend);
      await keyService.createKey({ name: 'fspiop-enc', type: 'RSA_2048', purpose: 'encrypt' });
      await keyService.createKey({ name: 'fspiop-sig', type: 'RSA_2048' });
      ourEncPem = await publicPemOf(keyService, 'fspiop-enc');
      registry = await ParticipantRegistry.open({
        logger: silentLogger,
        participants: [
          // We are both ends here: payerfsp signs with our signing key, payeefsp receives with our encryption key.
          { id: 'payerfsp', keys: [await publicPemOf(keyService, 'fspiop-sig')] },
          { id: 'payeefsp', keys: [], encryptionKeys: [ourEncPem] },
          { id: 'extfsp', keys: [external.publicPem] },
        ],
      });
      service = new FspiopService({ keyService, registry });
    });
    afterAll(async () => {
      await registry?.close();
      await cleanup?.();
    });

    it('encrypt then sign; validate then decrypt restores the body (string and object fields)', async () => {
      const chosen = ['payee.partyIdInfo', 'extensionList', 'ilpPacket', 'payee.name'];
      const r = await service.sign({
        key: 'fspiop-sig', method: 'POST', uri: '/transfers', source: 'payerfsp', destination: 'payeefsp', body: partyBody(),
        encryptFields: { fields: chosen, recipient: 'payeefsp' },
      });
      const sent = JSON.parse(r.body) as Record<string, unknown>;
      const header = JSON.parse(r.headers['fspiop-encryption']!) as { encryptedFields: Record<string, string>[] };
      expect(Array.isArray(header.encryptedFields)).toBe(true);
      expect(header.encryptedFields.map((e) => e.fieldName)).toEqual(chosen);
      for (const e of header.encryptedFields) {
        expect(Object.keys(e)).toEqual(['fieldName', 'encryptedKey', 'protectedHeader', 'initializationVector', 'authenticationTag']);
        expect(JSON.parse(Buffer.from(e.protectedHeader!, 'base64url').toString())).toEqual({ alg: 'RSA-OAEP-256', enc: 'A256GCM' });
        expect(Buffer.from(e.initializationVector!, 'base64url')).toHaveLength(12);
      }
      expect(sent.ilpPacket).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(sent.ilpPacket).not.toBe(partyBody().ilpPacket);
      expect(JSON.stringify(sent)).not.toContain('Ωmega');
      // The FSPIOP-Encryption header is signed, exactly as sent.
      const sig = JSON.parse(r.signatureHeader) as { protectedHeader: string };
      expect(JSON.parse(Buffer.from(sig.protectedHeader, 'base64url').toString())['FSPIOP-Encryption']).toBe(r.headers['fspiop-encryption']);

      const headers = { 'fspiop-source': 'payerfsp', 'fspiop-destination': 'payeefsp', ...r.headers };
      expect(referenceAccepts({ payerfsp: await publicPemOf(keyService, 'fspiop-sig') }, { headers, body: sent })).toBe(true);
      expect(await service.validate({ headers, body: r.body })).toEqual({ valid: true, participant: 'payerfsp', keyId: expect.any(String), algorithm: 'RS256' });
      const opened = await service.validate({ headers, body: r.body, decryptWith: 'fspiop-enc' });
      expect(opened).toMatchObject({ valid: true });
      expect((opened as { body: unknown }).body).toEqual(partyBody());
      // FSPIOP-Encryption sent but not signed, or changed: refused before any decryption.
      const other = JSON.stringify({ encryptedFields: header.encryptedFields.slice(1) });
      expect(await service.validate({ headers: { ...headers, 'fspiop-encryption': other }, body: r.body })).toMatchObject({ valid: false, reason: expect.stringContaining('FSPIOP-Encryption') });
    });

    it('an external party (spec table form, 128-bit IV, node:crypto) encrypts and signs; we validate and decrypt', async () => {
      const body = partyBody();
      const entries = encryptByHand(body, ['payee.partyIdInfo', 'ilpPacket'], ourEncPem, 16);
      const encryption = JSON.stringify({ encryptedFields: { encryptedField: entries } });
      const text = JSON.stringify(body);
      const result = await service.validate({ headers: signByHand(external, 'extfsp', text, encryption), body: text, decryptWith: 'fspiop-enc' });
      expect(result).toMatchObject({ valid: true, participant: 'extfsp', body: partyBody() });
    });

    it('our fields decrypt with jose (an independent JWE implementation)', async () => {
      const recipient = generateTestKeyPair('RSA');
      const { body, header } = await encryptFields(partyBody(), ['payee.partyIdInfo', 'ilpPacket'], recipient.publicKey);
      const entries = (JSON.parse(header) as { encryptedFields: Record<string, string>[] }).encryptedFields;
      const privateKey = (await import('node:crypto')).createPrivateKey(recipient.privatePem);
      const payee = body.payee as Record<string, unknown>;
      const ciphertexts = [payee.partyIdInfo as string, body.ilpPacket as string];
      const plaintexts = [];
      for (const [i, e] of entries.entries()) {
        const compact = [e.protectedHeader, e.encryptedKey, e.initializationVector, ciphertexts[i], e.authenticationTag].join('.');
        plaintexts.push(new TextDecoder().decode((await compactDecrypt(compact, privateKey)).plaintext));
      }
      expect(JSON.parse(plaintexts[0]!)).toEqual((partyBody().payee as Record<string, unknown>).partyIdInfo);
      expect(plaintexts[0]).toBe('{"partyIdType":"MSISDN","partyIdentifier":"+44 7700 900123"}');
      expect(plaintexts[1]).toBe(partyBody().ilpPacket);
      // The content key went through RSA-OAEP-256: node:crypto unwraps it with SHA-256, not with SHA-1.
      const cek = privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, Buffer.from(entries[0]!.encryptedKey!, 'base64url'));
      expect(cek).toHaveLength(32);
    });

    it('a tampered field is refused, naming every field that failed and nothing of its content', async () => {
      const body = partyBody();
      const entries = encryptByHand(body, ['payee.partyIdInfo', 'ilpPacket', 'expiration'], ourEncPem, 12);
      const payee = body.payee as Record<string, string>;
      // Change one character of two ciphertexts: the GCM tag no longer matches.
      const flip = (s: string) => (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
      payee.partyIdInfo = flip(payee.partyIdInfo!);
      body.ilpPacket = flip(body.ilpPacket as string);
      const text = JSON.stringify(body);
      const encryption = JSON.stringify({ encryptedFields: entries });
      const result = await service.validate({ headers: signByHand(external, 'extfsp', text, encryption), body: text, decryptWith: 'fspiop-enc' });
      expect(result).toEqual({ valid: false, errorCode: '3105', reason: 'field decryption failed for payee.partyIdInfo, ilpPacket' });
      // Without decryptWith, the signature alone is checked (and holds).
      expect(await service.validate({ headers: signByHand(external, 'extfsp', text, encryption), body: text })).toMatchObject({ valid: true });
    });

    it('a content key wrapped for another key, a wrong alg, a bad IV or a missing field fail that field', async () => {
      const stranger = generateTestKeyPair('RSA');
      const cases: [string, (entries: Record<string, string>[], body: Record<string, unknown>) => void][] = [
        ['key wrapped for someone else', (e) => { e[0]!.encryptedKey = b64u(publicEncrypt({ key: stranger.publicPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, randomBytes(32))); }],
        ['encryptedKey of the wrong length', (e) => { e[0]!.encryptedKey = b64u(randomBytes(10)); }],
        ['encryptedKey longer than the modulus', (e) => { e[0]!.encryptedKey = b64u(randomBytes(300)); }],
        ['RSA-OAEP (SHA-1) declared', (e) => { e[0]!.protectedHeader = b64u(JSON.stringify({ alg: 'RSA-OAEP', enc: 'A256GCM' })); }],
        ['8-byte IV', (e) => { e[0]!.initializationVector = b64u(randomBytes(8)); }],
        ['field absent from the body', (_e, body) => { delete body.ilpPacket; }],
      ];
      for (const [what, spoil] of cases) {
        const body = partyBody();
        const entries = encryptByHand(body, ['ilpPacket'], ourEncPem, 12) as Record<string, string>[];
        spoil(entries, body);
        await expect(decryptFields(body, JSON.stringify({ encryptedFields: entries }), keyService, 'fspiop-enc'), what).rejects.toBeInstanceOf(FieldDecryptionError);
      }
      for (const header of ['not json', '{}', '{"encryptedFields":[]}', '{"encryptedFields":[{"fieldName":"a"}]}']) {
        await expect(decryptFields(partyBody(), header, keyService, 'fspiop-enc'), header).rejects.toBeInstanceOf(FieldDecryptionError);
      }
      // Our signing key cannot decrypt: a clear error, not a silent failure.
      await expect(decryptFields(partyBody(), JSON.stringify({ encryptedFields: encryptByHand(partyBody(), ['ilpPacket'], ourEncPem, 12) }), keyService, 'fspiop-sig'))
        .rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    });

    it('fields encrypted to an earlier version of our key still decrypt after a rotation', async () => {
      await keyService.createKey({ name: 'fspiop-enc-rot', type: 'RSA_2048', purpose: 'encrypt' });
      const v1 = await publicPemOf(keyService, 'fspiop-enc-rot');
      const body = partyBody();
      const header = await encryptFields(body, ['ilpPacket'], publicKeyOfPem(v1));
      await keyService.rotateKey('fspiop-enc-rot');
      expect(await publicPemOf(keyService, 'fspiop-enc-rot')).not.toBe(v1);
      expect(await decryptFields(header.body, header.header, keyService, 'fspiop-enc-rot')).toEqual(partyBody());
    });

    it('a field for a retired version fails as a field, like a tampered one, not as a key-state error', async () => {
      await keyService.createKey({ name: 'fspiop-enc-ret', type: 'RSA_2048', purpose: 'encrypt' });
      const v1 = await publicPemOf(keyService, 'fspiop-enc-ret');
      const sealed = await encryptFields(partyBody(), ['ilpPacket'], publicKeyOfPem(v1));
      await keyService.rotateKey('fspiop-enc-ret');
      expect(await decryptFields(structuredClone(sealed.body), sealed.header, keyService, 'fspiop-enc-ret')).toEqual(partyBody());
      await keyService.updateKey({ name: 'fspiop-enc-ret', minDecryptionVersion: 2 });
      await expect(decryptFields(sealed.body, sealed.header, keyService, 'fspiop-enc-ret')).rejects.toMatchObject({ name: 'FieldDecryptionError', fields: ['ilpPacket'] });
    });

    it('unwraps with the primary version and the one before it, no older, with key metadata from the cache', async () => {
      // A counting view of the same backend: which calls decryption makes, not what they return.
      const calls = { describeKey: 0, decrypt: [] as number[] };
      const counted = new Proxy(backend, {
        get(target, prop, receiver) {
          const value = Reflect.get(target, prop, receiver) as unknown;
          if (prop === 'describeKey') return (...args: unknown[]) => { calls.describeKey++; return (value as (...a: unknown[]) => unknown).apply(target, args); };
          if (prop === 'decrypt') return (key: { version: number }, ...rest: unknown[]) => { calls.decrypt.push(key.version); return (value as (...a: unknown[]) => unknown).apply(target, [key, ...rest]); };
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      const keys = keyServiceOn(counted);
      await keys.createKey({ name: 'fspiop-enc-3', type: 'RSA_2048', purpose: 'encrypt' });
      const pems = [await publicPemOf(keys, 'fspiop-enc-3')];
      for (let i = 0; i < 2; i++) {
        await keys.rotateKey('fspiop-enc-3');
        pems.push(await publicPemOf(keys, 'fspiop-enc-3'));
      }
      const sealedFor = (version: number) => encryptFields(partyBody(), ['ilpPacket'], publicKeyOfPem(pems[version - 1]!));
      await keys.usableKeyVersion('fspiop-enc-3', 'encrypt'); // the cache is warm
      calls.describeKey = 0;

      for (const version of [3, 2]) {
        calls.decrypt = [];
        const sealed = await sealedFor(version);
        expect(await decryptFields(sealed.body, sealed.header, keys, 'fspiop-enc-3')).toEqual(partyBody());
        expect(calls.decrypt).toEqual(version === 3 ? [3] : [3, 2]);
      }
      // Two rotations back is too old: tried with versions 3 and 2 only, then refused like a tampered field.
      calls.decrypt = [];
      const old = await sealedFor(1);
      await expect(decryptFields(old.body, old.header, keys, 'fspiop-enc-3')).rejects.toMatchObject({ name: 'FieldDecryptionError', fields: ['ilpPacket'] });
      expect(calls.decrypt).toEqual([3, 2]);
      // A content key of the wrong length for our modulus never reaches the backend.
      calls.decrypt = [];
      const short = JSON.parse(old.header) as { encryptedFields: Record<string, string>[] };
      short.encryptedFields[0]!.encryptedKey = b64u(randomBytes(128));
      await expect(decryptFields(old.body, JSON.stringify(short), keys, 'fspiop-enc-3')).rejects.toBeInstanceOf(FieldDecryptionError);
      expect(calls.decrypt).toEqual([]);
      expect(calls.describeKey).toBe(0);
    });

    it('encryptFields refuses what cannot round-trip', async () => {
      const key = publicKeyOfPem(ourEncPem);
      await expect(encryptFields({ n: 1 }, ['n'], key)).rejects.toThrow(/string, object or array/);
      await expect(encryptFields({ a: 'x' }, ['b'], key)).rejects.toThrow(/not in the body/);
      await expect(encryptFields({ a: 'x' }, ['a', 'a'], key)).rejects.toThrow(/twice/);
      await expect(encryptFields({ a: 'x' }, [], key)).rejects.toThrow(/from 1/);
      await expect(encryptFields(JSON.parse('{"__proto__":"x"}') as Record<string, unknown>, ['__proto__'], key)).rejects.toThrow(/not in the body/);
    });
  });
}

/**
 * Fields made by jose (an independent JWE implementation), as another party would send them, through
 * FspiopService validate with decryptWith on the software backend: every enc the spec allows decrypts;
 * "zip" and an unknown "crit" are refused like any other field that does not decrypt.
 */
describe('FSPIOP fields encrypted with jose', () => {
  let cleanup: () => Promise<void>;
  let registry: ParticipantRegistry;
  let service: FspiopService;
  let ourEncKey: KeyObject;
  const external = generateTestKeyPair('RSA');

  beforeAll(async () => {
    const opened = await backendsUnderTest.find((t) => t.label === 'software')!.open();
    cleanup = opened.cleanup;
    const keyService = keyServiceOn(opened.backend);
    await keyService.createKey({ name: 'fspiop-enc', type: 'RSA_2048', purpose: 'encrypt' });
    ourEncKey = publicKeyOfPem(await publicPemOf(keyService, 'fspiop-enc'));
    registry = await ParticipantRegistry.open({ logger: silentLogger, participants: [{ id: 'extfsp', keys: [external.publicPem] }] });
    service = new FspiopService({ keyService, registry });
  });
  afterAll(async () => {
    await registry?.close();
    await cleanup?.();
  });

  /** Encrypts each field of `body` in place with jose's FlattenedEncrypt; returns the FSPIOP-Encryption header. */
  async function joseEncrypt(body: Record<string, unknown>, fields: string[], header: JWEHeaderParameters, crit?: Record<string, boolean>): Promise<string> {
    const encryptedFields = [];
    for (const path of fields) {
      const parts = path.split('.');
      let parent = body;
      for (const p of parts.slice(0, -1)) parent = parent[p] as Record<string, unknown>;
      const last = parts[parts.length - 1]!;
      const value = parent[last];
      const plaintext = new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value));
      const jwe = await new FlattenedEncrypt(plaintext).setProtectedHeader(header).encrypt(ourEncKey, crit ? { crit } : {});
      parent[last] = jwe.ciphertext;
      encryptedFields.push({ fieldName: path, encryptedKey: jwe.encrypted_key, protectedHeader: jwe.protected, initializationVector: jwe.iv, authenticationTag: jwe.tag });
    }
    return JSON.stringify({ encryptedFields });
  }

  async function validate(body: Record<string, unknown>, encryption: string) {
    const text = JSON.stringify(body);
    return service.validate({ headers: signByHand(external, 'extfsp', text, encryption), body: text, decryptWith: 'fspiop-enc' });
  }

  for (const enc of ['A128GCM', 'A192GCM', 'A256GCM']) {
    it(`RSA-OAEP-256 with ${enc}: string and object fields decrypt`, async () => {
      const body = partyBody();
      const encryption = await joseEncrypt(body, ['payee.partyIdInfo', 'payee.name', 'ilpPacket'], { alg: 'RSA-OAEP-256', enc });
      expect(JSON.stringify(body)).not.toContain('Ωmega');
      expect(await validate(body, encryption)).toEqual({ valid: true, participant: 'extfsp', keyId: expect.any(String), algorithm: 'RS256', body: partyBody() });
    });
  }

  it('"zip": "DEF" is refused for that field, not handed back compressed', async () => {
    const body = partyBody();
    const encryption = await joseEncrypt(body, ['ilpPacket'], { alg: 'RSA-OAEP-256', enc: 'A256GCM', zip: 'DEF' });
    expect(JSON.parse(Buffer.from((JSON.parse(encryption) as { encryptedFields: { protectedHeader: string }[] }).encryptedFields[0]!.protectedHeader, 'base64url').toString())).toMatchObject({ zip: 'DEF' });
    expect(await validate(body, encryption)).toEqual({ valid: false, errorCode: '3105', reason: 'field decryption failed for ilpPacket' });
  });

  it('an unknown "crit" extension is refused for that field (RFC 7516 §4.1.13), the other fields failing with it', async () => {
    const body = partyBody();
    const good = JSON.parse(await joseEncrypt(body, ['payee.partyIdInfo'], { alg: 'RSA-OAEP-256', enc: 'A256GCM' })) as { encryptedFields: unknown[] };
    const critical = JSON.parse(await joseEncrypt(body, ['ilpPacket'], { alg: 'RSA-OAEP-256', enc: 'A256GCM', crit: ['x-unknown'], 'x-unknown': 1 }, { 'x-unknown': true })) as { encryptedFields: unknown[] };
    const encryption = JSON.stringify({ encryptedFields: [...good.encryptedFields, ...critical.encryptedFields] });
    expect(await validate(body, encryption)).toEqual({ valid: false, errorCode: '3105', reason: 'field decryption failed for ilpPacket' });
  });

  it('an alg or enc FSPIOP does not allow is refused for that field, not thrown', async () => {
    for (const header of [{ alg: 'RSA-OAEP', enc: 'A256GCM' }, { alg: 'RSA-OAEP-256', enc: 'A128CBC-HS256' }]) {
      const body = partyBody();
      const encryption = await joseEncrypt(body, ['ilpPacket'], header);
      expect(await validate(body, encryption), JSON.stringify(header)).toEqual({ valid: false, errorCode: '3105', reason: 'field decryption failed for ilpPacket' });
    }
  });

  it('quotes at most 64 characters of a field path in a reason or error', async () => {
    const long = `a${'x'.repeat(5000)}`; // within the 16 KB a signature header may have
    const body = partyBody();
    const encryption = JSON.parse(await joseEncrypt(body, ['ilpPacket'], { alg: 'RSA-OAEP-256', enc: 'A256GCM' })) as { encryptedFields: Record<string, string>[] };
    encryption.encryptedFields[0]!.fieldName = long;
    const result = (await validate(body, JSON.stringify(encryption))) as { valid: false; reason: string };
    expect(result).toMatchObject({ valid: false, errorCode: '3105' });
    expect(result.reason).toContain(long.slice(0, 64));
    expect(result.reason).not.toContain(long.slice(0, 65));
    const refusal = await encryptFields({ a: 'x' }, [long], ourEncKey).catch((e: Error) => e);
    expect(refusal).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect((refusal as Error).message).toContain(long.slice(0, 64));
    expect((refusal as Error).message).not.toContain(long.slice(0, 65));
  });
});
