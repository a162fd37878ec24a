import { constants, generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hasRsaSignatureLength } from '../../src/algorithms/signatureLength.js';
import { verifySignature } from '../../src/jose/jws.js';

describe('RSA signatures are exactly as long as the modulus (RFC 8017 §8.2.2 step 1)', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });

  it('checks the length for RSA keys only', () => {
    expect(hasRsaSignatureLength(rsa.publicKey, Buffer.alloc(256))).toBe(true);
    expect(hasRsaSignatureLength(rsa.publicKey, Buffer.alloc(255))).toBe(false);
    expect(hasRsaSignatureLength(rsa.publicKey, Buffer.alloc(257))).toBe(false);
    expect(hasRsaSignatureLength(ec.publicKey, Buffer.alloc(64))).toBe(true);
  });

  it('a valid PS256 signature that starts with a zero byte is refused without that byte (OpenSSL accepts it)', () => {
    // PSS signatures are randomised: sign until one starts with 0x00 (1 in 256).
    const message = Buffer.from('pacs.008');
    const pss = { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 };
    let signature: Buffer | undefined;
    for (let i = 0; i < 20_000 && !signature; i++) {
      const s = sign('sha256', message, pss);
      if (s[0] === 0) signature = s;
    }
    expect(signature, 'a signature with a leading zero byte').toBeDefined();
    expect(verifySignature('PS256', rsa.publicKey, message, signature!)).toBe(true);
    // What node:crypto alone says of the shortened one, to show the check is needed.
    expect(verify('sha256', message, { key: rsa.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, signature!.subarray(1))).toBe(true);
    expect(verifySignature('PS256', rsa.publicKey, message, signature!.subarray(1))).toBe(false);
  });
});
