/**
 * Key check values, as the payments world compares keys without showing them: TDES, the first 3 bytes of
 * the key's ECB encryption of 8 zero bytes; AES, the first 3 bytes of the key's CMAC of 16 zero bytes
 * (never ECB for AES: X9.24 and X9.143 call for CMAC). Hex, upper case, 6 digits.
 *
 * A key version never changes, so its KCV is computed once per process and kept, by name, version and
 * creation time (a key destroyed and made again under the same name is another key).
 */
import type { Backend, KeyRef } from '../backend/port.js';
import { isPaymentPurpose, keyTypes, type KeyMetadata, type KeyVersionInfo } from '../keys/types.js';
import { paymentPrimitives } from './paymentBackend.js';

export const KCV_BYTES = 3;
const MAX_CACHED = 10_000;

export class KeyCheckValues {
  private readonly cache = new Map<string, string>();

  constructor(private readonly backend: Backend) {}

  /** The KCV of a payment key version (TDES or AES, a payment purpose); undefined for other keys, whose HSM objects may not compute one. */
  async of(meta: KeyMetadata, version: KeyVersionInfo): Promise<string | undefined> {
    const family = keyTypes[meta.type].family;
    if ((family !== 'tdes' && family !== 'aes') || !isPaymentPurpose(meta.purpose)) return undefined;
    const id = `${meta.name}\u0000${version.version}\u0000${version.createdAt}`;
    const known = this.cache.get(id);
    if (known) return known;
    const key: KeyRef = { name: meta.name, version: version.version, type: meta.type };
    const block =
      family === 'tdes'
        ? await paymentPrimitives(this.backend).encryptBlocks(key, Buffer.alloc(8))
        : await this.backend.mac(key, 'AES_CMAC', Buffer.alloc(16));
    const kcv = block.subarray(0, KCV_BYTES).toString('hex').toUpperCase();
    if (this.cache.size >= MAX_CACHED) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(id, kcv);
    return kcv;
  }
}
