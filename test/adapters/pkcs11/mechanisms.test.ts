/** Capabilities and signing plans derived from a mechanism list (pure logic; the SoftHSM suite checks the real list). */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hashes } from '../../../src/algorithms/hashes.js';
import { CKM, TokenMechanisms } from '../../../adapters/pkcs11/mechanisms.js';

const softhsmLike = [
  CKM.RSA_PKCS_KEY_PAIR_GEN, CKM.RSA_PKCS, CKM.RSA_X_509, CKM.RSA_PKCS_OAEP, CKM.RSA_PKCS_PSS,
  CKM.SHA256_RSA_PKCS, CKM.SHA384_RSA_PKCS, CKM.SHA512_RSA_PKCS, CKM.SHA256_RSA_PKCS_PSS,
  CKM.EC_KEY_PAIR_GEN, CKM.ECDSA, CKM.EC_EDWARDS_KEY_PAIR_GEN, CKM.EDDSA, CKM.AES_KEY_GEN, CKM.AES_GCM,
  CKM.DES2_KEY_GEN, CKM.DES3_KEY_GEN, CKM.GENERIC_SECRET_KEY_GEN, CKM.SHA256_HMAC,
];
const rsaBits = { min: 1024, max: 4096 };

describe('TokenMechanisms', () => {
  it('a full token offers every key type and algorithm', () => {
    const caps = TokenMechanisms.of(softhsmLike, rsaBits).capabilities();
    expect(caps.keyTypes).toHaveLength(11);
    expect(caps.sign).toEqual(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'EdDSA']);
    expect(caps.signDigest).toEqual(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384']);
    expect(caps.encrypt).toEqual(['AES_GCM', 'RSA_OAEP_SHA256', 'RSA_OAEP_SHA1']);
    expect(caps.mac).toEqual(['HMAC_SHA256']);
    expect(caps.keyAgreement).toEqual([]); // no CKM_ECDH1_DERIVE in this list
  });

  it('offers AES_KW with CKM_AES_KEY_WRAP, and key agreement for EC keys with CKM_ECDH1_DERIVE', () => {
    const caps = TokenMechanisms.of([...softhsmLike, CKM.AES_KEY_WRAP, CKM.ECDH1_DERIVE], rsaBits).capabilities();
    expect(caps.encrypt).toEqual(['AES_GCM', 'RSA_OAEP_SHA256', 'RSA_OAEP_SHA1', 'AES_KW']);
    expect(caps.keyAgreement).toEqual(['EC_P256', 'EC_P384']);
    const noEc = TokenMechanisms.of([CKM.ECDH1_DERIVE, CKM.AES_KEY_WRAP, CKM.RSA_PKCS_KEY_PAIR_GEN, CKM.RSA_X_509], rsaBits).capabilities();
    expect(noEc.keyAgreement).toEqual([]); // ECDH without EC key generation is nothing
    expect(noEc.encrypt).toEqual(['RSA_OAEP_SHA256']); // neither AES keys nor CKM_RSA_PKCS_OAEP
  });

  it('leaves out what the token lacks', () => {
    const caps = TokenMechanisms.of([CKM.RSA_PKCS_KEY_PAIR_GEN, CKM.SHA256_RSA_PKCS, CKM.AES_KEY_GEN], { min: 1024, max: 3072 }, false).capabilities();
    expect(caps.keyTypes).toEqual(['RSA_2048', 'RSA_3072', 'AES_128', 'AES_256']);
    // Only the combined mechanism: RS256 over a message, but no digest signing and no other hash.
    expect(caps.sign).toEqual(['RS256']);
    expect(caps.signDigest).toEqual([]);
    expect(caps.encrypt).toEqual([]);
    expect(caps.mac).toEqual([]);
    expect(caps.random).toBe(false);
    expect(caps.keyAgreement).toEqual([]);
  });

  it('signs a message with the combined mechanism when listed, else hashes and uses the raw one', () => {
    const message = Buffer.from('payload');
    const digest = createHash('sha256').update(message).digest();
    const withCombined = TokenMechanisms.of(softhsmLike, rsaBits);
    expect(withCombined.signPlan('RS256', { kind: 'message', data: message })).toEqual({ mechanism: { mechanism: CKM.SHA256_RSA_PKCS }, data: message });
    const viaDigest = withCombined.signPlan('RS256', { kind: 'digest', data: digest });
    expect(viaDigest.mechanism.mechanism).toBe(CKM.RSA_PKCS);
    expect(viaDigest.data).toEqual(Buffer.concat([hashes.sha256.digestInfoPrefix, digest]));
    // No CKM_ECDSA_SHA256 (as on SoftHSM): hash in process.
    expect(withCombined.signPlan('ES256', { kind: 'message', data: message })).toEqual({ mechanism: { mechanism: CKM.ECDSA }, data: digest });
    const pss = withCombined.signPlan('PS384', { kind: 'message', data: message });
    expect(pss.mechanism.mechanism).toBe(CKM.RSA_PKCS_PSS); // no SHA384_RSA_PKCS_PSS in the list
    expect(pss.mechanism.parameter).toMatchObject({ hashAlg: CKM.SHA384, saltLen: 48 });
    expect(pss.data).toEqual(createHash('sha384').update(message).digest());
    expect(withCombined.signPlan('EdDSA', { kind: 'message', data: message })).toEqual({ mechanism: { mechanism: CKM.EDDSA }, data: message });
  });
});
