/**
 * Reading and committing a key's head records (keyRecords.ts) so that replicas sharing the server need no
 * coordination of their own: a change registers the next head, then revokes the current one, which the
 * server allows once (the compare-and-swap), then activates its own. Readers resolve changes that
 * stopped midway, and a create first clears the leftovers of stopped writers.
 */
import type { Logger } from 'pino';
import { CONFLICT, type Conflict } from '../../src/backend/keyChanges.js';
import { HsmBridgeError } from '../../src/errors.js';
import type { KeyName } from '../../src/keys/names.js';
import { KmipOperationError, type KmipClient } from './client.js';
import { decodeRecord, encodeRecord, headName, OBJECT_GROUP, type HeadRecord, type VersionRecord } from './keyRecords.js';
import { lifecycleAttributes, type LifecycleAttributes } from './lifecycleAttributes.js';
import { isReason, type KmipOperations } from './operations.js';
import { Enum } from './tags.js';
import type { VersionObjects } from './versionObjects.js';

const R = Enum.ResultReason;
const notFound = (name: KeyName) => new HsmBridgeError('KEY_NOT_FOUND', `key ${name} not found`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A head this old on the server's clock, still Pre-Active or revoked without an Active successor, was left
 * by a writer that stopped: the longest a live writer may take between two steps of one change.
 */
export const SETTLE_MS = 30_000;
/** Tries at a consistent view of a name's heads while other writers keep changing them. */
const SNAPSHOT_TRIES = 4;
/** Reads that meet a key between revoke and activate (one round trip) look again this many times. */
const TRANSITION_READS = 6;

export interface Head {
  readonly uid: string;
  readonly record: HeadRecord;
}

/** A head with its State and Initial Date as the server reports them. */
interface ObservedHead extends Head, LifecycleAttributes {}

/** Every head of a name, consistent as of one instant, and the server's clock then. */
interface Snapshot {
  readonly heads: readonly ObservedHead[];
  readonly serverNow: number;
}

/** How the lifecycle protocol judges time; tests shorten the settle time. */
export interface LifecycleTiming {
  /** See SETTLE_MS. */
  readonly settleMs: number;
  /** The server's clock minus ours, measured at start. */
  readonly clockOffsetMs: number;
}

export class KeyHeads {
  constructor(
    private readonly client: KmipClient,
    private readonly ops: KmipOperations,
    private readonly versions: VersionObjects,
    private readonly logger: Logger,
    private readonly timing: LifecycleTiming,
  ) {}

  /**
   * Identifiers of every head of the name, whatever its state, as of one instant: a single Locate (a
   * name's few heads fit in one page, so paging never splits it).
   */
  headIds(name: KeyName): Promise<string[]> {
    return this.ops.locate([
      { name: 'Name', value: headName(name) },
      { name: 'Object Type', value: Enum.ObjectType.SecretData },
    ]);
  }

  /** The name's Active heads with their records. */
  private async activeHeads(name: KeyName): Promise<Head[]> {
    const ids = await this.ops.locate([
      { name: 'Name', value: headName(name) },
      { name: 'Object Type', value: Enum.ObjectType.SecretData },
      { name: 'State', value: Enum.State.Active },
    ]);
    return (await Promise.all(ids.map((u) => this.readRecord(u))))
      .filter((h): h is Head => h !== undefined && h.record.name === name && !h.record.destroyed);
  }

  /** A head's record, or undefined when the object is gone or holds no record of ours. */
  async readRecord(uid: string): Promise<Head | undefined> {
    try {
      const record = decodeRecord((await this.ops.get(uid)).material);
      return record && { uid, record };
    } catch (e) {
      if (isReason(e, R.ItemNotFound)) return undefined;
      throw e;
    }
  }

  /**
   * Every head of the name with its state and its age on the server's clock, consistent as of one
   * instant: the set is Located again after the states are read and must not have changed. A writer
   * registers its next head before it revokes, so a revoke that happens while states are read comes with
   * a head that changes the set. Undefined while the heads keep changing.
   */
  private async snapshot(name: KeyName): Promise<Snapshot | undefined> {
    let ids = await this.headIds(name);
    for (let attempt = 0; attempt < SNAPSHOT_TRIES; attempt++) {
      const serverNow = Date.now() + this.timing.clockOffsetMs;
      if (ids.length === 0) return { heads: [], serverNow };
      const heads: ObservedHead[] = [];
      for (const uid of ids) {
        const head = await this.readRecord(uid);
        const attributes = head && await lifecycleAttributes(this.client, uid).catch((e: unknown) => {
          if (isReason(e, R.ItemNotFound)) return undefined;
          throw e;
        });
        if (head && attributes && head.record.name === name) heads.push({ ...head, ...attributes });
      }
      const again = await this.headIds(name);
      if (sameSet(ids, again)) return { heads, serverNow };
      ids = again;
    }
    return undefined;
  }

  /**
   * What a consistent view without an Active head means. A revoked head with a Pre-Active successor is a
   * change stopped between its revoke and its activate: `wait` while a successor is young on the server's
   * clock (its writer may be at work), then `activate` the successor its writer left, which any reader
   * may do (Activate succeeds once). A destroy's tombstone as the only successor means the key is gone;
   * a tombstone beside another successor means two writers stopped and one was a destroy, and that key
   * is not revived. Anything else is `absent`: creations not yet activated, leftovers of stopped writers.
   */
  private recovery(name: KeyName, view: Snapshot): { readonly kind: 'absent' | 'wait' } | { readonly kind: 'activate'; readonly head: Head } {
    const young = (h: ObservedHead) => this.young(view, h);
    let orphan: Head | undefined;
    for (const base of view.heads.filter((h) => h.state === Enum.State.Deactivated)) {
      const successors = view.heads.filter((h) => h.state === Enum.State.PreActive && h.record.basedOn === base.uid);
      if (successors.length === 0) continue;
      const destroyed = successors.some((h) => h.record.destroyed);
      if (destroyed && successors.length === 1) continue; // the destroy won the revoke
      if (successors.some(young)) return { kind: 'wait' };
      if (destroyed) {
        this.logger.error({ key: name, head: base.uid, successors: successors.map((h) => h.uid) }, 'kmip: writers stopped mid-change and one was a destroy; the key stays destroyed');
        continue;
      }
      const pick = successors.reduce((a, b) => (preferred(a, b) ? a : b));
      if (!orphan || preferred(pick, orphan)) orphan = pick;
    }
    return orphan ? { kind: 'activate', head: orphan } : { kind: 'absent' };
  }

  /** Whether a head may still belong to a writer at work. Initial Date counts whole seconds: round towards young. */
  private young(view: Snapshot, head: ObservedHead): boolean {
    return view.serverNow - head.initialDate <= this.timing.settleMs + 1000;
  }

  /**
   * The key's Active head, or undefined when it has none. The quick path is one Locate of Active heads;
   * without one, a consistent view of all heads tells a key in mid-change (look again, or activate a
   * successor a stopped writer left) from no key.
   */
  async readHead(name: KeyName): Promise<Head | undefined> {
    for (let attempt = 0; attempt < TRANSITION_READS; attempt++) {
      const active = await this.activeHeads(name);
      if (active.length > 0) return this.oneOf(name, active);
      const view = await this.snapshot(name);
      if (view) {
        const live = view.heads.filter((h) => h.state === Enum.State.Active && !h.record.destroyed);
        if (live.length > 0) return this.oneOf(name, live);
        const next = this.recovery(name, view);
        if (next.kind === 'absent') return undefined;
        if (next.kind === 'activate') {
          this.logger.warn({ key: name, head: next.head.uid }, 'kmip: activating a key head whose writer stopped after revoking the previous one');
          await this.ops.activate(next.head.uid).catch(() => undefined); // another reader may have done it
          continue;
        }
      }
      await sleep(20 * (attempt + 1));
    }
    throw new HsmBridgeError('BACKEND_UNAVAILABLE', `key ${name} is being changed; retry`);
  }

  private oneOf(name: KeyName, heads: readonly Head[]): Head {
    if (heads.length > 1) this.logger.warn({ key: name, heads: heads.map((h) => h.uid) }, 'kmip: a key has more than one active head; using one by a fixed rule');
    const { uid, record } = heads.reduce((a, b) => (preferred(a, b) ? a : b));
    return { uid, record };
  }

  async requireHead(name: KeyName): Promise<Head> {
    const head = await this.readHead(name);
    if (!head) throw notFound(name);
    return head;
  }

  registerHead(record: HeadRecord): Promise<string> {
    return this.ops.registerSecretData(encodeRecord(record), [
      { name: 'Name', value: headName(record.name) },
      { name: 'Object Group', value: OBJECT_GROUP },
    ]);
  }

  /** Revokes a head: CONFLICT when it is no longer Active (another writer revoked it first). */
  async revokeHead(uid: string, code: number): Promise<void | Conflict> {
    try {
      await this.ops.revoke(uid, code);
    } catch (e) {
      if (isReason(e, R.IllegalOperation, R.ItemNotFound, R.PermissionDenied)) return CONFLICT;
      throw e;
    }
  }

  /**
   * Removes a head by a plain Destroy, never revoking it: a server refuses to destroy an Active object
   * (PyKMIP: Permission Denied), so a head that became the key meanwhile is `kept`, with its versions.
   */
  async destroyHead(uid: string): Promise<'gone' | 'kept'> {
    try {
      await this.ops.destroy(uid);
      return 'gone';
    } catch (e) {
      if (isReason(e, R.ItemNotFound)) return 'gone';
      if (e instanceof KmipOperationError) return 'kept';
      throw e;
    }
  }

  /** Publishes `next` as the head after `base` and returns it; the versions in `created` are removed if the change loses. */
  async commit(base: Head, change: HeadRecord, created: readonly VersionRecord[]): Promise<Head | Conflict> {
    const next: HeadRecord = { ...change, basedOn: base.uid, writtenAt: new Date().toISOString() };
    let candidate: string;
    try {
      candidate = await this.registerHead(next);
    } catch (e) {
      for (const v of created) await this.versions.discardVersion(v);
      throw e;
    }
    // A transport failure here leaves it unknown whether the revoke happened: the candidate stays for
    // readers to resolve (readHead activates it once the revoked head shows it was the successor).
    if (await this.revokeHead(base.uid, Enum.RevocationReasonCode.Superseded) === CONFLICT) {
      if (await this.destroyHead(candidate) === 'gone') for (const v of created) await this.versions.discardVersion(v);
      return CONFLICT;
    }
    await this.ops.activate(candidate);
    await this.destroyHead(base.uid);
    return { uid: candidate, record: next };
  }

  /**
   * Before a create, with no key under the name: the heads stopped writers and destroys left behind go,
   * then the version objects they list. Only in a consistent view where every head is older than the
   * settle time on the server's clock and none can become the key; else CONFLICT (a writer at work, or a
   * successor readHead will activate). Heads go by a plain Destroy, which fails once a head is Active: a
   * writer that stalled past the settle time and then activated its head keeps it, and its versions.
   */
  async clearLeftovers(name: KeyName): Promise<void | Conflict> {
    const view = await this.snapshot(name);
    if (!view) return CONFLICT;
    if (view.heads.length === 0) return undefined;
    if (view.heads.some((h) => h.state === Enum.State.Active || this.young(view, h))) return CONFLICT;
    if (this.recovery(name, view).kind !== 'absent') return CONFLICT;
    this.logger.warn({ key: name, heads: view.heads.map((h) => h.uid) }, 'kmip: removing key heads left by interrupted changes');
    for (const h of view.heads) if (await this.destroyHead(h.uid) === 'kept') return CONFLICT;
    // No head lists these objects any more, and no head that listed them can come back.
    const done = new Set<string>();
    for (const v of view.heads.flatMap((h) => Object.values(h.record.versions))) {
      if (done.has(v.uid)) continue;
      done.add(v.uid);
      await this.versions.discardVersion(v);
    }
    return undefined;
  }
}

/** Between two heads of one name, the one every replica picks: the newer record, then the smaller identifier. */
export function preferred(a: Head, b: Head): boolean {
  if (a.record.writtenAt !== b.record.writtenAt) return a.record.writtenAt > b.record.writtenAt;
  return a.uid < b.uid;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const set = new Set(a);
  return set.size === new Set(b).size && b.every((x) => set.has(x));
}
