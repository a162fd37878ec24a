/**
 * Every JOSE algorithm hsm-bridge speaks, in one place: each JWS "alg" with the SignAlgorithm that makes
 * it, each JWE "alg" (how the content encryption key, CEK, is made or protected, and which key it needs)
 * and each JWE "enc" (content encryption: key length, IV and tag sizes). Names are RFC 7518's.
 */
import { encryptAlgorithms, signAlgorithms, type EncryptAlgorithm, type SignAlgorithm } from '../algorithms/registry.js';
import { HsmBridgeError } from '../errors.js';
import { keyTypes, type KeyType } from '../keys/types.js';

/** JWS "alg" values: the same names as hsm-bridge's sign algorithms (RFC 7518 §3, RFC 8037 for EdDSA). */
export type JwsAlgorithm = SignAlgorithm;
export const jwsAlgorithms = Object.keys(signAlgorithms) as JwsAlgorithm[];

/** JOSE's AES-GCM has the backend AES_GCM's sizes (96-bit IV, 128-bit tag): "dir" content is the backend's output. */
const { ivLength, tagLength } = encryptAlgorithms.AES_GCM;

export const jweContentEncryptions = {
  A128GCM: { keyLength: 16, ivLength, tagLength, cipher: 'aes-128-gcm', dirKeyType: 'AES_128' },
  A192GCM: { keyLength: 24, ivLength, tagLength, cipher: 'aes-192-gcm' },
  A256GCM: { keyLength: 32, ivLength, tagLength, cipher: 'aes-256-gcm', dirKeyType: 'AES_256' },
} as const satisfies Record<string, JweContentEncryptionInfo>;
export type JweEnc = keyof typeof jweContentEncryptions;

export interface JweContentEncryptionInfo {
  readonly keyLength: number;
  readonly ivLength: number;
  readonly tagLength: number;
  readonly cipher: 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm';
  /** For "dir": the backend AES key type whose key is the CEK; none when there is no such key type (AES-192). */
  readonly dirKeyType?: KeyType;
}

/**
 * How each JWE "alg" gets the CEK:
 * - rsa-oaep: a random CEK, encrypted to the recipient's RSA key (backend decrypts: `backendAlgorithm`);
 * - ecdh-es: ECDH with an ephemeral key (epk) and the Concat KDF (RFC 7518 §4.6); `wrapKeyLength` set
 *   means the derived key wraps a random CEK with AES-KW, unset means the derived key is the CEK;
 * - aes-kw: a random CEK wrapped by a backend AES key of `keyType`;
 * - dir: the backend AES key is the CEK and the backend encrypts the content itself.
 */
export const jweKeyManagements = {
  'RSA-OAEP-256': { kind: 'rsa-oaep', backendAlgorithm: 'RSA_OAEP_SHA256', oaepHash: encryptAlgorithms.RSA_OAEP_SHA256.oaepHash },
  'RSA-OAEP': { kind: 'rsa-oaep', backendAlgorithm: 'RSA_OAEP_SHA1', oaepHash: encryptAlgorithms.RSA_OAEP_SHA1.oaepHash },
  'ECDH-ES': { kind: 'ecdh-es' },
  'ECDH-ES+A128KW': { kind: 'ecdh-es', wrapKeyLength: 16 },
  'ECDH-ES+A256KW': { kind: 'ecdh-es', wrapKeyLength: 32 },
  A128KW: { kind: 'aes-kw', keyType: 'AES_128' },
  A256KW: { kind: 'aes-kw', keyType: 'AES_256' },
  dir: { kind: 'dir' },
} as const satisfies Record<string, JweKeyManagementInfo>;
export type JweAlg = keyof typeof jweKeyManagements;

export type JweKeyManagementInfo =
  | { readonly kind: 'rsa-oaep'; readonly backendAlgorithm: EncryptAlgorithm; readonly oaepHash: 'sha1' | 'sha256' }
  | { readonly kind: 'ecdh-es'; readonly wrapKeyLength?: 16 | 32 }
  | { readonly kind: 'aes-kw'; readonly keyType: KeyType }
  | { readonly kind: 'dir' };

/** The curves ECDH-ES works with here (those of the key types that agree): JWK "crv" -> key type and node:crypto curve name. */
export const ecdhCurves = {
  [keyTypes.EC_P256.curve]: { keyType: 'EC_P256', nodeCurve: keyTypes.EC_P256.nodeCurve },
  [keyTypes.EC_P384.curve]: { keyType: 'EC_P384', nodeCurve: keyTypes.EC_P384.nodeCurve },
} as const satisfies Record<string, { keyType: KeyType; nodeCurve: string }>;

/** RFC 3394 key wrap in node:crypto, by key length; the IV is RFC 3394's default. */
export const aesKeyWrapCipher = { 16: 'id-aes128-wrap', 32: 'id-aes256-wrap' } as const;
export const AES_KW_IV = Buffer.from(encryptAlgorithms.AES_KW.wrap.iv, 'hex');

function parseFrom<T extends string>(table: Record<string, unknown>, value: unknown, what: string): T {
  if (typeof value !== 'string' || !Object.hasOwn(table, value)) {
    throw new HsmBridgeError('UNSUPPORTED_ALGORITHM', `unsupported ${what}; expected one of ${Object.keys(table).join(', ')}`);
  }
  return value as T;
}

export const parseJwsAlgorithm = (v: unknown): JwsAlgorithm =>
  parseFrom<JwsAlgorithm>(signAlgorithms, v, 'JWS "alg"');
export const parseJweAlg = (v: unknown): JweAlg => parseFrom<JweAlg>(jweKeyManagements, v, 'JWE "alg"');
export const parseJweEnc = (v: unknown): JweEnc => parseFrom<JweEnc>(jweContentEncryptions, v, 'JWE "enc"');
