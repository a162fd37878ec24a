import type { KeyObject } from 'node:crypto';

/**
 * RFC 8017 §8.1.2 and §8.2.2, step 1: an RSA signature is exactly as long as the modulus. OpenSSL 3.5
 * (Node 24) also accepts one a leading zero byte shorter, so every verifier checks this first and gives
 * the same answer on every Node. True for keys that are not RSA.
 */
export function hasRsaSignatureLength(key: KeyObject, signature: Buffer): boolean {
  if (key.asymmetricKeyType !== 'rsa' && key.asymmetricKeyType !== 'rsa-pss') return true;
  return signature.length === Math.ceil((key.asymmetricKeyDetails?.modulusLength ?? 0) / 8);
}
