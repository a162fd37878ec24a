/**
 * The KMIP backend: implements the Backend port on a KMIP key manager. Keys map to managed objects as
 * keyRecords.ts describes; every change of a key is committed by revoking its current head, which the
 * server allows once, so replicas sharing the server need no coordination of their own.
 */
import { createPublicKey, randomBytes as nodeRandomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { signAlgorithms, type EncryptAlgorithm, type MacAlgorithm, type SignAlgorithm } from '../../src/algorithms/registry.js';
import type { Backend, BackendHealth, Capabilities, KeyRef, NewKey, RawCiphertext, SignInput } from '../../src/backend/port.js';
import { HsmBridgeError } from '../../src/errors.js';
import type { KeyName, KeyVersion } from '../../src/keys/names.js';
import { isPaymentPurpose, keyTypes, type KeyMetadata, type KeyState, type KeyType, type KeyVersionInfo } from '../../src/keys/types.js';
import { KmipOperationError, type KmipClient } from './client.js';
import { decodeRecord, encodeRecord, headName, listedVersions, OBJECT_GROUP, versionName, type HeadRecord, type VersionRecord } from './keyRecords.js';
import { isReason, KmipOperations, type Attribute, type CryptoParameters } from './operations.js';
import { Enum } from './tags.js';

const R = Enum.ResultReason;
const Mask = Enum.CryptographicUsageMask;
const GCM_IV_BYTES = 12;
const GCM_TAG_BYTES = 16;
/** Tries of a lifecycle change that keeps losing to other replicas' changes of the same key. */
const MAX_LIFECYCLE_ATTEMPTS = 8;
/** A head left Pre-Active this long was left by a writer that crashed (allows for clock skew). */
export const SETTLE_MS = 30_000;
/** How long an operation trusts the head it read last; the core's own metadata cache sits in front. */
const HEAD_CACHE_MS = 2000;
/** Reads that meet a key between revoke and activate (one round trip) look again this many times. */
const TRANSITION_READS = 6;

const CONFLICT = Symbol('conflict');
type Conflict = typeof CONFLICT;

interface Head {
  readonly uid: string;
  readonly record: HeadRecord;
}

/** What this adapter does over KMIP, and the operations each needs the server to serve. */
const Op = Enum.Operation;
const needs = {
  rsa: [Op.CreateKeyPair, Op.Get],
  aes: [Op.Create],
  hmac: [Op.Register],
  sign: [Op.Sign, Op.SignatureVerify],
  gcm: [Op.Encrypt, Op.Decrypt],
  mac: [Op.MAC],
  lifecycle: [Op.Register, Op.Locate, Op.Get, Op.Activate, Op.Revoke, Op.Destroy],
} as const;

const hashOf = { sha256: Enum.HashingAlgorithm.SHA_256, sha384: Enum.HashingAlgorithm.SHA_384, sha512: Enum.HashingAlgorithm.SHA_512 } as const;

const unsupported = (what: string) => new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the kmip backend ${what}`);
const decryptionFailed = (cause?: unknown) => new HsmBridgeError('DECRYPTION_FAILED', 'decryption failed', cause === undefined ? undefined : { cause });
const notFound = (name: KeyName) => new HsmBridgeError('KEY_NOT_FOUND', `key ${name} not found`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const backoffMs = (attempt: number) => Math.min(500, 5 * 2 ** attempt) * (0.5 + Math.random());

export class KmipBackend implements Backend {
  readonly kind = 'kmip';
  private readonly ops: KmipOperations;
  /** Lifecycle changes of one name run one at a time in this process. */
  private readonly locks = new Map<KeyName, Promise<unknown>>();
  private readonly heads = new Map<KeyName, { head: Head; at: number }>();
  /** SPKI DER by Public Key identifier: a public key never changes. */
  private readonly spkis = new Map<string, Buffer>();
  /** Set once the server refused to generate an HMAC key (PyKMIP): such keys are then registered. */
  private registerHmacKeys = false;

  private constructor(
    private readonly client: KmipClient,
    private readonly caps: Capabilities,
    private readonly logger: Logger,
  ) {
    this.ops = new KmipOperations(client);
  }

  /** Asks the server which operations it serves and offers what this adapter builds on them. */
  static async open(client: KmipClient, logger: Logger): Promise<KmipBackend> {
    const served = await new KmipOperations(client).queryOperations().catch((e: unknown) => {
      if (e instanceof KmipOperationError) return undefined; // no Query: assume the KMIP 1.2 baseline
      throw e;
    });
    const has = (ops: readonly number[]) => served === undefined || ops.every((o) => served.has(o));
    if (!has(needs.lifecycle)) throw new HsmBridgeError('BACKEND_UNAVAILABLE', 'the KMIP server lacks Register, Locate, Get, Activate, Revoke or Destroy');
    const keyTypes: KeyType[] = [];
    if (has(needs.rsa)) keyTypes.push('RSA_2048', 'RSA_3072', 'RSA_4096');
    if (has(needs.aes)) keyTypes.push('AES_128', 'AES_256');
    if (has(needs.hmac)) keyTypes.push('HMAC_256');
    const rsaSign = has(needs.rsa) && has(needs.sign);
    const caps: Capabilities = {
      keyTypes,
      // PKCS#1 v1.5 only: PyKMIP signs PSS with the longest salt, not the hash-long salt PS256 means.
      sign: rsaSign ? ['RS256', 'RS384', 'RS512'] : [],
      // Sign takes the message; KMIP 1.4 has Digested Data only for verification.
      signDigest: [],
      encrypt: has(needs.aes) && has(needs.gcm) ? ['AES_GCM'] : [],
      mac: has(needs.hmac) && has(needs.mac) ? ['HMAC_SHA256'] : [],
      random: false,
      keyAgreement: [],
      payment: { dukpt: [], importKeys: false, exportKeys: false },
    };
    return new KmipBackend(client, caps, logger);
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
      // Another creator's head (or a key created meanwhile) wins over ours: withdraw and look again.
      const others = (await this.headIds(name, Enum.State.Active, Enum.State.PreActive)).filter((u) => u !== candidate);
      if (others.length > 0) {
        await this.discardObject(candidate);
        await this.discardVersion(version);
        return CONFLICT;
      }
      await this.ops.activate(candidate);
      return this.remember({ uid: candidate, record: next });
    });
  }

  rotateKey(name: KeyName): Promise<KeyMetadata> {
    return this.lifecycle(name, async () => {
      const head = await this.requireHead(name);
      const version = (Math.max(0, ...listedVersions(head.record)) + 1) as KeyVersion;
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
      // The revoke is the destroy's commit point and its atomic check: a change (an enable) committed
      // since we read the head revoked it first, and we start again from that change.
      if (await this.revokeHead(head.uid, Enum.RevocationReasonCode.CessationOfOperation) === CONFLICT) return CONFLICT;
      this.heads.delete(name);
      for (const v of Object.values(head.record.versions)) await this.discardVersion(v);
      await this.discardObject(head.uid);
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
      for (const uid of found) {
        const head = await this.readRecord(uid);
        if (!head) continue; // destroyed meanwhile, or not a record of ours
        const seen = byName.get(head.record.name);
        if (!seen || preferred(head, seen)) byName.set(head.record.name, head);
      }
      const keys: KeyMetadata[] = [];
      for (const head of [...byName.values()].sort((a, b) => a.record.name.localeCompare(b.record.name))) {
        try {
          keys.push(await this.remember(head));
        } catch (e) {
          if (!(e instanceof HsmBridgeError) || e.code !== 'KEY_NOT_FOUND') throw e;
        }
      }
      return keys;
    });
  }

  // --- operations ----------------------------------------------------------------------------------

  sign(key: KeyRef, algorithm: SignAlgorithm, input: SignInput): Promise<Buffer> {
    if (input.kind === 'digest') return Promise.reject(unsupported('cannot sign a precomputed digest'));
    const p = this.signParameters(algorithm);
    return this.withVersion(key, (v) => this.ops.sign(v.uid, p, input.data));
  }

  verify(key: KeyRef, algorithm: SignAlgorithm, input: SignInput, signature: Buffer): Promise<boolean> {
    if (input.kind === 'digest') return Promise.reject(unsupported('cannot verify over a precomputed digest'));
    const p = this.signParameters(algorithm);
    return this.withVersion(key, (v) => this.ops.signatureVerify(publicOf(v), p, input.data, signature));
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

  /** Identifiers of the name's heads in any of `states`. */
  private async headIds(name: KeyName, ...states: number[]): Promise<string[]> {
    const found: string[] = [];
    for (const state of states) {
      found.push(...(await this.ops.locate([
        { name: 'Name', value: headName(name) },
        { name: 'Object Type', value: Enum.ObjectType.SecretData },
        { name: 'State', value: state },
      ])));
    }
    return found;
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
   * The key's Active head, or undefined when it has none. A reader that arrives between a writer's revoke
   * and activate looks again; a next head its writer left Pre-Active by crashing there is activated
   * (any reader may: Activate succeeds once), as long as the head it replaced is still only revoked.
   */
  private async readHead(name: KeyName): Promise<Head | undefined> {
    for (let attempt = 0; attempt < TRANSITION_READS; attempt++) {
      const active = (await Promise.all((await this.headIds(name, Enum.State.Active)).map((u) => this.readRecord(u))))
        .filter((h): h is Head => h !== undefined && h.record.name === name);
      if (active.length > 0) {
        if (active.length > 1) this.logger.warn({ key: name, heads: active.map((h) => h.uid) }, 'kmip: a key has more than one active head; using one by a fixed rule');
        return active.reduce((a, b) => (preferred(a, b) ? a : b));
      }
      const pending = (await Promise.all((await this.headIds(name, Enum.State.PreActive)).map((u) => this.readRecord(u))))
        .filter((h): h is Head => h !== undefined && h.record.name === name && h.record.basedOn !== undefined);
      if (pending.length === 0) return undefined;
      const now = Date.now();
      if (pending.every((h) => now - Date.parse(h.record.writtenAt) > SETTLE_MS)) {
        const revoked = new Set(await this.headIds(name, Enum.State.Deactivated));
        const orphan = pending.filter((h) => revoked.has(h.record.basedOn!)).sort((a, b) => (preferred(a, b) ? -1 : 1))[0];
        if (!orphan) return undefined; // the replaced head is gone: the key was destroyed meanwhile
        this.logger.warn({ key: name, head: orphan.uid }, 'kmip: activating a key head whose writer stopped after revoking the previous one');
        await this.ops.activate(orphan.uid).catch(() => undefined);
        continue;
      }
      await sleep(20 * (attempt + 1));
    }
    throw new HsmBridgeError('BACKEND_UNAVAILABLE', `key ${name} is being changed; retry`);
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
      await this.discardObject(candidate);
      for (const v of created) await this.discardVersion(v);
      return CONFLICT;
    }
    await this.ops.activate(candidate);
    await this.discardObject(base.uid);
    return this.remember({ uid: candidate, record: next });
  }

  /**
   * Before a create: heads a crashed creator left Pre-Active, and revoked heads a crashed destroy left
   * behind, with the objects they list, go. A younger one may belong to a writer at work: CONFLICT.
   */
  private async clearLeftovers(name: KeyName): Promise<void | Conflict> {
    const now = Date.now();
    for (const uid of await this.headIds(name, Enum.State.PreActive, Enum.State.Deactivated)) {
      const head = await this.readRecord(uid);
      if (!head) continue;
      if (now - Date.parse(head.record.writtenAt) <= SETTLE_MS) return CONFLICT;
      this.logger.warn({ key: name, head: uid }, 'kmip: removing a key head left by an interrupted change');
      // No Active head and nothing young pending: no live head lists these versions any more.
      for (const v of Object.values(head.record.versions)) await this.discardVersion(v);
      await this.discardObject(uid);
    }
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
   * An HMAC key generated by the server where it can; PyKMIP generates only cipher keys, so there the
   * key comes from node's CSPRNG, is registered, and its buffer is zeroed.
   */
  private async createHmacKey(bits: number, attributes: readonly Attribute[]): Promise<string> {
    const algorithm: Attribute = { name: 'Cryptographic Algorithm', value: Enum.CryptographicAlgorithm.HMAC_SHA256 };
    if (!this.registerHmacKeys) {
      try {
        return await this.ops.create(Enum.ObjectType.SymmetricKey, [algorithm, { name: 'Cryptographic Length', value: bits }, ...attributes]);
      } catch (e) {
        if (!isReason(e, R.InvalidField, R.FeatureNotSupported, R.OperationNotSupported)) throw e;
        this.registerHmacKeys = true;
        this.logger.info('kmip: the server does not generate HMAC keys; registering keys generated in process');
      }
    }
    const material = nodeRandomBytes(bits / 8);
    try {
      return await this.ops.registerSymmetricKey(Enum.CryptographicAlgorithm.HMAC_SHA256, bits, material, attributes);
    } finally {
      material.fill(0);
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

  /** Destroys an object, revoking it first when it is Active; one already gone is fine. */
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
      versions.push(v.publicUid ? { version, createdAt: v.createdAt, publicKeySpki: await this.spkiOf(v.publicUid) } : { version, createdAt: v.createdAt });
    }
    const primary = versions.at(-1);
    if (!primary) throw notFound(record.name);
    return {
      name: record.name, type: record.type, purpose: record.purpose, state: record.state, createdAt: record.createdAt,
      ...(record.exportable ? { exportable: true } : {}),
      ...(record.modeOfUse ? { modeOfUse: record.modeOfUse } : {}),
      primaryVersion: primary.version, versions,
    };
  }

  private async spkiOf(publicUid: string): Promise<Buffer> {
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

  /** A lifecycle change: one at a time per name here; a change that lost to another replica runs again. */
  private lifecycle<T>(name: KeyName, change: () => Promise<T | Conflict>): Promise<T> {
    const previous = this.locks.get(name) ?? Promise.resolve();
    const result = previous.catch(() => undefined).then(() => this.call(() => this.untilSettled(name, change)));
    const tail = result.catch(() => undefined);
    this.locks.set(name, tail);
    void tail.then(() => {
      if (this.locks.get(name) === tail) this.locks.delete(name);
    });
    return result;
  }

  private async untilSettled<T>(name: KeyName, change: () => Promise<T | Conflict>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const outcome = await change();
      if (outcome !== CONFLICT) return outcome;
      this.heads.delete(name);
      if (attempt === MAX_LIFECYCLE_ATTEMPTS) throw new HsmBridgeError('BACKEND_UNAVAILABLE', `key ${name} is being changed by other replicas at the same time; retry`);
      await sleep(backoffMs(attempt));
    }
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

/** Between two heads of one name, the one every replica picks: the newer record, then the smaller identifier. */
function preferred(a: Head, b: Head): boolean {
  if (a.record.writtenAt !== b.record.writtenAt) return a.record.writtenAt > b.record.writtenAt;
  return a.uid < b.uid;
}

function publicOf(v: VersionRecord): string {
  if (!v.publicUid) throw new HsmBridgeError('INTERNAL', 'key version has no public key object');
  return v.publicUid;
}
