import type { MacAlgorithm } from '../algorithms/registry.js';
import { HsmBridgeError, invalid } from '../errors.js';
import type { KeyName, KeyVersion } from './names.js';

/** The payment key kinds (X9.143 key usages): a PIN encryption key (TPK/ZPK), a MAC key, a DUKPT base derivation key, a key block protection key. */
const paymentPurposes = ['pin', 'mac', 'bdk', 'kbpk'] as const;

/**
 * The key type registry: every key type hsm-bridge can create, with what it is made of and which
 * purposes it may serve. Adapters map these to their own terms (PKCS#11 key types, KMIP enums).
 * A curve is named here once, with its key type: `curve` is its JOSE "crv" (RFC 7518, RFC 8037),
 * `nodeCurve` node:crypto's name (an EC key's namedCurve; an Ed25519 key is known by its key type) and
 * `curveOid` the DER of its OID (PKCS#11 CKA_EC_PARAMS).
 */
export const keyTypes = {
  RSA_2048: { family: 'rsa', bits: 2048, purposes: ['sign', 'encrypt'] },
  /** Of purpose wrap: the service's import wrapping key (BYOK), made by the service and used only to unwrap imports. */
  RSA_3072: { family: 'rsa', bits: 3072, purposes: ['sign', 'encrypt', 'wrap'] },
  RSA_4096: { family: 'rsa', bits: 4096, purposes: ['sign', 'encrypt', 'wrap'] },
  EC_P256: { family: 'ec', curve: 'P-256', nodeCurve: 'prime256v1', curveOid: '06082a8648ce3d030107', bits: 256, purposes: ['sign', 'agree'] },
  EC_P384: { family: 'ec', curve: 'P-384', nodeCurve: 'secp384r1', curveOid: '06052b81040022', bits: 384, purposes: ['sign', 'agree'] },
  ED25519: { family: 'okp', curve: 'Ed25519', curveOid: '06032b6570', bits: 256, purposes: ['sign'] },
  AES_128: { family: 'aes', bits: 128, purposes: ['encrypt', 'wrap', ...paymentPurposes, 'fpe'] },
  /** For FF1 only (SP 800-38G allows every AES key length). */
  AES_192: { family: 'aes', bits: 192, purposes: ['fpe'] },
  AES_256: { family: 'aes', bits: 256, purposes: ['encrypt', 'wrap', ...paymentPurposes, 'fpe'] },
  /** Double-length TDES (K1, K2, K1): the payment world's usual key. TDES keys are payment keys only. */
  TDES_2KEY: { family: 'tdes', bits: 128, purposes: paymentPurposes },
  TDES_3KEY: { family: 'tdes', bits: 192, purposes: paymentPurposes },
  /** A 256-bit generic secret for HMAC: MACs, or pseudonymisation tokens. */
  HMAC_256: { family: 'hmac', bits: 256, purposes: ['mac', 'tokenize'] },
} as const satisfies Record<string, KeyTypeInfo>;

export type KeyType = keyof typeof keyTypes;
export type KeyFamily = 'rsa' | 'ec' | 'okp' | 'aes' | 'tdes' | 'hmac';

/**
 * What a key is for, fixed at creation (one purpose per key, as AWS KMS and most HSM policies have it):
 * sign = sign and verify; encrypt = encrypt and decrypt data; mac = generate and verify MACs;
 * agree = ECDH key agreement (used inside hsm-bridge, for JWE ECDH-ES; the shared secret is never returned);
 * wrap = AES key wrap of key material (JWE A128KW / A256KW), through the encrypt and decrypt operations;
 *   an RSA key of purpose wrap is the service's import wrapping key, which only unwraps imported keys (BYOK);
 * pin = a PIN encryption key (TPK, ZPK): enciphers ISO 9564 PIN blocks, nothing else;
 * bdk = a DUKPT base derivation key: derives the terminals' transaction keys (X9.24), nothing else;
 * kbpk = a key block protection key: wraps and unwraps TR-31 / X9.143 key blocks, nothing else;
 * tokenize = an HMAC key that makes pseudonymisation tokens (src/dataProtection/tokens.ts), nothing else;
 * fpe = an AES key for FF1 format-preserving encryption (src/dataProtection/ff1.ts): the backend encrypts
 *   single blocks with it (AES-ECB, encryptBlocks), which FF1 needs in both directions, and nothing else.
 * A TDES or AES key of purpose mac computes ISO 9797-1 MACs and CMACs.
 * A data key never wraps and a wrapping key never encrypts data: a key that did both would let whoever
 * can wrap a key of their choosing then decrypt with it (on tokens that allow that) or vice versa.
 */
export type KeyPurpose = 'sign' | 'encrypt' | 'mac' | 'agree' | 'wrap' | 'pin' | 'bdk' | 'kbpk' | 'tokenize' | 'fpe';
export const keyPurposes: readonly KeyPurpose[] = ['sign', 'encrypt', 'mac', 'agree', 'wrap', 'pin', 'bdk', 'kbpk', 'tokenize', 'fpe'];

/** Purposes whose keys exist for payment schemes; their keys carry a key check value (KCV). */
export function isPaymentPurpose(purpose: KeyPurpose): boolean {
  return (paymentPurposes as readonly string[]).includes(purpose);
}

export interface KeyTypeInfo {
  readonly family: KeyFamily;
  readonly bits: number;
  readonly curve?: 'P-256' | 'P-384' | 'Ed25519';
  readonly nodeCurve?: string;
  /** DER of the curve's OID, hex. */
  readonly curveOid?: string;
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

/**
 * The X9.143 (TR-31) key usages hsm-bridge keys can carry: P0 PIN encryption, B0 DUKPT BDK, K0 key
 * encryption key, K1 TR-31 key block protection key, M0 ISO 16609 MAC, M1 ISO 9797-1 MAC algorithm 1,
 * M3 ISO 9797-1 MAC algorithm 3 (retail MAC), M6 CMAC. Part of the key, like its mode of use: a key
 * imported as M3 stays M3, is exported as M3 and computes only the retail MAC.
 */
export type KeyUsage = 'P0' | 'B0' | 'K0' | 'K1' | 'M0' | 'M1' | 'M3' | 'M6';
export const keyUsages: readonly KeyUsage[] = ['P0', 'B0', 'K0', 'K1', 'M0', 'M1', 'M3', 'M6'];

/** The usages each payment purpose may carry, by key family. */
const usagesByPurpose: Partial<Record<KeyPurpose, { readonly tdes: readonly KeyUsage[]; readonly aes: readonly KeyUsage[] }>> = {
  pin: { tdes: ['P0'], aes: ['P0'] },
  bdk: { tdes: ['B0'], aes: ['B0'] },
  kbpk: { tdes: ['K0', 'K1'], aes: ['K0', 'K1'] },
  mac: { tdes: ['M0', 'M1', 'M3', 'M6'], aes: ['M6'] },
};

/** The usages a key of this type and purpose may carry; empty for keys that carry none (non-payment keys). */
export function keyUsagesFor(type: KeyType, purpose: KeyPurpose): readonly KeyUsage[] {
  const family = keyTypes[type].family;
  const byFamily = usagesByPurpose[purpose];
  if (!byFamily || (family !== 'tdes' && family !== 'aes')) return [];
  const usages = byFamily[family];
  // The retail MAC is defined for double-length keys only (K1, K2).
  return type === 'TDES_2KEY' ? usages : usages.filter((u) => u !== 'M3');
}

/**
 * The usage a key without one stands for when it must be named (a TR-31 export): the purpose's general
 * kind. K1 for a KBPK (what a TR-31 key block protection key is), M1 / M6 for TDES / AES MAC keys.
 */
export function defaultKeyUsage(type: KeyType, purpose: KeyPurpose): KeyUsage | undefined {
  const family = keyTypes[type].family;
  if (family !== 'tdes' && family !== 'aes') return undefined;
  switch (purpose) {
    case 'pin':
      return 'P0';
    case 'bdk':
      return 'B0';
    case 'kbpk':
      return 'K1';
    case 'mac':
      return family === 'tdes' ? 'M1' : 'M6';
    default:
      return undefined;
  }
}

/** The widest X9.143 mode of use of each payment purpose: what a key without a mode of use may do. */
export const widestModeOfUse: Readonly<Partial<Record<KeyPurpose, ModeOfUse>>> = { pin: 'B', bdk: 'X', kbpk: 'B', mac: 'C' };

/**
 * What a payment key may do, as one comparable string: its usage and mode of use, an absent one standing
 * for the purpose's general kind. A MAC key without a usage stays apart from M1: it may also do CMAC.
 */
export function paymentKindOf(key: Pick<KeyMetadata, 'type' | 'purpose' | 'keyUsage' | 'modeOfUse'>): string {
  const usage = key.keyUsage ?? (key.purpose === 'mac' ? 'any MAC' : defaultKeyUsage(key.type, key.purpose));
  return `${key.purpose}/${usage ?? ''}/${key.modeOfUse ?? widestModeOfUse[key.purpose] ?? ''}`;
}

/** A requested key usage, checked against the key's type and purpose; undefined when absent. */
export function parseKeyUsage(value: unknown, type: KeyType, purpose: KeyPurpose): KeyUsage | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string' || !(keyUsages as readonly string[]).includes(value)) {
    throw new HsmBridgeError('INVALID_ARGUMENT', `unknown key usage; expected one of ${keyUsages.join(', ')}`);
  }
  const allowed = keyUsagesFor(type, purpose);
  if (!allowed.includes(value as KeyUsage)) {
    throw new HsmBridgeError(
      'INCOMPATIBLE_KEY',
      allowed.length === 0 ? `a ${type} key of purpose ${purpose} carries no key usage` : `a ${type} key of purpose ${purpose} cannot have key usage ${value}; allowed: ${allowed.join(', ')}`,
    );
  }
  return value as KeyUsage;
}

/**
 * The MAC algorithms a MAC key's usage allows: M0 and M1 the full TDES CBC-MAC (ISO 9797-1 algorithm 1),
 * M3 the retail MAC (algorithm 3), M6 CMAC. A MAC key without a usage may use every MAC of its family
 * except the retail MAC: algorithm 3 chains single DES under K1, so only a key made for it (M3) may.
 */
export function macAlgorithmAllowed(usage: KeyUsage | undefined, algorithm: MacAlgorithm): boolean {
  const retail = algorithm === 'ISO9797_ALG3' || algorithm === 'ISO9797_ALG3_PAD2';
  switch (usage) {
    case undefined:
      return !retail;
    case 'M0':
    case 'M1':
      return algorithm === 'ISO9797_ALG1' || algorithm === 'ISO9797_ALG1_PAD2';
    case 'M3':
      return retail;
    case 'M6':
      return algorithm === 'AES_CMAC' || algorithm === 'TDES_CMAC';
    default:
      return false;
  }
}

export interface KeyVersionInfo {
  readonly version: KeyVersion;
  readonly createdAt: string;
  /** SubjectPublicKeyInfo DER of this version's public key; asymmetric keys only. */
  readonly publicKeySpki?: Buffer;
}

/** The payment attributes a key may carry; each is absent when it has its default (false, unrestricted, general). */
export interface PaymentAttributes {
  readonly exportable?: boolean;
  readonly modeOfUse?: ModeOfUse;
  readonly keyUsage?: KeyUsage;
}

/**
 * The payment attributes that are set, and only those (exportable only when true): the form every backend
 * stores and returns, so that records written before the attributes existed read the same as defaults.
 */
export function paymentAttributesOf(from: PaymentAttributes): PaymentAttributes {
  return {
    ...(from.exportable === true ? { exportable: true } : {}),
    ...(from.modeOfUse !== undefined ? { modeOfUse: from.modeOfUse } : {}),
    ...(from.keyUsage !== undefined ? { keyUsage: from.keyUsage } : {}),
  };
}

/** Whether a version of the key is below its minDecryptionVersion: it exists, but nothing may use it. */
export function isRetired(meta: Pick<KeyMetadata, 'minDecryptionVersion'>, version: number): boolean {
  return meta.minDecryptionVersion !== undefined && version < meta.minDecryptionVersion;
}

/**
 * Refuses a minDecryptionVersion the key's versions (`listed`) cannot take: above the newest, the primary,
 * which cannot be retired (INVALID_ARGUMENT), or a version it does not list (KEY_VERSION_NOT_FOUND). The
 * core checks with what it read; each backend again, atomically with its write (Backend.setMinDecryptionVersion).
 */
export function checkMinDecryptionVersion(name: string, listed: readonly number[], version: number): void {
  const primary = Math.max(0, ...listed);
  if (version > primary) throw invalid(`minDecryptionVersion ${version} is above the primary version ${primary}: the primary version cannot be retired`);
  if (!listed.includes(version)) throw new HsmBridgeError('KEY_VERSION_NOT_FOUND', `key ${name} has no version ${version}`);
}

/**
 * A stored minDecryptionVersion as KeyMetadata carries it, for the backends that read it back from a record:
 * absent for 1. One above the newest listed version was never set for this key (the backends check it when
 * they store it): it reads as none retired, so that nothing is retired, or trimmed, that nobody asked for.
 */
export function storedMinDecryptionVersion(stored: number | undefined, listed: readonly number[]): { minDecryptionVersion?: KeyVersion } {
  const min = stored ?? 1;
  if (min <= 1 || (listed.length > 0 && min > Math.max(...listed))) return {};
  return { minDecryptionVersion: min as KeyVersion };
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
  /**
   * The X9.143 key usage of a payment key, from its creation or its TR-31 import; absent means the
   * purpose's general kind (see defaultKeyUsage, macAlgorithmAllowed). Stored by the backend with the key.
   */
  readonly keyUsage?: KeyUsage;
  /** The version that signs, encrypts and MACs: the newest. Older versions still verify and decrypt. */
  readonly primaryVersion: KeyVersion;
  /**
   * Versions below it are retired: they exist but do nothing (KEY_VERSION_RETIRED), until it is lowered
   * again or they are trimmed (destroyed). Absent means none is retired. At most primaryVersion.
   */
  readonly minDecryptionVersion?: KeyVersion;
  /** Every version that exists, oldest first. */
  readonly versions: readonly KeyVersionInfo[];
}
