import { HsmBridgeError } from '../errors.js';
import type { KeyName, KeyVersion } from './names.js';

/** The payment key kinds (X9.143 key usages): a PIN encryption key (TPK/ZPK), a MAC key, a DUKPT base derivation key, a key block protection key. */
const paymentPurposes = ['pin', 'mac', 'bdk', 'kbpk'] as const;

/**
 * The key type registry: every key type hsm-bridge can create, with what it is made of and which
 * purposes it may serve. Adapters map these to their own terms (PKCS#11 key types, KMIP enums).
 */
export const keyTypes = {
  RSA_2048: { family: 'rsa', bits: 2048, purposes: ['sign', 'encrypt'] },
  RSA_3072: { family: 'rsa', bits: 3072, purposes: ['sign', 'encrypt'] },
  RSA_4096: { family: 'rsa', bits: 4096, purposes: ['sign', 'encrypt'] },
  EC_P256: { family: 'ec', curve: 'P-256', bits: 256, purposes: ['sign', 'agree'] },
  EC_P384: { family: 'ec', curve: 'P-384', bits: 384, purposes: ['sign', 'agree'] },
  ED25519: { family: 'okp', curve: 'Ed25519', bits: 256, purposes: ['sign'] },
  AES_128: { family: 'aes', bits: 128, purposes: ['encrypt', 'wrap', ...paymentPurposes] },
  AES_256: { family: 'aes', bits: 256, purposes: ['encrypt', 'wrap', ...paymentPurposes] },
  /** Double-length TDES (K1, K2, K1): the payment world's usual key. TDES keys are payment keys only. */
  TDES_2KEY: { family: 'tdes', bits: 128, purposes: paymentPurposes },
  TDES_3KEY: { family: 'tdes', bits: 192, purposes: paymentPurposes },
  /** A 256-bit generic secret for HMAC. */
  HMAC_256: { family: 'hmac', bits: 256, purposes: ['mac'] },
} as const satisfies Record<string, KeyTypeInfo>;

export type KeyType = keyof typeof keyTypes;
export type KeyFamily = 'rsa' | 'ec' | 'okp' | 'aes' | 'tdes' | 'hmac';

/**
 * What a key is for, fixed at creation (one purpose per key, as AWS KMS and most HSM policies have it):
 * sign = sign and verify; encrypt = encrypt and decrypt data; mac = generate and verify MACs;
 * agree = ECDH key agreement (used inside hsm-bridge, for JWE ECDH-ES; the shared secret is never returned);
 * wrap = AES key wrap of key material (JWE A128KW / A256KW), through the encrypt and decrypt operations;
 * pin = a PIN encryption key (TPK, ZPK): enciphers ISO 9564 PIN blocks, nothing else;
 * bdk = a DUKPT base derivation key: derives the terminals' transaction keys (X9.24), nothing else;
 * kbpk = a key block protection key: wraps and unwraps TR-31 / X9.143 key blocks, nothing else.
 * A TDES or AES key of purpose mac computes ISO 9797-1 MACs and CMACs.
 * A data key never wraps and a wrapping key never encrypts data: a key that did both would let whoever
 * can wrap a key of their choosing then decrypt with it (on tokens that allow that) or vice versa.
 */
export type KeyPurpose = 'sign' | 'encrypt' | 'mac' | 'agree' | 'wrap' | 'pin' | 'bdk' | 'kbpk';
export const keyPurposes: readonly KeyPurpose[] = ['sign', 'encrypt', 'mac', 'agree', 'wrap', 'pin', 'bdk', 'kbpk'];

/** Purposes whose keys exist for payment schemes; their keys carry a key check value (KCV). */
export function isPaymentPurpose(purpose: KeyPurpose): boolean {
  return (paymentPurposes as readonly string[]).includes(purpose);
}

export interface KeyTypeInfo {
  readonly family: KeyFamily;
  readonly bits: number;
  readonly curve?: 'P-256' | 'P-384' | 'Ed25519';
  readonly purposes: readonly KeyPurpose[];
}

export const allKeyTypes = Object.keys(keyTypes) as KeyType[];

export function keyTypeInfo(type: KeyType): KeyTypeInfo {
  return keyTypes[type];
}

export function isAsymmetric(type: KeyType): boolean {
  const f = keyTypes[type].family;
  return f === 'rsa' || f === 'ec' || f === 'okp';
}

export function parseKeyType(value: unknown): KeyType {
  if (typeof value !== 'string' || !Object.hasOwn(keyTypes, value)) {
    throw new HsmBridgeError('INVALID_ARGUMENT', `unknown key type; expected one of ${allKeyTypes.join(', ')}`);
  }
  return value as KeyType;
}

export function parseKeyPurpose(value: unknown, type: KeyType): KeyPurpose {
  const allowed = keyTypes[type].purposes as readonly KeyPurpose[];
  if (value === undefined) return allowed[0] as KeyPurpose;
  if (typeof value !== 'string' || !(keyPurposes as readonly string[]).includes(value)) {
    throw new HsmBridgeError('INVALID_ARGUMENT', `unknown key purpose; expected one of ${keyPurposes.join(', ')}`);
  }
  if (!allowed.includes(value as KeyPurpose)) {
    throw new HsmBridgeError('INCOMPATIBLE_KEY', `a ${type} key cannot have purpose ${value}; allowed: ${allowed.join(', ')}`);
  }
  return value as KeyPurpose;
}

export type KeyState = 'enabled' | 'disabled';

export type ModeOfUse = 'B' | 'E' | 'D' | 'C' | 'G' | 'V' | 'X';
export const modesOfUse: readonly ModeOfUse[] = ['B', 'E', 'D', 'C', 'G', 'V', 'X'];

export interface KeyVersionInfo {
  readonly version: KeyVersion;
  readonly createdAt: string;
  /** SubjectPublicKeyInfo DER of this version's public key; asymmetric keys only. */
  readonly publicKeySpki?: Buffer;
}

/** What a backend knows about a key. The backend stores it, so replicas sharing an HSM agree. */
export interface KeyMetadata {
  readonly name: KeyName;
  readonly type: KeyType;
  readonly purpose: KeyPurpose;
  readonly state: KeyState;
  readonly createdAt: string;
  /**
   * Whether the key may leave the backend, wrapped in a TR-31 key block under a KBPK. Set at creation or
   * import, never changed; absent means false. Only TDES and AES keys of the payment purposes can be.
   */
  readonly exportable?: boolean;
  /**
   * The X9.143 mode of use a TR-31 import carried (E encrypt/wrap only, D decrypt/unwrap only, B both,
   * G generate MACs, V verify MACs, C both, X derive keys); absent means whatever the purpose allows.
   * Stored by the backend with the key; the core enforces it on every operation.
   */
  readonly modeOfUse?: ModeOfUse;
  /** The version that signs, encrypts and MACs: the newest. Older versions still verify and decrypt. */
  readonly primaryVersion: KeyVersion;
  /** Every version that exists, oldest first. */
  readonly versions: readonly KeyVersionInfo[];
}
