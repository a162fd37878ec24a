/**
 * CMAC (NIST SP 800-38B, the same as ISO 9797-1 MAC algorithm 5) over any 64- or 128-bit block cipher,
 * given as a one-block encryption under the key. Used in process for TR-31 key blocks and by the
 * software backend; an HSM computes it with its own mechanism (CKM_AES_CMAC, CKM_DES3_CMAC).
 */
import { blockLength, ecb, type BlockFamily } from './blockCiphers.js';

/** The constants R_b of SP 800-38B §5.3, by block length. */
const RB: Record<8 | 16, number> = { 8: 0x1b, 16: 0x87 };

/** Doubling in GF(2^n): shift left one bit, XOR R_b into the last byte when the top bit fell off. */
function double(block: Buffer): Buffer {
  const out = Buffer.alloc(block.length);
  for (let i = 0; i < block.length; i++) out[i] = ((block[i]! << 1) | (i + 1 < block.length ? block[i + 1]! >> 7 : 0)) & 0xff;
  if (block[0]! & 0x80) out[block.length - 1] = out[block.length - 1]! ^ RB[block.length as 8 | 16];
  return out;
}

/** CMAC of `data`, full block length; `encryptBlock` encrypts exactly one block under the key. */
export function cmac(encryptBlock: (block: Buffer) => Buffer, size: 8 | 16, data: Buffer): Buffer {
  const l = encryptBlock(Buffer.alloc(size));
  const k1 = double(l);
  const k2 = double(k1);
  const blocks = Math.max(1, Math.ceil(data.length / size));
  const complete = data.length > 0 && data.length % size === 0;
  const last = Buffer.alloc(size);
  data.copy(last, 0, (blocks - 1) * size);
  if (!complete) last[data.length - (blocks - 1) * size] = 0x80;
  const subkey = complete ? k1 : k2;
  for (let i = 0; i < size; i++) last[i] = last[i]! ^ subkey[i]!;
  let chain: Buffer = Buffer.alloc(size);
  const input = Buffer.alloc(size);
  for (let b = 0; b < blocks; b++) {
    const block = b === blocks - 1 ? last : data.subarray(b * size, (b + 1) * size);
    for (let i = 0; i < size; i++) input[i] = chain[i]! ^ block[i]!;
    const next = encryptBlock(input);
    chain.fill(0);
    chain = next;
  }
  for (const secret of [l, k1, k2, last, input]) secret.fill(0);
  return chain;
}

/** CMAC under a clear TDES or AES key. */
export function cmacWithKey(family: BlockFamily, key: Buffer, data: Buffer): Buffer {
  return cmac((block) => ecb(family, 'encrypt', key, block), blockLength(family), data);
}
