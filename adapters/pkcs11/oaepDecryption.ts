/**
 * RSA-OAEP decryption in the token. JOSE's RSA-OAEP (SHA-1 and MGF1-SHA-1) every token with
 * CKM_RSA_PKCS_OAEP does natively. With SHA-256 some refuse the parameters (SoftHSM 2.6): that is learnt
 * on the first try (or at start, oaepProbe.ts), and then, where allowRawRsaOaepFallback permits, the token
 * applies the raw private-key operation (CKM_RSA_X_509) and the padding is removed here (oaep.ts).
 */
import pkcs11js from 'pkcs11js';
import { HsmBridgeError } from '../../src/errors.js';
import type { TokenLog } from './worker/protocol.js';
import { CKR, ckrOf, decryptionFailed, isDeviceGone, isHandleStale } from './errors.js';
import { CKM, CKZ_DATA_SPECIFIED } from './mechanisms.js';
import type { Handle, Pkcs11Api } from './module.js';
import { emeOaepDecode } from './oaep.js';
import { oaepSha256Mechanism, refusesOaepParameters } from './oaepProbe.js';

const oaepSha1: pkcs11js.Mechanism = {
  mechanism: CKM.RSA_PKCS_OAEP,
  parameter: { type: pkcs11js.CK_PARAMS_RSA_OAEP, hashAlg: CKM.SHA_1, mgf: pkcs11js.CKG_MGF1_SHA1, source: CKZ_DATA_SPECIFIED } as pkcs11js.RsaOAEP,
};

export class OaepDecryption {
  constructor(
    private readonly logger: TokenLog,
    /** allowRawRsaOaepFallback, on a token that has CKM_RSA_X_509. */
    private readonly rawRsaFallback: boolean,
    /** Whether the token does OAEP with SHA-256 itself; undefined until the first RSA decryption tells. */
    private nativeSha256: boolean | undefined,
  ) {}

  /** JOSE's RSA-OAEP: SHA-1 and MGF1-SHA-1. `k` is the modulus length, which the caller has checked `data` has. */
  async sha1(api: Pkcs11Api, session: Handle, key: Handle, data: Buffer, k: number): Promise<Buffer> {
    try {
      api.C_DecryptInit(session, oaepSha1, key);
      return api.C_Decrypt(session, data, Buffer.alloc(k));
    } catch (e) {
      // SoftHSM reports bad padding as CKR_GENERAL_ERROR: every failure not about the device, the handle
      // or the key's permissions is the one answer (no padding oracle).
      throw isDeviceGone(e) || isHandleStale(e) || ckrOf(e) === CKR.KEY_FUNCTION_NOT_PERMITTED ? e : decryptionFailed(e);
    }
  }

  /** RSA-OAEP with SHA-256 and MGF1-SHA-256: natively, or raw RSA and the padding removed here. */
  async sha256(api: Pkcs11Api, session: Handle, key: Handle, data: Buffer, k: number): Promise<Buffer> {
    if (this.nativeSha256 !== false) {
      try {
        api.C_DecryptInit(session, oaepSha256Mechanism, key);
        this.nativeSha256 = true;
      } catch (e) {
        if (this.nativeSha256 === true || !refusesOaepParameters(e)) throw e;
        this.nativeSha256 = false;
        this.logger.info({}, 'pkcs11: the token refuses OAEP with SHA-256; decrypting with CKM_RSA_X_509 and removing the padding in process');
      }
      if (this.nativeSha256) {
        try {
          return api.C_Decrypt(session, data, Buffer.alloc(k));
        } catch (e) {
          throw isDeviceGone(e) || isHandleStale(e) ? e : decryptionFailed(e);
        }
      }
    }
    if (!this.rawRsaFallback) throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', 'this token does not do RSA-OAEP with SHA-256, and allowRawRsaOaepFallback is off');
    const out = Buffer.alloc(k);
    let em: Buffer;
    try {
      api.C_DecryptInit(session, { mechanism: CKM.RSA_X_509 }, key);
      em = api.C_Decrypt(session, data, out);
    } catch (e) {
      out.fill(0);
      throw isDeviceGone(e) || isHandleStale(e) ? e : decryptionFailed(e);
    }
    // The raw result is k bytes; a token that drops leading zeros gets them back.
    const padded = em.length === k ? em : Buffer.concat([Buffer.alloc(k - em.length), em]);
    try {
      return emeOaepDecode(padded, k, 'sha256');
    } finally {
      out.fill(0);
      padded.fill(0);
    }
  }
}
