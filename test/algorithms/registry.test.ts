import { describe, expect, it } from 'vitest';
import { algorithmsFor, defaultAlgorithm, parseSignAlgorithm } from '../../src/algorithms/registry.js';
import { hashes } from '../../src/algorithms/hashes.js';
import { constants, createHash, generateKeyPairSync, publicDecrypt, sign } from 'node:crypto';

describe('algorithm registry', () => {
  it('gives each key type and purpose the algorithms that fit it', () => {
    expect(algorithmsFor('RSA_3072', 'sign')).toEqual(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']);
    expect(algorithmsFor('EC_P256', 'sign')).toEqual(['ES256']);
    expect(algorithmsFor('EC_P384', 'sign')).toEqual(['ES384']);
    expect(algorithmsFor('ED25519', 'sign')).toEqual(['EdDSA']);
    // A data key encrypts, a key-encryption key wraps: never the same key (review finding 4).
    expect(algorithmsFor('AES_128', 'encrypt')).toEqual(['AES_GCM']);
    expect(algorithmsFor('AES_256', 'wrap')).toEqual(['AES_KW']);
    expect(defaultAlgorithm('AES_128', 'wrap')).toBe('AES_KW');
    expect(algorithmsFor('RSA_2048', 'wrap')).toEqual([]);
    expect(algorithmsFor('RSA_2048', 'encrypt')).toEqual(['RSA_OAEP_SHA256', 'RSA_OAEP_SHA1']);
    expect(algorithmsFor('EC_P256', 'agree')).toEqual(['ECDH']);
    expect(algorithmsFor('RSA_2048', 'agree')).toEqual([]);
    expect(defaultAlgorithm('AES_256', 'encrypt')).toBe('AES_GCM');
    expect(defaultAlgorithm('RSA_4096', 'encrypt')).toBe('RSA_OAEP_SHA256');
    expect(algorithmsFor('HMAC_256', 'mac')).toEqual(['HMAC_SHA256']);
    expect(algorithmsFor('TDES_2KEY', 'encrypt')).toEqual([]);
    expect(defaultAlgorithm('RSA_2048', 'sign')).toBe('RS256');
  });

  it('refuses unknown names, including inherited property names', () => {
    for (const bad of ['es256', 'none', 'toString', '__proto__', 3, undefined]) {
      expect(() => parseSignAlgorithm(bad)).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_ALGORITHM' }));
    }
  });

  it('has the DigestInfo prefixes that node:crypto (OpenSSL) puts in a PKCS#1 v1.5 signature', () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const message = Buffer.from('digest info');
    for (const [name, h] of Object.entries(hashes)) {
      const signature = sign(name, message, privateKey);
      // Opening a PKCS#1 v1.5 signature with the public key gives DigestInfo = prefix || digest.
      const digestInfo = publicDecrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, signature);
      expect(digestInfo).toEqual(Buffer.concat([h.digestInfoPrefix, createHash(name).update(message).digest()]));
    }
  });
});
