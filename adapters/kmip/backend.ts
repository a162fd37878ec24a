/**
 * The KMIP backend: implements the Backend port on a KMIP key manager. Keys map to managed objects as
 * keyRecords.ts describes; every change of a key is committed by revoking its current head, which the
 * server allows once, so replicas sharing the server need no coordination of their own.
 */
import { createPublicKey, randomBytes as nodeRandomBytes, timingSafeEqual, verify as nodeVerify, type KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { algorithmsFor, encryptAlgorithms, signAlgorithms, type EncryptAlgorithm, type MacAlgorithm, type SignAlgorithm } from '../../src/algorithms/registry.js';
import type { Backend, BackendHealth, Capabilities, KeyRef, NewKey, RawCiphertext, SignInput } from '../../src/backend/port.js';
import { HsmBridgeError } from '../../src/errors.js';
import type { KeyName, KeyVersion } from '../../src/keys/names.js';
import { isPaymentPurpose, keyTypes, type KeyMetadata, type KeyPurpose, type KeyState, type KeyType, type KeyVersionInfo } from '../../src/keys/types.js';
import { KmipOperationError, type KmipClient } from './client.js';
import { decodeRecord, encodeRecord, headName, listedVersions, MAX_VERSIONS, OBJECT_GROUP, versionName, type HeadRecord, type VersionRecord } from './keyRecords.js';
import { lifecycleAttributes, type LifecycleAttributes } from './lifecycleAttributes.js';
import { isReason, KmipOperations, type Attribute, type CryptoParameters } from './operations.js';
import { Enum } from './tags.js';
import { hasRsaSignatureLength } from '../../src/algorithms/signatureLength.js';
import { CONFLICT, KeyChanges, type Conflict } from '../../src/backend/keyChanges.js';

const R = Enum.ResultReason;
const Mask = Enum.CryptographicUsageMask;
const { ivLength: GCM_IV_BYTES, tagLength: GCM_TAG_BYTES } = encryptAlgorithms.AES_GCM;
/**
 * A head this old on the server's clock, still Pre-Active or revoked without an Active successor, was left
 * by a writer that stopped: the longest a live writer may take between two steps of one change.
 */
export const SETTLE_MS = 30_000;
/** Tries at a consistent view of a name's heads while other writers keep changing them. */
const SNAPSHOT_TRIES = 4;
/** How long an operation trusts the head it read last; the core's own metadata cache sits in front. */
const HEAD_CACHE_MS = 2000;
/** Reads that meet a key between revoke and activate (one round trip) look again this many times. */
const TRANSITION_READS = 6;


interface Head {
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

/** What this adapter does over KMIP, and the operations each needs the server to serve. */
const Op = Enum.Operation;
const needs = {
  rsa: [Op.CreateKeyPair, Op.Get],
  aes: [Op.Create],
  hmac: [Op.Register],
  sign: [Op.Sign],
  gcm: [Op.Encrypt, Op.Decrypt],
  mac: [Op.MAC],
  lifecycle: [Op.Register, Op.Locate, Op.Get, Op.GetAttributes, Op.Activate, Op.Revoke, Op.Destroy],
} as const;

/** What this adapter offers, given the operations the server serves and the protocol version spoken. */
function offeredCapabilities(has: (ops: readonly number[]) => boolean, client: KmipClient): Capabilities {
  const keyTypes: KeyType[] = [];
  if (has(needs.rsa)) keyTypes.push('RSA_2048', 'RSA_3072', 'RSA_4096');
  if (has(needs.aes)) keyTypes.push('AES_128', 'AES_256');
  if (has(needs.hmac)) keyTypes.push('HMAC_256');
  return {
    keyTypes,
    // PKCS#1 v1.5 only: PyKMIP signs PSS with the longest salt, not the hash-long salt PS256 means.
    // Verification is local, against the public key read from the server.
    sign: has(needs.rsa) && has(needs.sign) ? ['RS256', 'RS384', 'RS512'] : [],
    // Sign takes the message; KMIP 1.4 has Digested Data only for verification.
    signDigest: [],
    // GCM's tag and AAD fields (Authenticated Encryption Tag / Additional Data) exist from KMIP 1.4 on.
    encrypt: has(needs.aes) && has(needs.gcm) && client.speaks(1, 4) ? ['AES_GCM'] : [],
    mac: has(needs.hmac) && has(needs.mac) ? ['HMAC_SHA256'] : [],
    random: false,
    keyAgreement: [],
    payment: { dukpt: [], importKeys: false, exportKeys: false },
  };
}

const hashOf = { sha256: Enum.HashingAlgorithm.SHA_256, sha384: Enum.HashingAlgorithm.SHA_384, sha512: Enum.HashingAlgorithm.SHA_512 } as const;

const unsupported = (what: string) => new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the kmip backend ${what}`);
const decryptionFailed = (cause?: unknown) => new HsmBridgeError('DECRYPTION_FAILED', 'decryption failed', cause === undefined ? undefined : { cause });
const notFound = (name: KeyName) => new HsmBridgeError('KEY_NOT_FOUND', `key ${name} not found`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class KmipBackend implements Backend {
  readonly kind = 'kmip';
  private readonly ops: KmipOperations;
  /** Lifecycle changes of one name run one at a time in this process. */
  private readonly changes = new KeyChanges((name) => this.heads.delete(name as KeyName));
  private readonly heads = new Map<KeyName, { head: Head; at: number }>();
  /** SPKI DER by Public Key identifier: a public key never changes. */
  private readonly spkis = new Map<string, Buffer>();
  /** Public keys by Public Key identifier, for verifying signatures here. */
  private readonly publicKeys = new Map<string, KeyObject>();
  /**
   * Where HMAC keys come from on this server, best first; a path the server refuses is not tried again.
   * PyKMIP: Create refuses HMAC keys, DeriveKey works.
   */
  private hmacSource: 'create' | 'derive' | 'register' = 'create';

  private constructor(
    private readonly client: KmipClient,
    private readonly caps: Capabilities,
    private readonly logger: Logger,
    private readonly timing: LifecycleTiming,
  ) {
    this.ops = new KmipOperations(client);
  }

  /**
   * Asks the server which operations it serves and offers what this adapter builds on them, after
   * checking that its Revoke is the compare-and-swap the lifecycle needs (probeServer).
   */
  static async open(client: KmipClient, logger: Logger, options: { readonly settleMs?: number } = {}): Promise<KmipBackend> {
    const served = await new KmipOperations(client).queryOperations().catch((e: unknown) => {
      if (e instanceof KmipOperationError) return undefined; // no Query: assume the KMIP 1.2 baseline
      throw e;
    });
    const has = (ops: readonly number[]) => served === undefined || ops.every((o) => served.has(o));
    if (!has(needs.lifecycle)) throw new HsmBridgeError('BACKEND_UNAVAILABLE', 'the KMIP server lacks Register, Locate, Get, GetAttributes, Activate, Revoke or Destroy');
    const clockOffsetMs = await probeServer(client, logger);
    return new KmipBackend(client, offeredCapabilities(has, client), logger, { settleMs: options.settleMs ?? SETTLE_MS, clockOffsetMs });
  }

  capabilities(): Capabilities {
    return this.caps;
  }

  health(): Promise<BackendHealth> {
    return this.client.health();
  }

  close(): Promise<void> {
    return this.client.close();
  }

  // --- lifecycle -----------------------------------------------------------------------------------

  createKey(key: NewKey): Promise<KeyMetadata> {
    // 'mac' is both HMAC's purpose and a payment purpose (ISO 9797 / CMAC keys): only the latter is refused.
    if (isPaymentPurpose(key.purpose) && keyTypes[key.type].family !== 'hmac') return Promise.reject(unsupported('does not serve payment keys'));
    // A key no offered algorithm can use (an AES wrap key, an RSA encrypt key on PyKMIP) is not made at all.
    if (!this.serves(key.type, key.purpose)) return Promise.reject(unsupported(`offers no algorithm for ${key.type} keys of purpose ${key.purpose}`));
    const { name } = key;
    return this.lifecycle(name, async () => {
      if (await this.readHead(name)) throw new HsmBridgeError('KEY_ALREADY_EXISTS', `key ${name} already exists`);
      if (await this.clearLeftovers(name) === CONFLICT) return CONFLICT;
      const now = new Date().toISOString();
      const record: HeadRecord = { name, type: key.type, purpose: key.purpose, state: 'enabled', createdAt: now, versions: {}, writtenAt: now };
      const version = await this.makeVersion(record, 1 as KeyVersion);
      const next: HeadRecord = { ...record, versions: { 1: version } };
      const candidate = await this.registerHead(next).catch(async (e: unknown) => {
        await this.discardVersion(version);
        throw e;
      });
      // One Locate without a State filter sees every head of the name at one instant, whatever its state
      // (a Locate per state would miss a head that changes state between them). Of two creators, the
      // later one to register sees the earlier one's head, or a head that replaced it: at most one of
      // them finds only its own. Any other head: withdraw and look again.
      const others = (await this.headIds(name)).filter((u) => u !== candidate);
      if (others.length > 0) {
        if (await this.destroyHead(candidate) === 'gone') await this.discardVersion(version);
        return CONFLICT;
      }
      try {
        await this.ops.activate(candidate);
      } catch (e) {
        // Gone: we stalled past the settle time and another creator removed our head as a leftover.
        if (!isReason(e, R.ItemNotFound)) throw e;
        await this.discardVersion(version);
        return CONFLICT;
      }
      return this.remember({ uid: candidate, record: next });
    });
  }

  rotateKey(name: KeyName): Promise<KeyMetadata> {
    return this.lifecycle(name, async () => {
      const head = await this.requireHead(name);
      const listed = listedVersions(head.record);
      if (listed.length >= MAX_VERSIONS) throw unsupported(`keeps at most ${MAX_VERSIONS} versions of a key`);
      const version = (Math.max(0, ...listed) + 1) as KeyVersion;
      const created = await this.makeVersion(head.record, version);
      return this.commit(head, { ...head.record, versions: { ...head.record.versions, [version]: created } }, [created]);
    });
  }

  setKeyState(name: KeyName, state: KeyState): Promise<KeyMetadata> {
    return this.lifecycle(name, async () => {
      const head = await this.requireHead(name);
      if (head.record.state === state) return this.remember(head);
      return this.commit(head, { ...head.record, state }, []);
    });
  }

  destroyKey(name: KeyName): Promise<void> {
    return this.lifecycle(name, async () => {
      const head = await this.requireHead(name);
      if (head.record.state !== 'disabled') throw new HsmBridgeError('KEY_NOT_DISABLED', `key ${name} must be disabled before it is destroyed`);
      // The tombstone goes up first: a revoked head whose successor is a tombstone reads as destroyed to
      // every reader, so a successor another writer left behind is never activated after this commits.
      const tombstone = await this.registerHead({ ...head.record, basedOn: head.uid, writtenAt: new Date().toISOString(), destroyed: true });
      // The revoke is the destroy's commit point and its atomic check: a change (an enable) committed
      // since we read the head revoked it first, and we start again from that change.
      if (await this.revokeHead(head.uid, Enum.RevocationReasonCode.CessationOfOperation) === CONFLICT) {
        await this.destroyHead(tombstone);
        return CONFLICT;
      }
      this.heads.delete(name);
      for (const v of Object.values(head.record.versions)) await this.discardVersion(v);
      // The revoked head before its tombstone: a destroy that stops in between still reads as one.
      await this.destroyHead(head.uid);
      await this.destroyHead(tombstone);
      return undefined;
    });
  }

  async describeKey(name: KeyName): Promise<KeyMetadata> {
    return this.call(async () => this.remember(await this.requireHead(name)));
  }

  listKeys(): Promise<KeyMetadata[]> {
    return this.call(async () => {
      const found = await this.ops.locate([
        { name: 'Object Group', value: OBJECT_GROUP },
        { name: 'Object Type', value: Enum.ObjectType.SecretData },
        { name: 'State', value: Enum.State.Active },
      ]);
      const byName = new Map<string, Head>();
      for (const head of await mapLimited(found, LIST_CONCURRENCY, (uid) => this.readRecord(uid))) {
        if (!head) continue; // destroyed meanwhile, or not a record of ours
        const seen = byName.get(head.record.name);
        if (!seen || preferred(head, seen)) byName.set(head.record.name, head);
      }
      const heads = [...byName.values()].sort((a, b) => a.record.name.localeCompare(b.record.name));
      const keys = await mapLimited(heads, LIST_CONCURRENCY, (head) => this.remember(head).catch((e: unknown) => {
        if (e instanceof HsmBridgeError && e.code === 'KEY_NOT_FOUND') return undefined; // destroyed while listed
        throw e;
      }));
      return keys.filter((k): k is KeyMetadata => k !== undefined);
    });
  }

  // --- operations ----------------------------------------------------------------------------------

  /** Signs on the server and checks the signature against the version's public key before handing it out. */
  sign(key: KeyRef, algorithm: SignAlgorithm, input: SignInput): Promise<Buffer> {
    if (input.kind === 'digest') return Promise.reject(unsupported('cannot sign a precomputed digest'));
    const p = this.signParameters(algorithm);
    const hash = signAlgorithms[algorithm].hash!;
    return this.withVersion(key, async (v) => {
      const publicKey = await this.publicKeyOf(publicOf(v));
      const signature = await this.ops.sign(v.uid, p, input.data);
      if (!(await verifies(hash, input.data, publicKey, signature))) {
        this.logger.error({ key: key.name, version: key.version, object: v.uid }, 'kmip: the server returned a signature that does not verify under the key version\'s public key');
        throw new HsmBridgeError('INTERNAL', 'unexpected answer from the KMIP server');
      }
      return signature;
    });
  }

  /** Verifies here: the public key is public, and a round trip is saved. */
  verify(key: KeyRef, algorithm: SignAlgorithm, input: SignInput, signature: Buffer): Promise<boolean> {
    if (input.kind === 'digest') return Promise.reject(unsupported('cannot verify over a precomputed digest'));
    this.signParameters(algorithm); // refuses what the server could not have signed
    const hash = signAlgorithms[algorithm].hash!;
    return this.withVersion(key, async (v) => verifies(hash, input.data, await this.publicKeyOf(publicOf(v)), signature));
  }

  encrypt(key: KeyRef, algorithm: EncryptAlgorithm, plaintext: Buffer, aad?: Buffer): Promise<RawCiphertext> {
    if (algorithm !== 'AES_GCM') return Promise.reject(unsupported(`does not support ${algorithm}`));
    // A random 96-bit IV of our own: left to itself PyKMIP would pick a 128-bit one.
    const iv = nodeRandomBytes(GCM_IV_BYTES);
    return this.withVersion(key, async (v) => {
      const out = await this.ops.encrypt(v.uid, gcm, plaintext, iv, aad);
      if (out.tag?.length !== GCM_TAG_BYTES || out.data.length !== plaintext.length) throw new HsmBridgeError('INTERNAL', 'the KMIP server returned a malformed GCM ciphertext');
      return { iv, data: Buffer.concat([out.data, out.tag]) };
    });
  }

  decrypt(key: KeyRef, algorithm: EncryptAlgorithm, ciphertext: RawCiphertext, aad?: Buffer): Promise<Buffer> {
    if (algorithm !== 'AES_GCM') return Promise.reject(unsupported(`does not support ${algorithm}`));
    const { iv, data } = ciphertext;
    if (!iv || iv.length !== GCM_IV_BYTES || data.length < GCM_TAG_BYTES) return Promise.reject(decryptionFailed());
    const body = data.subarray(0, data.length - GCM_TAG_BYTES);
    const tag = data.subarray(data.length - GCM_TAG_BYTES);
    return this.withVersion(key, async (v) => {
      try {
        return await this.ops.decrypt(v.uid, gcm, body, iv, aad, tag);
      } catch (e) {
        // PyKMIP answers a tag mismatch with General Failure: every crypto refusal is the one answer.
        if (isReason(e, R.CryptographicFailure, R.GeneralFailure, R.InvalidField)) throw decryptionFailed(e);
        throw e;
      }
    });
  }

  mac(key: KeyRef, algorithm: MacAlgorithm, data: Buffer): Promise<Buffer> {
    if (algorithm !== 'HMAC_SHA256') return Promise.reject(unsupported(`does not support ${algorithm}`));
    return this.withVersion(key, async (v) => {
      try {
        return await this.ops.mac(v.uid, { cryptographicAlgorithm: Enum.CryptographicAlgorithm.HMAC_SHA256 }, data);
      } catch (e) {
        // PyKMIP refuses to MAC nothing (Permission Denied, "No data to be MACed").
        if (data.length === 0 && e instanceof KmipOperationError) throw unsupported('cannot MAC empty data on this KMIP server');
        throw e;
      }
    });
  }

  async verifyMac(key: KeyRef, algorithm: MacAlgorithm, data: Buffer, mac: Buffer): Promise<boolean> {
    const computed = await this.mac(key, algorithm, data);
    return computed.length === mac.length && timingSafeEqual(computed, mac);
  }

  randomBytes(): Promise<Buffer> {
    return Promise.reject(unsupported('has no random number generator (KMIP RNG Retrieve is not served)'));
  }

  deriveSharedSecret(): Promise<Buffer> {
    return Promise.reject(unsupported('cannot do key agreement'));
  }

  // --- heads: reading and committing -----------------------------------------------------------------

  /**
   * Identifiers of every head of the name, whatever its state, as of one instant: a single Locate (a
   * name's few heads fit in one page, so paging never splits it).
   */
  private headIds(name: KeyName): Promise<string[]> {
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
  private async readRecord(uid: string): Promise<Head | undefined> {
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
  private async readHead(name: KeyName): Promise<Head | undefined> {
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

  private async requireHead(name: KeyName): Promise<Head> {
    const head = await this.readHead(name);
    if (!head) throw notFound(name);
    return head;
  }

  private registerHead(record: HeadRecord): Promise<string> {
    return this.ops.registerSecretData(encodeRecord(record), [
      { name: 'Name', value: headName(record.name) },
      { name: 'Object Group', value: OBJECT_GROUP },
    ]);
  }

  /** Revokes a head: CONFLICT when it is no longer Active (another writer revoked it first). */
  private async revokeHead(uid: string, code: number): Promise<void | Conflict> {
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
  private async destroyHead(uid: string): Promise<'gone' | 'kept'> {
    try {
      await this.ops.destroy(uid);
      return 'gone';
    } catch (e) {
      if (isReason(e, R.ItemNotFound)) return 'gone';
      if (e instanceof KmipOperationError) return 'kept';
      throw e;
    }
  }

  /** Publishes `next` as the head after `base`; the versions in `created` are removed if the change loses. */
  private async commit(base: Head, change: HeadRecord, created: readonly VersionRecord[]): Promise<KeyMetadata | Conflict> {
    const next: HeadRecord = { ...change, basedOn: base.uid, writtenAt: new Date().toISOString() };
    let candidate: string;
    try {
      candidate = await this.registerHead(next);
    } catch (e) {
      for (const v of created) await this.discardVersion(v);
      throw e;
    }
    // A transport failure here leaves it unknown whether the revoke happened: the candidate stays for
    // readers to resolve (readHead activates it once the revoked head shows it was the successor).
    if (await this.revokeHead(base.uid, Enum.RevocationReasonCode.Superseded) === CONFLICT) {
      if (await this.destroyHead(candidate) === 'gone') for (const v of created) await this.discardVersion(v);
      return CONFLICT;
    }
    await this.ops.activate(candidate);
    await this.destroyHead(base.uid);
    return this.remember({ uid: candidate, record: next });
  }

  /**
   * Before a create, with no key under the name: the heads stopped writers and destroys left behind go,
   * then the version objects they list. Only in a consistent view where every head is older than the
   * settle time on the server's clock and none can become the key; else CONFLICT (a writer at work, or a
   * successor readHead will activate). Heads go by a plain Destroy, which fails once a head is Active: a
   * writer that stalled past the settle time and then activated its head keeps it, and its versions.
   */
  private async clearLeftovers(name: KeyName): Promise<void | Conflict> {
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
      await this.discardVersion(v);
    }
    return undefined;
  }

  // --- key objects ---------------------------------------------------------------------------------

  /** Makes, activates and names the objects of one version. */
  private async makeVersion(record: Pick<HeadRecord, 'name' | 'type' | 'purpose'>, version: KeyVersion): Promise<VersionRecord> {
    const info = keyTypes[record.type];
    const name: Attribute = { name: 'Name', value: versionName(record.name, version) };
    const createdAt = new Date().toISOString();
    if (info.family === 'rsa') {
      const masks = record.purpose === 'sign' ? { priv: Mask.Sign, pub: Mask.Verify } : { priv: Mask.Decrypt, pub: Mask.Encrypt };
      const pair = await this.ops.createKeyPair(
        [{ name: 'Cryptographic Algorithm', value: Enum.CryptographicAlgorithm.RSA }, { name: 'Cryptographic Length', value: info.bits }],
        [{ name: 'Cryptographic Usage Mask', value: masks.priv }, name],
        [{ name: 'Cryptographic Usage Mask', value: masks.pub }, name],
      );
      const v = { createdAt, uid: pair.privateUid, publicUid: pair.publicUid };
      await this.activateVersion(v);
      return v;
    }
    const mask = record.purpose === 'mac' ? Mask.MACGenerate | Mask.MACVerify
      : record.purpose === 'wrap' ? Mask.WrapKey | Mask.UnwrapKey
      : Mask.Encrypt | Mask.Decrypt;
    const attributes: Attribute[] = [{ name: 'Cryptographic Usage Mask', value: mask }, name];
    const uid = info.family === 'hmac' ? await this.createHmacKey(info.bits, attributes)
      : await this.ops.create(Enum.ObjectType.SymmetricKey, [
        { name: 'Cryptographic Algorithm', value: Enum.CryptographicAlgorithm.AES },
        { name: 'Cryptographic Length', value: info.bits },
        ...attributes,
      ]);
    const v = { createdAt, uid };
    await this.activateVersion(v);
    return v;
  }

  /**
   * An HMAC key made inside the server: generated by Create where the server can; else derived (HKDF,
   * DeriveKey) from an AES key the server generates for the purpose and destroys after. Only a server
   * that can do neither gets a key from node's CSPRNG, registered and its buffer zeroed: the key then
   * passed through this process, so that is logged once at warn.
   */
  private async createHmacKey(bits: number, attributes: readonly Attribute[]): Promise<string> {
    const template: Attribute[] = [
      { name: 'Cryptographic Algorithm', value: Enum.CryptographicAlgorithm.HMAC_SHA256 },
      { name: 'Cryptographic Length', value: bits },
      ...attributes,
    ];
    const refused = (e: unknown) => isReason(e, R.InvalidField, R.FeatureNotSupported, R.OperationNotSupported);
    if (this.hmacSource === 'create') {
      try {
        return await this.ops.create(Enum.ObjectType.SymmetricKey, template);
      } catch (e) {
        if (!refused(e)) throw e;
        this.hmacSource = 'derive';
        this.logger.info('kmip: the server does not generate HMAC keys; deriving them in the server from a key it generates');
      }
    }
    if (this.hmacSource === 'derive') {
      try {
        return await this.deriveHmacKey(template);
      } catch (e) {
        if (!refused(e)) throw e;
        this.hmacSource = 'register';
        this.logger.warn({ err: e.message, serverMessage: e.resultMessage }, 'kmip: the server can neither generate nor derive HMAC keys; registering keys generated in this process');
      }
    }
    const material = nodeRandomBytes(bits / 8);
    try {
      return await this.ops.registerSymmetricKey(Enum.CryptographicAlgorithm.HMAC_SHA256, bits, material, attributes);
    } finally {
      material.fill(0);
    }
  }

  /** DeriveKey (HKDF-SHA-256, a fresh salt) from a 256-bit AES key made for it; the base is destroyed either way. */
  private async deriveHmacKey(template: readonly Attribute[]): Promise<string> {
    const base = await this.ops.create(Enum.ObjectType.SymmetricKey, [
      { name: 'Cryptographic Algorithm', value: Enum.CryptographicAlgorithm.AES },
      { name: 'Cryptographic Length', value: 256 },
      { name: 'Cryptographic Usage Mask', value: Mask.DeriveKey },
    ]);
    try {
      return await this.ops.deriveKey(base, {
        method: Enum.DerivationMethod.HMAC,
        hashingAlgorithm: Enum.HashingAlgorithm.SHA_256,
        derivationData: Buffer.from('hsm-bridge HMAC key'),
        salt: nodeRandomBytes(32),
      }, template);
    } finally {
      // Never Activated, so Destroy is allowed; one left behind is unnamed and usable only to derive.
      await this.ops.destroy(base).catch((e: unknown) => {
        this.logger.warn({ object: base, err: e instanceof Error ? e.message : String(e) }, 'kmip: could not destroy the base key of a derived HMAC key');
      });
    }
  }

  private async activateVersion(v: VersionRecord): Promise<void> {
    try {
      await this.ops.activate(v.uid);
      if (v.publicUid) await this.ops.activate(v.publicUid);
    } catch (e) {
      await this.discardVersion(v);
      throw e;
    }
  }

  private async discardVersion(v: VersionRecord): Promise<void> {
    await this.discardObject(v.uid);
    if (v.publicUid) await this.discardObject(v.publicUid);
  }

  /** Destroys a version's object, revoking it first when it is Active; one already gone is fine. Never a head (destroyHead). */
  private async discardObject(uid: string): Promise<void> {
    try {
      await this.ops.destroy(uid);
    } catch (e) {
      if (isReason(e, R.ItemNotFound)) return;
      if (!isReason(e, R.PermissionDenied)) throw e;
      try {
        await this.ops.revoke(uid, Enum.RevocationReasonCode.CessationOfOperation);
      } catch (again) {
        if (!isReason(again, R.IllegalOperation)) throw again; // revoked meanwhile
      }
      await this.ops.destroy(uid).catch((last: unknown) => {
        if (!isReason(last, R.ItemNotFound)) throw last;
      });
    }
  }

  // --- internals -----------------------------------------------------------------------------------

  /** Whether an offered algorithm can use keys of this type and purpose. */
  private serves(type: KeyType, purpose: KeyPurpose): boolean {
    const offered: readonly string[] = [...this.caps.sign, ...this.caps.encrypt, ...this.caps.mac, ...(this.caps.keyAgreement.includes(type) ? ['ECDH'] : [])];
    return algorithmsFor(type, purpose).some((a) => offered.includes(a));
  }

  private signParameters(algorithm: SignAlgorithm): CryptoParameters {
    const info = signAlgorithms[algorithm];
    if (info.scheme !== 'pkcs1' || info.hash === null || !(info.hash in hashOf)) throw unsupported(`does not support ${algorithm}`);
    return {
      paddingMethod: Enum.PaddingMethod.PKCS1v15,
      hashingAlgorithm: hashOf[info.hash as keyof typeof hashOf],
      cryptographicAlgorithm: Enum.CryptographicAlgorithm.RSA,
    };
  }

  /** The metadata of a head (public keys read once per version), remembered for the operations. */
  private async remember(head: Head): Promise<KeyMetadata> {
    this.heads.set(head.record.name, { head, at: Date.now() });
    const { record } = head;
    const versions: KeyVersionInfo[] = [];
    for (const version of listedVersions(record)) {
      const v = record.versions[version]!;
      versions.push(v.publicUid ? { version, createdAt: v.createdAt, publicKeySpki: await this.spkiOf(v.publicUid, record.name) } : { version, createdAt: v.createdAt });
    }
    const primary = versions.at(-1);
    if (!primary) throw notFound(record.name);
    return {
      name: record.name, type: record.type, purpose: record.purpose, state: record.state, createdAt: record.createdAt,
      primaryVersion: primary.version, versions,
    };
  }

  /** A version's public key as SPKI DER; a public key destroyed meanwhile (with its key) is KEY_NOT_FOUND. */
  private async spkiOf(publicUid: string, name: KeyName): Promise<Buffer> {
    try {
      return await this.readSpki(publicUid);
    } catch (e) {
      if (isReason(e, R.ItemNotFound)) throw notFound(name);
      throw e;
    }
  }

  /** The public key for verifying signatures here; Item Not Found stays a KMIP error, for withVersion to look again. */
  private async publicKeyOf(publicUid: string): Promise<KeyObject> {
    let key = this.publicKeys.get(publicUid);
    if (!key) {
      key = createPublicKey({ key: await this.readSpki(publicUid), format: 'der', type: 'spki' });
      this.publicKeys.set(publicUid, key);
    }
    return key;
  }

  private async readSpki(publicUid: string): Promise<Buffer> {
    const cached = this.spkis.get(publicUid);
    if (cached) return cached;
    const { formatType, material } = await this.ops.get(publicUid);
    const type = formatType === Enum.KeyFormatType.PKCS1 ? 'pkcs1' : formatType === Enum.KeyFormatType.X509 ? 'spki' : undefined;
    if (!type) throw new HsmBridgeError('INTERNAL', 'the KMIP server returned a public key in a format we do not read');
    const spki = createPublicKey({ key: material, format: 'der', type }).export({ format: 'der', type: 'spki' });
    this.spkis.set(publicUid, spki);
    return spki;
  }

  /**
   * Runs an operation with the objects of a key version, from the head read last if it is fresh. An
   * object the server no longer has (destroyed by another replica) sends us back to the head once.
   */
  private withVersion<T>(key: KeyRef, operation: (v: VersionRecord) => Promise<T>): Promise<T> {
    return this.call(async () => {
      for (let attempt = 0; ; attempt++) {
        const cached = this.heads.get(key.name);
        const head = attempt === 0 && cached && Date.now() - cached.at < HEAD_CACHE_MS && cached.head.record.versions[key.version]
          ? cached.head
          : await this.requireHead(key.name);
        this.heads.set(key.name, { head, at: Date.now() });
        const v = head.record.versions[key.version];
        if (!v) throw new HsmBridgeError('KEY_VERSION_NOT_FOUND', `key ${key.name} has no version ${key.version}`);
        try {
          return await operation(v);
        } catch (e) {
          if (!isReason(e, R.ItemNotFound)) throw e;
          this.heads.delete(key.name);
          if (attempt > 0) throw notFound(key.name);
        }
      }
    });
  }

  /** A lifecycle change (src/backend/keyChanges.ts), errors mapped. */
  private lifecycle<T>(name: KeyName, change: () => Promise<T | Conflict>): Promise<T> {
    return this.call(() => this.changes.run(name, change));
  }

  /** Maps every failure to an HsmBridgeError; the server's own message goes to the log only. */
  private async call<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (e) {
      if (e instanceof HsmBridgeError) throw e;
      if (e instanceof KmipOperationError) {
        this.logger.error({ err: e.message, serverMessage: e.resultMessage }, 'kmip: the server refused an operation');
        throw new HsmBridgeError('INTERNAL', 'the KMIP server refused the operation', { cause: e });
      }
      this.logger.error({ err: e }, 'kmip: unexpected error');
      throw new HsmBridgeError('INTERNAL', 'internal error', { cause: e });
    }
  }
}

const gcm: CryptoParameters = { blockCipherMode: Enum.BlockCipherMode.GCM, cryptographicAlgorithm: Enum.CryptographicAlgorithm.AES, tagLength: GCM_TAG_BYTES };

/** Most per-key reads of listKeys in flight at once: the client's pool queues the rest anyway. */
const LIST_CONCURRENCY = 8;

/** `fn` over `items`, at most `limit` at a time, results in order. */
async function mapLimited<T, U>(items: readonly T[], limit: number, fn: (item: T) => Promise<U>): Promise<U[]> {
  const results = new Array<U>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** RSA PKCS#1 v1.5 verification on libuv's thread pool; a signature that cannot even be parsed is invalid. */
function verifies(hash: string, data: Buffer, key: KeyObject, signature: Buffer): Promise<boolean> {
  if (!hasRsaSignatureLength(key, signature)) return Promise.resolve(false);
  return new Promise((resolve) => {
    try {
      nodeVerify(hash, data, key, signature, (e, ok) => resolve(!e && ok));
    } catch {
      resolve(false);
    }
  });
}

/** Between two heads of one name, the one every replica picks: the newer record, then the smaller identifier. */
function preferred(a: Head, b: Head): boolean {
  if (a.record.writtenAt !== b.record.writtenAt) return a.record.writtenAt > b.record.writtenAt;
  return a.uid < b.uid;
}

function publicOf(v: VersionRecord): string {
  if (!v.publicUid) throw new HsmBridgeError('INTERNAL', 'key version has no public key object');
  return v.publicUid;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const set = new Set(a);
  return set.size === new Set(b).size && b.every((x) => set.has(x));
}

/** The scratch object the start-up probe makes and destroys. */
const PROBE_NAME = 'hsmb-probe';

/**
 * Checks at start what the commit protocol relies on and KMIP leaves to the server: a second Revoke of a
 * revoked object fails (PyKMIP: Illegal Operation), so of two writers revoking one head exactly one wins.
 * On a scratch Secret Data, whose Initial Date also gives the server's clock: returns the server's clock
 * minus ours, in milliseconds.
 */
async function probeServer(client: KmipClient, logger: Logger): Promise<number> {
  const ops = new KmipOperations(client);
  const sentAt = Date.now();
  const uid = await ops.registerSecretData(Buffer.from('hsm-bridge start-up probe'), [{ name: 'Name', value: PROBE_NAME }]);
  const answeredAt = Date.now();
  try {
    const { initialDate } = await lifecycleAttributes(client, uid);
    await ops.activate(uid);
    await ops.revoke(uid, Enum.RevocationReasonCode.CessationOfOperation);
    const revokedTwice = await ops.revoke(uid, Enum.RevocationReasonCode.CessationOfOperation).then(() => true, (e: unknown) => {
      if (e instanceof KmipOperationError) return false;
      throw e;
    });
    if (revokedTwice) {
      throw new HsmBridgeError('BACKEND_UNAVAILABLE', 'the KMIP server accepts a second Revoke of a revoked object; hsm-bridge commits key changes by a Revoke that succeeds once, so it cannot run on this server');
    }
    // Initial Date counts whole seconds: the server's clock read [initialDate, initialDate + 1 s) then.
    return initialDate + 500 - (sentAt + answeredAt) / 2;
  } finally {
    await ops.destroy(uid).catch((e: unknown) => {
      logger.warn({ object: uid, err: e instanceof Error ? e.message : String(e) }, 'kmip: could not remove the start-up probe object');
    });
  }
}
