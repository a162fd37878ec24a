/** Encryption and MACs with node:crypto. Every decryption failure is the same DECRYPTION_FAILED, by design. */
import {
  constants,
  createCipheriv,
  createDecipheriv,
  createHmac,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { encryptAlgorithms } from '../../src/algorithms/registry.js';
import type { RawCiphertext } from '../../src/backend/port.js';
import { HsmBridgeError } from '../../src/errors.js';

const { ivLength: GCM_IV, tagLength: GCM_TAG } = encryptAlgorithms.AES_GCM;
const decryptionFailed = () => new HsmBridgeError('DECRYPTION_FAILED', 'the ciphertext does not decrypt with this key');

const gcmCipherName = (key: KeyObject) => `aes-${key.symmetricKeySize! * 8}-gcm` as 'aes-128-gcm' | 'aes-256-gcm';

export function aesGcmEncrypt(key: KeyObject, plaintext: Buffer, aad?: Buffer): RawCiphertext {
  const iv = randomBytes(GCM_IV);
  const cipher = createCipheriv(gcmCipherName(key), key, iv, { authTagLength: GCM_TAG });
  if (aad) cipher.setAAD(aad);
  return { iv, data: Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]) };
}

export function aesGcmDecrypt(key: KeyObject, ciphertext: RawCiphertext, aad?: Buffer): Buffer {
  const { iv, data } = ciphertext;
  if (!iv || iv.length !== GCM_IV || data.length < GCM_TAG) throw decryptionFailed();
  const decipher = createDecipheriv(gcmCipherName(key), key, iv, { authTagLength: GCM_TAG });
  if (aad) decipher.setAAD(aad);
  decipher.setAuthTag(data.subarray(data.length - GCM_TAG));
  const plaintext = decipher.update(data.subarray(0, data.length - GCM_TAG));
  try {
    decipher.final();
  } catch {
    plaintext.fill(0); // unauthenticated plaintext must not leak, not even to memory we hand back
    throw decryptionFailed();
  }
  return plaintext;
}

export function rsaOaepEncrypt(publicKey: KeyObject, plaintext: Buffer): RawCiphertext {
  return { data: publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, plaintext) };
}

export function rsaOaepDecrypt(privateKey: KeyObject, ciphertext: RawCiphertext): Buffer {
  try {
    return privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, ciphertext.data);
  } catch {
    throw decryptionFailed();
  }
}

export function hmacSha256(key: KeyObject, data: Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

export function verifyHmacSha256(key: KeyObject, data: Buffer, mac: Buffer): boolean {
  const expected = hmacSha256(key, data);
  return mac.length === expected.length && timingSafeEqual(mac, expected);
}
