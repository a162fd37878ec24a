/**
 * JWS sign and verify, JWE encrypt and decrypt, and the JWKS document. JOSE headers and JSON
 * serializations are JSON objects on REST and JSON text on gRPC; every check on keys, algorithms,
 * headers and the JOSE objects themselves is JoseService's.
 */
import type { JsonWebKey } from 'node:crypto';
import { invalid, type ErrorCode } from '../../errors.js';
import { keysNamedByJwe, keysNamedByJws, type DecryptJweRequest, type EncryptJweRequest, type JweRecipient, type SignJwsRequest, type VerifyJwsRequest } from '../../jose/joseService.js';
import type { JoseHeader, JwsSerialization } from '../../jose/jws.js';
import type { JweSerialization } from '../../jose/jwe.js';
import { keyId } from '../../keys/publicKey.js';
import { decodeBase64, decodeOptionalBase64, encodeBase64 } from '../base64.js';
import { keyUse, operation, type Operation } from '../declaration.js';
import type * as msg from '../grpcMessages.js';
import * as schemas from '../schemas.js';
import { given, givenList, joseObjectText, jsonObjectText, serialized } from '../wire.js';

/** The reason both transports give for a well-formed JWS whose signatures do not verify. */
const JWS_NOT_VALID_REASON = 'no signature verifies with the key';

/** Errors of every operation that uses a key of this service. */
const keyErrors: ErrorCode[] = ['UNSUPPORTED_ALGORITHM', 'UNSUPPORTED_BY_BACKEND', 'INCOMPATIBLE_KEY', 'KEY_NOT_FOUND', 'KEY_VERSION_NOT_FOUND', 'KEY_DISABLED', 'BACKEND_UNAVAILABLE'];

const grpcJose = (method: string) => ({ service: 'JoseService' as const, method });

/** The kid a JWS names: the caller's own, or "<name>:<version>". */
function signedKid(input: SignJwsRequest, keyName: string, keyVersion: number): string | undefined {
  const kid = input.protectedHeader?.kid ?? keyId(keyName, keyVersion);
  return typeof kid === 'string' ? kid : undefined;
}

/** The key the caller named, and its kid, when the recipient is one of our keys. */
const recipientKey = (r: { keyName?: string; keyVersion?: number }) =>
  r.keyName === undefined || r.keyVersion === undefined ? {} : { kid: keyId(r.keyName, r.keyVersion), keyName: r.keyName, keyVersion: r.keyVersion };

export const joseOperations: Operation[] = [
  operation({
    name: 'jws.sign',
    tag: 'jose',
    needs: 'jose',
    summary: 'Sign a JWS with a key in the backend (compact, flattened or general JSON)',
    description: 'The protected header gets "alg" and "kid" ("<name>:<version>"); detached payloads and unencoded payloads (RFC 7797) are supported.',
    errors: [...keyErrors, 'PAYLOAD_TOO_LARGE'],
    keys: (i) => [i.key],
    keysUsed: (r) => keyUse(r.keyName, r.keyVersion),
    run: async (s, i: SignJwsRequest) => {
      const r = await s.jose.signJws(i);
      const signed = r.signatures[0]!;
      return { jws: r.jws, kid: signedKid(i, signed.keyName, signed.keyVersion), ...signed };
    },
    rest: {
      method: 'POST',
      path: '/v1/jws/sign',
      body: schemas.signJwsBody,
      response: schemas.signJwsResult,
      decode: ({ body }) => ({ ...body, payload: decodeBase64('payload', body.payload), serialization: (body.serialization ?? 'compact') as JwsSerialization }),
      encode: ({ kid, ...r }) => ({ ...r, ...(kid === undefined ? {} : { kid }) }),
    },
    grpc: {
      ...grpcJose('SignJws'),
      decode: (m: msg.SignJwsRequest) => ({
        key: m.key,
        algorithm: given(m.algorithm),
        payload: m.payload,
        protectedHeader: jsonObjectText('protected_header', m.protectedHeader) as JoseHeader | undefined,
        unprotectedHeader: jsonObjectText('unprotected_header', m.unprotectedHeader) as JoseHeader | undefined,
        detached: m.detached,
        b64: m.b64,
        serialization: (given(m.serialization) ?? 'compact') as JwsSerialization,
      }),
      encode: (r): msg.SignJwsResponse => ({ ...r, jws: serialized(r.jws), kid: r.kid ?? '' }),
    },
  }),
  operation({
    name: 'jws.verify',
    tag: 'jose',
    needs: 'jose',
    summary: 'Verify a JWS with the public part of a key of this service; a signature that does not verify is {valid: false}',
    description: 'Without "key", each signature\'s "kid" ("<name>:<version>") names the key. A malformed JWS is a 400; a well-formed one that does not verify is {valid: false}.',
    errors: [...keyErrors, 'PAYLOAD_TOO_LARGE'],
    // Without "key" the kids choose the keys: the access policy sees those (the service uses no other).
    keys: (i) => (i.key !== undefined ? [i.key] : keysNamedByJws(i.jws, i.payload)),
    keysUsed: (r) => (r.valid ? keyUse(r.keyName, r.keyVersion) : []),
    run: (s, i: VerifyJwsRequest) => s.jose.verifyJws(i),
    rest: {
      method: 'POST',
      path: '/v1/jws/verify',
      body: schemas.verifyJwsBody,
      response: schemas.verifyJwsResult,
      decode: ({ body }) => ({ ...body, payload: decodeOptionalBase64('payload', body.payload) }),
      encode: (r) => {
        if (!r.valid) return { valid: false, reason: JWS_NOT_VALID_REASON };
        return {
          valid: true,
          ...recipientKey(r),
          algorithm: r.algorithm,
          protectedHeader: r.protectedHeader,
          ...(r.unprotectedHeader ? { unprotectedHeader: r.unprotectedHeader } : {}),
          payload: encodeBase64(r.payload),
        };
      },
    },
    grpc: {
      ...grpcJose('VerifyJws'),
      decode: (m: msg.VerifyJwsRequest) => ({ jws: joseObjectText('jws', m.jws), payload: m.payload, algorithms: givenList(m.algorithms) as string[] | undefined, key: given(m.key) }),
      encode: (r): msg.VerifyJwsResponse => {
        if (!r.valid) return { valid: false, reason: JWS_NOT_VALID_REASON };
        return {
          valid: true,
          ...recipientKey(r),
          algorithm: r.algorithm,
          protectedHeader: JSON.stringify(r.protectedHeader),
          unprotectedHeader: r.unprotectedHeader ? JSON.stringify(r.unprotectedHeader) : '',
          payload: r.payload,
        };
      },
    },
  }),
  operation({
    name: 'jwe.encrypt',
    tag: 'jose',
    needs: 'jose',
    summary: "Encrypt a JWE to a key of this service or to an external recipient's public JWK",
    description: 'RSA-OAEP(-256), ECDH-ES(+A128KW/+A256KW), A128KW/A256KW and dir, with A128GCM/A256GCM content encryption.',
    errors: [...keyErrors, 'PAYLOAD_TOO_LARGE'],
    keys: (i) => ['key' in i.recipient ? i.recipient.key : undefined],
    keysUsed: (r) => keyUse(r.keyName, r.keyVersion),
    secrets: { input: ['plaintext'] },
    run: async (s, i: EncryptJweRequest) => {
      const r = await s.jose.encryptJwe(i);
      return { jwe: r.jwe, keyName: r.keyName, keyVersion: r.keyVersion };
    },
    rest: {
      method: 'POST',
      path: '/v1/jwe/encrypt',
      body: schemas.encryptJweBody,
      response: schemas.encryptJweResult,
      decode: ({ body }) => {
        const { recipient, alg, enc, protectedHeader, aad, serialization } = body;
        if ((recipient.key === undefined) === (recipient.jwk === undefined)) throw invalid('recipient is {key, keyVersion?} (a key of this service) or {jwk} (a public JWK)');
        if (recipient.jwk !== undefined && recipient.keyVersion !== undefined) throw invalid('recipient.keyVersion goes with recipient.key');
        return {
          recipient: (recipient.jwk !== undefined ? { jwk: recipient.jwk } : { key: recipient.key, keyVersion: recipient.keyVersion }) as JweRecipient,
          alg,
          enc,
          plaintext: decodeBase64('plaintext', body.plaintext),
          protectedHeader,
          aad: decodeOptionalBase64('aad', aad),
          serialization: (serialization ?? 'compact') as JweSerialization,
        };
      },
      encode: (r) => ({ jwe: r.jwe, ...recipientKey(r) }),
    },
    grpc: {
      ...grpcJose('EncryptJwe'),
      decode: (m: msg.EncryptJweRequest) => {
        if (m.recipient === undefined) throw invalid('set the recipient: key (a key of this service) or jwk (a public JWK as JSON text)');
        if (m.recipient === 'jwk' && m.keyVersion !== undefined) throw invalid('key_version goes with key');
        return {
          recipient: m.recipient === 'jwk' ? { jwk: (jsonObjectText('jwk', m.jwk ?? '') ?? {}) as JsonWebKey } : { key: m.key ?? '', keyVersion: m.keyVersion },
          alg: m.alg,
          enc: m.enc,
          plaintext: m.plaintext,
          protectedHeader: jsonObjectText('protected_header', m.protectedHeader) as JoseHeader | undefined,
          aad: m.aad,
          serialization: (given(m.serialization) ?? 'compact') as JweSerialization,
        };
      },
      encode: (r): msg.EncryptJweResponse => ({ jwe: serialized(r.jwe), ...recipientKey(r) }),
    },
  }),
  operation({
    name: 'jwe.decrypt',
    tag: 'jose',
    needs: 'jose',
    summary: 'Decrypt a JWE with the private key in the backend',
    description: 'Without "key", the recipient\'s "kid" ("<name>:<version>") names the key. The plaintext is zeroed once the answer is encoded.',
    errors: [...keyErrors, 'DECRYPTION_FAILED', 'PAYLOAD_TOO_LARGE'],
    // Without "key" the kids choose the key: the access policy sees every key they name.
    keys: (i) => (i.key !== undefined ? [i.key] : keysNamedByJwe(i.jwe)),
    keysUsed: (r) => keyUse(r.keyName, r.keyVersion),
    secrets: { output: ['plaintext'] },
    run: async (s, i: DecryptJweRequest) => {
      const r = await s.jose.decryptJwe(i);
      return { plaintext: r.plaintext, protectedHeader: r.protectedHeader, kid: keyId(r.keyName, r.keyVersion), keyName: r.keyName, keyVersion: r.keyVersion, alg: r.alg, enc: r.enc };
    },
    rest: {
      method: 'POST',
      path: '/v1/jwe/decrypt',
      body: schemas.decryptJweBody,
      response: schemas.decryptJweResult,
      decode: ({ body }) => body,
      encode: (r) => ({ ...r, plaintext: encodeBase64(r.plaintext) }),
    },
    grpc: {
      ...grpcJose('DecryptJwe'),
      decode: (m: msg.DecryptJweRequest) => ({ jwe: joseObjectText('jwe', m.jwe), key: given(m.key), algorithms: givenList(m.algorithms) as string[] | undefined }),
      encode: (r): msg.DecryptJweResponse => ({ ...r, protectedHeader: JSON.stringify(r.protectedHeader) }),
    },
  }),
  operation({
    name: 'jose.jwks',
    tag: 'jose',
    needs: 'jose',
    summary: 'The JWK Set of the public keys of this service: every version of every asymmetric key neither destroyed nor retired, disabled ones included',
    description: 'Each JWK has "kid" "<name>:<version>", "use" and, where one fits, "alg". Served without authentication, like any JWKS.',
    errors: ['BACKEND_UNAVAILABLE'],
    access: 'open',
    run: (s) => s.jose.jwks(),
    rest: { method: 'GET', path: '/.well-known/jwks.json', response: schemas.jwksSchema, decode: () => ({}), encode: (jwks) => jwks },
    grpc: { ...grpcJose('GetJwks'), decode: () => ({}), encode: (jwks): msg.GetJwksResponse => ({ jwks: JSON.stringify(jwks) }) },
  }),
];
