import { HsmBridgeError } from '../errors.js';
import type { KeyName } from '../keys/names.js';
import type { KeyMetadata } from '../keys/types.js';

/** Unknown names remembered at most; beyond it the oldest is forgotten (the names come from callers). */
const MAX_MISSES = 10_000;

/**
 * A short-lived cache of key metadata in front of the backend, so that the hot path (sign, verify,
 * decrypt) does not ask the HSM for a key's state on every call. Changes made through this process
 * update it at once; changes made by another replica are seen after at most `ttlMs`.
 * Names the backend does not know are remembered for `ttlMs` too (KEY_NOT_FOUND without asking again):
 * otherwise every request naming a missing key costs an HSM lookup, which on PKCS#11 blocks the event loop.
 * Concurrent misses for one key share a single backend lookup.
 */
export class MetadataCache {
  private readonly entries = new Map<KeyName, { meta: KeyMetadata; expires: number }>();
  private readonly misses = new Map<KeyName, number>();
  private readonly pending = new Map<KeyName, Promise<KeyMetadata>>();

  constructor(
    private readonly load: (name: KeyName) => Promise<KeyMetadata>,
    private readonly ttlMs: number,
  ) {}

  async get(name: KeyName): Promise<KeyMetadata> {
    const now = Date.now();
    const hit = this.entries.get(name);
    if (hit && hit.expires > now) return hit.meta;
    const missExpires = this.misses.get(name);
    if (missExpires !== undefined) {
      if (missExpires > now) throw new HsmBridgeError('KEY_NOT_FOUND', `key ${name} not found`);
      this.misses.delete(name);
    }
    return this.refresh(name);
  }

  /** Asks the backend now, whatever is cached (a version the cache does not know, for instance). */
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
          if (e instanceof HsmBridgeError && e.code === 'KEY_NOT_FOUND') this.remember(name);
          throw e;
        },
      );
      this.pending.set(name, p);
    }
    return p;
  }

  put(meta: KeyMetadata): void {
    this.misses.delete(meta.name);
    if (this.ttlMs > 0) this.entries.set(meta.name, { meta, expires: Date.now() + this.ttlMs });
  }

  forget(name: KeyName): void {
    this.entries.delete(name);
    this.misses.delete(name);
  }

  private remember(name: KeyName): void {
    if (this.ttlMs <= 0) return;
    this.misses.delete(name); // re-inserted last: the map's order is the eviction order
    this.misses.set(name, Date.now() + this.ttlMs);
    if (this.misses.size > MAX_MISSES) this.misses.delete(this.misses.keys().next().value!);
  }
}
