/**
 * The independent reference the payment tests check our block operations and key check values against:
 * node:crypto ECB without padding (16-byte TDES keys are K1 K2 K1), and CMAC of one zero block written
 * from SP 800-38B's definition, never src/payment's own code.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';

export type BlockFamily = 'tdes' | 'aes';

export function nodeEcb(family: BlockFamily, direction: 'encrypt' | 'decrypt', key: Buffer, data: Buffer): Buffer {
  const name = family === 'tdes' ? (key.length === 16 ? 'des-ede-ecb' : 'des-ede3-ecb') : `aes-${key.length * 8}-ecb`;
  const c = direction === 'encrypt' ? createCipheriv(name, key, null) : createDecipheriv(name, key, null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(data), c.final()]);
}

/** CMAC of one zero block = E(K, 0 XOR K1), K1 = double(E(K, 0)) (SP 800-38B; Rb 0x87 for AES, 0x1B for TDES). */
export function nodeCmacOfZeros(family: BlockFamily, key: Buffer): Buffer {
  const size = family === 'aes' ? 16 : 8;
  const l = nodeEcb(family, 'encrypt', key, Buffer.alloc(size));
  const k1 = Buffer.alloc(size);
  for (let i = 0; i < size; i++) k1[i] = ((l[i]! << 1) | (i < size - 1 ? l[i + 1]! >> 7 : 0)) & 0xff;
  if (l[0]! & 0x80) k1[size - 1] = k1[size - 1]! ^ (family === 'aes' ? 0x87 : 0x1b);
  return nodeEcb(family, 'encrypt', key, k1);
}

/** The KCV as the payments world writes it: TDES, ECB of zeros; AES, CMAC of zeros; 3 bytes, hex upper case. */
export function nodeKcv(family: BlockFamily, key: Buffer): string {
  const block = family === 'tdes' ? nodeEcb('tdes', 'encrypt', key, Buffer.alloc(8)) : nodeCmacOfZeros('aes', key);
  return block.subarray(0, 3).toString('hex').toUpperCase();
}
