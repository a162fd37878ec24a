/**
 * Participants' public keys as FSPIOP accepts them: RSA of at least 2048 bits (signatures and field
 * encryption) or EC P-256 (signatures, as the reference client allows). Each key is identified by its
 * RFC 7638 JWK thumbprint, so the same key has the same id wherever it was loaded from.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { invalid } from '../errors.js';
import { MIN_RSA_BITS } from '../algorithms/registry.js';
import { keyTypes } from '../keys/types.js';

/** What a participant's key is for, as in JWK `use`: verifying its signatures, or encrypting fields for it. */
export type KeyUse = 'sig' | 'enc';


export interface PublicKeyInfo {
  readonly keyObject: KeyObject;
  readonly kty: 'RSA' | 'EC';
  /** RSA modulus length, or 256 for P-256. */
  readonly bits: number;
  /** RFC 7638 thumbprint (SHA-256, base64url). */
  readonly keyId: string;
  /** SubjectPublicKeyInfo PEM. */
  readonly pem: string;
}

/** Parses and checks one public key in PEM (SPKI or PKCS#1). Throws INVALID_ARGUMENT with the reason. */
export function inspectPublicKey(pem: string, use: KeyUse): PublicKeyInfo {
  // createPublicKey would happily derive a public key from a private one: a private key has no place here.
  if (pem.includes('PRIVATE KEY')) throw invalid('a private key was given: register the public key only');
  let keyObject: KeyObject;
  try {
    keyObject = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw invalid('not a PEM public key');
  }
  const type = keyObject.asymmetricKeyType;
  let kty: 'RSA' | 'EC';
  let bits: number;
  if (type === 'rsa') {
    kty = 'RSA';
    bits = keyObject.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) throw invalid(`RSA keys must have at least ${MIN_RSA_BITS} bits (this one has ${bits})`);
  } else if (type === 'ec' && keyObject.asymmetricKeyDetails?.namedCurve === keyTypes.EC_P256.nodeCurve) {
    if (use === 'enc') throw invalid('FSPIOP field encryption needs an RSA key (RSA-OAEP-256)');
    kty = 'EC';
    bits = 256;
  } else {
    throw invalid(`unsupported key: FSPIOP takes RSA (at least ${MIN_RSA_BITS} bits) or EC P-256 public keys`);
  }
  return { keyObject, kty, bits, keyId: jwkThumbprint(keyObject), pem: keyObject.export({ format: 'pem', type: 'spki' }).toString() };
}

/** RFC 7638: SHA-256 over the required JWK members in lexicographic order, without whitespace. */
export function jwkThumbprint(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' });
  const members =
    jwk.kty === 'RSA'
      ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
      : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}
