/**
 * Which PKCS#11 mechanisms hsm-bridge uses, what the token offers (C_GetMechanismList, read once at
 * start), the capabilities that follow, and the mechanism + input for each signature algorithm.
 *
 * Fallbacks, chosen per call from the discovered list:
 * - message signing uses the token's combined hash-and-sign mechanism when listed (CKM_SHA256_RSA_PKCS,
 *   CKM_ECDSA_SHA256, ...); otherwise the message is hashed in process and the digest signed with the
 *   raw mechanism (CKM_RSA_PKCS over DigestInfo || digest, CKM_RSA_PKCS_PSS, CKM_ECDSA). SoftHSM 2.6
 *   has no CKM_ECDSA_SHA*, so ES256/ES384 always take the digest path there.
 * - RSA_OAEP_SHA256 decryption: see oaepDecryption.ts and oaep.ts.
 */
import { createHash } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { hashes, type HashName } from '../../src/algorithms/hashes.js';
import { signAlgorithms, type EncryptAlgorithm, type MacAlgorithm, type SignAlgorithm } from '../../src/algorithms/registry.js';
import type { Capabilities, SignInput } from '../../src/backend/port.js';
import { keyTypes, type KeyType } from '../../src/keys/types.js';
import type { Handle, Pkcs11Api } from './module.js';

/** Mechanism numbers (PKCS#11 v3.0 §6); some (EdDSA) are missing from pkcs11js's constants. */
export const CKM = {
  RSA_PKCS_KEY_PAIR_GEN: 0x0,
  RSA_PKCS: 0x1,
  RSA_X_509: 0x3,
  RSA_PKCS_OAEP: 0x9,
  RSA_PKCS_PSS: 0xd,
  SHA256_RSA_PKCS: 0x40,
  SHA384_RSA_PKCS: 0x41,
  SHA512_RSA_PKCS: 0x42,
  SHA256_RSA_PKCS_PSS: 0x43,
  SHA384_RSA_PKCS_PSS: 0x44,
  SHA512_RSA_PKCS_PSS: 0x45,
  DES_CBC: 0x122,
  DES2_KEY_GEN: 0x130,
  DES3_KEY_GEN: 0x131,
  DES3_ECB: 0x132,
  DES3_CBC: 0x133,
  DES3_CMAC: 0x138,
  SHA_1: 0x220,
  SHA256: 0x250,
  SHA256_HMAC: 0x251,
  SHA384: 0x260,
  SHA512: 0x270,
  GENERIC_SECRET_KEY_GEN: 0x350,
  EC_KEY_PAIR_GEN: 0x1040,
  ECDSA: 0x1041,
  ECDSA_SHA256: 0x1044,
  ECDSA_SHA384: 0x1045,
  ECDH1_DERIVE: 0x1050,
  EC_EDWARDS_KEY_PAIR_GEN: 0x1055,
  EDDSA: 0x1057,
  AES_KEY_GEN: 0x1080,
  AES_ECB: 0x1081,
  AES_GCM: 0x1087,
  AES_CMAC: 0x108a,
  /** CK_AES_CBC_ENCRYPT_DATA_PARAMS, which pkcs11js can pass (it cannot pass AES_ECB_ENCRYPT_DATA's CK_KEY_DERIVATION_STRING_DATA). */
  AES_CBC_ENCRYPT_DATA: 0x1105,
  AES_KEY_WRAP: 0x2109,
  /** RFC 5649 (with padding): the second layer of a wrapped import, and how staged ceremony components leave the token. */
  AES_KEY_WRAP_PAD: 0x210a,
} as const;


const CKF_RNG = 0x1;
/** CKZ_DATA_SPECIFIED: the OAEP label comes from the (empty) source data. */
export const CKZ_DATA_SPECIFIED = 0x1;

export const hashMechanism: Record<HashName, { readonly hash: number; readonly mgf: number }> = {
  sha256: { hash: CKM.SHA256, mgf: pkcs11js.CKG_MGF1_SHA256 },
  sha384: { hash: CKM.SHA384, mgf: pkcs11js.CKG_MGF1_SHA384 },
  sha512: { hash: CKM.SHA512, mgf: pkcs11js.CKG_MGF1_SHA512 },
};

const combined: Record<'pkcs1' | 'pss' | 'ecdsa', Partial<Record<HashName, number>>> = {
  pkcs1: { sha256: CKM.SHA256_RSA_PKCS, sha384: CKM.SHA384_RSA_PKCS, sha512: CKM.SHA512_RSA_PKCS },
  pss: { sha256: CKM.SHA256_RSA_PKCS_PSS, sha384: CKM.SHA384_RSA_PKCS_PSS, sha512: CKM.SHA512_RSA_PKCS_PSS },
  ecdsa: { sha256: CKM.ECDSA_SHA256, sha384: CKM.ECDSA_SHA384 },
};
const raw = { pkcs1: CKM.RSA_PKCS, pss: CKM.RSA_PKCS_PSS, ecdsa: CKM.ECDSA } as const;

/** What the token can do, read once when the backend starts. */
export class TokenMechanisms {
  private constructor(
    private readonly list: ReadonlySet<number>,
    private readonly rsaBits: { readonly min: number; readonly max: number } | undefined,
    readonly hasRng: boolean,
  ) {}

  static discover(api: Pkcs11Api, slot: Handle): TokenMechanisms {
    const list = new Set(api.C_GetMechanismList(slot));
    let rsaBits: { min: number; max: number } | undefined;
    if (list.has(CKM.RSA_PKCS_KEY_PAIR_GEN)) {
      const info = api.C_GetMechanismInfo(slot, CKM.RSA_PKCS_KEY_PAIR_GEN);
      rsaBits = { min: info.minKeySize, max: info.maxKeySize };
    }
    return new TokenMechanisms(list, rsaBits, (api.C_GetTokenInfo(slot).flags & CKF_RNG) !== 0);
  }

  /** From a profile() (a session worker rebuilding the control worker's view), or for unit tests. */
  static of(mechanisms: Iterable<number>, rsaBits?: { min: number; max: number }, hasRng = true): TokenMechanisms {
    return new TokenMechanisms(new Set(mechanisms), rsaBits, hasRng);
  }

  /** What TokenMechanisms.of needs to rebuild this in another thread. */
  profile(): { mechanisms: number[]; rsaBits?: { min: number; max: number }; hasRng: boolean } {
    return { mechanisms: [...this.list], ...(this.rsaBits ? { rsaBits: { ...this.rsaBits } } : {}), hasRng: this.hasRng };
  }

  has(mechanism: number): boolean {
    return this.list.has(mechanism);
  }

  canCreate(type: KeyType): boolean {
    const info = keyTypes[type];
    switch (info.family) {
      case 'rsa':
        return this.rsaBits !== undefined && info.bits >= this.rsaBits.min && info.bits <= this.rsaBits.max;
      case 'ec':
        return this.has(CKM.EC_KEY_PAIR_GEN);
      case 'okp':
        return this.has(CKM.EC_EDWARDS_KEY_PAIR_GEN) && this.has(CKM.EDDSA);
      case 'aes':
        // AES-192 serves FF1 only (purpose fpe), which needs AES-ECB.
        return this.has(CKM.AES_KEY_GEN) && (info.bits !== 192 || this.has(CKM.AES_ECB));
      case 'tdes':
        return this.has(info.bits === 128 ? CKM.DES2_KEY_GEN : CKM.DES3_KEY_GEN);
      case 'hmac':
        return this.has(CKM.GENERIC_SECRET_KEY_GEN) && this.has(CKM.SHA256_HMAC);
    }
  }

  /** A message can always be signed when the digest can (we hash in process), or with a combined mechanism. */
  canSign(algorithm: SignAlgorithm): boolean {
    const info = signAlgorithms[algorithm];
    if (info.scheme === 'eddsa') return this.has(CKM.EDDSA);
    return this.canSignDigest(algorithm) || this.has(combined[info.scheme][info.hash] ?? -1);
  }

  canSignDigest(algorithm: SignAlgorithm): boolean {
    const info = signAlgorithms[algorithm];
    return info.scheme !== 'eddsa' && this.has(raw[info.scheme]);
  }

  capabilities(): Capabilities {
    const types = (Object.keys(keyTypes) as KeyType[]).filter((t) => this.canCreate(t));
    const family = (f: string) => types.some((t) => keyTypes[t].family === f);
    const keyTypeFor = (a: SignAlgorithm) => {
      const info = signAlgorithms[a];
      return 'keyType' in info ? types.includes(info.keyType) : family(info.family);
    };
    const sign = (Object.keys(signAlgorithms) as SignAlgorithm[]).filter((a) => keyTypeFor(a) && this.canSign(a));
    const encrypt: EncryptAlgorithm[] = [];
    if (family('aes') && this.has(CKM.AES_GCM)) encrypt.push('AES_GCM');
    // OAEP-SHA256 decrypts natively when the token takes SHA-256 parameters, else via CKM_RSA_X_509 (oaepDecryption.ts).
    if (family('rsa') && (this.has(CKM.RSA_X_509) || this.has(CKM.RSA_PKCS_OAEP))) encrypt.push('RSA_OAEP_SHA256');
    // OAEP with SHA-1 is what every token with CKM_RSA_PKCS_OAEP does (it is PKCS#11's default).
    if (family('rsa') && this.has(CKM.RSA_PKCS_OAEP)) encrypt.push('RSA_OAEP_SHA1');
    if (family('aes') && this.has(CKM.AES_KEY_WRAP)) encrypt.push('AES_KW');
    const mac: MacAlgorithm[] = types.includes('HMAC_256') ? ['HMAC_SHA256'] : [];
    if (family('aes') && this.has(CKM.AES_CMAC)) mac.push('AES_CMAC');
    const tdes = family('tdes');
    if (tdes && this.has(CKM.DES3_CBC)) mac.push('ISO9797_ALG1', 'ISO9797_ALG1_PAD2');
    // Retail MAC: single-DES CBC under K1 (a companion object: DES_CBC, or DES3_CBC with K1 K1 when the
    // token has no single DES), then TDES ECB of the last block under the key.
    if (types.includes('TDES_2KEY') && this.has(CKM.DES3_ECB) && this.has(CKM.DES3_CBC)) mac.push('ISO9797_ALG3', 'ISO9797_ALG3_PAD2');
    if (tdes && this.has(CKM.DES3_CMAC)) mac.push('TDES_CMAC');
    const dukpt: ('tdes' | 'aes')[] = [];
    if (types.includes('TDES_2KEY') && this.has(CKM.DES3_ECB)) dukpt.push('tdes');
    if (family('aes') && this.has(CKM.AES_CBC_ENCRYPT_DATA) && this.has(CKM.AES_ECB)) dukpt.push('aes');
    return {
      keyTypes: types,
      sign,
      encrypt,
      mac,
      signDigest: sign.filter((a) => this.canSignDigest(a)),
      random: this.hasRng,
      keyAgreement: this.has(CKM.ECDH1_DERIVE) ? types.filter((t) => keyTypes[t].family === 'ec') : [],
      // Import is C_CreateObject, which every token has; export wraps under a session AES key (keyExport.ts).
      payment: { dukpt, importKeys: tdes || family('aes'), exportKeys: family('aes') && this.has(CKM.AES_KEY_WRAP) },
      // The control worker fills in wrappings and unwrapsInside from its probes (keyUnwrap.ts); staged
      // ceremony components are wrapped out with AES key wrap with padding (ceremonies.ts).
      keyImport: { wrappings: [], unwrapsInside: [], ceremonies: this.has(CKM.AES_KEY_WRAP_PAD) },
      // FF1 keys encrypt single blocks in the token (CKM_AES_ECB, CKA_ENCRYPT only).
      fpe: family('aes') && this.has(CKM.AES_ECB),
    };
  }

  /** The mechanism and the bytes to hand to C_Sign / C_Verify for one signature. */
  signPlan(algorithm: SignAlgorithm, input: SignInput): { mechanism: pkcs11js.Mechanism; data: Buffer } {
    const info = signAlgorithms[algorithm];
    if (info.scheme === 'eddsa') return { mechanism: { mechanism: CKM.EDDSA }, data: input.data };
    const hash = info.hash;
    const params = info.scheme === 'pss' ? pssParams(hash) : undefined;
    const withParams = (mechanism: number): pkcs11js.Mechanism => (params ? { mechanism, parameter: params } : { mechanism });
    const both = combined[info.scheme][hash];
    if (input.kind === 'message' && both !== undefined && this.has(both)) return { mechanism: withParams(both), data: input.data };
    const digest = input.kind === 'digest' ? input.data : createHash(hash).update(input.data).digest();
    // CKM_RSA_PKCS signs what it is given: PKCS#1 v1.5 needs the DigestInfo around the digest.
    const data = info.scheme === 'pkcs1' ? Buffer.concat([hashes[hash].digestInfoPrefix, digest]) : digest;
    return { mechanism: withParams(raw[info.scheme]), data };
  }
}

/** RSASSA-PSS as JOSE has it: MGF1 with the same hash, salt as long as the hash. */
function pssParams(hash: HashName): pkcs11js.RsaPSS {
  return { type: pkcs11js.CK_PARAMS_RSA_PSS, hashAlg: hashMechanism[hash].hash, mgf: hashMechanism[hash].mgf, saltLen: hashes[hash].length };
}

/** Length of a signature by a key of this type (the output buffer for C_Sign). */
export function signatureLength(type: KeyType): number {
  const info = keyTypes[type];
  if (info.family === 'ec') return 2 * Math.ceil(info.bits / 8);
  if (info.family === 'okp') return 64;
  return info.bits / 8;
}
