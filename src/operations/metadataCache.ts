import type { KeyName } from '../keys/names.js';
import type { KeyMetadata } from '../keys/types.js';

/**
 * A short-lived cache of key metadata in front of the backend, so that the hot path (sign, verify,
 * decrypt) does not ask the HSM for a key's state on every call. Changes made through this process
 * update it at once; changes made by another replica are seen after at most `ttlMs`.
 * Concurrent misses for one key share a single backend lookup.
 */
export class MetadataCache {
  private readonly entries = new Map<KeyName, { meta: KeyMetadata; expires: number }>();
  private readonly pending = new Map<KeyName, Promise<KeyMetadata>>();

  constructor(
    private readonly load: (name: KeyName) => Promise<KeyMetadata>,
    private readonly ttlMs: number,
  ) {}

  async get(name: KeyName): Promise<KeyMetadata> {
    const hit = this.entries.get(name);
    if (hit && hit.expires > Date.now()) return hit.meta;
    return this.refresh(name);
  }

  refresh(name: KeyName): Promise<KeyMetadata> {
    let p = this.pending.get(name);
    if (!p) {
      p = this.load(name).then(
        (meta) => {
          this.pending.delete(name);
          this.put(meta);
          return meta;
        },
        (e: unknown) => {
          this.pending.delete(name);
          this.entries.delete(name);
          throw e;
        },
      );
      this.pending.set(name, p);
    }
    return p;
  }

  put(meta: KeyMetadata): void {
    if (this.ttlMs > 0) this.entries.set(meta.name, { meta, expires: Date.now() + this.ttlMs });
  }

  forget(name: KeyName): void {
    this.entries.delete(name);
  }
}
