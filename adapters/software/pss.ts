/**
 * EMSA-PSS encoding and verification (RFC 8017 §9.1.1 and §9.1.2) with MGF1 over the same hash.
 * node:crypto only signs PSS over a message it hashes itself; to sign a digest the caller computed, we
 * build the encoded message here and apply the raw RSA private-key operation to it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { hashes, type HashName } from '../../src/algorithms/hashes.js';

const TRAILER = 0xbc;

function mgf1(hash: HashName, seed: Buffer, length: number): Buffer {
  const blocks: Buffer[] = [];
  const counter = Buffer.alloc(4);
  for (let produced = 0, i = 0; produced < length; produced += hashes[hash].length, i++) {
    counter.writeUInt32BE(i);
    blocks.push(createHash(hash).update(seed).update(counter).digest());
  }
  return Buffer.concat(blocks).subarray(0, length);
}

/** H = Hash(0x00 * 8 || mHash || salt). */
function pssHash(hash: HashName, mHash: Buffer, salt: Buffer): Buffer {
  return createHash(hash).update(Buffer.alloc(8)).update(mHash).update(salt).digest();
}

/** The top bits of the encoded message beyond emBits must be zero, so that EM < n. */
const topMask = (emLen: number, emBits: number) => 0xff >>> (8 * emLen - emBits);

/**
 * EM for a digest `mHash`, for a modulus of emBits + 1 bits. `salt` is random in use (its length is the
 * salt length); it is a parameter so that the encoding is a pure function a test can pin down.
 */
export function emsaPssEncode(hash: HashName, mHash: Buffer, emBits: number, salt: Buffer): Buffer {
  const hLen = hashes[hash].length;
  const emLen = Math.ceil(emBits / 8);
  if (mHash.length !== hLen) throw new RangeError(`a ${hash} digest is ${hLen} bytes`);
  if (emLen < hLen + salt.length + 2) throw new RangeError('the RSA modulus is too short for this hash and salt');
  const h = pssHash(hash, mHash, salt);
  // DB = PS (zeros) || 0x01 || salt, masked with MGF1(H)
  const db = Buffer.alloc(emLen - hLen - 1);
  db[db.length - salt.length - 1] = 0x01;
  salt.copy(db, db.length - salt.length);
  const mask = mgf1(hash, h, db.length);
  for (let i = 0; i < db.length; i++) db[i]! ^= mask[i]!;
  db[0]! &= topMask(emLen, emBits);
  return Buffer.concat([db, h, Buffer.of(TRAILER)]);
}

/** True when EM is a valid PSS encoding of `mHash` with a salt of exactly `saltLength` bytes. */
export function emsaPssVerify(hash: HashName, mHash: Buffer, em: Buffer, emBits: number, saltLength: number): boolean {
  const hLen = hashes[hash].length;
  const emLen = Math.ceil(emBits / 8);
  if (mHash.length !== hLen || em.length !== emLen || emLen < hLen + saltLength + 2) return false;
  if (em[emLen - 1] !== TRAILER) return false;
  const maskedDb = em.subarray(0, emLen - hLen - 1);
  const h = em.subarray(emLen - hLen - 1, emLen - 1);
  const top = topMask(emLen, emBits);
  if ((maskedDb[0]! & ~top & 0xff) !== 0) return false;
  const mask = mgf1(hash, h, maskedDb.length);
  const db = Buffer.alloc(maskedDb.length);
  for (let i = 0; i < db.length; i++) db[i] = maskedDb[i]! ^ mask[i]!;
  db[0]! &= top;
  const separator = db.length - saltLength - 1;
  for (let i = 0; i < separator; i++) if (db[i] !== 0) return false;
  if (db[separator] !== 0x01) return false;
  return timingSafeEqual(h, pssHash(hash, mHash, db.subarray(separator + 1)));
}
