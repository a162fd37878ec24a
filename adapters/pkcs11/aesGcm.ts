/** AES-GCM in the token, with the IV and tag sizes of the algorithm registry's AES_GCM. */
import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { encryptAlgorithms } from '../../src/algorithms/registry.js';
import type { RawCiphertext } from '../../src/backend/port.js';
import { decryptionFailed, isDeviceGone, isHandleStale } from './errors.js';
import { CKM } from './mechanisms.js';
import { notNull, type Handle, type Pkcs11Api } from './module.js';

const { ivLength, tagLength } = encryptAlgorithms.AES_GCM;

/** A random 96-bit IV per message from node's CSPRNG; 2^32 messages per key stay far below the GCM bound. */
export const newGcmIv = () => randomBytes(ivLength);

/** Whether a ciphertext can be AES-GCM's at all: an IV of the right size and room for the tag. */
export const hasGcmShape = (c: RawCiphertext): c is RawCiphertext & { iv: Buffer } => c.iv?.length === ivLength && c.data.length >= tagLength;

function gcm(iv: Buffer, aad?: Buffer): pkcs11js.Mechanism {
  const parameter: pkcs11js.AesGCM = { type: pkcs11js.CK_PARAMS_AES_GCM, iv, ivBits: ivLength * 8, tagBits: tagLength * 8 };
  if (aad && aad.length > 0) parameter.aad = aad;
  return { mechanism: CKM.AES_GCM, parameter };
}

export async function gcmEncrypt(api: Pkcs11Api, session: Handle, key: Handle, iv: Buffer, plaintext: Buffer, aad?: Buffer): Promise<RawCiphertext> {
  api.C_EncryptInit(session, gcm(iv, aad), key);
  const data = api.C_Encrypt(session, notNull(plaintext), Buffer.alloc(plaintext.length + tagLength));
  return { iv, data };
}

/** `ciphertext` is ciphertext || tag. */
export async function gcmDecrypt(api: Pkcs11Api, session: Handle, key: Handle, iv: Buffer, ciphertext: Buffer, aad?: Buffer): Promise<Buffer> {
  try {
    api.C_DecryptInit(session, gcm(iv, aad), key);
    return api.C_Decrypt(session, ciphertext, Buffer.alloc(ciphertext.length));
  } catch (e) {
    // SoftHSM reports a wrong tag as CKR_GENERAL_ERROR, others as CKR_ENCRYPTED_DATA_INVALID or
    // CKR_AEAD_DECRYPT_FAILED: every failure that is not about the device or the handle is one answer.
    throw isDeviceGone(e) || isHandleStale(e) ? e : decryptionFailed(e);
  }
}
