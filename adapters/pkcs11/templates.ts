/**
 * Attribute templates for generating each key type. Every private and secret key is a token object,
 * private (visible only after login), sensitive and not extractable, and may do only what its purpose
 * needs: all other usage flags are set false explicitly, because token defaults differ between vendors.
 */
import pkcs11js from 'pkcs11js';
import type { KeyPurpose, KeyType } from '../../src/keys/types.js';
import { keyTypes } from '../../src/keys/types.js';
import { allowedMechanisms, allowedMechanismsAttribute, companionMechanisms, type AllowedMechanismOptions } from './allowedMechanisms.js';
import type { CompanionRole } from './keyObjects.js';
import { CKM } from './mechanisms.js';

export const CKK_EC_EDWARDS = 0x40;

export type Generation =
  | { readonly kind: 'pair'; readonly mechanism: number; readonly publicKey: pkcs11js.Template; readonly privateKey: pkcs11js.Template }
  | { readonly kind: 'secret'; readonly mechanism: number; readonly secretKey: pkcs11js.Template };

/** Usage attributes, all present, true only where the purpose needs them. */
function usage(allowed: readonly number[], all: readonly number[]): pkcs11js.Template {
  return all.map((type) => ({ type, value: allowed.includes(type) }));
}

const A = pkcs11js;
const PRIVATE_USAGE = [A.CKA_SIGN, A.CKA_DECRYPT, A.CKA_UNWRAP, A.CKA_DERIVE, A.CKA_SIGN_RECOVER];
const PUBLIC_USAGE = [A.CKA_VERIFY, A.CKA_ENCRYPT, A.CKA_WRAP, A.CKA_DERIVE, A.CKA_VERIFY_RECOVER];
const SECRET_USAGE = [A.CKA_SIGN, A.CKA_VERIFY, A.CKA_ENCRYPT, A.CKA_DECRYPT, A.CKA_WRAP, A.CKA_UNWRAP, A.CKA_DERIVE];

/** Attributes shared by every object of a key version: where it lives and how it is found. */
function common(label: string, id: Buffer): pkcs11js.Template {
  return [
    { type: A.CKA_TOKEN, value: true },
    { type: A.CKA_PRIVATE, value: true },
    { type: A.CKA_LABEL, value: label },
    { type: A.CKA_ID, value: id },
  ];
}

/** Never readable; wrappable out of the token only when exportable (TR-31 export, keyExport.ts). */
const protectedKey = (exportable = false): pkcs11js.Template => [
  { type: A.CKA_SENSITIVE, value: true },
  { type: A.CKA_EXTRACTABLE, value: exportable },
];

export interface TemplateOptions extends AllowedMechanismOptions {
  /** CKA_EXTRACTABLE true (still sensitive): the key may be wrapped out for a TR-31 export. */
  readonly exportable?: boolean;
}

/**
 * Usage of each half of a key pair by purpose. An agreement key derives (ECDH) and does nothing else; its
 * public half is used outside the HSM only. An RSA wrapping key (the import wrapping key) only unwraps:
 * never decrypts, so no transport key it unwrapped can be read back through C_Decrypt.
 */
const noPayment = { pin: [], bdk: [], kbpk: [] };
const noSecretOnly = { ...noPayment, tokenize: [], fpe: [] };
const publicUsage: Record<KeyPurpose, number[]> = { sign: [A.CKA_VERIFY], encrypt: [A.CKA_ENCRYPT], agree: [], mac: [], wrap: [A.CKA_WRAP], ...noSecretOnly };
const privateUsage: Record<KeyPurpose, number[]> = { sign: [A.CKA_SIGN], encrypt: [A.CKA_DECRYPT], agree: [A.CKA_DERIVE], mac: [], wrap: [A.CKA_UNWRAP], ...noSecretOnly };
/**
 * Usage of a secret key by purpose. A wrapping key (AES_KW: C_WrapKey / C_UnwrapKey, see joseMechanisms.ts)
 * neither encrypts nor decrypts data, and a data key never wraps: one key doing both is the wrap-then-decrypt
 * attack on tokens that let C_Decrypt use a key-wrap mechanism. An FF1 key only encrypts: FF1 uses the AES
 * forward direction to decrypt as well, so CKA_DECRYPT would only add an ECB decryption oracle.
 */
const secretUsage: Record<KeyPurpose, number[]> = {
  encrypt: [A.CKA_ENCRYPT, A.CKA_DECRYPT],
  wrap: [A.CKA_WRAP, A.CKA_UNWRAP],
  mac: [A.CKA_SIGN, A.CKA_VERIFY],
  tokenize: [A.CKA_SIGN, A.CKA_VERIFY],
  fpe: [A.CKA_ENCRYPT],
  sign: [],
  agree: [],
  ...noPayment,
};

/**
 * Payment keys (allowedMechanisms.ts says which mechanisms): TDES ones encrypt for their check value (ECB)
 * and, as MAC keys, for ISO 9797-1 CBC-MACs; CMAC is a signature (AES check values, TR-31 key derivation,
 * MACs). MACs are verified by recomputing them, so no key needs CKA_VERIFY; a BDK derives (AES) or
 * encrypts the initial key's left half (TDES).
 */
const paymentUsage: Record<'aes' | 'tdes', Partial<Record<KeyPurpose, number[]>>> = {
  aes: { pin: [A.CKA_ENCRYPT, A.CKA_DECRYPT, A.CKA_SIGN], mac: [A.CKA_SIGN], bdk: [A.CKA_DERIVE, A.CKA_SIGN], kbpk: [A.CKA_SIGN] },
  tdes: { pin: [A.CKA_ENCRYPT, A.CKA_DECRYPT], mac: [A.CKA_SIGN, A.CKA_ENCRYPT], bdk: [A.CKA_ENCRYPT], kbpk: [A.CKA_SIGN, A.CKA_ENCRYPT] },
};

function secretUsageOf(type: KeyType, purpose: KeyPurpose): number[] {
  const family = keyTypes[type].family;
  return (family === 'aes' || family === 'tdes' ? paymentUsage[family][purpose] : undefined) ?? secretUsage[purpose];
}

/** CKK_* of a secret key type. */
export function secretKeyType(type: KeyType): number {
  const info = keyTypes[type];
  if (info.family === 'aes') return A.CKK_AES;
  if (info.family === 'hmac') return A.CKK_GENERIC_SECRET;
  return info.bits === 128 ? A.CKK_DES2 : A.CKK_DES3;
}

/** A secret key version made from a value known in process (an import, or a key built from HSM random bytes): C_CreateObject. */
export function secretObjectTemplate(type: KeyType, purpose: KeyPurpose, label: string, id: Buffer, value: Buffer, options: TemplateOptions = {}): pkcs11js.Template {
  return [
    { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY },
    { type: A.CKA_KEY_TYPE, value: secretKeyType(type) },
    ...common(label, id),
    allowedMechanismsAttribute(allowedMechanisms(type, purpose, options)),
    ...protectedKey(options.exportable),
    ...usage(secretUsageOf(type, purpose), SECRET_USAGE),
    { type: A.CKA_VALUE, value },
  ];
}

/**
 * A companion object (paymentKeys.ts): encrypts with its one mechanism and does nothing else; never
 * extractable, even for an exportable key (the export carries the key, and the importer rebuilds these).
 */
export function companionTemplate(role: CompanionRole, label: string, id: Buffer, value: Buffer, singleDes: boolean): pkcs11js.Template {
  const keyType = role === 'variant' ? A.CKK_DES2 : singleDes ? A.CKK_DES : A.CKK_DES2;
  return [
    { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY },
    { type: A.CKA_KEY_TYPE, value: keyType },
    ...common(label, id),
    allowedMechanismsAttribute(companionMechanisms(role, singleDes)),
    ...protectedKey(false),
    ...usage([A.CKA_ENCRYPT], SECRET_USAGE),
    { type: A.CKA_VALUE, value },
  ];
}

export function generationFor(type: KeyType, purpose: KeyPurpose, label: string, id: Buffer, options: TemplateOptions = {}): Generation {
  const info = keyTypes[type];
  // Every object of the version carries CKA_ALLOWED_MECHANISMS: usage flags alone admit raw mechanisms.
  const base = [...common(label, id), allowedMechanismsAttribute(allowedMechanisms(type, purpose, options))];
  switch (info.family) {
    case 'rsa':
    case 'ec':
    case 'okp': {
      const keyType = info.family === 'rsa' ? A.CKK_RSA : info.family === 'ec' ? A.CKK_EC : CKK_EC_EDWARDS;
      // CKA_EC_PARAMS: DER of the curve's OID. For Ed25519 SoftHSM 2.6.1 accepts both the OID 1.3.101.112
      // and PKCS#11 3.0's PrintableString "edwards25519"; the OID is what most vendors also take.
      const shape: pkcs11js.Template =
        info.family === 'rsa'
          ? [
              { type: A.CKA_MODULUS_BITS, value: info.bits },
              { type: A.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
            ]
          : [{ type: A.CKA_EC_PARAMS, value: Buffer.from(info.curveOid, 'hex') }];
      return {
        kind: 'pair',
        mechanism: info.family === 'rsa' ? CKM.RSA_PKCS_KEY_PAIR_GEN : info.family === 'ec' ? CKM.EC_KEY_PAIR_GEN : CKM.EC_EDWARDS_KEY_PAIR_GEN,
        publicKey: [
          { type: A.CKA_CLASS, value: A.CKO_PUBLIC_KEY },
          { type: A.CKA_KEY_TYPE, value: keyType },
          ...base,
          ...shape,
          ...usage(publicUsage[purpose], PUBLIC_USAGE),
        ],
        privateKey: [
          { type: A.CKA_CLASS, value: A.CKO_PRIVATE_KEY },
          { type: A.CKA_KEY_TYPE, value: keyType },
          ...base,
          ...protectedKey(),
          ...usage(privateUsage[purpose], PRIVATE_USAGE),
        ],
      };
    }
    case 'aes':
    case 'tdes':
    case 'hmac': {
      const keyType = secretKeyType(type);
      const mechanism =
        info.family === 'aes' ? CKM.AES_KEY_GEN : info.family === 'hmac' ? CKM.GENERIC_SECRET_KEY_GEN : info.bits === 128 ? CKM.DES2_KEY_GEN : CKM.DES3_KEY_GEN;
      // DES key generation fixes the length; CKA_VALUE_LEN there is an error on some tokens.
      const length: pkcs11js.Template = info.family === 'tdes' ? [] : [{ type: A.CKA_VALUE_LEN, value: info.bits / 8 }];
      return {
        kind: 'secret',
        mechanism,
        secretKey: [
          { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY },
          { type: A.CKA_KEY_TYPE, value: keyType },
          ...base,
          ...length,
          ...protectedKey(options.exportable),
          ...usage(secretUsageOf(type, purpose), SECRET_USAGE),
        ],
      };
    }
  }
}

/**
 * The templates of a version made by unwrapping (keyUnwrap.ts): the private or secret key as the generated
 * one's, but a session object (copied into the token once checked) without what the unwrapped material
 * sets (CKA_VALUE_LEN is read-only in C_UnwrapKey on SoftHSM); the public half without its shape, which
 * the caller adds from the unwrapped key.
 */
export function unwrapTemplates(type: KeyType, purpose: KeyPurpose, label: string, id: Buffer, options: TemplateOptions = {}): { key: pkcs11js.Template; publicKey?: pkcs11js.Template } {
  const g = generationFor(type, purpose, label, id, options);
  const session = (t: pkcs11js.Template) => t.map((a) => (a.type === A.CKA_TOKEN ? { type: A.CKA_TOKEN, value: false } : a));
  if (g.kind === 'secret') return { key: session(g.secretKey.filter((a) => a.type !== A.CKA_VALUE_LEN)) };
  const shape = new Set<number>([A.CKA_MODULUS_BITS, A.CKA_PUBLIC_EXPONENT, A.CKA_EC_PARAMS]);
  return { key: session(g.privateKey), publicKey: g.publicKey.filter((a) => !shape.has(a.type)) };
}
