/**
 * SubjectPublicKeyInfo DER from a public key object's attributes: CKA_MODULUS/CKA_PUBLIC_EXPONENT for
 * RSA, CKA_EC_POINT for EC and Ed25519. node:crypto builds the DER from a JWK, so no ASN.1 is written here.
 */
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { keyTypes, type KeyType, type KeyTypeInfo } from '../../src/keys/types.js';
import type { Handle, Pkcs11Api } from './module.js';
import { withTokenLock } from './tokenLock.js';

const b64url = (b: Buffer) => b.toString('base64url');

/** Length of the bare point: uncompressed 04 || X || Y for EC, 32 bytes for Ed25519. */
function rawPointLength(type: KeyType): number {
  const info = keyTypes[type];
  return info.family === 'okp' ? 32 : 1 + 2 * Math.ceil(info.bits / 8);
}

/**
 * CKA_EC_POINT as the bare point. PKCS#11 says it is DER OCTET STRING-wrapped (SoftHSM does that);
 * some vendors return the bare point. The expected length tells the two apart without guessing: a
 * bare P-256 point also starts with 0x04, but is 65 bytes, and the wrapped one 67.
 */
export function unwrapEcPoint(type: KeyType, value: Buffer): Buffer {
  const length = rawPointLength(type);
  if (value.length === length) return value;
  // OCTET STRING: tag 04, then a short (< 128) or one-byte long (81 xx) length.
  const header = length < 128 ? 2 : 3;
  const lengthOk = length < 128 ? value[1] === length : value[1] === 0x81 && value[2] === length;
  if (value.length === header + length && value[0] === 0x04 && lengthOk) return value.subarray(header);
  throw new Error(`unexpected CKA_EC_POINT of ${value.length} bytes for ${type}`);
}

/** SPKI DER for the public key object of a key of `type` (a read of a token object: under the token lock). */
export function readPublicKeySpki(api: Pkcs11Api, session: Handle, handle: Handle, type: KeyType): Buffer {
  const info: KeyTypeInfo = keyTypes[type];
  let jwk: JsonWebKey;
  if (info.family === 'rsa') {
    const [n, e] = withTokenLock(() => api.C_GetAttributeValue(session, handle, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]));
    jwk = { kty: 'RSA', n: b64url(stripZeros(n!.value)), e: b64url(stripZeros(e!.value)) };
  } else {
    const [attr] = withTokenLock(() => api.C_GetAttributeValue(session, handle, [{ type: pkcs11js.CKA_EC_POINT }]));
    const point = unwrapEcPoint(type, attr!.value);
    if (info.family === 'okp') {
      jwk = { kty: 'OKP', crv: 'Ed25519', x: b64url(point) };
    } else {
      if (point[0] !== 0x04) throw new Error('compressed EC points are not supported');
      const size = (point.length - 1) / 2;
      jwk = { kty: 'EC', crv: info.curve, x: b64url(point.subarray(1, 1 + size)), y: b64url(point.subarray(1 + size)) };
    }
  }
  return createPublicKey({ key: jwk, format: 'jwk' }).export({ format: 'der', type: 'spki' });
}

/** JWK integers have no leading zero bytes; some tokens pad CKA_MODULUS. */
function stripZeros(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}
