/**
 * Key lifecycle (create, list, get, rotate, enable, disable, destroy) and the operations on a key (sign,
 * verify, encrypt, decrypt, MAC). Every check on the key, the algorithm and the sizes is KeyService's;
 * these only carry values between the wire forms and its inputs. Payment keys show each version's KCV.
 */
import type { AuditDetails, ErrorCode } from '../../errors.js';
import type { KeyMetadata } from '../../keys/types.js';
import { invalid } from '../../errors.js';
import { decodeBase64, decodeOptionalBase64, encodeBase64 } from '../base64.js';
import { keyUse, operation, type Operation } from '../declaration.js';
import type * as msg from '../grpcMessages.js';
import { keyMessage, keyView, type KeyView } from '../keyView.js';
import { toHex } from '../paymentWire.js';
import * as schemas from '../schemas.js';
import { given } from '../wire.js';

/** Errors every operation on an existing key can return. */
export const keyErrors: ErrorCode[] = ['UNSUPPORTED_ALGORITHM', 'UNSUPPORTED_BY_BACKEND', 'INCOMPATIBLE_KEY', 'KEY_NOT_FOUND', 'KEY_DISABLED', 'BACKEND_UNAVAILABLE'];
/** Those, and the errors of an operation that may name a key version. */
export const withVersion: ErrorCode[] = [...keyErrors, 'KEY_VERSION_NOT_FOUND', 'KEY_VERSION_RETIRED'];

/** The key an operation names by its `name` field. */
export const named = <I extends { name: unknown }>(i: I) => [i.name];
/** The key a lifecycle operation answers with, at its primary version. */
const primaryOf = (v: KeyView) => keyUse(v.name, v.primaryVersion);
const byName = { params: schemas.keyNameParams, response: schemas.keySchema };
/** An rpc of hsmbridge.v1.KeyService. */
export const grpcKeyService = (method: string) => ({ service: 'KeyService' as const, method });

type Lifecycle = 'getKey' | 'rotateKey' | 'enableKey' | 'disableKey';

/** An operation on one key by name that answers with the key: its KeyService method is also its rpc's name. */
function lifecycle(name: string, action: Lifecycle, route: { method: 'GET' | 'POST'; path: string }, doc: { summary: string; description: string }, errors: ErrorCode[]): Operation {
  return operation({
    name,
    tag: 'keys',
    ...doc,
    errors,
    keys: named,
    keysUsed: primaryOf,
    ...(action === 'getKey' ? {} : { changesState: true as const }),
    run: async (s, i: { name: string }) => keyView(s.keys, await s.keys[action](i.name)),
    rest: { ...route, ...byName, decode: (r) => ({ name: r.params.name }), encode: (v) => v },
    grpc: { ...grpcKeyService(action.charAt(0).toUpperCase() + action.slice(1)), decode: (m: msg.KeyNameRequest) => ({ name: m.name }), encode: (v): msg.KeyMessage => keyMessage(v) },
  });
}

export const keyOperations: Operation[] = [
  operation({
    name: 'keys.create',
    tag: 'keys',
    summary: 'Create a key (version 1, enabled)',
    description: 'Generates a key in the backend, non-extractable. The purpose is fixed at creation; payment keys may be exportable (TR-31) and carry an X9.143 key usage.',
    errors: ['UNSUPPORTED_BY_BACKEND', 'INCOMPATIBLE_KEY', 'KEY_ALREADY_EXISTS', 'BACKEND_UNAVAILABLE'],
    keys: named,
    keysUsed: primaryOf,
    changesState: true,
    run: async (s, i: { name: unknown; type: unknown; purpose?: unknown; exportable?: unknown; keyUsage?: unknown }) => keyView(s.keys, await s.keys.createKey(i)),
    rest: { method: 'POST', path: '/v1/keys', body: schemas.createKeyBody, response: schemas.keySchema, status: 201, decode: (r) => r.body, encode: (v) => v },
    grpc: {
      ...grpcKeyService('CreateKey'),
      decode: (m: msg.CreateKeyRequest) => ({ name: m.name, type: m.type, purpose: given(m.purpose), exportable: m.exportable, keyUsage: given(m.keyUsage) }),
      encode: (v): msg.KeyMessage => keyMessage(v),
    },
  }),
  operation({
    name: 'keys.list',
    tag: 'keys',
    summary: 'List every key',
    description: 'Every key the backend holds, with its versions (public keys, or KCVs of payment keys).',
    errors: ['BACKEND_UNAVAILABLE'],
    run: async (s) => Promise.all((await s.keys.listKeys()).map((meta) => keyView(s.keys, meta))),
    rest: { method: 'GET', path: '/v1/keys', response: schemas.keyListSchema, decode: () => ({}), encode: (keys) => ({ keys }) },
    grpc: { ...grpcKeyService('ListKeys'), decode: () => ({}), encode: (keys): msg.ListKeysResponse => ({ keys: keys.map(keyMessage) }) },
  }),
  lifecycle(
    'keys.get',
    'getKey',
    { method: 'GET', path: '/v1/keys/:name' },
    { summary: 'Describe a key, with the public key of each version', description: 'Always read from the backend, so that what a caller reads is current.' },
    ['KEY_NOT_FOUND', 'BACKEND_UNAVAILABLE'],
  ),
  lifecycle(
    'keys.rotate',
    'rotateKey',
    { method: 'POST', path: '/v1/keys/:name/rotate' },
    { summary: 'Create the next version of a key; it becomes primary', description: 'Older versions keep verifying and decrypting.' },
    ['KEY_NOT_FOUND', 'KEY_DISABLED', 'BACKEND_UNAVAILABLE'],
  ),
  lifecycle(
    'keys.enable',
    'enableKey',
    { method: 'POST', path: '/v1/keys/:name/enable' },
    { summary: 'Enable a key', description: 'A disabled key becomes usable again.' },
    ['KEY_NOT_FOUND', 'BACKEND_UNAVAILABLE'],
  ),
  lifecycle(
    'keys.disable',
    'disableKey',
    { method: 'POST', path: '/v1/keys/:name/disable' },
    { summary: 'Disable a key: it can no longer be used until enabled', description: 'Every operation on a disabled key is refused with KEY_DISABLED; it must be disabled before it can be destroyed.' },
    ['KEY_NOT_FOUND', 'BACKEND_UNAVAILABLE'],
  ),
  operation({
    name: 'keys.destroy',
    tag: 'keys',
    summary: 'Destroy every version of a disabled key (irreversible)',
    description: 'Removes every version from the backend. The key must be disabled first, so that a key in use is never destroyed by one mistaken call.',
    errors: ['KEY_NOT_FOUND', 'KEY_NOT_DISABLED', 'BACKEND_UNAVAILABLE'],
    keys: named,
    changesState: true,
    run: (s, i: { name: string }) => s.keys.destroyKey(i.name),
    rest: { method: 'DELETE', path: '/v1/keys/:name', params: schemas.keyNameParams, status: 204, decode: (r) => ({ name: r.params.name }), encode: () => undefined },
    grpc: { ...grpcKeyService('DestroyKey'), decode: (m: msg.KeyNameRequest) => ({ name: m.name }), encode: (): msg.DestroyKeyResponse => ({}) },
  }),
  operation({
    name: 'keys.update',
    tag: 'keys',
    summary: "Retire a key's old versions, or bring them back (minDecryptionVersion)",
    description:
      'Versions below minDecryptionVersion are retired without being destroyed: decrypt, verify, MAC verification and every other use of them answer 409 KEY_VERSION_RETIRED. It can be lowered again, until POST /v1/keys/{name}/trim destroys them. Other replicas see the change within keys.metadataCacheTtlMs.',
    errors: ['KEY_NOT_FOUND', 'KEY_VERSION_NOT_FOUND', 'BACKEND_UNAVAILABLE'],
    keys: named,
    keysUsed: primaryOf,
    changesState: true,
    auditDetails: (i): AuditDetails => (typeof i.minDecryptionVersion === 'number' ? { minDecryptionVersion: i.minDecryptionVersion } : {}),
    run: async (s, i: { name: string; minDecryptionVersion?: number }) => keyView(s.keys, await s.keys.updateKey(i)),
    rest: { method: 'PATCH', path: '/v1/keys/:name', params: schemas.keyNameParams, body: schemas.updateKeyBody, response: schemas.keySchema, decode: (r) => ({ name: r.params.name, minDecryptionVersion: r.body.minDecryptionVersion }), encode: (v) => v },
    grpc: {
      ...grpcKeyService('UpdateKey'),
      decode: (m: msg.UpdateKeyRequest) => ({ name: m.name, minDecryptionVersion: m.minDecryptionVersion }),
      encode: (v): msg.KeyMessage => keyMessage(v),
    },
  }),
  operation({
    name: 'keys.trim',
    tag: 'keys',
    summary: 'Destroy the versions below minDecryptionVersion (irreversible)',
    description: 'Every version below the key\'s minDecryptionVersion is destroyed in the backend, for good: what they encrypted can no longer be decrypted. Nothing below it: nothing happens.',
    errors: ['KEY_NOT_FOUND', 'BACKEND_UNAVAILABLE'],
    keys: named,
    keysUsed: (v) => keyUse(v.after.name, v.after.primaryVersion),
    changesState: true,
    auditDetails: (_i, v): AuditDetails => (v ? { destroyedVersions: destroyedVersions(v.before, v.after).join(',') || 'none' } : {}),
    run: async (s, i: { name: string }): Promise<{ before: KeyMetadata; after: KeyView }> => {
      const { before, after } = await s.keys.trimKey(i.name);
      return { before, after: await keyView(s.keys, after) };
    },
    rest: { method: 'POST', path: '/v1/keys/:name/trim', ...byName, decode: (r) => ({ name: r.params.name }), encode: (v) => v.after },
    grpc: { ...grpcKeyService('TrimKey'), decode: (m: msg.KeyNameRequest) => ({ name: m.name }), encode: (v): msg.KeyMessage => keyMessage(v.after) },
  }),

  operation({
    name: 'keys.sign',
    tag: 'keys',
    summary: 'Sign a message or a digest with the primary version',
    description: 'ECDSA signatures are raw r||s, as JWS wants them. Give exactly one of message or digest.',
    errors: [...keyErrors, 'PAYLOAD_TOO_LARGE'],
    keys: named,
    keysUsed: (r, i) => keyUse(i.name, r.keyVersion),
    run: (s, i: { name: string; algorithm?: string; message?: Buffer; digest?: Buffer }) => s.keys.sign(i),
    rest: {
      method: 'POST',
      path: '/v1/keys/:name/sign',
      params: schemas.keyNameParams,
      body: schemas.signBody,
      response: schemas.signResult,
      decode: ({ params, body }) => ({
        name: params.name,
        algorithm: body.algorithm,
        message: decodeOptionalBase64('message', body.message),
        digest: decodeOptionalBase64('digest', body.digest),
      }),
      encode: (r, i) => ({ keyName: i.name, keyVersion: r.keyVersion, algorithm: r.algorithm, signature: encodeBase64(r.signature) }),
    },
    grpc: {
      ...grpcKeyService('Sign'),
      decode: (m: msg.SignRequest) => ({ name: m.name, algorithm: given(m.algorithm), message: m.message, digest: m.digest }),
      encode: (r, i): msg.SignResponse => ({ keyName: i.name, ...r }),
    },
  }),
  operation({
    name: 'keys.verify',
    tag: 'keys',
    summary: 'Verify a signature with a key version (default: primary)',
    description: 'A signature that does not verify is {valid: false}; older versions keep verifying after a rotation.',
    errors: [...withVersion, 'PAYLOAD_TOO_LARGE'],
    keys: named,
    keysUsed: (r, i) => keyUse(i.name, r.keyVersion),
    run: (s, i: { name: string; algorithm?: string; keyVersion?: number; message?: Buffer; digest?: Buffer; signature: Buffer }) => s.keys.verify(i),
    rest: {
      method: 'POST',
      path: '/v1/keys/:name/verify',
      params: schemas.keyNameParams,
      body: schemas.verifyBody,
      response: schemas.verifyResult,
      decode: ({ params, body }) => ({
        name: params.name,
        algorithm: body.algorithm,
        keyVersion: body.keyVersion,
        message: decodeOptionalBase64('message', body.message),
        digest: decodeOptionalBase64('digest', body.digest),
        signature: decodeBase64('signature', body.signature),
      }),
      encode: (r, i) => ({ keyName: i.name, keyVersion: r.keyVersion, algorithm: r.algorithm, valid: r.valid }),
    },
    grpc: {
      ...grpcKeyService('Verify'),
      decode: (m: msg.VerifyRequest) => ({ name: m.name, algorithm: given(m.algorithm), keyVersion: m.keyVersion, message: m.message, digest: m.digest, signature: m.signature }),
      encode: (r, i): msg.VerifyResponse => ({ keyName: i.name, ...r }),
    },
  }),
  operation({
    name: 'keys.encrypt',
    tag: 'keys',
    summary: 'Encrypt with the primary version',
    description: 'The answer is an hsm-bridge ciphertext: it names the key version and algorithm, so it decrypts after any number of rotations.',
    errors: [...keyErrors, 'PAYLOAD_TOO_LARGE'],
    keys: named,
    keysUsed: (r, i) => keyUse(i.name, r.keyVersion),
    secrets: { input: ['plaintext'] },
    run: (s, i: { name: string; algorithm?: string; plaintext: Buffer; aad?: Buffer }) => s.keys.encrypt(i),
    rest: {
      method: 'POST',
      path: '/v1/keys/:name/encrypt',
      params: schemas.keyNameParams,
      body: schemas.encryptBody,
      response: schemas.encryptResult,
      decode: ({ params, body }) => ({
        name: params.name,
        algorithm: body.algorithm,
        plaintext: decodeBase64('plaintext', body.plaintext),
        aad: decodeOptionalBase64('aad', body.aad),
      }),
      encode: (r, i) => ({ keyName: i.name, keyVersion: r.keyVersion, algorithm: r.algorithm, ciphertext: encodeBase64(r.ciphertext) }),
    },
    grpc: {
      ...grpcKeyService('Encrypt'),
      decode: (m: msg.EncryptRequest) => ({ name: m.name, algorithm: given(m.algorithm), plaintext: m.plaintext, aad: m.aad }),
      encode: (r, i): msg.EncryptResponse => ({ keyName: i.name, ...r }),
    },
  }),
  operation({
    name: 'keys.decrypt',
    tag: 'keys',
    summary: 'Decrypt a ciphertext with the key version that made it',
    description: 'An hsm-bridge ciphertext names its key version; a raw ciphertext made elsewhere needs keyVersion (and optionally algorithm).',
    errors: [...withVersion, 'DECRYPTION_FAILED', 'PAYLOAD_TOO_LARGE'],
    keys: named,
    keysUsed: (r, i) => keyUse(i.name, r.keyVersion),
    secrets: { output: ['plaintext'] },
    run: (s, i: { name: string; ciphertext: Buffer; aad?: Buffer; keyVersion?: number; algorithm?: string }) => s.keys.decrypt(i),
    rest: {
      method: 'POST',
      path: '/v1/keys/:name/decrypt',
      params: schemas.keyNameParams,
      body: schemas.decryptBody,
      response: schemas.decryptResult,
      decode: ({ params, body }) => ({
        name: params.name,
        ciphertext: decodeBase64('ciphertext', body.ciphertext),
        aad: decodeOptionalBase64('aad', body.aad),
        keyVersion: body.keyVersion,
        // '' means "not given" on every transport (proto3 strings cannot be absent).
        algorithm: given(body.algorithm ?? ''),
      }),
      encode: (r, i) => ({ keyName: i.name, keyVersion: r.keyVersion, algorithm: r.algorithm, plaintext: encodeBase64(r.plaintext) }),
    },
    grpc: {
      ...grpcKeyService('Decrypt'),
      decode: (m: msg.DecryptRequest) => ({ name: m.name, ciphertext: m.ciphertext, aad: m.aad, keyVersion: m.keyVersion, algorithm: given(m.algorithm) }),
      encode: (r, i): msg.DecryptResponse => ({ keyName: i.name, ...r }),
    },
  }),
  operation({
    name: 'keys.mac',
    tag: 'keys',
    summary: 'Compute a MAC with the primary version',
    description: 'HMAC, AES-CMAC and the payment MACs (ISO 9797-1 algorithms 1 and 3, TDES-CMAC); payment MAC keys answer with their KCV.',
    errors: [...keyErrors, 'PAYLOAD_TOO_LARGE'],
    keys: named,
    keysUsed: (r, i) => keyUse(i.name, r.keyVersion),
    run: (s, i: { name: string; algorithm?: string; data: Buffer }) => s.keys.mac(i),
    rest: {
      method: 'POST',
      path: '/v1/keys/:name/mac',
      params: schemas.keyNameParams,
      body: schemas.macBody,
      response: schemas.macResult,
      decode: ({ params, body }) => ({ name: params.name, algorithm: body.algorithm, data: decodeBase64('data', body.data) }),
      encode: (r, i) => ({ keyName: i.name, keyVersion: r.keyVersion, algorithm: r.algorithm, mac: encodeBase64(r.mac), macHex: toHex(r.mac), ...kcvOf(r) }),
    },
    grpc: {
      ...grpcKeyService('GenerateMac'),
      decode: (m: msg.GenerateMacRequest) => ({ name: m.name, algorithm: given(m.algorithm), data: m.data }),
      encode: (r, i): msg.GenerateMacResponse => ({ keyName: i.name, ...r }),
    },
  }),
  operation({
    name: 'keys.verifyMac',
    tag: 'keys',
    summary: 'Check a MAC in constant time (payment MACs: also truncated to 4 bytes or more)',
    description: 'A MAC that does not match is {valid: false}. REST takes the MAC in base64 (mac) or hex (macHex).',
    errors: [...withVersion, 'PAYLOAD_TOO_LARGE'],
    keys: named,
    keysUsed: (r, i) => keyUse(i.name, r.keyVersion),
    run: (s, i: { name: string; algorithm?: string; keyVersion?: number; data: Buffer; mac: Buffer }) => s.keys.verifyMac(i),
    rest: {
      method: 'POST',
      path: '/v1/keys/:name/mac/verify',
      params: schemas.keyNameParams,
      body: schemas.verifyMacBody,
      response: schemas.verifyMacResult,
      decode: ({ params, body }) => {
        const { algorithm, keyVersion, data, mac, macHex } = body;
        if ((mac === undefined) === (macHex === undefined)) throw invalid('give the MAC as exactly one of mac (base64) or macHex');
        return {
          name: params.name,
          algorithm,
          keyVersion,
          data: decodeBase64('data', data),
          mac: mac === undefined ? Buffer.from(macHex, 'hex') : decodeBase64('mac', mac),
        };
      },
      encode: (r, i) => ({ keyName: i.name, keyVersion: r.keyVersion, algorithm: r.algorithm, valid: r.valid, ...kcvOf(r) }),
    },
    grpc: {
      ...grpcKeyService('VerifyMac'),
      decode: (m: msg.VerifyMacRequest) => ({ name: m.name, algorithm: given(m.algorithm), keyVersion: m.keyVersion, data: m.data, mac: m.mac }),
      encode: (r, i): msg.VerifyMacResponse => ({ keyName: i.name, ...r }),
    },
  }),
];

/** The versions a trim destroyed: those before it and not after. */
function destroyedVersions(before: KeyMetadata, after: KeyView): number[] {
  const kept = new Set(after.versions.map((v) => v.version));
  return before.versions.map((v) => v.version).filter((v) => !kept.has(v));
}

/** A payment MAC key's KCV, when the core gave one. */
const kcvOf = (r: { keyCheckValue?: string }) => (r.keyCheckValue === undefined ? {} : { keyCheckValue: r.keyCheckValue });
