import { constants, createHash, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { signAlgorithms, type SignAlgorithm } from '../../algorithms/registry.js';

/**
 * Verifies a JWS-form signature (ES* as raw r||s, PS* with a salt as long as the hash) with node:crypto:
 * the implementation independent of every backend that the tests check our signatures against.
 */
export function nodeVerifies(algorithm: SignAlgorithm, key: KeyObject, message: Buffer, signature: Buffer): boolean {
  const info = signAlgorithms[algorithm];
  switch (info.scheme) {
    case 'pkcs1':
      return nodeVerify(info.hash, message, key, signature);
    case 'pss':
      return nodeVerify(info.hash, message, {
        key,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: createHash(info.hash).digest().length,
      }, signature);
    case 'ecdsa':
      return nodeVerify(info.hash, message, { key, dsaEncoding: 'ieee-p1363' }, signature);
    case 'eddsa':
      return nodeVerify(null, message, key, signature);
  }
}
