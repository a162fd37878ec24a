import { HsmBridgeError } from '../errors.js';
import { keyTypes, type KeyFamily, type KeyPurpose, type KeyType } from '../keys/types.js';
import type { HashName } from './hashes.js';

/**
 * The algorithm registry: everything about each algorithm in one place. The core checks requests
 * against it; adapters read it to pick mechanisms. Names follow JOSE (RFC 7518) where JOSE has one.
 */
export const signAlgorithms = {
  RS256: { scheme: 'pkcs1', hash: 'sha256', family: 'rsa' },
  RS384: { scheme: 'pkcs1', hash: 'sha384', family: 'rsa' },
  RS512: { scheme: 'pkcs1', hash: 'sha512', family: 'rsa' },
  /** RSASSA-PSS with MGF1 over the same hash and a salt as long as the hash (RFC 7518 §3.5). */
  PS256: { scheme: 'pss', hash: 'sha256', family: 'rsa' },
  PS384: { scheme: 'pss', hash: 'sha384', family: 'rsa' },
  PS512: { scheme: 'pss', hash: 'sha512', family: 'rsa' },
  /** ECDSA; the signature is raw r||s (JWS form), not DER. */
  ES256: { scheme: 'ecdsa', hash: 'sha256', family: 'ec', keyType: 'EC_P256' },
  ES384: { scheme: 'ecdsa', hash: 'sha384', family: 'ec', keyType: 'EC_P384' },
  /** Pure Ed25519 (RFC 8037): signs the message itself, so it cannot sign a precomputed digest. */
  EdDSA: { scheme: 'eddsa', hash: null, family: 'okp', keyType: 'ED25519' },
} as const satisfies Record<string, SignAlgorithmInfo>;

/** The smallest RSA modulus accepted anywhere (RFC 7518 §3.3, §3.5 and §4.2; the FSPIOP signature spec). */
export const MIN_RSA_BITS = 2048;

/** The first algorithm of a family is the default for its keys, so new ones go after it. */
export const encryptAlgorithms = {
  /** AES-GCM with a 96-bit random IV and a 128-bit tag; AES-128 or AES-256 keys. */
  AES_GCM: { family: 'aes', ivLength: 12, tagLength: 16 },
  /** RSAES-OAEP with SHA-256 and MGF1-SHA-256, empty label (RFC 8017; JOSE's RSA-OAEP-256). */
  RSA_OAEP_SHA256: { family: 'rsa', oaepHash: 'sha256', oaepHashLength: 32 },
  /** RSAES-OAEP with SHA-1 and MGF1-SHA-1, empty label: JOSE's RSA-OAEP, for JWE interoperability. */
  RSA_OAEP_SHA1: { family: 'rsa', oaepHash: 'sha1', oaepHashLength: 20 },
  /**
   * AES key wrap (RFC 3394 with its default IV, `iv` in hex): JOSE's A128KW / A256KW. The input is key
   * material: a multiple of 8 bytes, at least 16; the output is 8 bytes longer. Deterministic, no AAD.
   */
  AES_KW: { family: 'aes', purpose: 'wrap', wrap: { blockLength: 8, minLength: 16, overhead: 8, iv: 'a6a6a6a6a6a6a6a6' } },
} as const satisfies Record<string, EncryptAlgorithmInfo>;

/** Key agreement: raw ECDH (SEC 1 §3.3.1); its shared secret feeds a KDF inside hsm-bridge and is never returned. */
export const agreementAlgorithms = {
  ECDH: { family: 'ec' },
} as const satisfies Record<string, { readonly family: KeyFamily }>;

/**
 * MACs. The ISO 9797-1 ones chain the block cipher in CBC mode (zero IV) over data padded by method 1
 * (zeros, none when already whole blocks: ISO 8583 and X9.19 use it) or method 2 (0x80 then zeros: EMV).
 * The first algorithm of a key family is its keys' default.
 */
export const macAlgorithms = {
  HMAC_SHA256: { family: 'hmac', hash: 'sha256', length: 32 },
  /** SP 800-38B CMAC with an AES key; 16 bytes. */
  AES_CMAC: { family: 'aes', length: 16 },
  /** ISO 9797-1 MAC algorithm 1 with TDES (the full TDES CBC-MAC), padding method 1. */
  ISO9797_ALG1: { family: 'tdes', length: 8, padding: 1 },
  /** ISO 9797-1 MAC algorithm 3 (ANSI X9.19 retail MAC): single-DES CBC under K1, then decrypt K2, encrypt K1. Double-length keys only. */
  ISO9797_ALG3: { family: 'tdes', length: 8, padding: 1, keyType: 'TDES_2KEY' },
  ISO9797_ALG1_PAD2: { family: 'tdes', length: 8, padding: 2 },
  ISO9797_ALG3_PAD2: { family: 'tdes', length: 8, padding: 2, keyType: 'TDES_2KEY' },
  /** SP 800-38B CMAC with a TDES key; 8 bytes. */
  TDES_CMAC: { family: 'tdes', length: 8 },
} as const satisfies Record<string, MacAlgorithmInfo>;

/**
 * The shortest MAC verify accepts for the payment MACs (ISO 8583 messages often carry the leftmost 4 bytes);
 * a shorter prefix is too easy to guess. HMAC is verified at full length only.
 */
export const MIN_TRUNCATED_MAC_BYTES = 4;

export type SignAlgorithm = keyof typeof signAlgorithms;
export type EncryptAlgorithm = keyof typeof encryptAlgorithms;
export type MacAlgorithm = keyof typeof macAlgorithms;

export interface SignAlgorithmInfo {
  readonly scheme: 'pkcs1' | 'pss' | 'ecdsa' | 'eddsa';
  readonly hash: HashName | null;
  readonly family: KeyFamily;
  /** Set when only one key type fits (the curve is part of the algorithm). */
  readonly keyType?: KeyType;
}
export interface EncryptAlgorithmInfo {
  readonly family: KeyFamily;
  /** The key purpose it needs: 'encrypt' unless set ('wrap' for key wrapping). */
  readonly purpose?: 'encrypt' | 'wrap';
  /** AES-GCM: the IV and the tag, in bytes. */
  readonly ivLength?: number;
  readonly tagLength?: number;
  /** RSA-OAEP: the hash of OAEP and of MGF1, as node:crypto names it. */
  readonly oaepHash?: 'sha256' | 'sha1';
  /** RSA-OAEP: the length of its hash, which bounds the plaintext (k - 2 hLen - 2 bytes). */
  readonly oaepHashLength?: number;
  readonly wrap?: { readonly blockLength: number; readonly minLength: number; readonly overhead: number; readonly iv: string };
}
export interface MacAlgorithmInfo {
  readonly family: KeyFamily;
  readonly hash?: HashName;
  readonly length: number;
  /** ISO 9797-1 padding method. */
  readonly padding?: 1 | 2;
  /** Set when only one key type fits. */
  readonly keyType?: KeyType;
}

export const allSignAlgorithms = Object.keys(signAlgorithms) as SignAlgorithm[];
export const allEncryptAlgorithms = Object.keys(encryptAlgorithms) as EncryptAlgorithm[];
export const allMacAlgorithms = Object.keys(macAlgorithms) as MacAlgorithm[];

function parseFrom<T extends string>(table: Record<string, unknown>, value: unknown, what: string): T {
  if (typeof value !== 'string' || !Object.hasOwn(table, value)) {
    throw new HsmBridgeError('UNSUPPORTED_ALGORITHM', `unknown ${what} algorithm; expected one of ${Object.keys(table).join(', ')}`);
  }
  return value as T;
}

export const parseSignAlgorithm = (v: unknown) => parseFrom<SignAlgorithm>(signAlgorithms, v, 'signature');
export const parseEncryptAlgorithm = (v: unknown) => parseFrom<EncryptAlgorithm>(encryptAlgorithms, v, 'encryption');
export const parseMacAlgorithm = (v: unknown) => parseFrom<MacAlgorithm>(macAlgorithms, v, 'MAC');

/** The algorithms a key type can use for a purpose; empty when none. */
export function algorithmsFor(type: KeyType, purpose: KeyPurpose): string[] {
  const family = keyTypes[type].family;
  const fits = (info: { family: KeyFamily; keyType?: KeyType }) =>
    info.family === family && (info.keyType === undefined || info.keyType === type);
  const tables: Record<KeyPurpose, Record<string, { family: KeyFamily; keyType?: KeyType }>> = {
    sign: signAlgorithms,
    encrypt: encryptionsOf('encrypt'),
    wrap: encryptionsOf('wrap'),
    mac: macAlgorithms,
    agree: agreementAlgorithms,
    // The payment kinds have operations of their own (src/payment), not generic algorithms.
    pin: {},
    bdk: {},
    kbpk: {},
    // Tokens are HMAC-SHA-256 and nothing else; FF1 is AES through the backend's single-block encryption.
    tokenize: { HMAC_SHA256: macAlgorithms.HMAC_SHA256 },
    fpe: { FF1: { family: 'aes' } },
  };
  const table = tables[purpose];
  return Object.entries(table).filter(([, info]) => fits(info)).map(([name]) => name);
}

/** The encrypt and decrypt operations serve two purposes; each algorithm belongs to one. */
function encryptionsOf(purpose: 'encrypt' | 'wrap'): Record<string, EncryptAlgorithmInfo> {
  const table: Record<string, EncryptAlgorithmInfo> = encryptAlgorithms;
  return Object.fromEntries(Object.entries(table).filter(([, info]) => (info.purpose ?? 'encrypt') === purpose));
}

/** The purposes whose keys the encrypt and decrypt operations take. */
export const cipherPurposes: readonly KeyPurpose[] = ['encrypt', 'wrap'];

/** The default algorithm for a key, used when a request names none. */
export function defaultAlgorithm(type: KeyType, purpose: KeyPurpose): string | undefined {
  return algorithmsFor(type, purpose)[0];
}
