/**
 * Whether the token does RSA-OAEP with SHA-256 (and MGF1-SHA-256) itself. The mechanism list cannot say:
 * CKM_RSA_PKCS_OAEP is listed by tokens that take only SHA-1 parameters (SoftHSM 2.6). So, once at start,
 * a throwaway session key pair is generated and C_DecryptInit tried with the SHA-256 parameters.
 * Only needed when the raw-RSA fallback is off, since capabilities must be known before the first call.
 */
import pkcs11js from 'pkcs11js';
import { CKR, ckrOf } from './errors.js';
import { CKM, CKZ_DATA_SPECIFIED, hashMechanism } from './mechanisms.js';
import type { Handle, Pkcs11Api } from './module.js';

export const oaepSha256Mechanism: pkcs11js.Mechanism = {
  mechanism: CKM.RSA_PKCS_OAEP,
  parameter: { type: pkcs11js.CK_PARAMS_RSA_OAEP, hashAlg: hashMechanism.sha256.hash, mgf: hashMechanism.sha256.mgf, source: CKZ_DATA_SPECIFIED } as pkcs11js.RsaOAEP,
};

/** The CKRs with which a token refuses OAEP parameters it does not support. */
export const refusesOaepParameters = (e: unknown) => {
  const code = ckrOf(e);
  return code === CKR.ARGUMENTS_BAD || code === CKR.MECHANISM_PARAM_INVALID || code === CKR.MECHANISM_INVALID;
};

export function probeOaepSha256(api: Pkcs11Api, session: Handle): boolean {
  const A = pkcs11js;
  const pair = api.C_GenerateKeyPair(
    session,
    { mechanism: CKM.RSA_PKCS_KEY_PAIR_GEN },
    [{ type: A.CKA_TOKEN, value: false }, { type: A.CKA_MODULUS_BITS, value: 2048 }, { type: A.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) }, { type: A.CKA_ENCRYPT, value: true }],
    [{ type: A.CKA_TOKEN, value: false }, { type: A.CKA_PRIVATE, value: false }, { type: A.CKA_SENSITIVE, value: true }, { type: A.CKA_DECRYPT, value: true }],
  );
  try {
    api.C_DecryptInit(session, oaepSha256Mechanism, pair.privateKey);
    // Finish the operation so the session is clean: the ciphertext is garbage, and the outcome irrelevant.
    try {
      api.C_Decrypt(session, Buffer.alloc(256, 1), Buffer.alloc(256));
    } catch {
      // Garbage in, failure out: only whether DecryptInit took the parameters matters.
    }
    return true;
  } catch (e) {
    if (refusesOaepParameters(e)) return false;
    throw e;
  } finally {
    for (const h of [pair.privateKey, pair.publicKey]) api.C_DestroyObject(session, h);
  }
}
