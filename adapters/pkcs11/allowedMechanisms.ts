/**
 * CKA_ALLOWED_MECHANISMS for each key: the mechanisms its purpose needs, and nothing else. Usage flags
 * alone do not stop misuse: CKA_DECRYPT admits CKM_RSA_X_509 (raw RSA, which signs as well as it
 * decrypts) and CKM_AES_ECB; CKA_SIGN on an HMAC key admits every MAC mechanism. A token that honours
 * the attribute (SoftHSM does; check your vendor's documentation) refuses anything else with
 * CKR_MECHANISM_INVALID, whoever holds the PIN.
 */
import { endianness } from 'node:os';
import pkcs11js from 'pkcs11js';
import { keyTypes, type KeyPurpose, type KeyType, type KeyUsage } from '../../src/keys/types.js';
import { CKM as M } from './mechanisms.js';

export interface AllowedMechanismOptions {
  /** RSA encryption keys also allow CKM_RSA_X_509 (the allowRawRsaOaepFallback setting). */
  readonly rawRsaDecrypt?: boolean;
  /** The X9.143 usage of a payment key: narrows a TDES MAC key to its one MAC (tdesMacMechanisms). */
  readonly keyUsage?: KeyUsage;
}

/** The mechanisms a key of this type and purpose may be used with (both halves of a pair). */
export function allowedMechanisms(type: KeyType, purpose: KeyPurpose, options: AllowedMechanismOptions = {}): number[] {
  switch (keyTypes[type].family) {
    case 'rsa':
      if (purpose === 'encrypt') return options.rawRsaDecrypt ? [M.RSA_PKCS_OAEP, M.RSA_X_509] : [M.RSA_PKCS_OAEP];
      // The import wrapping key: C_UnwrapKey of a wrapped import's transport key (keyUnwrap.ts), nothing else.
      if (purpose === 'wrap') return [M.RSA_PKCS_OAEP];
      // CKM_RSA_PKCS signs a DigestInfo built in process (signing a precomputed digest).
      return [M.RSA_PKCS, M.RSA_PKCS_PSS, M.SHA256_RSA_PKCS, M.SHA384_RSA_PKCS, M.SHA512_RSA_PKCS, M.SHA256_RSA_PKCS_PSS, M.SHA384_RSA_PKCS_PSS, M.SHA512_RSA_PKCS_PSS];
    case 'ec':
      return purpose === 'agree' ? [M.ECDH1_DERIVE] : [M.ECDSA, M.ECDSA_SHA256, M.ECDSA_SHA384];
    case 'okp':
      return [M.EDDSA];
    case 'aes':
      return aesMechanisms[purpose];
    case 'tdes':
      return purpose === 'mac' ? tdesMacMechanisms(options.keyUsage) : tdesMechanisms[purpose];
    case 'hmac':
      // A MAC key and a token key (tokenize) alike: HMAC-SHA-256 only.
      return [M.SHA256_HMAC];
  }
}

/**
 * AES keys by purpose. A data key or a key-encryption key, never both (see templates.ts). A payment key
 * allows exactly what the core asks of it (src/backend/port.ts): AES_CMAC of zeros is every AES payment
 * key's check value; a PIN key enciphers PIN blocks (ECB); a BDK derives DUKPT keys; a KBPK derives
 * TR-31 keys (CMAC); a MAC key computes CMACs. An FF1 key (fpe) encrypts single blocks (ECB), nothing else.
 */
const aesMechanisms: Record<KeyPurpose, number[]> = {
  encrypt: [M.AES_GCM],
  wrap: [M.AES_KEY_WRAP],
  pin: [M.AES_ECB, M.AES_CMAC],
  mac: [M.AES_CMAC],
  bdk: [M.AES_CBC_ENCRYPT_DATA, M.AES_CMAC],
  kbpk: [M.AES_CMAC],
  fpe: [M.AES_ECB],
  sign: [],
  agree: [],
  tokenize: [],
};

/**
 * TDES keys by purpose. ECB of zeros is every TDES payment key's check value. A MAC key does ISO 9797-1
 * algorithm 1 as a CBC encryption with a zero IV (its last block) and TDES CMAC; a KBPK derives TR-31
 * version B keys with CMAC; a BDK encrypts the initial key's left half (ECB).
 */
const tdesMechanisms: Record<Exclude<KeyPurpose, 'mac'>, number[]> = {
  pin: [M.DES3_ECB],
  bdk: [M.DES3_ECB],
  kbpk: [M.DES3_CMAC, M.DES3_ECB],
  encrypt: [],
  wrap: [],
  sign: [],
  agree: [],
  tokenize: [],
  fpe: [],
};

/**
 * A TDES MAC key allows what its X9.143 usage computes, besides ECB for its check value: M0 and M1 the
 * CBC-MAC (ISO 9797-1 algorithm 1), M6 CMAC, M3 only ECB (the retail MAC's last step; its single-DES
 * chain runs under the K1 companion). A key without a usage computes algorithm 1 and CMAC.
 */
function tdesMacMechanisms(usage: KeyUsage | undefined): number[] {
  switch (usage) {
    case 'M0':
    case 'M1':
      return [M.DES3_CBC, M.DES3_ECB];
    case 'M3':
      return [M.DES3_ECB];
    case 'M6':
      return [M.DES3_CMAC, M.DES3_ECB];
    default:
      return [M.DES3_CBC, M.DES3_ECB, M.DES3_CMAC];
  }
}

/** A companion object of a payment key version (paymentKeys.ts): the BDK variant does ECB only; K1 of a MAC key, CBC only. */
export function companionMechanisms(role: 'variant' | 'k1', singleDes: boolean): number[] {
  if (role === 'variant') return [M.DES3_ECB];
  return [singleDes ? M.DES_CBC : M.DES3_CBC];
}

/** CK_ULONG as the module expects it: 8 bytes on 64-bit Unix, 4 on Windows and 32-bit platforms. */
const ULONG_BYTES = process.platform !== 'win32' && /64/.test(process.arch) ? 8 : 4;

/** The attribute for a template: an array of CK_MECHANISM_TYPE in the platform's CK_ULONG layout. */
export function allowedMechanismsAttribute(mechanisms: readonly number[]): pkcs11js.Attribute {
  const value = Buffer.alloc(mechanisms.length * ULONG_BYTES);
  const little = endianness() === 'LE';
  mechanisms.forEach((m, i) => {
    const at = i * ULONG_BYTES;
    if (ULONG_BYTES === 8) {
      if (little) value.writeBigUInt64LE(BigInt(m), at);
      else value.writeBigUInt64BE(BigInt(m), at);
    } else if (little) value.writeUInt32LE(m, at);
    else value.writeUInt32BE(m, at);
  });
  return { type: pkcs11js.CKA_ALLOWED_MECHANISMS, value };
}

/** Reads the attribute back (for tests and diagnostics). */
export function decodeAllowedMechanisms(value: Buffer): number[] {
  const little = endianness() === 'LE';
  const out: number[] = [];
  for (let at = 0; at + ULONG_BYTES <= value.length; at += ULONG_BYTES) {
    out.push(ULONG_BYTES === 8 ? Number(little ? value.readBigUInt64LE(at) : value.readBigUInt64BE(at)) : little ? value.readUInt32LE(at) : value.readUInt32BE(at));
  }
  return out;
}
