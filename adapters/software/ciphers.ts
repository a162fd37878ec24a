/** Encryption, key wrap, key agreement and HMAC with node:crypto. Every decryption failure is the same DECRYPTION_FAILED, by design. */
import {
  constants,
  createCipheriv,
  createDecipheriv,
  createHmac,
  diffieHellman,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { encryptAlgorithms, type EncryptAlgorithmInfo } from '../../src/algorithms/registry.js';
import type { RawCiphertext, WrappedKey, WrappingScheme } from '../../src/backend/port.js';
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

type OaepHash = NonNullable<EncryptAlgorithmInfo['oaepHash']>;

export function rsaOaepEncrypt(publicKey: KeyObject, plaintext: Buffer, oaepHash: OaepHash): RawCiphertext {
  return { data: publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, plaintext) };
}

export function rsaOaepDecrypt(privateKey: KeyObject, ciphertext: RawCiphertext, oaepHash: OaepHash): Buffer {
  try {
    return privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, ciphertext.data);
  } catch {
    throw decryptionFailed();
  }
}

/** RFC 3394's default initial value; OpenSSL's id-aes*-wrap ciphers check it on unwrap. */
const KW_IV = Buffer.from(encryptAlgorithms.AES_KW.wrap.iv, 'hex');
const kwCipherName = (key: KeyObject) => `id-aes${key.symmetricKeySize! * 8}-wrap`;

/** AES key wrap (RFC 3394). The core has checked the length: a multiple of 8 bytes, at least 16. */
export function aesKeyWrap(key: KeyObject, plaintext: Buffer): RawCiphertext {
  const cipher = createCipheriv(kwCipherName(key), key, KW_IV);
  return { data: Buffer.concat([cipher.update(plaintext), cipher.final()]) };
}

export function aesKeyUnwrap(key: KeyObject, ciphertext: RawCiphertext): Buffer {
  const decipher = createDecipheriv(kwCipherName(key), key, KW_IV);
  let plaintext: Buffer | undefined;
  try {
    plaintext = decipher.update(ciphertext.data);
    return Buffer.concat([plaintext, decipher.final()]);
  } catch {
    throw decryptionFailed();
  } finally {
    plaintext?.fill(0);
  }
}

const oaepHashOf: Record<WrappingScheme, OaepHash> = { RSA_OAEP_SHA256_AES_KWP: 'sha256', RSA_OAEP_SHA1_AES_KWP: 'sha1' };
/** RFC 5649's alternative initial value (with the length it prepends); OpenSSL's id-aes256-wrap-pad checks it on unwrap. */
const KWP_IV = Buffer.from('a65959a6', 'hex');
const TRANSPORT_KEY_LENGTH = 32;

/**
 * Opens both layers of a wrapped key (src/backend/port.ts WrappingScheme): RSA-OAEP yields the AES-256
 * transport key, which unwraps the target (RFC 5649). Returns the clear target material, which the
 * caller zeroes; the transport key is zeroed here. Any failure of either layer is DECRYPTION_FAILED.
 */
export function unwrapWrappedKey(wrappingKey: KeyObject, wrapped: WrappedKey): Buffer {
  const transport = rsaOaepDecrypt(wrappingKey, { data: wrapped.encryptedKey }, oaepHashOf[wrapped.scheme]);
  let head: Buffer | undefined;
  try {
    if (transport.length !== TRANSPORT_KEY_LENGTH) throw decryptionFailed();
    const decipher = createDecipheriv('id-aes256-wrap-pad', transport, KWP_IV);
    head = decipher.update(wrapped.wrappedTarget);
    return Buffer.concat([head, decipher.final()]);
  } catch {
    throw decryptionFailed();
  } finally {
    transport.fill(0);
    head?.fill(0);
  }
}

/** Raw ECDH: Z, the x coordinate of the shared point (fixed length for the curve). */
export function ecdh(privateKey: KeyObject, peerPublicKey: KeyObject): Buffer {
  return diffieHellman({ privateKey, publicKey: peerPublicKey });
}

export function hmacSha256(key: KeyObject, data: Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}
