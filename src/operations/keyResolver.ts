/**
 * Finds the keys the core's operations run on: an enabled key of a purpose and one of its versions, from
 * the metadata cache, and runs backend calls on them so that a key another replica destroyed leaves the
 * cache. Shared by KeyService and the payment keys (src/payment/paymentKeys.ts), so both check alike.
 */
import { setTimeout } from 'node:timers/promises';
import type { Backend, KeyRef } from '../backend/port.js';
import { HsmBridgeError } from '../errors.js';
import { parseKeyName, parseKeyVersion, type KeyVersion } from '../keys/names.js';
import { isRetired, type KeyMetadata, type KeyPurpose, type KeyVersionInfo } from '../keys/types.js';
import { MetadataCache } from './metadataCache.js';

export class KeyResolver {
  readonly cache: MetadataCache;

  constructor(
    private readonly backend: Backend,
    metadataCacheTtlMs: number,
  ) {
    this.cache = new MetadataCache((name) => backend.describeKey(name), metadataCacheTtlMs);
  }

  /** Always asks the backend, so that what a caller reads is current. */
  async current(name: unknown): Promise<KeyMetadata> {
    const meta = await this.backend.describeKey(parseKeyName(name));
    this.cache.put(meta);
    return meta;
  }

  /** An enabled key of `purpose` (or of one of several, for the operations that serve more than one). */
  async usableKey(name: unknown, purpose: KeyPurpose | readonly KeyPurpose[]): Promise<KeyMetadata> {
    const meta = await this.cache.get(parseKeyName(name));
    checkEnabled(meta);
    const purposes = typeof purpose === 'string' ? [purpose] : purpose;
    if (!purposes.includes(meta.purpose)) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${meta.name} has purpose ${meta.purpose} and cannot be used to ${purposes.join(' or ')}`);
    }
    return meta;
  }

  /** The requested version, or the primary one. */
  async version(meta: KeyMetadata, requested: unknown): Promise<KeyVersion> {
    return requested === undefined ? meta.primaryVersion : (await this.findVersion(meta, requested)).version.version;
  }

  /**
   * The requested version (or the primary one) and the metadata it was found in. A version the cache does
   * not know is looked up once more, with one refresh: another replica may have rotated.
   */
  async findVersion(meta: KeyMetadata, requested: unknown): Promise<{ meta: KeyMetadata; version: KeyVersionInfo }> {
    const wanted = requested === undefined ? meta.primaryVersion : parseKeyVersion(requested);
    const find = (m: KeyMetadata) => m.versions.find((v) => v.version === wanted);
    const known = find(meta);
    if (known) return { meta, version: checkNotRetired(meta, known) };
    const current = await this.cache.refresh(meta.name);
    checkEnabled(current);
    const found = find(current);
    if (!found) throw new HsmBridgeError('KEY_VERSION_NOT_FOUND', `key ${meta.name} has no version ${wanted}`);
    return { meta: current, version: checkNotRetired(current, found) };
  }

  /**
   * Runs one backend operation on the requested version (or the primary one) of a key read from the cache.
   * When the backend does not have that version or key, the cache may hold a change another replica has
   * since withdrawn (a rotation that lost a race, see adapters/pkcs11/README.md "Replicas") or a key it
   * destroyed: after a pause for that replica to settle, the key is read again, checked again, and the
   * operation runs once more on what it names now. A second not-found is the answer.
   */
  async onVersion<T>(meta: KeyMetadata, requested: unknown, operation: (key: KeyRef) => Promise<T>): Promise<{ meta: KeyMetadata; key: KeyRef; result: T }> {
    const key = refTo(meta, await this.version(meta, requested));
    try {
      return { meta, key, result: await operation(key) };
    } catch (e) {
      if (!isNotFound(e)) throw e;
      this.cache.forget(meta.name);
      await setTimeout(SETTLE_MS + Math.random() * SETTLE_MS);
      const current = await this.cache.get(meta.name);
      checkEnabled(current);
      if (current.purpose !== meta.purpose) throw e;
      const again = refTo(current, await this.version(current, requested));
      return { meta: current, key: again, result: await this.run(again, () => operation(again)) };
    }
  }

  /** Runs a backend operation; a key the backend no longer has (destroyed by another replica) leaves the cache. */
  async run<T>(key: KeyRef, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (e) {
      if (isNotFound(e)) this.cache.forget(key.name);
      throw e;
    }
  }
}

/** How long another replica's lifecycle change takes to settle: its writer reads back after 20 ms, then commits or withdraws. */
const SETTLE_MS = 50;

const isNotFound = (e: unknown) => e instanceof HsmBridgeError && (e.code === 'KEY_NOT_FOUND' || e.code === 'KEY_VERSION_NOT_FOUND');

export function checkEnabled(meta: KeyMetadata): void {
  if (meta.state !== 'enabled') throw new HsmBridgeError('KEY_DISABLED', `key ${meta.name} is disabled`);
}

/**
 * A version below the key's minDecryptionVersion does nothing: no decryption, verification or MAC check,
 * and no signing or encryption either. The primary version is never retired (the core keeps the minimum at
 * or below it).
 */
function checkNotRetired(meta: KeyMetadata, version: KeyVersionInfo): KeyVersionInfo {
  if (isRetired(meta, version.version)) {
    throw new HsmBridgeError('KEY_VERSION_RETIRED', `version ${version.version} of key ${meta.name} is retired (minDecryptionVersion ${meta.minDecryptionVersion})`);
  }
  return version;
}

export function refTo(meta: KeyMetadata, version: KeyVersion): KeyRef {
  return { name: meta.name, version, type: meta.type };
}
