/**
 * The KMIP backend: implements the Backend port on a KMIP key manager. Keys map to managed objects as
 * keyRecords.ts describes; every change of a key is committed by revoking its current head, which the
 * server allows once, so replicas sharing the server need no coordination of their own.
 */
import { createPublicKey, randomBytes as nodeRandomBytes, timingSafeEqual, verify as nodeVerify, type KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { algorithmsFor, encryptAlgorithms, signAlgorithms, type EncryptAlgorithm, type MacAlgorithm, type SignAlgorithm } from '../../src/algorithms/registry.js';
import type { Backend, BackendGauges, BackendHealth, BlockKey, Capabilities, KeyRef, NewKey, RawCiphertext, SignInput, TransientKey } from '../../src/backend/port.js';
import { isTransientKey } from '../../src/backend/port.js';
import { HsmBridgeError } from '../../src/errors.js';
import { blockLength } from '../../src/payment/crypto/blockCiphers.js';
import type { KeyName, KeyVersion } from '../../src/keys/names.js';
import { checkMinDecryptionVersion, isPaymentPurpose, keyTypes, type KeyMetadata, type KeyPurpose, type KeyState, type KeyType, type KeyVersionInfo } from '../../src/keys/types.js';
import type { CeremonyState } from '../../src/ceremonies/record.js';
import { KmipOperationError, type KmipClient } from './client.js';
import { offeredCapabilities, needs } from './capabilities.js';
import { KeyHeads, preferred, SETTLE_MS, type Head, type LifecycleTiming } from './keyHeads.js';
import { listedVersions, MAX_VERSIONS, OBJECT_GROUP, type HeadRecord, type VersionRecord } from './keyRecords.js';
import { isReason, KmipOperations, type CryptoParameters } from './operations.js';
import { probeServer } from './serverProbe.js';
import { VersionObjects } from './versionObjects.js';
import { Enum } from './tags.js';
import { hasRsaSignatureLength } from '../../src/algorithms/signatureLength.js';
import { CONFLICT, KeyChanges, type Conflict } from '../../src/backend/keyChanges.js';

const R = Enum.ResultReason;
const { ivLength: GCM_IV_BYTES, tagLength: GCM_TAG_BYTES } = encryptAlgorithms.AES_GCM;
/** How long an operation trusts the head it read last; the core's own metadata cache sits in front. */
const HEAD_CACHE_MS = 2000;

const hashOf = { sha256: Enum.HashingAlgorithm.SHA_256, sha384: Enum.HashingAlgorithm.SHA_384, sha512: Enum.HashingAlgorithm.SHA_512 } as const;

const unsupported = (what: string) => new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the kmip backend ${what}`);
const decryptionFailed = (cause?: unknown) => new HsmBridgeError('DECRYPTION_FAILED', 'decryption failed', cause === undefined ? undefined : { cause });
const notFound = (name: KeyName) => new HsmBridgeError('KEY_NOT_FOUND', `key ${name} not found`);
const incompatible = (name: KeyName, purpose: KeyPurpose, what: string) => new HsmBridgeError('INCOMPATIBLE_KEY', `key ${name} (purpose ${purpose}) cannot ${what}`);

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
  private readonly versions: VersionObjects;
  private readonly keyHeads: KeyHeads;

  private constructor(
    private readonly client: KmipClient,
    private readonly caps: Capabilities,
    private readonly logger: Logger,
    timing: LifecycleTiming,
  ) {
    this.ops = new KmipOperations(client);
    this.versions = new VersionObjects(this.ops, logger);
    this.keyHeads = new KeyHeads(client, this.ops, this.versions, logger, timing);
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

  gauges(): BackendGauges {
    return { sessionPool: this.client.poolCounts() };
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
      if (await this.keyHeads.readHead(name)) throw new HsmBridgeError('KEY_ALREADY_EXISTS', `key ${name} already exists`);
      if (await this.keyHeads.clearLeftovers(name) === CONFLICT) return CONFLICT;
      const now = new Date().toISOString();
      const record: HeadRecord = { name, type: key.type, purpose: key.purpose, state: 'enabled', createdAt: now, versions: {}, writtenAt: now };
      const version = await this.versions.makeVersion(record, 1 as KeyVersion);
      const next: HeadRecord = { ...record, versions: { 1: version } };
      const candidate = await this.keyHeads.registerHead(next).catch(async (e: unknown) => {
        await this.versions.discardVersion(version);
        throw e;
      });
      // One Locate without a State filter sees every head of the name at one instant, whatever its state
      // (a Locate per state would miss a head that changes state between them). Of two creators, the
      // later one to register sees the earlier one's head, or a head that replaced it: at most one of
      // them finds only its own. Any other head: withdraw and look again.
      const others = (await this.keyHeads.headIds(name)).filter((u) => u !== candidate);
      if (others.length > 0) {
        if (await this.keyHeads.destroyHead(candidate) === 'gone') await this.versions.discardVersion(version);
        return CONFLICT;
      }
      try {
        await this.ops.activate(candidate);
      } catch (e) {
        // Gone: we stalled past the settle time and another creator removed our head as a leftover.
        if (!isReason(e, R.ItemNotFound)) throw e;
        await this.versions.discardVersion(version);
        return CONFLICT;
      }
      return this.remember({ uid: candidate, record: next });
    });
  }

  rotateKey(name: KeyName): Promise<KeyMetadata> {
    return this.lifecycle(name, async () => {
      const head = await this.keyHeads.requireHead(name);
      const listed = listedVersions(head.record);
      if (listed.length >= MAX_VERSIONS) throw unsupported(`keeps at most ${MAX_VERSIONS} versions of a key`);
      const version = (Math.max(0, ...listed) + 1) as KeyVersion;
      const created = await this.versions.makeVersion(head.record, version);
      return this.commit(head, { ...head.record, versions: { ...head.record.versions, [version]: created } }, [created]);
    });
  }

  setKeyState(name: KeyName, state: KeyState): Promise<KeyMetadata> {
    return this.lifecycle(name, async () => {
      const head = await this.keyHeads.requireHead(name);
      if (head.record.state === state) return this.remember(head);
      return this.commit(head, { ...head.record, state }, []);
    });
  }

  destroyKey(name: KeyName): Promise<void> {
    return this.lifecycle(name, async () => {
      const head = await this.keyHeads.requireHead(name);
      if (head.record.state !== 'disabled') throw new HsmBridgeError('KEY_NOT_DISABLED', `key ${name} must be disabled before it is destroyed`);
      // The tombstone goes up first: a revoked head whose successor is a tombstone reads as destroyed to
      // every reader, so a successor another writer left behind is never activated after this commits.
      const tombstone = await this.keyHeads.registerHead({ ...head.record, basedOn: head.uid, writtenAt: new Date().toISOString(), destroyed: true });
      // The revoke is the destroy's commit point and its atomic check: a change (an enable) committed
      // since we read the head revoked it first, and we start again from that change.
      if (await this.keyHeads.revokeHead(head.uid, Enum.RevocationReasonCode.CessationOfOperation) === CONFLICT) {
        await this.keyHeads.destroyHead(tombstone);
        return CONFLICT;
      }
      this.heads.delete(name);
      for (const v of Object.values(head.record.versions)) await this.versions.discardVersion(v);
      // The revoked head before its tombstone: a destroy that stops in between still reads as one.
      await this.keyHeads.destroyHead(head.uid);
      await this.keyHeads.destroyHead(tombstone);
      return undefined;
    });
  }

  /**
   * Checked against the head the commit revokes, not against what the core read earlier: the key may have
   * been destroyed and made again since, and a value above the newest version would let a trim destroy
   * every version.
   */
  setMinDecryptionVersion(name: KeyName, version: KeyVersion): Promise<KeyMetadata> {
    return this.lifecycle(name, async () => {
      const head = await this.keyHeads.requireHead(name);
      checkMinDecryptionVersion(name, listedVersions(head.record), version);
      if ((head.record.minDecryptionVersion ?? 1) === version) return this.remember(head);
      const { minDecryptionVersion: _, ...rest } = head.record;
      return this.commit(head, version > 1 ? { ...rest, minDecryptionVersion: version } : rest, []);
    });
  }

  /**
   * Commits a head without the retired versions, then destroys their objects. The commit's revoke is the
   * compare-and-swap: a minDecryptionVersion lowered by another replica since we read the head makes it
   * fail, and we start again from that head. A trim that stops after its commit leaves the objects as
   * leftovers (README: "Not done"); no head lists them, so they are never used again. The primary version,
   * the newest, is never trimmed, whatever the head says.
   */
  trimKey(name: KeyName): Promise<KeyMetadata> {
    return this.lifecycle(name, async () => {
      const head = await this.keyHeads.requireHead(name);
      const listed = listedVersions(head.record);
      const min = Math.min(head.record.minDecryptionVersion ?? 1, Math.max(1, ...listed));
      const retired = listed.filter((v) => v < min);
      if (retired.length === 0) return this.remember(head);
      const kept = Object.fromEntries(Object.entries(head.record.versions).filter(([v]) => Number(v) >= min));
      const next = await this.keyHeads.commit(head, { ...head.record, versions: kept }, []);
      if (next === CONFLICT) return CONFLICT;
      for (const v of retired) await this.versions.discardVersion(head.record.versions[v]!);
      return this.remember(next);
    });
  }

  async describeKey(name: KeyName): Promise<KeyMetadata> {
    return this.call(async () => this.remember(await this.keyHeads.requireHead(name)));
  }

  listKeys(): Promise<KeyMetadata[]> {
    return this.call(async () => {
      const found = await this.ops.locate([
        { name: 'Object Group', value: OBJECT_GROUP },
        { name: 'Object Type', value: Enum.ObjectType.SecretData },
        { name: 'State', value: Enum.State.Active },
      ]);
      const byName = new Map<string, Head>();
      for (const head of await mapLimited(found, LIST_CONCURRENCY, (uid) => this.keyHeads.readRecord(uid))) {
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
    return this.withVersion(key, async (v, record) => {
      // An fpe key's mask allows Encrypt, so the server would do GCM with it: the purpose is checked here.
      if (record.purpose !== 'encrypt') throw incompatible(key.name, record.purpose, 'encrypt with AES_GCM');
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
    return this.withVersion(key, async (v, record) => {
      if (record.purpose !== 'encrypt') throw incompatible(key.name, record.purpose, 'decrypt with AES_GCM');
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

  // --- payment primitives: none (createKey refuses payment keys, capabilities list no payment support) ---

  /**
   * FF1's AES (capability fpe), on keys of purpose fpe only. Raw ECB would be Padding Method None, which
   * PyKMIP refuses (and no padding method at all); PKCS5 is the padding KMIP servers commonly serve for
   * ECB, and on whole blocks it appends one whole block (16 x 0x10) whose ciphertext is dropped: the blocks
   * before it are the ECB of ours. So PKCS5 always, not a start-up probe for None: one extra block per
   * call buys one request shape, the one tested, and no per-server state. The dropped block cannot be
   * checked without the key, but its length can: any other answer (a server that pads whole blocks
   * otherwise, or not at all) is refused as INTERNAL rather than guessed at.
   */
  encryptBlocks(key: BlockKey, data: Buffer): Promise<Buffer> {
    if (isTransientKey(key)) return Promise.reject(unsupported('has no payment operations (transient keys)'));
    if (!this.caps.fpe) return Promise.reject(unsupported('cannot encrypt raw blocks on this KMIP server'));
    return this.withVersion(key, async (v, record) => {
      if (record.purpose !== 'fpe') throw incompatible(key.name, record.purpose, 'encrypt raw blocks (only fpe keys do)');
      const out = await this.ops.encrypt(v.uid, ecbPkcs5, data, undefined);
      if (out.tag || out.data.length !== data.length + blockLength('aes')) {
        throw this.client.unexpectedAnswer(Enum.Operation.Encrypt, `ECB with PKCS5 padding of ${data.length} bytes answered ${out.data.length} bytes${out.tag ? ' and a tag' : ''}, not one padding block more`);
      }
      return out.data.subarray(0, data.length);
    });
  }

  decryptBlocks(): Promise<Buffer> {
    return Promise.reject(unsupported('has no payment operations (decryptBlocks)'));
  }

  deriveDukptKey(): Promise<TransientKey> {
    return Promise.reject(unsupported('has no payment operations (deriveDukptKey)'));
  }

  async releaseTransientKey(): Promise<void> {
    // deriveDukptKey never makes one
  }

  importKey(): Promise<KeyMetadata> {
    return Promise.reject(unsupported('has no payment operations (importKey)'));
  }

  exportKey(): Promise<Buffer> {
    return Promise.reject(unsupported('has no payment operations (exportKey)'));
  }

  importWrappedKey(): Promise<KeyMetadata> {
    return Promise.reject(unsupported('cannot import wrapped keys'));
  }

  startCeremony(): Promise<void> {
    return Promise.reject(unsupported('has no key ceremonies'));
  }

  describeCeremony(): Promise<CeremonyState> {
    return Promise.reject(unsupported('has no key ceremonies'));
  }

  async listCeremonies(): Promise<CeremonyState[]> {
    return [];
  }

  stageComponent(): Promise<CeremonyState> {
    return Promise.reject(unsupported('has no key ceremonies'));
  }

  stagedComponents(): Promise<Buffer[]> {
    return Promise.reject(unsupported('has no key ceremonies'));
  }

  endCeremony(): Promise<void> {
    return Promise.reject(unsupported('has no key ceremonies'));
  }

  // --- internals -----------------------------------------------------------------------------------

  /** Commits a change (keyHeads.ts) and describes the key it leaves. */
  private async commit(base: Head, change: HeadRecord, created: readonly VersionRecord[]): Promise<KeyMetadata | Conflict> {
    const head = await this.keyHeads.commit(base, change, created);
    return head === CONFLICT ? CONFLICT : this.remember(head);
  }

  /** Whether an offered algorithm can use keys of this type and purpose. */
  private serves(type: KeyType, purpose: KeyPurpose): boolean {
    const offered: readonly string[] = [
      ...this.caps.sign, ...this.caps.encrypt, ...this.caps.mac,
      ...(this.caps.keyAgreement.includes(type) ? ['ECDH'] : []),
      ...(this.caps.fpe ? ['FF1'] : []),
    ];
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
      ...(record.minDecryptionVersion === undefined ? {} : { minDecryptionVersion: record.minDecryptionVersion as KeyVersion }),
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
  private withVersion<T>(key: KeyRef, operation: (v: VersionRecord, record: HeadRecord) => Promise<T>): Promise<T> {
    return this.call(async () => {
      for (let attempt = 0; ; attempt++) {
        const cached = this.heads.get(key.name);
        const head = attempt === 0 && cached && Date.now() - cached.at < HEAD_CACHE_MS && cached.head.record.versions[key.version]
          ? cached.head
          : await this.keyHeads.requireHead(key.name);
        this.heads.set(key.name, { head, at: Date.now() });
        const v = head.record.versions[key.version];
        if (!v) throw new HsmBridgeError('KEY_VERSION_NOT_FOUND', `key ${key.name} has no version ${key.version}`);
        try {
          return await operation(v, head.record);
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
const ecbPkcs5: CryptoParameters = { blockCipherMode: Enum.BlockCipherMode.ECB, paddingMethod: Enum.PaddingMethod.PKCS5, cryptographicAlgorithm: Enum.CryptographicAlgorithm.AES };


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

function publicOf(v: VersionRecord): string {
  if (!v.publicUid) throw new HsmBridgeError('INTERNAL', 'key version has no public key object');
  return v.publicUid;
}
