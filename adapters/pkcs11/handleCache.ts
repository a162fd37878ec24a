/**
 * Object handles of key versions, cached per name and version so that an operation does not search the
 * token. An entry stands while the metadata lists the same CKA_ID for its version: a changed ID (the key
 * was destroyed and recreated elsewhere, and handles may have been reused) drops the name's entries.
 */
import type { KeyObject } from 'node:crypto';
import type { KeyRef } from '../../src/backend/port.js';
import { HsmBridgeError } from '../../src/errors.js';
import type { KeyName, KeyVersion } from '../../src/keys/names.js';
import { isAsymmetric } from '../../src/keys/types.js';
import { findVersion, readMetadata, type MetadataObject, type VersionHandles, type VersionRecord } from './keyObjects.js';
import type { Handle, Pkcs11Api } from './module.js';

/** Handles of one version, plus its public key once read (public keys never change). */
export interface CachedVersion extends VersionHandles {
  spki?: Buffer;
  /** For RSA-OAEP encryption in process, without a session. */
  publicKeyObject?: KeyObject;
}

const entryKey = (name: KeyName, version: KeyVersion | '') => `${name}\u0000${version}`;

/**
 * The version as the key's metadata objects list it, when every one that lists it gives the same CKA_ID.
 * The core may name a version that the revision readers use does not list: readers step back to the base
 * while another object shares the latest revision (keyObjects.ts, pickCurrent), and a replica that has not
 * seen the latest revision yet reads the base too (tokenWrites.ts).
 */
function agreedListing(objects: readonly MetadataObject[], version: KeyVersion): VersionRecord | undefined {
  const listings = objects.flatMap((o) => o.record.versions[version] ?? []);
  return listings.length > 0 && listings.every((l) => l.id === listings[0]!.id) ? listings[0] : undefined;
}

export class HandleCache {
  private readonly entries = new Map<string, CachedVersion>();

  get(name: KeyName, version: KeyVersion): CachedVersion | undefined {
    return this.entries.get(entryKey(name, version));
  }

  set(name: KeyName, version: KeyVersion, handles: CachedVersion): void {
    this.entries.set(entryKey(name, version), handles);
  }

  delete(name: KeyName, version: KeyVersion): void {
    this.entries.delete(entryKey(name, version));
  }

  /** Drops every version of a name. */
  forget(name: KeyName): void {
    const prefix = entryKey(name, '');
    for (const k of this.entries.keys()) if (k.startsWith(prefix)) this.entries.delete(k);
  }

  clear(): void {
    this.entries.clear();
  }

  /** The handles of a key version: cached, or the objects the metadata lists under its CKA_ID (never another writer's). */
  of(api: Pkcs11Api, session: Handle, key: KeyRef): CachedVersion {
    const cached = this.get(key.name, key.version);
    if (cached) return cached;
    const stored = readMetadata(api, session, key.name);
    if (!stored) throw new HsmBridgeError('KEY_NOT_FOUND', `key ${key.name} not found`);
    const current = stored.current.record.versions[key.version];
    const listed = current ?? agreedListing(stored.objects, key.version);
    const found = listed && findVersion(api, session, key.name, listed, isAsymmetric(key.type));
    if (!found) throw new HsmBridgeError('KEY_VERSION_NOT_FOUND', `key ${key.name} has no version ${key.version}`);
    if (current) this.set(key.name, key.version, found); // a version only a revision being checked lists is not kept
    return found;
  }

  /** The handles of a version the metadata lists: cached under the same ID, else found; undefined when its objects are gone. */
  listed(api: Pkcs11Api, session: Handle, name: KeyName, version: KeyVersion, listed: VersionRecord, asymmetric: boolean): CachedVersion | undefined {
    let handles = this.get(name, version);
    if (handles && handles.id !== listed.id) {
      this.forget(name);
      handles = undefined;
    }
    if (!handles) {
      handles = findVersion(api, session, name, listed, asymmetric);
      if (handles) this.set(name, version, handles);
    }
    return handles;
  }
}
