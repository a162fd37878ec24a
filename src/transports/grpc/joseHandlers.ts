/**
 * The hsmbridge.v1.JoseService handlers. JOSE objects travel as JSON text (proto has no free-form
 * object): headers, JSON serializations and JWKs are parsed here, and must be JSON objects; a string
 * that does not start with "{" is a compact serialization. Everything else is checked by JoseService.
 * As on KeyService, an empty string means "not given".
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { invalid } from '../../errors.js';
import type { JoseService } from '../../jose/joseService.js';
import type { JweSerialization } from '../../jose/jwe.js';
import type { JwsSerialization } from '../../jose/jws.js';
import { keyId } from '../../keys/publicKey.js';
import { JWS_NOT_VALID_REASON } from '../services.js';
import { unaryCall } from './calls.js';
import type * as m from './messages.js';
import { JOSE_SERVICE_NAME, type SecretResponseFields } from './protos.js';

/** Responses whose bytes are secret, wiped once encoded (see protos.ts). */
export const joseSecretResponseFields: SecretResponseFields = { DecryptJwe: ['plaintext'] };

const given = (value: string): string | undefined => (value === '' ? undefined : value);

/** A JSON object carried as text; empty = absent. */
function jsonObject(field: string, text: string): Record<string, unknown> | undefined {
  if (text === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw invalid(`${field} must be a JSON object (as text)`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(`${field} must be a JSON object (as text)`);
  return value as Record<string, unknown>;
}

/** A JOSE object: a compact serialization as is, or the JSON text of a JSON serialization. */
function joseObject(field: string, text: string): string | object {
  if (text === '') throw invalid(`${field} is required`);
  return text.trimStart().startsWith('{') ? jsonObject(field, text)! : text;
}

const serialized = (value: string | object): string => (typeof value === 'string' ? value : JSON.stringify(value));

export function joseServiceHandlers(jose: JoseService, logger: Logger): UntypedServiceImplementation {
  const rpc = <Req, Res>(method: string, handle: (request: Req) => Promise<Res>) =>
    unaryCall<Req, Res>(`${JOSE_SERVICE_NAME}/${method}`, logger, handle);

  return {
    SignJws: rpc('SignJws', async (r: m.SignJwsRequest): Promise<m.SignJwsResponse> => {
      const protectedHeader = jsonObject('protected_header', r.protectedHeader);
      const result = await jose.signJws({
        key: r.key,
        algorithm: given(r.algorithm),
        payload: r.payload,
        protectedHeader,
        unprotectedHeader: jsonObject('unprotected_header', r.unprotectedHeader),
        detached: r.detached,
        b64: r.b64,
        serialization: (given(r.serialization) ?? 'compact') as JwsSerialization,
      });
      const signed = result.signatures[0]!;
      const kid = protectedHeader?.kid ?? keyId(signed.keyName, signed.keyVersion);
      return { jws: serialized(result.jws), kid: typeof kid === 'string' ? kid : '', ...signed };
    }),

    VerifyJws: rpc('VerifyJws', async (r: m.VerifyJwsRequest): Promise<m.VerifyJwsResponse> => {
      const result = await jose.verifyJws({
        jws: joseObject('jws', r.jws),
        payload: r.payload,
        algorithms: r.algorithms.length === 0 ? undefined : r.algorithms,
        key: given(r.key),
      });
      if (!result.valid) return { valid: false, reason: JWS_NOT_VALID_REASON };
      return {
        valid: true,
        ...(result.keyName !== undefined && result.keyVersion !== undefined
          ? { kid: keyId(result.keyName, result.keyVersion), keyName: result.keyName, keyVersion: result.keyVersion }
          : {}),
        algorithm: result.algorithm,
        protectedHeader: JSON.stringify(result.protectedHeader),
        unprotectedHeader: result.unprotectedHeader ? JSON.stringify(result.unprotectedHeader) : '',
        payload: result.payload,
      };
    }),

    EncryptJwe: rpc('EncryptJwe', async (r: m.EncryptJweRequest): Promise<m.EncryptJweResponse> => {
      try {
        if (r.recipient === undefined) throw invalid('set the recipient: key (a key of this service) or jwk (a public JWK as JSON text)');
        if (r.recipient === 'jwk' && r.keyVersion !== undefined) throw invalid('key_version goes with key');
        const recipient = r.recipient === 'jwk' ? { jwk: jsonObject('jwk', r.jwk ?? '') ?? {} } : { key: r.key ?? '', keyVersion: r.keyVersion };
        const result = await jose.encryptJwe({
          recipient,
          alg: r.alg,
          enc: r.enc,
          plaintext: r.plaintext,
          protectedHeader: jsonObject('protected_header', r.protectedHeader),
          aad: r.aad,
          serialization: (given(r.serialization) ?? 'compact') as JweSerialization,
        });
        if (result.keyName === undefined || result.keyVersion === undefined) return { jwe: serialized(result.jwe) };
        return { jwe: serialized(result.jwe), kid: keyId(result.keyName, result.keyVersion), keyName: result.keyName, keyVersion: result.keyVersion };
      } finally {
        r.plaintext.fill(0);
      }
    }),

    DecryptJwe: rpc('DecryptJwe', async (r: m.DecryptJweRequest): Promise<m.DecryptJweResponse> => {
      const result = await jose.decryptJwe({
        jwe: joseObject('jwe', r.jwe),
        key: given(r.key),
        algorithms: r.algorithms.length === 0 ? undefined : r.algorithms,
      });
      return {
        plaintext: result.plaintext,
        protectedHeader: JSON.stringify(result.protectedHeader),
        kid: keyId(result.keyName, result.keyVersion),
        keyName: result.keyName,
        keyVersion: result.keyVersion,
        alg: result.alg,
        enc: result.enc,
      };
    }),

    GetJwks: rpc('GetJwks', async (): Promise<m.GetJwksResponse> => ({ jwks: JSON.stringify(await jose.jwks()) })),
  };
}
