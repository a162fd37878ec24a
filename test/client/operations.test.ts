/**
 * Every declared operation through HsmBridgeClient, over REST and over gRPC, against one running service
 * (software backend, an access policy with bearer tokens): its happy path, checked where an independent
 * check exists (node:crypto, a known key's PIN block), and one refusal with the stable code, the same on
 * both channels. The list of cases is the list of declarations: a declared operation without a case fails.
 * Both channels must also give the same shape of answer, since they share the generated types.
 */
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { operations } from '../../src/api/operations/index.js';
import { startApp, type RunningApp } from '../../src/app.js';
import { HsmBridgeClient, HsmBridgeClientError, operationMethods } from '../../src/client/index.js';
import { loadServiceConfig } from '../../src/config/load.js';
import { wrapForImport } from '../../src/conformance/reference/byokWrap.js';
import { nodeEcb, nodeKcv } from '../../src/conformance/reference/nodeBlockCiphers.js';
import { createLogger } from '../../src/log.js';
import { cmacWithKey } from '../../src/payment/crypto/cmac.js';
import { setOddParity } from '../../src/payment/crypto/parity.js';
import { deriveKeyBlockKeys, sealKeyBlock } from '../../src/payment/tr31/keyBlock.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../helpers/software.js';
import { AUDIENCE, ISSUER, tempDir, tokenIssuer } from '../identity/accessSupport.js';

type Flavour = 'rest' | 'grpc';
const flavours: Flavour[] = ['rest', 'grpc'];
const PAN = '4111111111111111';
const NO_KEY = 'no-such-key';

const files = tempDir();
let app: RunningApp;
let harness: SoftwareBackendHarness;
const tokens = { operator: '', nobody: '' };

/** A clear ISO 9564 format 0 PIN block for `pin` and PAN. */
function format0(pin: string): Buffer {
  const pinField = Buffer.from(`0${pin.length}${pin}`.padEnd(16, 'F'), 'hex');
  const panField = Buffer.from(`0000${PAN.slice(-13, -1)}`, 'hex');
  return Buffer.from(pinField.map((b, i) => b ^ panField[i]!));
}

/** What each flavour's cases work with: its clients and the keys made for it. */
interface Fixture {
  readonly flavour: Flavour;
  readonly client: HsmBridgeClient;
  /** A caller the policy names for nothing. */
  readonly nobody: HsmBridgeClient;
  /** A fresh name for this flavour. */
  fresh(stem: string): string;
  /** Keys made in beforeAll: name by role. */
  readonly keys: Record<'ec' | 'rsa' | 'aes' | 'hmac' | 'tok' | 'fpe' | 'kbpk' | 'pinIn' | 'pinOut' | 'exportable', string>;
  /** The clear values of keys imported wrapped, so that PIN blocks and key blocks can be made and read here. */
  readonly clearKeys: Record<'pinIn' | 'pinOut' | 'kbpk', Buffer>;
  /** Filled by earlier cases for later ones. */
  readonly state: Record<string, any>;
}

interface Case {
  /** The happy path; returns the answer, which is checked here or by `check`. */
  run(f: Fixture): Promise<unknown>;
  check?(answer: any, f: Fixture): void | Promise<void>;
  /** What of the answer to compare across channels, where the answer holds what the other channel's run made too. */
  compare?(answer: any, f: Fixture): unknown;
  /** One refusal: the call, and the stable code both channels must give; null for an operation open to anyone with no input. */
  refusal: ((f: Fixture) => Promise<unknown>) | null;
  code?: string;
}

const b = (s: string) => Buffer.from(s);

/** Imports `material` as a new key through the wrapped-import operation (BYOK), as an operator would. */
async function importKnown(client: HsmBridgeClient, name: string, type: string, purpose: string, material: Buffer) {
  const wrapping = await client.getWrappingKey();
  const scheme = 'RSA_OAEP_SHA256_AES_KWP';
  const { encryptedKey, wrappedTarget } = wrapForImport(wrapping.publicKeyPem, scheme, material);
  return client.importKey({ name, type, purpose, wrappedKey: Buffer.concat([encryptedKey, wrappedTarget]), wrapping: scheme });
}

const cases: Record<string, Case> = {
  'keys.create': {
    run: (f) => f.client.createKey({ name: f.fresh('created'), type: 'EC_P256', purpose: 'sign' }),
    check: (a) => expect(a).toMatchObject({ type: 'EC_P256', purpose: 'sign', state: 'enabled', primaryVersion: 1 }),
    refusal: (f) => f.client.createKey({ name: f.fresh('bad'), type: 'NO_SUCH_TYPE' }),
    code: 'INVALID_ARGUMENT',
  },
  'keys.list': {
    run: (f) => f.client.listKeys(),
    check: (a, f) => expect(a.keys.map((k: { name: string }) => k.name)).toContain(f.keys.ec),
    compare: (a, f) => ({ keys: a.keys.filter((k: { name: string }) => Object.values(f.keys).includes(k.name)) }),
    refusal: (f) => f.nobody.listKeys(),
    code: 'PERMISSION_DENIED',
  },
  'keys.get': {
    run: (f) => f.client.getKey(f.keys.ec),
    check: (a, f) => {
      expect(a).toMatchObject({ name: f.keys.ec, type: 'EC_P256' });
      expect(a.versions[0].publicKeyJwk).toMatchObject({ kty: 'EC', crv: 'P-256', kid: `${f.keys.ec}:1` });
    },
    refusal: (f) => f.client.getKey(NO_KEY),
    code: 'KEY_NOT_FOUND',
  },
  'keys.rotate': {
    run: async (f) => f.client.rotateKey((f.state.rotated = (await f.client.createKey({ name: f.fresh('rotated'), type: 'AES_256' })).name)),
    check: (a) => expect(a.primaryVersion).toBe(2),
    refusal: (f) => f.client.rotateKey(NO_KEY),
    code: 'KEY_NOT_FOUND',
  },
  'keys.disable': {
    run: (f) => f.client.disableKey(f.state.rotated),
    check: (a) => expect(a.state).toBe('disabled'),
    refusal: (f) => f.client.disableKey(NO_KEY),
    code: 'KEY_NOT_FOUND',
  },
  'keys.enable': {
    run: (f) => f.client.enableKey(f.state.rotated),
    check: (a) => expect(a.state).toBe('enabled'),
    refusal: (f) => f.client.enableKey(NO_KEY),
    code: 'KEY_NOT_FOUND',
  },
  'keys.update': {
    run: (f) => f.client.updateKey(f.state.rotated, { minDecryptionVersion: 2 }),
    check: (a) => expect(a.minDecryptionVersion).toBe(2),
    refusal: (f) => f.client.updateKey(f.state.rotated, { minDecryptionVersion: 9 }),
    code: 'INVALID_ARGUMENT',
  },
  'keys.trim': {
    run: (f) => f.client.trimKey(f.state.rotated),
    check: (a) => expect(a.versions.map((v: { version: number }) => v.version)).toEqual([2]),
    refusal: (f) => f.client.trimKey(NO_KEY),
    code: 'KEY_NOT_FOUND',
  },
  'keys.destroy': {
    run: async (f) => {
      await f.client.disableKey(f.state.rotated);
      return f.client.destroyKey(f.state.rotated);
    },
    check: async (a, f) => {
      expect(a).toBeUndefined();
      await expect(f.client.getKey(f.state.rotated)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    },
    refusal: (f) => f.client.destroyKey(NO_KEY),
    code: 'KEY_NOT_FOUND',
  },
  'keys.sign': {
    run: (f) => f.client.sign(f.keys.ec, { message: b('signed over both channels') }),
    check: async (a, f) => {
      expect(a).toMatchObject({ keyName: f.keys.ec, keyVersion: 1, algorithm: 'ES256' });
      const pem = (await f.client.getKey(f.keys.ec)).versions[0]!.publicKeyPem!;
      expect(verify('sha256', b('signed over both channels'), { key: createPublicKey(pem), dsaEncoding: 'ieee-p1363' }, a.signature)).toBe(true);
    },
    refusal: (f) => f.client.sign(NO_KEY, { message: b('m') }),
    code: 'KEY_NOT_FOUND',
  },
  'keys.verify': {
    run: async (f) => f.client.verify(f.keys.ec, { message: b('m'), signature: (await f.client.sign(f.keys.ec, { message: b('m') })).signature }),
    check: (a) => expect(a.valid).toBe(true),
    refusal: (f) => f.client.verify(NO_KEY, { message: b('m'), signature: b('s') }),
    code: 'KEY_NOT_FOUND',
  },
  'keys.encrypt': {
    run: (f) => f.client.encrypt(f.keys.aes, { plaintext: b('personal data'), aad: b('row 7') }),
    check: async (a, f) => {
      expect(Buffer.isBuffer(a.ciphertext)).toBe(true);
      expect((await f.client.decrypt(f.keys.aes, { ciphertext: a.ciphertext, aad: b('row 7') })).plaintext).toEqual(b('personal data'));
    },
    refusal: (f) => f.client.encrypt(f.keys.ec, { plaintext: b('p') }),
    code: 'INCOMPATIBLE_KEY',
  },
  'keys.decrypt': {
    run: async (f) => f.client.decrypt(f.keys.aes, { ciphertext: (await f.client.encrypt(f.keys.aes, { plaintext: b('back') })).ciphertext }),
    check: (a) => expect(a.plaintext).toEqual(b('back')),
    refusal: async (f) => f.client.decrypt(f.keys.aes, { ciphertext: (await f.client.encrypt(f.keys.aes, { plaintext: b('p'), aad: b('a') })).ciphertext, aad: b('other') }),
    code: 'DECRYPTION_FAILED',
  },
  'keys.mac': {
    run: (f) => f.client.mac(f.keys.hmac, { data: b('data') }),
    check: (a) => expect(a.mac).toHaveLength(32),
    refusal: (f) => f.client.mac(NO_KEY, { data: b('d') }),
    code: 'KEY_NOT_FOUND',
  },
  'keys.verifyMac': {
    run: async (f) => f.client.verifyMac(f.keys.hmac, { data: b('data'), macHex: (await f.client.mac(f.keys.hmac, { data: b('data') })).mac.toString('hex') }),
    check: (a) => expect(a.valid).toBe(true),
    refusal: (f) => f.client.verifyMac(NO_KEY, { data: b('d'), mac: b('m') }),
    code: 'KEY_NOT_FOUND',
  },
  'keys.signBatch': {
    run: (f) => f.client.signBatch(f.keys.ec, { items: [{ message: b('one') }, { message: b('two'), algorithm: 'RS256' }] }),
    check: (a) => {
      expect(a.results[0].signature).toHaveLength(64);
      expect(a.results[1].error.code).toBe('INCOMPATIBLE_KEY');
    },
    refusal: (f) => f.client.signBatch(f.keys.ec, { items: [] }),
    code: 'INVALID_ARGUMENT',
  },
  'keys.verifyBatch': {
    run: async (f) => f.client.verifyBatch(f.keys.ec, { items: [{ message: b('m'), signature: (await f.client.sign(f.keys.ec, { message: b('m') })).signature }, { message: b('x'), signature: Buffer.alloc(64) }] }),
    check: (a) => expect(a.results.map((r: { valid: boolean }) => r.valid)).toEqual([true, false]),
    refusal: (f) => f.client.verifyBatch(NO_KEY, { items: [{ message: b('m'), signature: b('s') }] }),
    code: 'KEY_NOT_FOUND',
  },
  'keys.encryptBatch': {
    run: (f) => f.client.encryptBatch(f.keys.aes, { items: [{ plaintext: b('a') }, { plaintext: b('b') }] }),
    check: async (a, f) => {
      const back = await f.client.decryptBatch(f.keys.aes, { items: a.results.map((r: { ciphertext: Buffer }) => ({ ciphertext: r.ciphertext })) });
      expect(back.results.map((r) => (r as { plaintext: Buffer }).plaintext.toString())).toEqual(['a', 'b']);
    },
    refusal: (f) => f.client.encryptBatch(NO_KEY, { items: [{ plaintext: b('a') }] }),
    code: 'KEY_NOT_FOUND',
  },
  'keys.decryptBatch': {
    run: async (f) => f.client.decryptBatch(f.keys.aes, { items: [{ ciphertext: (await f.client.encrypt(f.keys.aes, { plaintext: b('x') })).ciphertext }, { ciphertext: b('garbage') }] }),
    check: (a) => {
      expect(a.results[0].plaintext).toEqual(b('x'));
      expect(a.results[1].error.code).toMatch(/^(INVALID_ARGUMENT|DECRYPTION_FAILED)$/);
    },
    refusal: (f) => f.client.decryptBatch(NO_KEY, { items: [{ ciphertext: b('c') }] }),
    code: 'KEY_NOT_FOUND',
  },
  'keys.macBatch': {
    run: (f) => f.client.macBatch(f.keys.hmac, { items: [{ data: b('1') }, { data: b('2') }] }),
    check: (a) => expect(a.results.map((r: { mac: Buffer }) => r.mac.length)).toEqual([32, 32]),
    refusal: (f) => f.client.macBatch(NO_KEY, { items: [{ data: b('d') }] }),
    code: 'KEY_NOT_FOUND',
  },
  'keys.verifyMacBatch': {
    run: async (f) => f.client.verifyMacBatch(f.keys.hmac, { items: [{ data: b('1'), mac: (await f.client.mac(f.keys.hmac, { data: b('1') })).mac }, { data: b('1'), mac: Buffer.alloc(32) }] }),
    check: (a) => expect(a.results.map((r: { valid: boolean }) => r.valid)).toEqual([true, false]),
    refusal: (f) => f.client.verifyMacBatch(NO_KEY, { items: [{ data: b('d'), mac: b('m') }] }),
    code: 'KEY_NOT_FOUND',
  },
  'keys.datakey': {
    run: (f) => f.client.generateDataKey(f.keys.aes, { bits: 256, plaintext: true }),
    check: async (a, f) => {
      expect(a.plaintext).toHaveLength(32);
      expect((await f.client.decrypt(f.keys.aes, { ciphertext: a.wrapped })).plaintext).toEqual(a.plaintext);
    },
    refusal: (f) => f.client.generateDataKey(NO_KEY, { bits: 256 }),
    code: 'KEY_NOT_FOUND',
  },
  'keys.rewrap': {
    run: async (f) => f.client.rewrap(f.keys.aes, { ciphertext: (await f.client.encrypt(f.keys.aes, { plaintext: b('old') })).ciphertext }),
    check: async (a, f) => expect((await f.client.decrypt(f.keys.aes, { ciphertext: a.ciphertext })).plaintext).toEqual(b('old')),
    refusal: (f) => f.client.rewrap(NO_KEY, { ciphertext: b('c') }),
    code: 'KEY_NOT_FOUND',
  },
  'keys.tokenize': {
    run: (f) => f.client.tokenize(f.keys.tok, { values: ['255700000001', '255700000001'], context: 'msisdn' }),
    check: (a) => {
      expect(a.tokens[0]).toBe(a.tokens[1]);
      expect(a.tokens[0]).toMatch(/^v1:[\w-]{43}$/);
    },
    refusal: (f) => f.client.tokenize(NO_KEY, { values: ['1'], context: 'c' }),
    code: 'KEY_NOT_FOUND',
  },
  'keys.fpeEncrypt': {
    run: (f) => f.client.fpeEncrypt(f.keys.fpe, { values: ['0123456789'], radix: 10 }),
    check: async (a, f) => {
      expect(a.values[0]).toMatch(/^\d{10}$/);
      expect((await f.client.fpeDecrypt(f.keys.fpe, { values: [a.values[0]], radix: 10 })).values[0]).toBe('0123456789');
    },
    refusal: (f) => f.client.fpeEncrypt(NO_KEY, { values: ['0123456789'], radix: 10 }),
    code: 'KEY_NOT_FOUND',
  },
  'keys.fpeDecrypt': {
    run: (f) => f.client.fpeDecrypt(f.keys.fpe, { values: ['9876543210', '1'], radix: 10 }),
    check: (a) => {
      expect(a.values[0]).toMatch(/^\d{10}$/);
      expect(a.values[1].error.code).toBe('INVALID_ARGUMENT');
    },
    refusal: (f) => f.client.fpeDecrypt(f.keys.aes, { values: ['0123456789'], radix: 10 }),
    code: 'INCOMPATIBLE_KEY',
  },
  'keys.datakeyBatch': {
    run: (f) => f.client.generateDataKeyBatch(f.keys.aes, { items: [{ bits: 128 }, { bits: 256 }] }),
    check: (a) => expect(a.results.map((r: { wrapped: Buffer }) => Buffer.isBuffer(r.wrapped))).toEqual([true, true]),
    refusal: (f) => f.client.generateDataKeyBatch(NO_KEY, { items: [{ bits: 256 }] }),
    code: 'KEY_NOT_FOUND',
  },
  'keys.rewrapBatch': {
    run: async (f) => f.client.rewrapBatch(f.keys.aes, { items: [{ ciphertext: (await f.client.encrypt(f.keys.aes, { plaintext: b('r') })).ciphertext }] }),
    check: async (a, f) => expect((await f.client.decrypt(f.keys.aes, { ciphertext: a.results[0].ciphertext })).plaintext).toEqual(b('r')),
    refusal: (f) => f.client.rewrapBatch(NO_KEY, { items: [{ ciphertext: b('c') }] }),
    code: 'KEY_NOT_FOUND',
  },
  'wrapping.getKey': {
    run: (f) => f.client.getWrappingKey(),
    check: (a) => {
      expect(a.wrappings).toContain('RSA_OAEP_SHA256_AES_KWP');
      expect(createPublicKey(a.publicKeyPem).asymmetricKeyType).toBe('rsa');
    },
    refusal: (f) => f.nobody.getWrappingKey(),
    code: 'PERMISSION_DENIED',
  },
  'wrapping.rotateKey': {
    run: (f) => f.client.rotateWrappingKey(),
    check: (a) => expect(a.keyVersion).toBeGreaterThan(1),
    refusal: (f) => f.nobody.rotateWrappingKey(),
    code: 'PERMISSION_DENIED',
  },
  'keys.import': {
    run: (f) => importKnown(f.client, f.fresh('imported'), 'AES_256', 'encrypt', randomBytes(32)),
    check: (a) => expect(a).toMatchObject({ type: 'AES_256', primaryVersion: 1 }),
    refusal: (f) => f.client.importKey({ name: f.fresh('bad-import'), type: 'AES_256', wrappedKey: randomBytes(400), wrapping: 'RSA_OAEP_SHA256_AES_KWP' }),
    code: 'DECRYPTION_FAILED',
  },
  'keys.importVersion': {
    run: async (f) => {
      const name = (await importKnown(f.client, f.fresh('reimported'), 'AES_256', 'encrypt', randomBytes(32))).name;
      const wrapping = await f.client.getWrappingKey();
      const { encryptedKey, wrappedTarget } = wrapForImport(wrapping.publicKeyPem, 'RSA_OAEP_SHA256_AES_KWP', randomBytes(32));
      return f.client.importKeyVersion(name, { wrappedKey: Buffer.concat([encryptedKey, wrappedTarget]), wrapping: 'RSA_OAEP_SHA256_AES_KWP' });
    },
    check: (a) => expect(a.primaryVersion).toBe(2),
    refusal: (f) => f.client.importKeyVersion(NO_KEY, { wrappedKey: randomBytes(400), wrapping: 'RSA_OAEP_SHA256_AES_KWP' }),
    code: 'KEY_NOT_FOUND',
  },
  'ceremonies.create': {
    run: async (f) => (f.state.ceremony = await f.client.startCeremony({ name: f.fresh('zmk'), type: 'TDES_2KEY', purpose: 'kbpk', components: 2 })),
    check: (a) => expect(a).toMatchObject({ components: 2, received: 0, startedBy: 'token:operator' }),
    refusal: (f) => f.client.startCeremony({ name: f.fresh('zmk'), type: 'TDES_2KEY', purpose: 'sign', components: 2 }),
    code: 'INVALID_ARGUMENT',
  },
  'ceremonies.enterComponent': {
    run: (f) => {
      const component = setOddParity(randomBytes(16));
      return f.client.enterComponent(f.state.ceremony.id, { component: component.toString('hex'), kcv: nodeKcv('tdes', component) });
    },
    check: (a) => expect(a).toEqual({ received: 1, of: 2 }),
    refusal: (f) => f.client.enterComponent('0'.repeat(32), { component: '01'.repeat(16), kcv: '000000' }),
    code: 'CEREMONY_NOT_FOUND',
  },
  'ceremonies.get': {
    run: (f) => f.client.getCeremony(f.state.ceremony.id),
    check: (a, f) => expect(a).toMatchObject({ id: f.state.ceremony.id, received: 1 }),
    refusal: (f) => f.client.getCeremony('0'.repeat(32)),
    code: 'CEREMONY_NOT_FOUND',
  },
  'ceremonies.cancel': {
    run: (f) => f.client.cancelCeremony(f.state.ceremony.id),
    check: async (a, f) => {
      expect(a).toBeUndefined();
      await expect(f.client.getCeremony(f.state.ceremony.id)).rejects.toMatchObject({ code: 'CEREMONY_NOT_FOUND' });
    },
    refusal: (f) => f.client.cancelCeremony('0'.repeat(32)),
    code: 'CEREMONY_NOT_FOUND',
  },
  'system.random': {
    run: (f) => f.client.random({ length: 24 }),
    check: (a) => expect(a.random).toHaveLength(24),
    refusal: (f) => f.client.random({ length: 0 }),
    code: 'INVALID_ARGUMENT',
  },
  'system.capabilities': {
    run: (f) => f.client.capabilities(),
    check: (a) => expect(a.sign).toContain('ES256'),
    refusal: (f) => f.nobody.capabilities(),
    code: 'PERMISSION_DENIED',
  },
  'system.whoami': {
    run: (f) => f.client.whoami(),
    check: (a) => expect(a).toMatchObject({ id: 'operator', authenticatedBy: 'token' }),
    refusal: (f) => new HsmBridgeClient(f.flavour === 'rest' ? { url: app.restUrl!, token: 'not a jwt', retries: 0 } : { grpc: `127.0.0.1:${app.grpcPort}`, token: 'not a jwt', retries: 0 }).whoami(),
    code: 'UNAUTHENTICATED',
  },
  'jws.sign': {
    run: (f) => f.client.signJws({ key: f.keys.ec, payload: b('{"amount":"10"}') }),
    check: async (a, f) => expect((await f.client.verifyJws({ jws: a.jws })).valid).toBe(true),
    refusal: (f) => f.client.signJws({ key: NO_KEY, payload: b('p') }),
    code: 'KEY_NOT_FOUND',
  },
  'jws.verify': {
    run: async (f) => f.client.verifyJws({ jws: (await f.client.signJws({ key: f.keys.ec, payload: b('p'), protectedHeader: { typ: 'JWT' } })).jws }),
    check: (a, f) => expect(a).toMatchObject({ valid: true, keyName: f.keys.ec, payload: b('p'), protectedHeader: { typ: 'JWT', alg: 'ES256' } }),
    refusal: (f) => f.client.verifyJws({ jws: 'not.a.jws!' }),
    code: 'INVALID_ARGUMENT',
  },
  'jwe.encrypt': {
    run: (f) => f.client.encryptJwe({ recipient: { key: f.keys.rsa }, alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext: b('for the switch') }),
    check: async (a, f) => expect((await f.client.decryptJwe({ jwe: a.jwe })).plaintext).toEqual(b('for the switch')),
    refusal: (f) => f.client.encryptJwe({ recipient: { key: NO_KEY }, alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext: b('p') }),
    code: 'KEY_NOT_FOUND',
  },
  'jwe.decrypt': {
    run: async (f) => {
      const jwk = (await f.client.getKey(f.keys.rsa)).versions[0]!.publicKeyJwk!;
      return f.client.decryptJwe({ jwe: (await f.client.encryptJwe({ recipient: { jwk }, alg: 'RSA-OAEP-256', enc: 'A128GCM', plaintext: b('to a JWK') })).jwe });
    },
    check: (a) => expect(a.plaintext).toEqual(b('to a JWK')),
    refusal: (f) => f.client.decryptJwe({ jwe: 'a.b.c.d.e' }),
    code: 'INVALID_ARGUMENT',
  },
  'jose.jwks': {
    run: (f) => f.client.getJwks(),
    check: (a, f) => expect(a.keys.map((k: { kid: string }) => k.kid)).toContain(`${f.keys.ec}:1`),
    compare: (a, f) => ({ keys: a.keys.filter((k: { kid: string }) => Object.values(f.keys).some((n) => k.kid.startsWith(`${n}:`))) }),
    // Public by nature and without input: nothing to refuse. Anyone gets it, a caller the policy names for nothing too.
    refusal: null,
  },
  'fspiop.participants.write': {
    run: async (f) => (f.state.participantKey = await f.client.addParticipantKey({ id: `${f.flavour}fsp`, publicKeyPem: (await f.client.getKey(f.keys.ec)).versions[0]!.publicKeyPem! })),
    check: (a, f) => expect(a).toMatchObject({ participant: `${f.flavour}fsp`, use: 'sig', kty: 'EC' }),
    refusal: (f) => f.client.addParticipantKey({ id: `${f.flavour}fsp`, publicKeyPem: 'not a key' }),
    code: 'INVALID_ARGUMENT',
  },
  'fspiop.participants.list': {
    run: (f) => f.client.listParticipants(),
    check: (a, f) => expect(a.participants.map((p: { id: string }) => p.id)).toContain(`${f.flavour}fsp`),
    compare: (a, f) => ({ participants: a.participants.filter((p: { id: string }) => p.id === `${f.flavour}fsp`) }),
    refusal: (f) => f.nobody.listParticipants(),
    code: 'PERMISSION_DENIED',
  },
  'fspiop.participants.get': {
    run: (f) => f.client.getParticipantKey(`${f.flavour}fsp`, f.state.participantKey.keyId),
    check: (a, f) => expect(a).toMatchObject({ keyId: f.state.participantKey.keyId, kty: 'EC' }),
    refusal: (f) => f.client.getParticipantKey(`${f.flavour}fsp`, 'no-such-key-id'),
    code: 'KEY_NOT_FOUND',
  },
  'fspiop.sign': {
    run: async (f) => {
      const signed = await f.client.fspiopSign({ key: f.keys.ec, method: 'POST', uri: '/quotes', source: `${f.flavour}fsp`, destination: 'payeefsp', body: '{"amount":"10"}' });
      // What the caller sends: the answer's headers beside its own source and destination.
      f.state.fspiop = { headers: { ...signed.headers, 'fspiop-source': `${f.flavour}fsp`, 'fspiop-destination': 'payeefsp' }, body: signed.body };
      return signed;
    },
    check: (a) => {
      expect(a.headers['fspiop-signature']).toContain('protectedHeader');
      expect(JSON.parse(a.body)).toEqual({ amount: '10' });
    },
    refusal: (f) => f.client.fspiopSign({ key: NO_KEY, method: 'POST', uri: '/quotes', source: 's', body: '{}' }),
    code: 'KEY_NOT_FOUND',
  },
  'fspiop.validate': {
    run: (f) => f.client.fspiopValidate({ headers: f.state.fspiop.headers, body: f.state.fspiop.body }),
    check: (a, f) => expect(a).toMatchObject({ valid: true, participant: `${f.flavour}fsp`, keyId: f.state.participantKey.keyId }),
    // A refused signature is an answer ({valid: false}); the call itself is refused to a caller the policy names for nothing.
    refusal: (f) => f.nobody.fspiopValidate({ headers: f.state.fspiop.headers, body: f.state.fspiop.body }),
    code: 'PERMISSION_DENIED',
  },
  'fspiop.signBatch': {
    run: (f) => f.client.fspiopSignBatch({ items: [1, 2].map((n) => ({ key: f.keys.ec, method: 'PUT', uri: `/transfers/${n}`, source: `${f.flavour}fsp`, body: '{}' })) }),
    check: (a) => expect(a.results.map((r: { headers: Record<string, string> }) => r.headers['fspiop-uri'])).toEqual(['/transfers/1', '/transfers/2']),
    refusal: (f) => f.client.fspiopSignBatch({ items: [] }),
    code: 'INVALID_ARGUMENT',
  },
  'fspiop.validateBatch': {
    run: (f) => f.client.fspiopValidateBatch({ items: [{ headers: f.state.fspiop.headers, body: f.state.fspiop.body }, { headers: f.state.fspiop.headers, body: '{"amount":"11"}' }] }),
    check: (a) => expect(a.results.map((r: { valid: boolean }) => r.valid)).toEqual([true, false]),
    refusal: (f) => f.client.fspiopValidateBatch({ items: [] }),
    code: 'INVALID_ARGUMENT',
  },
  'fspiop.participants.delete': {
    run: (f) => f.client.deleteParticipantKey(`${f.flavour}fsp`, f.state.participantKey.keyId),
    check: async (a, f) => {
      expect(a).toBeUndefined();
      await expect(f.client.getParticipantKey(`${f.flavour}fsp`, f.state.participantKey.keyId)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    },
    refusal: (f) => f.client.deleteParticipantKey(`${f.flavour}fsp`, 'no-such-key-id'),
    code: 'KEY_NOT_FOUND',
  },
  'pin.translate': {
    run: (f) =>
      f.client.translatePin({
        incoming: { keyName: f.keys.pinIn, format: 'ISO_FORMAT_0', pan: PAN },
        outgoing: { keyName: f.keys.pinOut, format: 'ISO_FORMAT_0', pan: PAN },
        pinBlock: nodeEcb('tdes', 'encrypt', f.clearKeys.pinIn, format0('1234')).toString('hex').toUpperCase(),
      }),
    check: (a, f) => expect(nodeEcb('tdes', 'decrypt', f.clearKeys.pinOut, Buffer.from(a.pinBlock, 'hex'))).toEqual(format0('1234')),
    refusal: (f) => f.client.translatePin({ incoming: { keyName: NO_KEY, format: 'ISO_FORMAT_0', pan: PAN }, outgoing: { keyName: f.keys.pinOut, format: 'ISO_FORMAT_0', pan: PAN }, pinBlock: '0123456789ABCDEF' }),
    code: 'KEY_NOT_FOUND',
  },
  'pin.toJwe': {
    run: (f) =>
      f.client.pinToJwe({
        incoming: { keyName: f.keys.pinIn, format: 'ISO_FORMAT_0', pan: PAN },
        pinBlock: nodeEcb('tdes', 'encrypt', f.clearKeys.pinIn, format0('987654')).toString('hex'),
        recipient: { key: f.keys.rsa },
        references: { transactionId: 't-1' },
      }),
    check: async (a, f) => expect(JSON.parse((await f.client.decryptJwe({ jwe: a.jwe })).plaintext.toString())).toEqual({ otp: '987654', transactionId: 't-1' }),
    refusal: (f) => f.client.pinToJwe({ incoming: { keyName: f.keys.pinIn, format: 'ISO_FORMAT_0', pan: PAN }, pinBlock: '0123456789ABCDEF', recipient: { participant: 'nobodyfsp' } }),
    code: 'KEY_NOT_FOUND',
  },
  'keys.exportTr31': {
    run: async (f) => (f.state.tr31 = await f.client.exportTr31(f.keys.exportable, { kbpk: { keyName: f.keys.kbpk } })),
    check: (a) => expect(a.keyBlock).toMatch(/^D\d{4}M6/),
    refusal: (f) => f.client.exportTr31(f.keys.pinIn, { kbpk: { keyName: f.keys.kbpk } }),
    code: 'INCOMPATIBLE_KEY',
  },
  'keys.importTr31': {
    run: async (f) => {
      // A key block made here, under the KBPK's known value: the service must find the key inside.
      f.state.clearKey = randomBytes(16);
      const blockKeys = await deriveKeyBlockKeys('D', f.clearKeys.kbpk.length, async (input) => cmacWithKey('aes', f.clearKeys.kbpk, input));
      const keyBlock = sealKeyBlock({ version: 'D', keyUsage: 'M6', algorithm: 'A', modeOfUse: 'C', keyVersionNumber: '00', exportability: 'N', optionalBlocks: [] }, f.state.clearKey, blockKeys);
      return f.client.importTr31({ name: f.fresh('from-tr31'), keyBlock, kbpk: { keyName: f.keys.kbpk } });
    },
    check: (a, f) => expect(a).toMatchObject({ keyCheckValue: nodeKcv('aes', f.state.clearKey), key: { keyUsage: 'M6', modeOfUse: 'C' } }),
    refusal: (f) => f.client.importTr31({ name: f.fresh('bad-tr31'), keyBlock: 'D0112P0AE00E0000ABCDEF', kbpk: { keyName: f.keys.kbpk } }),
    code: 'INVALID_ARGUMENT',
  },
};

/** A value's shape: where each field is and what kind of value it holds, not the value itself. */
function shape(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return 'Buffer';
  if (Array.isArray(value)) return value.map(shape);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, shape(v)]));
  return typeof value;
}

beforeAll(async () => {
  const issuer = await tokenIssuer();
  writeFileSync(files.at('jwks.json'), JSON.stringify(issuer.jwks));
  for (const who of ['operator', 'nobody'] as const) tokens[who] = await issuer.token(who);
  writeFileSync(files.at('policy.yaml'), 'principals:\n  operator: { jwtSubject: operator }\n  nobody: { jwtSubject: nobody }\nrules:\n  - principal: operator\n    allow: ["*"]\n    keys: ["*"]\n    participants: ["*"]\n');
  harness = await createSoftwareBackendConfig();
  writeFileSync(files.at('config.json'), JSON.stringify({
    rest: { host: '127.0.0.1', port: 0 },
    grpc: { host: '127.0.0.1', port: 0 },
    ops: { enabled: false },
    access: { policyFile: files.at('policy.yaml'), jwt: { jwksFile: files.at('jwks.json'), issuer: ISSUER, audience: AUDIENCE } },
    backend: { type: 'software', software: harness.config },
    payment: { otpIncomingKeys: flavours.map((f) => `${f}-pin-in`) },
  }));
  app = await startApp(loadServiceConfig({ file: files.at('config.json'), env: {} }), createLogger('silent'));
}, 60_000);

afterAll(async () => {
  await app?.close();
  await harness?.cleanup();
  files.remove();
});

describe('the client, for every declared operation', () => {
  it('has a case here for each declared operation, and no other', () => {
    expect(Object.keys(cases).sort()).toEqual(operations.map((o) => o.name).sort());
    expect(Object.keys(operationMethods).sort()).toEqual(operations.map((o) => o.name).sort());
  });

  const answers: Record<Flavour, Record<string, unknown>> = { rest: {}, grpc: {} };

  for (const flavour of flavours) {
    describe(`over ${flavour === 'rest' ? 'REST' : 'gRPC'}`, () => {
      let f: Fixture;
      beforeAll(async () => {
        const connect = (token: string) => new HsmBridgeClient(flavour === 'rest' ? { url: app.restUrl!, token, retries: 0 } : { grpc: `127.0.0.1:${app.grpcPort}`, token, retries: 0 });
        const client = connect(tokens.operator);
        let seq = 0;
        const make = async (stem: string, type: string, purpose: string, extra: Record<string, unknown> = {}) => (await client.createKey({ name: `${flavour}-${stem}`, type, purpose, ...extra })).name;
        const clearKeys = { pinIn: setOddParity(randomBytes(16)), pinOut: setOddParity(randomBytes(16)), kbpk: randomBytes(32) };
        f = {
          flavour,
          client,
          nobody: connect(tokens.nobody),
          fresh: (stem) => `${flavour}-${stem}-${seq++}`,
          keys: {
            ec: await make('ec', 'EC_P256', 'sign'),
            rsa: await make('rsa', 'RSA_2048', 'encrypt'),
            aes: await make('aes', 'AES_256', 'encrypt'),
            hmac: await make('hmac', 'HMAC_256', 'mac'),
            tok: await make('tok', 'HMAC_256', 'tokenize'),
            fpe: await make('fpe', 'AES_256', 'fpe'),
            kbpk: (await importKnown(client, `${flavour}-kbpk`, 'AES_256', 'kbpk', clearKeys.kbpk)).name,
            exportable: await make('exportable', 'AES_128', 'mac', { exportable: true }),
            pinIn: (await importKnown(client, `${flavour}-pin-in`, 'TDES_2KEY', 'pin', clearKeys.pinIn)).name,
            pinOut: (await importKnown(client, `${flavour}-pin-out`, 'TDES_2KEY', 'pin', clearKeys.pinOut)).name,
          },
          clearKeys,
          state: {},
        };
      }, 60_000);
      afterAll(() => {
        f?.client.close();
        f?.nobody.close();
      });

      // In the cases' order: some use what an earlier one made (a rotated key, a ceremony, a key block).
      for (const [name, c] of Object.entries(cases)) {
        it(`${name}: the happy path, then ${c.refusal ? `a refusal with ${c.code}` : 'the same for anyone'}`, async () => {
          const answer = await c.run(f);
          await c.check?.(answer, f);
          answers[flavour][name] = c.compare ? c.compare(answer, f) : answer;
          if (c.refusal === null) {
            expect(shape(await (f.nobody as unknown as Record<string, () => Promise<unknown>>)[operationMethods[name]!]!())).toEqual(shape(answer));
            return;
          }
          const refused = await c.refusal(f).then(
            (a) => a,
            (e: unknown) => e,
          );
          expect(refused).toBeInstanceOf(HsmBridgeClientError);
          expect(refused).toMatchObject({ code: c.code });
          if (flavour === 'grpc') expect((refused as HsmBridgeClientError).grpcStatus).toBeDefined();
          else expect((refused as HsmBridgeClientError).status).toBeGreaterThanOrEqual(400);
        });
      }
    });
  }

  describe('over gRPC, as over REST', () => {
    const grpc = (token = tokens.operator, retries = 0) => new HsmBridgeClient({ grpc: `127.0.0.1:${app.grpcPort}`, token, retries });
    it('passes the request id through, and the error carries it back with the stable code and the gRPC status', async () => {
      const c = grpc();
      const error = await c.getKey(NO_KEY, { requestId: 'grpc-request-42' }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'KEY_NOT_FOUND', grpcStatus: 5, requestId: 'grpc-request-42', transient: false });
      c.close();
    });
    it('refuses a field the rpc has no place for, before sending (gRPC would drop it silently)', async () => {
      const c = grpc();
      await expect(c.call('keys.sign', { name: 'x', message: b('m'), mesage: b('typo') })).rejects.toThrow(/keys.sign: mesage is not a field of the request/);
      c.close();
    });
    it('with nothing listening: UNAVAILABLE, transient, after its retries', async () => {
      const c = new HsmBridgeClient({ grpc: '127.0.0.1:1', retries: 1, timeoutMs: 2000 });
      await expect(c.random({ length: 1 })).rejects.toMatchObject({ code: 'UNAVAILABLE', transient: true });
      c.close();
    });
    it('takes either a url or a grpc address, not both or neither', () => {
      expect(() => new HsmBridgeClient({} as never)).toThrow(/one of url \(REST\) or grpc/);
      expect(() => new HsmBridgeClient({ url: 'http://x', grpc: 'x:1' } as never)).toThrow(/one of url/);
      expect(() => new HsmBridgeClient({ grpc: 'http://x:1' })).toThrow(/host:port/);
    });
  });

  it('answers in the same shape over both channels, operation by operation', () => {
    for (const op of operations) expect({ op: op.name, shape: shape(answers.grpc[op.name]) }).toEqual({ op: op.name, shape: shape(answers.rest[op.name]) });
  });
});
