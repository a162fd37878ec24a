/**
 * Changing a key's metadata when other replicas on the same token may change it at the same moment.
 * PKCS#11 has no transactions and no compare-and-swap, so a writer publishes the next revision, reads
 * every metadata object of the name back, and keeps its revision only if nobody else's competes with it:
 *
 * - another object at the same (or a higher) revision that is not built on ours: a concurrent writer.
 *   We withdraw (destroy our object) and the caller retries from the new state. If both writers see each
 *   other, both withdraw and retry after a random pause; at most one can see only itself, so two
 *   revisions are never both kept.
 * - the revision we built on is gone: the key was destroyed meanwhile; we withdraw too.
 * - an older revision we saw when we read our base is gone: a writer that kept the next revision removed
 *   it (even where this process cannot see that writer's object yet: tokenWrites.ts); we withdraw.
 * - an object built on ours: someone read ours as current, so ours stands.
 *
 * A writer that kept its revision removes the older ones but its base; one that finds the latest revision
 * contested (siblings still settling) does not build on it but retries. Siblings older than
 * SIBLING_SETTLE_MS are left over from a crashed writer and resolved by the readers' rule (lowest digest).
 */
import { randomBytes } from 'node:crypto';
import { CONFLICT, type Conflict } from '../../src/backend/keyChanges.js';
import { HsmBridgeError } from '../../src/errors.js';
import type { KeyName } from '../../src/keys/names.js';
import { ckrOf, CKR } from './errors.js';
import { beingChecked } from './tokenLock.js';
import { findKeyObjects, readMetadata, readMetadataObjects, writeMetadata, type KeyObject, type MetadataObject, type MetadataRecord, type StoredMetadata } from './keyObjects.js';
import type { Handle, Pkcs11Api } from './module.js';
import { destroyTokenObject } from './tokenWrites.js';

/** A sibling revision written within this long may still be withdrawn by its writer (allows clock skew). */
export const SIBLING_SETTLE_MS = 30_000;
/**
 * Unlisted key objects younger than this may belong to a create or rotate running on another replica
 * (their ID is stamped before generation starts, and generating an RSA-4096 key can take long).
 */
export const ORPHAN_GRACE_MS = 10 * 60_000;

/**
 * How long a writer waits between publishing its revision and reading the name back. SoftHSM makes an
 * object in two steps, the file and then its attributes, and a search between the two does not match it:
 * two replicas publishing within that moment each read back before the other's object was whole, and both
 * kept theirs (measured: a pair of revisions written in the same millisecond, each writer seeing only its
 * own). After the pause, an object published before ours is whole, unless its writer stalled for longer.
 */
export const READ_BACK_PAUSE_MS = 20;

export type RecordChange = Omit<MetadataRecord, 'revision' | 'basedOn' | 'writtenAt' | 'nonce'>;

/** A revision to build on, with the older metadata objects there were when it was read. */
export interface Base extends MetadataObject {
  /** Normally one: the revision the base was built on, which its writer kept (see commitRevision). */
  readonly predecessors: readonly MetadataObject[];
}

/** The revision to build on, or CONFLICT while racing writers of the current revision have not settled. */
export function settledCurrent(stored: StoredMetadata, now = Date.now()): Base | Conflict {
  const settling = stored.siblings.some((s) => now - Date.parse(s.record.writtenAt) < SIBLING_SETTLE_MS);
  if (settling) return CONFLICT;
  return { ...stored.latest, predecessors: stored.objects.filter((o) => o.record.revision < stored.latest.record.revision) };
}

export function requireMetadata(api: Pkcs11Api, session: Handle, name: KeyName): StoredMetadata {
  const stored = readMetadata(api, session, name);
  if (!stored) throw new HsmBridgeError('KEY_NOT_FOUND', `key ${name} not found`);
  return stored;
}

/** The current revision to build a change on, or CONFLICT while other replicas' writes settle. */
export function requireSettled(api: Pkcs11Api, session: Handle, name: KeyName): Base | Conflict {
  return settledCurrent(requireMetadata(api, session, name));
}

/**
 * Publishes `change` as the revision after `base` (revision 0 without a base) and reports whether it
 * stands. When it does not, nothing of it remains in the token; the caller removes what it generated.
 */
export async function commitRevision(api: Pkcs11Api, session: Handle, name: KeyName, base: Base | undefined, change: RecordChange): Promise<boolean> {
  const record: MetadataRecord = {
    ...change,
    revision: base ? base.record.revision + 1 : 0,
    ...(base ? { basedOn: base.digest } : {}),
    writtenAt: new Date().toISOString(),
    nonce: randomBytes(8).toString('hex'),
  };
  const ours = writeMetadata(api, session, name, record);
  beingChecked.add(ours.digest);
  try {
    await new Promise((resolve) => setTimeout(resolve, READ_BACK_PAUSE_MS));
    return keepOrWithdraw(api, session, name, base, ours);
  } finally {
    beingChecked.delete(ours.digest);
  }
}

/** The check of a published revision (see the top of this file); true when it stands. */
function keepOrWithdraw(api: Pkcs11Api, session: Handle, name: KeyName, base: Base | undefined, ours: MetadataObject): boolean {
  const { record } = ours;
  const after = readMetadataObjects(api, session, name);
  const builtOnOurs = after.some((o) => o.record.basedOn === ours.digest);
  const competing = after.some((o) => o.digest !== ours.digest && o.record.revision >= record.revision);
  const baseGone = base !== undefined && !after.some((o) => o.digest === base.digest);
  // A predecessor of our base is destroyed only by a writer that kept the next revision (or a destroy):
  // our base is superseded. This holds where the search misses that writer's new object (SoftHSM hides
  // it from this process until the token is written again: tokenWrites.ts), since a destroyed object is
  // gone for every process at once.
  const superseded = base !== undefined && base.predecessors.some((p) => !after.some((o) => o.digest === p.digest));
  if (!builtOnOurs && (competing || baseGone || superseded)) {
    destroyQuietly(api, session, ours.handle);
    return false;
  }
  // The base stays until the next change: a replica that has not seen our object yet (SoftHSM shows a new
  // object to another process only once it re-reads the token: tokenWrites.ts) still finds the key, one
  // change behind, instead of nothing at all (a false KEY_NOT_FOUND).
  if (!builtOnOurs) for (const o of after) if (o.record.revision < record.revision && o.digest !== base?.digest) destroyQuietly(api, session, o.handle);
  return true;
}

/** Runs `commit` for a change whose new key objects are `created`, and removes them if it fails or loses. */
export async function commitWithObjects(api: Pkcs11Api, session: Handle, created: readonly Handle[], commit: () => Promise<boolean>): Promise<boolean> {
  let committed: boolean;
  try {
    committed = await commit();
  } catch (e) {
    for (const h of created) destroyQuietly(api, session, h);
    throw e;
  }
  if (!committed) for (const h of created) destroyQuietly(api, session, h);
  return committed;
}

/** Destroys a token object that another replica may have destroyed a moment earlier. */
export function destroyQuietly(api: Pkcs11Api, session: Handle, handle: Handle): void {
  try {
    destroyTokenObject(api, session, handle);
  } catch (e) {
    if (ckrOf(e) !== CKR.OBJECT_HANDLE_INVALID) throw e;
  }
}

/** Destroys a session object made for one call; it goes with its session anyway, so a failure here is not the call's. */
export function destroySessionObject(api: Pkcs11Api, session: Handle, handle: Handle): void {
  try {
    api.C_DestroyObject(session, handle);
  } catch {
    // the error that matters, if any, is the caller's
  }
}

/** A key object no metadata lists, old enough that no create or rotate can still be about to list it. */
export function isAbandoned(o: KeyObject, listed: ReadonlySet<string>, now = Date.now()): boolean {
  return !listed.has(o.id) && now - o.parsed.createdMs > ORPHAN_GRACE_MS;
}

/** Destroys every metadata object of a key (the key then no longer exists); returns the CKA_IDs they listed. */
export function removeMetadata(api: Pkcs11Api, session: Handle, stored: StoredMetadata): string[] {
  for (const o of stored.objects) destroyQuietly(api, session, o.handle);
  return stored.objects.flatMap((o) => Object.values(o.record.versions).map((v) => v.id));
}

/** Destroys the name's key objects whose CKA_ID `removed` lists (their metadata is gone), and the abandoned ones. */
export function removeKeyObjects(api: Pkcs11Api, session: Handle, name: KeyName, removed: ReadonlySet<string>): void {
  for (const o of findKeyObjects(api, session, name)) {
    if (removed.has(o.id) || isAbandoned(o, removed)) destroyQuietly(api, session, o.handle);
  }
}
