/**
 * JOSE routes: JWS sign and verify, JWE encrypt and decrypt, and the JWKS document. Handlers translate
 * base64 to bytes and back and shape the answers; every check on keys, algorithms, headers and the JOSE
 * objects themselves is JoseService's. Decrypted plaintexts are zeroed once the response is encoded.
 */
import type { JsonWebKey } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { invalid, type ErrorCode } from '../../../errors.js';
import type { JoseService } from '../../../jose/joseService.js';
import type { JoseHeader, JwsSerialization } from '../../../jose/jws.js';
import type { JweSerialization } from '../../../jose/jwe.js';
import { keyId } from '../../../keys/publicKey.js';
import { JWS_NOT_VALID_REASON } from '../../services.js';
import { decodeBase64, decodeOptionalBase64, encodeBase64 } from '../base64.js';
import {
  decryptJweBody,
  decryptJweResult,
  encryptJweBody,
  encryptJweResult,
  jwksSchema,
  signJwsBody,
  signJwsResult,
  verifyJwsBody,
  verifyJwsResult,
} from '../schemas.js';

type With<B> = FastifyRequest<{ Body: B }>;
interface SignJwsBody {
  key: string;
  algorithm?: string;
  payload: string;
  protectedHeader?: JoseHeader;
  unprotectedHeader?: JoseHeader;
  detached?: boolean;
  b64?: boolean;
  serialization?: JwsSerialization;
}
interface VerifyJwsBody { jws: string | object; payload?: string; algorithms?: string[]; key?: string }
interface EncryptJweBody {
  recipient: { key?: string; keyVersion?: number; jwk?: JsonWebKey };
  alg: string;
  enc: string;
  plaintext: string;
  protectedHeader?: JoseHeader;
  aad?: string;
  serialization?: JweSerialization;
}
interface DecryptJweBody { jwe: string | object; key?: string; algorithms?: string[] }

/** Errors of every route that uses a key of this service. */
const keyErrors: ErrorCode[] = ['UNSUPPORTED_ALGORITHM', 'UNSUPPORTED_BY_BACKEND', 'INCOMPATIBLE_KEY', 'KEY_NOT_FOUND', 'KEY_VERSION_NOT_FOUND', 'KEY_DISABLED', 'BACKEND_UNAVAILABLE'];

export function joseRoutes(app: FastifyInstance, jose: JoseService): void {
  app.post('/v1/jws/sign', {
    schema: { body: signJwsBody, response: { 200: signJwsResult } },
    config: { doc: { operationId: 'signJws', summary: 'Sign a JWS with a key in the backend (compact, flattened or general JSON)', errors: [...keyErrors, 'PAYLOAD_TOO_LARGE'] } },
    handler: async (request: With<SignJwsBody>) => {
      const { key, algorithm, payload, protectedHeader, unprotectedHeader, detached, b64, serialization } = request.body;
      const r = await jose.signJws({
        key,
        algorithm,
        payload: decodeBase64('payload', payload),
        protectedHeader,
        unprotectedHeader,
        detached,
        b64,
        serialization: serialization ?? 'compact',
      });
      const signed = r.signatures[0]!;
      const kid = protectedHeader?.kid ?? keyId(signed.keyName, signed.keyVersion);
      return { jws: r.jws, ...(typeof kid === 'string' ? { kid } : {}), ...signed };
    },
  });

  app.post('/v1/jws/verify', {
    schema: { body: verifyJwsBody, response: { 200: verifyJwsResult } },
    config: {
      doc: {
        operationId: 'verifyJws',
        summary: 'Verify a JWS with the public part of a key of this service; a signature that does not verify is {valid: false}',
        errors: [...keyErrors, 'PAYLOAD_TOO_LARGE'],
      },
    },
    handler: async (request: With<VerifyJwsBody>) => {
      const { jws, payload, algorithms, key } = request.body;
      const r = await jose.verifyJws({ jws, payload: decodeOptionalBase64('payload', payload), algorithms, key });
      if (!r.valid) return { valid: false, reason: JWS_NOT_VALID_REASON };
      return {
        valid: true,
        ...(r.keyName !== undefined && r.keyVersion !== undefined ? { kid: keyId(r.keyName, r.keyVersion), keyName: r.keyName, keyVersion: r.keyVersion } : {}),
        algorithm: r.algorithm,
        protectedHeader: r.protectedHeader,
        ...(r.unprotectedHeader ? { unprotectedHeader: r.unprotectedHeader } : {}),
        payload: encodeBase64(r.payload),
      };
    },
  });

  app.post('/v1/jwe/encrypt', {
    schema: { body: encryptJweBody, response: { 200: encryptJweResult } },
    config: {
      doc: {
        operationId: 'encryptJwe',
        summary: "Encrypt a JWE to a key of this service or to an external recipient's public JWK",
        errors: [...keyErrors, 'PAYLOAD_TOO_LARGE'],
      },
    },
    handler: async (request: With<EncryptJweBody>) => {
      const { recipient, alg, enc, protectedHeader, aad, serialization } = request.body;
      if ((recipient.key === undefined) === (recipient.jwk === undefined)) throw invalid('recipient is {key, keyVersion?} (a key of this service) or {jwk} (a public JWK)');
      if (recipient.jwk !== undefined && recipient.keyVersion !== undefined) throw invalid('recipient.keyVersion goes with recipient.key');
      const plaintext = decodeBase64('plaintext', request.body.plaintext);
      try {
        const r = await jose.encryptJwe({
          recipient: recipient.jwk !== undefined ? { jwk: recipient.jwk } : { key: recipient.key!, keyVersion: recipient.keyVersion },
          alg,
          enc,
          plaintext,
          protectedHeader,
          aad: decodeOptionalBase64('aad', aad),
          serialization: serialization ?? 'compact',
        });
        if (r.keyName === undefined || r.keyVersion === undefined) return { jwe: r.jwe };
        return { jwe: r.jwe, kid: keyId(r.keyName, r.keyVersion), keyName: r.keyName, keyVersion: r.keyVersion };
      } finally {
        plaintext.fill(0);
      }
    },
  });

  app.post('/v1/jwe/decrypt', {
    schema: { body: decryptJweBody, response: { 200: decryptJweResult } },
    config: {
      doc: { operationId: 'decryptJwe', summary: 'Decrypt a JWE with the private key in the backend', errors: [...keyErrors, 'DECRYPTION_FAILED', 'PAYLOAD_TOO_LARGE'] },
    },
    handler: async (request: With<DecryptJweBody>) => {
      const { jwe, key, algorithms } = request.body;
      const r = await jose.decryptJwe({ jwe, key, algorithms });
      try {
        return {
          plaintext: encodeBase64(r.plaintext),
          protectedHeader: r.protectedHeader,
          kid: keyId(r.keyName, r.keyVersion),
          keyName: r.keyName,
          keyVersion: r.keyVersion,
          alg: r.alg,
          enc: r.enc,
        };
      } finally {
        r.plaintext.fill(0);
      }
    },
  });

  app.get('/.well-known/jwks.json', {
    schema: { response: { 200: jwksSchema } },
    config: {
      doc: {
        operationId: 'getJwks',
        summary: 'The JWK Set of the public keys of this service: every version of every asymmetric key not destroyed, disabled ones included',
        errors: ['BACKEND_UNAVAILABLE'],
      },
    },
    handler: async () => jose.jwks(),
  });
}
