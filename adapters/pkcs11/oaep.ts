/**
 * EME-OAEP decoding (RFC 8017 §7.1.2 step 3), for tokens that cannot do RSA-OAEP with SHA-256 inside the
 * HSM: the HSM applies the raw private-key operation (CKM_RSA_X_509) and we remove the padding here.
 *
 * The checks run in constant time with respect to the data (no early exit, no branch on secret bytes),
 * and every failure is the same DECRYPTION_FAILED, so the decoder is no padding oracle (Manger's attack).
 * Intermediate buffers are zeroed before returning; the caller zeroes `em`, which it owns.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { hashes, type HashName } from '../../src/algorithms/hashes.js';
import { HsmBridgeError } from '../../src/errors.js';

const failed = () => new HsmBridgeError('DECRYPTION_FAILED', 'decryption failed');

function mgf1(hash: HashName, seed: Buffer, length: number): Buffer {
  const out = Buffer.alloc(length);
  const counter = Buffer.alloc(4);
  for (let offset = 0, i = 0; offset < length; offset += hashes[hash].length, i++) {
    counter.writeUInt32BE(i);
    const block = createHash(hash).update(seed).update(counter).digest();
    block.copy(out, offset);
    block.fill(0);
  }
  return out;
}

function xorInto(target: Buffer, mask: Buffer): void {
  for (let i = 0; i < target.length; i++) target[i]! ^= mask[i]!;
}

/** 1 when a === b, else 0, for bytes, without a branch. */
const eq = (a: number, b: number) => (((a ^ b) - 1) >>> 31) & 1;

/**
 * The message inside an encoded message `em` of exactly k bytes (k = modulus length), for OAEP with
 * `hash` for both the label hash and MGF1, and an empty label unless one is given.
 */
export function emeOaepDecode(em: Buffer, k: number, hash: HashName, label: Buffer = Buffer.alloc(0)): Buffer {
  const hLen = hashes[hash].length;
  // Lengths are public (the modulus size), so these checks may exit early.
  if (em.length !== k || k < 2 * hLen + 2) throw failed();

  const seed = Buffer.from(em.subarray(1, 1 + hLen));
  const db = Buffer.from(em.subarray(1 + hLen));
  const seedMask = mgf1(hash, db, hLen);
  xorInto(seed, seedMask);
  const dbMask = mgf1(hash, seed, db.length);
  xorInto(db, dbMask);
  try {
    const lHash = createHash(hash).update(label).digest();
    let good = eq(em[0]!, 0) & (timingSafeEqual(db.subarray(0, hLen), lHash) ? 1 : 0);

    // DB = lHash || PS (zero bytes) || 0x01 || M: find the first 0x01 after lHash, and require that
    // every byte before it is zero, looking at every byte whatever we find.
    let found = 0;
    let separator = 0;
    let stray = 0;
    for (let i = hLen; i < db.length; i++) {
      const b = db[i]!;
      const isOne = eq(b, 1);
      const first = isOne & (found ^ 1);
      separator = (-first & i) | ((first - 1) & separator);
      stray |= (found ^ 1) & (isOne ^ 1) & (eq(b, 0) ^ 1);
      found |= isOne;
    }
    good &= found & (stray ^ 1);
    if (good !== 1) throw failed();
    return Buffer.from(db.subarray(separator + 1));
  } finally {
    seed.fill(0);
    db.fill(0);
    seedMask.fill(0);
    dbMask.fill(0);
  }
}
