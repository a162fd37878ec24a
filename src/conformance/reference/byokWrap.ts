/**
 * A key wrapped for import (BYOK) with node:crypto alone, as a user does it with openssl: the
 * CKM_RSA_AES_KEY_WRAP layout, RSA-OAEP of a fresh AES transport key under the import wrapping key, then
 * the key wrapped under it with AES key wrap with padding (RFC 5649, whose initial value is A65959A6).
 */
import { constants, createCipheriv, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import type { WrappingScheme } from '../../backend/port.js';

export const KWP_IV = Buffer.from('A65959A6', 'hex');

const oaepHash: Record<WrappingScheme, 'sha256' | 'sha1'> = { RSA_OAEP_SHA256_AES_KWP: 'sha256', RSA_OAEP_SHA1_AES_KWP: 'sha1' };

/**
 * The two layers. `transport` is the AES key OAEP carries: 32 random bytes, or, for a bad-input test,
 * 16, which then really wraps the key (AES-128 key wrap).
 */
export function wrapForImport(wrappingPublicKey: KeyObject | string, scheme: WrappingScheme, material: Buffer, transport: Buffer = randomBytes(32)): { encryptedKey: Buffer; wrappedTarget: Buffer } {
  const encryptedKey = publicEncrypt({ key: wrappingPublicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: oaepHash[scheme] }, transport);
  const cipher = createCipheriv(`id-aes${transport.length * 8}-wrap-pad`, transport, KWP_IV);
  return { encryptedKey, wrappedTarget: Buffer.concat([cipher.update(material), cipher.final()]) };
}
