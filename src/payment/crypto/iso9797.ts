/**
 * ISO/IEC 9797-1 MAC algorithms 1 and 3 (CBC-MAC with a zero IV) and the payment MACs by registry name,
 * computed on clear keys in process (the software backend). Keys and every intermediate chain value are
 * secret: callers zero the key, this module zeroes what it creates.
 */
import { macAlgorithms, type MacAlgorithm } from '../../algorithms/registry.js';
import { HsmBridgeError } from '../../errors.js';
import { blockLength, cbc, desEcb, type BlockFamily } from './blockCiphers.js';
import { cmacWithKey } from './cmac.js';

export type Iso9797Padding = 1 | 2;

/**
 * Padding method 1 appends zeros up to a whole block (nothing when the data already is whole blocks; empty
 * data becomes one zero block). Method 2 appends 0x80 and then zeros, so it always adds at least one byte.
 * Returns a new buffer.
 */
export function iso9797Pad(data: Buffer, method: Iso9797Padding, size: 8 | 16 = 8): Buffer {
  if (method === 1) {
    const blocks = Math.max(1, Math.ceil(data.length / size));
    const out = Buffer.alloc(blocks * size);
    data.copy(out);
    return out;
  }
  const out = Buffer.alloc((Math.floor(data.length / size) + 1) * size);
  data.copy(out);
  out[data.length] = 0x80;
  return out;
}

/** The last block of a CBC encryption with a zero IV over the padded data (MAC algorithm 1, output transformation 1). */
export function iso9797Alg1(family: BlockFamily, key: Buffer, data: Buffer, padding: Iso9797Padding): Buffer {
  const size = blockLength(family);
  const padded = iso9797Pad(data, padding, size);
  const chain = cbc(family, 'encrypt', key, Buffer.alloc(size), padded);
  try {
    return Buffer.from(chain.subarray(chain.length - size));
  } finally {
    padded.fill(0);
    chain.fill(0);
  }
}

/**
 * MAC algorithm 3 (ANSI X9.19 retail MAC) with a double-length key K1 K2: single-DES CBC under K1 over all
 * blocks, then the last output is DES-decrypted under K2 and DES-encrypted under K1.
 */
export function iso9797Alg3(key: Buffer, data: Buffer, padding: Iso9797Padding): Buffer {
  if (key.length !== 16) throw new RangeError('ISO 9797-1 MAC algorithm 3 needs a double-length key');
  const k1 = key.subarray(0, 8);
  const k2 = key.subarray(8, 16);
  // Single DES in CBC mode is TDES-CBC with K1 K1 K1 (OpenSSL 3 keeps plain DES in its legacy provider).
  const k1Tripled = Buffer.concat([k1, k1, k1]);
  const padded = iso9797Pad(data, padding, 8);
  const chain = cbc('tdes', 'encrypt', k1Tripled, Buffer.alloc(8), padded);
  const last = chain.subarray(chain.length - 8);
  const decrypted = desEcb('decrypt', k2, last);
  try {
    return desEcb('encrypt', k1, decrypted);
  } finally {
    for (const secret of [k1Tripled, padded, chain, decrypted]) secret.fill(0);
  }
}

/** The MAC for a registry MAC algorithm name with a clear key: AES_CMAC, TDES_CMAC, ISO9797_*. Full length; the caller truncates. */
export function paymentMac(algorithm: MacAlgorithm, key: Buffer, data: Buffer): Buffer {
  switch (algorithm) {
    case 'AES_CMAC':
      return cmacWithKey('aes', key, data);
    case 'TDES_CMAC':
      return cmacWithKey('tdes', key, data);
    case 'ISO9797_ALG1':
    case 'ISO9797_ALG1_PAD2':
      return iso9797Alg1('tdes', key, data, macAlgorithms[algorithm].padding);
    case 'ISO9797_ALG3':
    case 'ISO9797_ALG3_PAD2':
      if (key.length !== 16) throw new HsmBridgeError('INCOMPATIBLE_KEY', `${algorithm} needs a TDES_2KEY key`);
      return iso9797Alg3(key, data, macAlgorithms[algorithm].padding);
    case 'HMAC_SHA256':
      throw new HsmBridgeError('INCOMPATIBLE_KEY', 'HMAC_SHA256 is not a payment MAC');
  }
}
