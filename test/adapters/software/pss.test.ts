/**
 * Our EMSA-PSS (RFC 8017 §9.1) against node:crypto as the independent implementation: what we encode and
 * raw-RSA-sign, node:crypto verifies; what node:crypto signs, our decoder accepts. Modulus sizes cover
 * all three ways emBits = modBits - 1 can fall against a byte boundary.
 */
import { constants, createHash, generateKeyPairSync, privateEncrypt, publicDecrypt, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { emsaPssEncode, emsaPssVerify } from '../../../adapters/software/pss.js';
import { hashes, type HashName } from '../../../src/algorithms/hashes.js';

const pairs = new Map<number, { privateKey: KeyObject; publicKey: KeyObject }>();
const pair = (bits: number) => {
  if (!pairs.has(bits)) pairs.set(bits, generateKeyPairSync('rsa', { modulusLength: bits }));
  return pairs.get(bits)!;
};
const pssOptions = (key: KeyObject, saltLength: number) => ({ key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength });

/** Raw RSA on an encoded message, left-padded to the modulus length. */
function rawSign(key: KeyObject, bits: number, em: Buffer): Buffer {
  return privateEncrypt({ key, padding: constants.RSA_NO_PADDING }, Buffer.concat([Buffer.alloc(Math.ceil(bits / 8) - em.length), em]));
}
function rawOpen(key: KeyObject, bits: number, signature: Buffer): Buffer {
  const block = publicDecrypt({ key, padding: constants.RSA_NO_PADDING }, signature);
  const emLen = Math.ceil((bits - 1) / 8);
  expect(block.subarray(0, block.length - emLen).every((b) => b === 0)).toBe(true);
  return block.subarray(block.length - emLen);
}

const message = Buffer.from('pay 10.00 EUR to account 12345');

describe('EMSA-PSS', () => {
  for (const bits of [1024, 1025, 1031, 2048]) {
    for (const hash of ['sha256', 'sha384', 'sha512'] as HashName[]) {
      const hLen = hashes[hash].length;
      if (Math.ceil((bits - 1) / 8) < 2 * hLen + 2) continue; // salt = hash length does not fit
      it(`${bits}-bit modulus, ${hash}: node:crypto verifies our encoding, and our decoder accepts node:crypto's`, () => {
        const { privateKey, publicKey } = pair(bits);
        const mHash = createHash(hash).update(message).digest();
        const em = emsaPssEncode(hash, mHash, bits - 1, randomBytes(hLen));
        expect(em).toHaveLength(Math.ceil((bits - 1) / 8));
        const ours = rawSign(privateKey, bits, em);
        expect(verify(hash, message, pssOptions(publicKey, hLen), ours)).toBe(true);
        expect(emsaPssVerify(hash, mHash, rawOpen(publicKey, bits, ours), bits - 1, hLen)).toBe(true);

        const theirs = sign(hash, message, pssOptions(privateKey, hLen));
        const theirEm = rawOpen(publicKey, bits, theirs);
        expect(emsaPssVerify(hash, mHash, theirEm, bits - 1, hLen)).toBe(true);
        // a different message, salt length or any flipped bit is refused
        expect(emsaPssVerify(hash, createHash(hash).update('other').digest(), theirEm, bits - 1, hLen)).toBe(false);
        expect(emsaPssVerify(hash, mHash, theirEm, bits - 1, hLen - 1)).toBe(false);
        for (const i of [0, theirEm.length >> 1, theirEm.length - hLen - 2, theirEm.length - 2, theirEm.length - 1]) {
          const bad = Buffer.from(theirEm);
          bad[i]! ^= 0x01;
          expect(emsaPssVerify(hash, mHash, bad, bits - 1, hLen), `byte ${i} flipped`).toBe(false);
        }
      });
    }
  }

  it('is a pure function of the salt: same salt, same encoding; the salt is recoverable from EM', () => {
    const mHash = createHash('sha256').update(message).digest();
    const salt = Buffer.alloc(32, 0xa5);
    const a = emsaPssEncode('sha256', mHash, 2047, salt);
    expect(emsaPssEncode('sha256', mHash, 2047, salt)).toEqual(a);
    expect(emsaPssEncode('sha256', mHash, 2047, Buffer.alloc(32, 0x5a)).equals(a)).toBe(false);
    expect(a[a.length - 1]).toBe(0xbc);
    expect(a[0]! & 0x80).toBe(0); // emBits 2047: the top bit is cleared
    // an empty salt is a valid (deterministic) PSS encoding too
    const noSalt = emsaPssEncode('sha256', mHash, 2047, Buffer.alloc(0));
    expect(emsaPssVerify('sha256', mHash, noSalt, 2047, 0)).toBe(true);
    const { privateKey, publicKey } = pair(2048);
    expect(verify('sha256', message, pssOptions(publicKey, 0), rawSign(privateKey, 2048, noSalt))).toBe(true);
  });

  it('refuses a digest of the wrong length and a modulus too short for the hash and salt', () => {
    expect(() => emsaPssEncode('sha256', Buffer.alloc(31), 2047, Buffer.alloc(32))).toThrow(RangeError);
    expect(() => emsaPssEncode('sha512', Buffer.alloc(64), 1000, Buffer.alloc(64))).toThrow(RangeError);
    expect(emsaPssVerify('sha256', Buffer.alloc(31), Buffer.alloc(256), 2047, 32)).toBe(false);
    expect(emsaPssVerify('sha256', Buffer.alloc(32), Buffer.alloc(255), 2047, 32)).toBe(false);
    expect(emsaPssVerify('sha256', Buffer.alloc(32), Buffer.alloc(256), 2047, 32)).toBe(false);
  });
});
