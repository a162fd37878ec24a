/**
 * Personal-data protection on a key (src/dataProtection): data keys and rewrapping for envelope
 * encryption, pseudonymisation tokens, and FF1 format-preserving encryption. Token and FPE requests carry
 * many values: one result per value, a value that cannot be used failing alone, as a batch's items do.
 */
import type { HsmBridgeError } from '../../errors.js';
import type { FpeResult, TokenizeResult, ValueResult } from '../../dataProtection/dataProtection.js';
import { decodeBase64, decodeOptionalBase64, encodeBase64 } from '../base64.js';
import { errorOf } from '../batch.js';
import { keyUse, operation, type Operation } from '../declaration.js';
import type * as msg from '../grpcMessages.js';
import * as schemas from '../schemas.js';
import { given } from '../wire.js';
import { grpcKeyService, keyErrors, named, withVersion } from './keys.js';

/** The audit record counts values and failures, and names the failures' codes; never a value. */
function valueCounts(results: readonly ValueResult<string>[] | undefined) {
  if (!results) return {};
  const failed = results.filter((r): r is { failed: HsmBridgeError } => 'failed' in r);
  const codes = [...new Set(failed.map((r) => r.failed.code))].sort();
  return { values: results.length, failed: failed.length, ...(codes.length > 0 ? { errorCodes: codes.join(',') } : {}) };
}

interface TokenizeInput { name: string; values: readonly string[]; context: string; keyVersion?: number }
interface FpeInput { name: string; values: readonly string[]; radix?: number; alphabet?: string; tweak?: string; keyVersion?: number }

function fpeOperation(direction: 'encrypt' | 'decrypt'): Operation {
  const Direction = direction === 'encrypt' ? 'Encrypt' : 'Decrypt';
  return operation<FpeInput, FpeResult>({
    name: `keys.fpe${Direction}`,
    tag: 'keys',
    summary: `${Direction} values with FF1, keeping their length and alphabet (NIST SP 800-38G)`,
    description:
      direction === 'encrypt'
        ? 'Format-preserving encryption with an AES key of purpose fpe: an MSISDN stays as many digits, an account id keeps its alphabet. The AES rounds run in the backend (PKCS#11: AES-ECB inside the HSM), for all values at once. Keep keyVersion with the data: decryption needs it.'
        : 'The inverse of fpe/encrypt, with the same radix or alphabet, tweak and key version.',
    errors: [...withVersion, 'PAYLOAD_TOO_LARGE'],
    keys: named,
    keysUsed: (r, i) => keyUse(i.name, r.keyVersion),
    auditDetails: (_i, r) => valueCounts(r?.values),
    run: (s, i) => s.keys.dataProtection.fpe(direction, i),
    rest: {
      method: 'POST',
      path: `/v1/keys/:name/fpe/${direction}`,
      params: schemas.keyNameParams,
      body: schemas.fpeBody,
      response: schemas.fpeResult,
      decode: ({ params, body }) => ({ name: params.name, values: body.values, radix: body.radix, alphabet: body.alphabet, tweak: body.tweak, keyVersion: body.keyVersion }),
      encode: (r, i) => ({ keyName: i.name, keyVersion: r.keyVersion, values: r.values.map((v) => ('ok' in v ? v.ok : errorOf(v.failed))) }),
    },
    grpc: {
      ...grpcKeyService(`Fpe${Direction}`),
      decode: (m: msg.FpeRequest) => ({
        name: m.name,
        values: m.values,
        radix: m.radix === 0 ? undefined : m.radix,
        alphabet: given(m.alphabet),
        tweak: given(m.tweak),
        keyVersion: m.keyVersion,
      }),
      encode: (r, i): msg.FpeResponse => ({ keyName: i.name, keyVersion: r.keyVersion, values: r.values.map((v) => ('ok' in v ? { value: v.ok } : errorOf(v.failed))) }),
    },
  });
}

export const dataProtectionOperations: Operation[] = [
  operation({
    name: 'keys.datakey',
    tag: 'keys',
    summary: 'A fresh data key, wrapped by this AES key (envelope encryption)',
    description:
      'The backend generates the data key and this key (AES, purpose encrypt) wraps it as an hsm-bridge ciphertext: encrypt rows locally with the data key, store `wrapped` beside them, and recover the data key with POST /v1/keys/{name}/decrypt. With plaintext: false only `wrapped` comes back.',
    errors: [...keyErrors, 'PAYLOAD_TOO_LARGE'],
    keys: named,
    keysUsed: (r, i) => keyUse(i.name, r.keyVersion),
    secrets: { output: ['plaintext'] },
    run: (s, i: { name: string; bits: number; plaintext?: boolean }) => s.keys.dataProtection.dataKey(i),
    rest: {
      method: 'POST',
      path: '/v1/keys/:name/datakey',
      params: schemas.keyNameParams,
      body: schemas.dataKeyBody,
      response: schemas.dataKeyResult,
      decode: ({ params, body }) => ({ name: params.name, bits: body.bits, plaintext: body.plaintext }),
      encode: (r, i) => ({
        keyName: i.name,
        keyVersion: r.keyVersion,
        algorithm: r.algorithm,
        ...(r.plaintext ? { plaintext: encodeBase64(r.plaintext) } : {}),
        wrapped: encodeBase64(r.wrapped),
      }),
    },
    grpc: {
      ...grpcKeyService('GenerateDataKey'),
      decode: (m: msg.GenerateDataKeyRequest) => ({ name: m.name, bits: m.bits, plaintext: m.plaintext }),
      encode: (r, i): msg.GenerateDataKeyResponse => ({ keyName: i.name, ...r }),
    },
  }),
  operation({
    name: 'keys.rewrap',
    tag: 'keys',
    summary: "Re-encrypt a ciphertext under the key's primary version",
    description: 'Decrypts and encrypts again inside the service, with the same algorithm and aad: how stored data follows a rotation. The plaintext never leaves the service.',
    errors: [...withVersion, 'DECRYPTION_FAILED', 'PAYLOAD_TOO_LARGE'],
    keys: named,
    // Both versions: the one that decrypted (soon to be retired, perhaps) and the primary that encrypted.
    keysUsed: (r, i) => (r.fromVersion === r.keyVersion ? keyUse(i.name, r.keyVersion) : [...keyUse(i.name, r.fromVersion), ...keyUse(i.name, r.keyVersion)]),
    run: (s, i: { name: string; ciphertext: Buffer; aad?: Buffer }) => s.keys.dataProtection.rewrap(i),
    rest: {
      method: 'POST',
      path: '/v1/keys/:name/rewrap',
      params: schemas.keyNameParams,
      body: schemas.rewrapBody,
      response: schemas.rewrapResult,
      decode: ({ params, body }) => ({ name: params.name, ciphertext: decodeBase64('ciphertext', body.ciphertext), aad: decodeOptionalBase64('aad', body.aad) }),
      encode: (r, i) => ({ keyName: i.name, keyVersion: r.keyVersion, algorithm: r.algorithm, ciphertext: encodeBase64(r.ciphertext) }),
    },
    grpc: {
      ...grpcKeyService('Rewrap'),
      decode: (m: msg.RewrapRequest) => ({ name: m.name, ciphertext: m.ciphertext, aad: m.aad }),
      encode: (r, i): msg.RewrapResponse => ({ keyName: i.name, keyVersion: r.keyVersion, algorithm: r.algorithm, ciphertext: r.ciphertext }),
    },
  }),
  operation<TokenizeInput, TokenizeResult>({
    name: 'keys.tokenize',
    tag: 'keys',
    summary: 'Deterministic pseudonymisation tokens for values, one per value',
    description:
      'HMAC-SHA-256 with an HMAC_256 key of purpose tokenize, over the context and the value (domain-separated), as "v<version>:<base64url>". The same value and context give the same token; another context or key version an unrelated one. Irreversible. After a rotation, keyVersion re-tokenises with an older version.',
    errors: [...withVersion, 'PAYLOAD_TOO_LARGE'],
    keys: named,
    keysUsed: (r, i) => keyUse(i.name, r.keyVersion),
    auditDetails: (_i, r) => valueCounts(r?.tokens),
    run: (s, i) => s.keys.dataProtection.tokenize(i),
    rest: {
      method: 'POST',
      path: '/v1/keys/:name/tokenize',
      params: schemas.keyNameParams,
      body: schemas.tokenizeBody,
      response: schemas.tokenizeResult,
      decode: ({ params, body }) => ({ name: params.name, values: body.values, context: body.context, keyVersion: body.keyVersion }),
      encode: (r, i) => ({ keyName: i.name, keyVersion: r.keyVersion, tokens: r.tokens.map((t) => ('ok' in t ? t.ok : errorOf(t.failed))) }),
    },
    grpc: {
      ...grpcKeyService('Tokenize'),
      decode: (m: msg.TokenizeRequest) => ({ name: m.name, values: m.values, context: m.context, keyVersion: m.keyVersion }),
      encode: (r, i): msg.TokenizeResponse => ({ keyName: i.name, keyVersion: r.keyVersion, tokens: r.tokens.map((t) => ('ok' in t ? { token: t.ok } : errorOf(t.failed))) }),
    },
  }),
  fpeOperation('encrypt'),
  fpeOperation('decrypt'),
];
