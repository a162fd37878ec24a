/**
 * TDES and AES block operations on clear keys held in process memory, without padding: for the software
 * backend, and for the steps of the payment schemes that a generic HSM cannot do inside its boundary
 * (TR-31 key block encryption under derived keys, TDES DUKPT's one-way function). Callers zero the keys
 * and any secret result.
 *
 * TDES keys are 16 bytes (K1 K2, used as K1 K2 K1) or 24 bytes; single DES (needed by the TDES DUKPT
 * one-way function and the ISO 9797-1 retail MAC) is TDES with K K K, because OpenSSL 3 has moved DES
 * itself to its legacy provider.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';

export type BlockFamily = 'tdes' | 'aes';
export type Direction = 'encrypt' | 'decrypt';

export function blockLength(family: BlockFamily): 8 | 16 {
  return family === 'tdes' ? 8 : 16;
}

function cipherName(family: BlockFamily, keyLength: number, mode: 'ecb' | 'cbc'): string {
  if (family === 'aes') {
    if (keyLength !== 16 && keyLength !== 24 && keyLength !== 32) throw new RangeError('an AES key is 16, 24 or 32 bytes');
    return `aes-${keyLength * 8}-${mode}`;
  }
  if (keyLength === 16) return `des-ede-${mode}`;
  if (keyLength === 24) return `des-ede3-${mode}`;
  throw new RangeError('a TDES key is 16 or 24 bytes');
}

function run(family: BlockFamily, mode: 'ecb' | 'cbc', direction: Direction, key: Buffer, iv: Buffer | null, data: Buffer): Buffer {
  if (data.length % blockLength(family) !== 0) throw new RangeError(`data must be whole ${blockLength(family)}-byte blocks`);
  const name = cipherName(family, key.length, mode);
  const cipher = direction === 'encrypt' ? createCipheriv(name, key, iv) : createDecipheriv(name, key, iv);
  cipher.setAutoPadding(false);
  const head = cipher.update(data);
  const tail = cipher.final();
  if (tail.length === 0) return head;
  const out = Buffer.concat([head, tail]);
  head.fill(0);
  return out;
}

/** ECB over whole blocks. */
export function ecb(family: BlockFamily, direction: Direction, key: Buffer, data: Buffer): Buffer {
  return run(family, 'ecb', direction, key, null, data);
}

/** CBC over whole blocks with the given IV (one block long). */
export function cbc(family: BlockFamily, direction: Direction, key: Buffer, iv: Buffer, data: Buffer): Buffer {
  if (iv.length !== blockLength(family)) throw new RangeError('the IV must be one block long');
  return run(family, 'cbc', direction, key, iv, data);
}

/** Single DES ECB with an 8-byte key (as TDES with K K K). */
export function desEcb(direction: Direction, key: Buffer, data: Buffer): Buffer {
  if (key.length !== 8) throw new RangeError('a DES key is 8 bytes');
  const tripled = Buffer.concat([key, key, key]);
  try {
    return ecb('tdes', direction, tripled, data);
  } finally {
    tripled.fill(0);
  }
}

/** XORs `b` into `a` in place (equal lengths) and returns `a`. */
export function xorInPlace(a: Buffer, b: Buffer): Buffer {
  if (a.length !== b.length) throw new RangeError('xor of unequal lengths');
  for (let i = 0; i < a.length; i++) a[i] = a[i]! ^ b[i]!;
  return a;
}
