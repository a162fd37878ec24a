/**
 * Key check values, as the payments world compares keys without showing them: TDES, the first 3 bytes of
 * the key's ECB encryption of 8 zero bytes; AES, the first 3 bytes of the key's CMAC of 16 zero bytes
 * (never ECB for AES: X9.24 and X9.143 call for CMAC). Hex, upper case, 6 digits.
 *
 * The whole block the KCV is cut from (the key's check block) is kept here and never leaves this module:
 * compared in full, it tells whether two keys are the same key with no false match (3 bytes would match
 * one pair of keys in 2^24), which is how an import is kept from holding one key as two kinds.
 *
 * A key version never changes, so its check block is computed once per process and kept, by name,
 * version and creation time (a key destroyed and made again under the same name is another key).
 */
import { timingSafeEqual } from 'node:crypto';
import type { Backend, KeyRef } from '../backend/port.js';
import { isPaymentPurpose, keyTypes, type KeyMetadata, type KeyVersionInfo } from '../keys/types.js';
import { ecb } from './crypto/blockCiphers.js';
import { cmacWithKey } from './crypto/cmac.js';

export const KCV_BYTES = 3;
const MAX_CACHED = 10_000;

/** The family whose check blocks are comparable (TDES_2KEY K1 K2 and TDES_3KEY K1 K2 K1 are one key), or undefined for keys without a KCV. */
export function checkBlockFamily(meta: Pick<KeyMetadata, 'type' | 'purpose'>): 'tdes' | 'aes' | undefined {
  const family = keyTypes[meta.type].family;
  return (family === 'tdes' || family === 'aes') && isPaymentPurpose(meta.purpose) ? family : undefined;
}

/**
 * The check block of clear key material, computed in process with the same algorithm the backend uses for
 * its keys. The caller zeroes it (it is a known-plaintext pair of the key).
 */
export function checkBlockOfMaterial(family: 'tdes' | 'aes', material: Buffer): Buffer {
  return family === 'tdes' ? ecb('tdes', 'encrypt', material, Buffer.alloc(8)) : cmacWithKey('aes', material, Buffer.alloc(16));
}

export class KeyCheckValues {
  private readonly blocks = new Map<string, Buffer>();

  constructor(private readonly backend: Backend) {}

  /** The KCV of a payment key version (TDES or AES, a payment purpose); undefined for other keys, whose HSM objects may not compute one. */
  async of(meta: KeyMetadata, version: KeyVersionInfo): Promise<string | undefined> {
    const block = await this.block(meta, version);
    return block?.subarray(0, KCV_BYTES).toString('hex').toUpperCase();
  }

  /** Whether the version's whole check block equals `candidate` (compared in constant time); false for keys without one. */
  async sameBlock(meta: KeyMetadata, version: KeyVersionInfo, candidate: Buffer): Promise<boolean> {
    const block = await this.block(meta, version);
    return block !== undefined && block.length === candidate.length && timingSafeEqual(block, candidate);
  }

  /** A copy of the version's whole check block, for comparing with the others'; undefined for keys without one. The caller zeroes it. */
  async blockOf(meta: KeyMetadata, version: KeyVersionInfo): Promise<Buffer | undefined> {
    const block = await this.block(meta, version);
    return block && Buffer.from(block);
  }

  /** Whether the version's check block starts with `prefix` (a KCV as a key block's KP block gives it). */
  async startsWith(meta: KeyMetadata, version: KeyVersionInfo, prefix: Buffer): Promise<boolean> {
    const block = await this.block(meta, version);
    return block !== undefined && prefix.length <= block.length && timingSafeEqual(block.subarray(0, prefix.length), prefix);
  }

  private async block(meta: KeyMetadata, version: KeyVersionInfo): Promise<Buffer | undefined> {
    const family = checkBlockFamily(meta);
    if (!family) return undefined;
    const id = `${meta.name}\u0000${version.version}\u0000${version.createdAt}`;
    const known = this.blocks.get(id);
    if (known) return known;
    const key: KeyRef = { name: meta.name, version: version.version, type: meta.type };
    const block =
      family === 'tdes'
        ? await this.backend.encryptBlocks(key, Buffer.alloc(8))
        : await this.backend.mac(key, 'AES_CMAC', Buffer.alloc(16));
    if (this.blocks.size >= MAX_CACHED) {
      const oldest = this.blocks.keys().next().value as string;
      this.blocks.get(oldest)?.fill(0);
      this.blocks.delete(oldest);
    }
    this.blocks.set(id, block);
    return block;
  }
}
