/**
 * What a token worker does with its one session: every key operation and every attempt at a lifecycle
 * change, in synchronous PKCS#11 calls that block this worker only (README.md, "Threads"). The main
 * thread's backend (../backend.ts) checks arguments, serialises lifecycle changes per key name, and
 * retries an attempt that answered a ConflictResult.
 */
import { timingSafeEqual } from 'node:crypto';
import type { EncryptAlgorithm, MacAlgorithm, SignAlgorithm } from '../../../src/algorithms/registry.js';
import { CONFLICT, type Conflict } from '../../../src/backend/keyChanges.js';
import type { DukptDerivation, ImportTarget, KeyRef, NewKey, RawCiphertext, SignInput, WrappedKey } from '../../../src/backend/port.js';
import type { CeremonyId, CeremonyPlan, CeremonyState, ComponentEntry } from '../../../src/ceremonies/record.js';
import { HsmBridgeError } from '../../../src/errors.js';
import type { KeyName, KeyVersion } from '../../../src/keys/names.js';
import { checkMinDecryptionVersion, isAsymmetric, keyTypes, paymentAttributesOf, type KeyMetadata, type KeyState, type KeyType, type KeyVersionInfo } from '../../../src/keys/types.js';
import { gcmDecrypt, gcmEncrypt } from '../aesGcm.js';
import { deriveAesDukpt, deriveTdesDukpt } from '../dukptDerivation.js';
import { ecbInToken } from '../ecb.js';
import { CKR, ckrOf, isHandleStale, isSignatureInvalid } from '../errors.js';
import { HandleCache, type CachedVersion } from '../handleCache.js';
import { aesKeyUnwrap, aesKeyWrap, ecdhSharedSecret } from '../joseMechanisms.js';
import { exportKeyValue } from '../keyExport.js';
import * as ceremonies from '../ceremonies.js';
import { findKeyObjects, listedVersions, listKeyNames, newKeyObjectId, readMetadata, type CompanionRole, type MetadataRecord, type VersionHandles } from '../keyObjects.js';
import { unwrapTransportKey, unwrapVersionObjects } from '../keyUnwrap.js';
import { signatureLength, TokenMechanisms } from '../mechanisms.js';
import { notNull, type Handle, type Pkcs11Api } from '../module.js';
import { OaepDecryption } from '../oaepDecryption.js';
import { macInToken } from '../paymentMacs.js';
import { readPublicKeySpki } from '../publicKey.js';
import { commitRevision, commitWithObjects, destroyQuietly, destroySessionObject, isAbandoned, removeKeyObjects, removeMetadata, requireMetadata, requireSettled, settledCurrent } from '../revisions.js';
import type { DerivedKey } from '../sessionObjects.js';
import { makeVersionObjects, type TokenTraits } from '../versionObjects.js';
import type { ConflictResult, TokenLog } from './protocol.js';

/** What the control worker learnt about the token at start, handed to every session worker. */
export interface TokenProfile {
  readonly mechanisms: readonly number[];
  readonly rsaBits?: { readonly min: number; readonly max: number };
  readonly hasRng: boolean;
  readonly traits: TokenTraits;
  /** Whether the token does OAEP with SHA-256 itself; undefined until the first RSA decryption tells. */
  readonly oaepSha256Native: boolean | undefined;
  /** The key types whose wrapped imports the token unwraps inside (keyUnwrap.ts). */
  readonly unwrapsInside: readonly KeyType[];
}

/** Makes the token objects of one version under `id` (keyUnwrap.ts, versionObjects.ts); on an error, leaves none. */
type VersionMaker = (
  record: Pick<MetadataRecord, 'type' | 'purpose' | 'exportable' | 'keyUsage'>,
  name: KeyName,
  id: Buffer,
) => Promise<{ handles: Handle[]; companions: CompanionRole[] }>;

/** A block key as it reaches the worker: a stored version, or the handle of a derived session object. */
type WorkerBlockKey = KeyRef | { readonly transientHandle: Buffer; readonly epoch: number; readonly family: 'aes' | 'tdes' };

const conflict = (): ConflictResult => ({ conflict: true });
type Attempt<T> = T | ConflictResult;
const asAttempt = <T>(outcome: T | Conflict): Attempt<T> => (outcome === CONFLICT ? conflict() : outcome);

export class KeyOperations {
  private readonly handles = new HandleCache();
  private readonly mechanisms: TokenMechanisms;
  private readonly oaep: OaepDecryption;

  constructor(
    private readonly api: Pkcs11Api,
    /** The worker's session now (it is replaced after a failed call). */
    private readonly session: () => Handle,
    private readonly profile: TokenProfile,
    private readonly log: TokenLog,
  ) {
    this.mechanisms = TokenMechanisms.of(profile.mechanisms, profile.rsaBits, profile.hasRng);
    this.oaep = new OaepDecryption(log, profile.traits.rawRsaDecrypt, profile.oaepSha256Native);
  }

  /** Another thread changed the key, or lost a change to another replica: look its objects up again. */
  forget(name: KeyName): void {
    this.handles.forget(name);
  }

  /** The session was replaced: handles stay valid (they belong to the token), but play safe after a reconnect. */
  clear(): void {
    this.handles.clear();
  }

  // --- lifecycle attempts --------------------------------------------------------------------------

  /** Version 1 of a new key: generated, or from clear material (a TR-31 import, zeroed by the caller). */
  create(key: NewKey, material: Buffer | undefined): Promise<Attempt<KeyMetadata>> {
    return this.createWith(key, this.generated(material));
  }

  rotate(name: KeyName): Promise<Attempt<KeyMetadata>> {
    return this.rotateWith(name, this.generated(undefined));
  }

  /**
   * A version from a wrapped key (keyUnwrap.ts): version 1 of a new key, or the next version of an
   * existing key of the same type. Nothing is unwrapped before the key's state is checked.
   */
  importWrapped(target: ImportTarget, wrapped: WrappedKey): Promise<Attempt<KeyMetadata>> {
    const setting = { traits: this.profile.traits, inside: this.profile.unwrapsInside, log: this.log };
    const make: VersionMaker = async (record, name, id) => {
      const transport = await this.withKey(wrapped.wrappingKey, (session, h) => {
        // Only an import wrapping key opens the outer layer: an RSA key of purpose wrap.
        const wrapping = readMetadata(this.api, session, wrapped.wrappingKey.name)?.current.record;
        if (!wrapping || wrapping.purpose !== 'wrap' || keyTypes[wrapping.type].family !== 'rsa') {
          throw new HsmBridgeError('INCOMPATIBLE_KEY', 'the wrapping key is not an import wrapping key');
        }
        return unwrapTransportKey(this.api, session, h.key, wrapped);
      });
      try {
        return await unwrapVersionObjects(this.api, this.session(), setting, record, name, id, transport, wrapped.wrappedTarget);
      } finally {
        destroySessionObject(this.api, this.session(), transport);
      }
    };
    return target.kind === 'create' ? this.createWith(target.key, make) : this.rotateWith(target.name, make, target.type);
  }

  /** Objects generated in the token, or made from clear material. */
  private generated(material: Buffer | undefined): VersionMaker {
    return (record, name, id) => makeVersionObjects(this.api, this.session(), this.log, this.profile.traits, record, name, id, material);
  }

  private async createWith(key: NewKey, make: VersionMaker): Promise<Attempt<KeyMetadata>> {
    const { api } = this;
    const session = this.session();
    const stored = readMetadata(api, session, key.name);
    if (stored) {
      if (settledCurrent(stored) === CONFLICT) return conflict(); // a create elsewhere may still withdraw
      throw new HsmBridgeError('KEY_ALREADY_EXISTS', `key ${key.name} already exists`);
    }
    // Objects under this name without metadata are left over from an interrupted create or destroy,
    // or belong to a create running on another replica right now: only the old ones go.
    removeKeyObjects(api, session, key.name, new Set());
    this.handles.forget(key.name);
    const now = new Date().toISOString();
    const id = newKeyObjectId(1 as KeyVersion);
    const record = { type: key.type, purpose: key.purpose, ...paymentAttributesOf(key) };
    const created = await make(record, key.name, id);
    const version = { createdAt: now, id: id.toString('hex'), ...(created.companions.length ? { companions: created.companions } : {}) };
    const change = { ...record, state: 'enabled', createdAt: now, versions: { 1: version } } as const;
    return asAttempt(await this.commitWith(created.handles, () => commitRevision(api, session, key.name, undefined, change), key.name));
  }

  private async rotateWith(name: KeyName, make: VersionMaker, type?: KeyType): Promise<Attempt<KeyMetadata>> {
    const { api } = this;
    const session = this.session();
    const base = requireSettled(api, session, name);
    if (base === CONFLICT) return conflict();
    if (type !== undefined && base.record.type !== type) throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${name} is a ${base.record.type} key, not ${type}`);
    // A version number is never reused within one key (old ciphertexts name their version); the random
    // part of the ID keeps this writer's objects apart from a concurrent rotation's.
    const version = (Math.max(0, ...listedVersions(base.record)) + 1) as KeyVersion;
    const id = newKeyObjectId(version);
    const created = await make(base.record, name, id);
    const entry = { createdAt: new Date().toISOString(), id: id.toString('hex'), ...(created.companions.length ? { companions: created.companions } : {}) };
    const versions = { ...base.record.versions, [version]: entry };
    return asAttempt(await this.commitWith(created.handles, () => commitRevision(api, session, name, base, { ...base.record, versions }), name));
  }

  async setState(name: KeyName, state: KeyState): Promise<Attempt<KeyMetadata>> {
    const session = this.session();
    const base = requireSettled(this.api, session, name);
    if (base === CONFLICT) return conflict();
    if (base.record.state === state) return this.describe(name);
    return asAttempt(await this.commitWith([], () => commitRevision(this.api, session, name, base, { ...base.record, state }), name));
  }

  /**
   * Stores the version below which versions are retired; 1 is stored as nothing (records before the field
   * read so too). The version is checked against the revision the change builds on, not against what the
   * core read earlier: the key may have been destroyed and made again since, and a value above the newest
   * version would let a trim destroy every version.
   */
  async setMinDecryptionVersion(name: KeyName, version: KeyVersion): Promise<Attempt<KeyMetadata>> {
    const session = this.session();
    const base = requireSettled(this.api, session, name);
    if (base === CONFLICT) return conflict();
    checkMinDecryptionVersion(name, listedVersions(base.record), version);
    if ((base.record.minDecryptionVersion ?? 1) === version) return this.describe(name);
    const { minDecryptionVersion: _, ...rest } = base.record;
    const change = version > 1 ? { ...rest, minDecryptionVersion: version } : rest;
    return asAttempt(await this.commitWith([], () => commitRevision(this.api, session, name, base, change), name));
  }

  /**
   * One attempt at trimming: a revision without the versions below the minDecryptionVersion of the
   * revision it builds on (a concurrent change of that value makes it lose and start again from the new
   * one), then, once it stands, the objects of those versions destroyed. The primary version, the highest,
   * is never trimmed, whatever the record says, so rotate still numbers after it (numbers are never reused).
   */
  async trim(name: KeyName): Promise<Attempt<KeyMetadata>> {
    const { api } = this;
    const session = this.session();
    const base = requireSettled(api, session, name);
    if (base === CONFLICT) return conflict();
    const min = Math.min(base.record.minDecryptionVersion ?? 1, Math.max(1, ...listedVersions(base.record)));
    const entries = Object.entries(base.record.versions);
    const doomed = new Set(entries.filter(([v]) => Number(v) < min).map(([, listed]) => listed.id));
    if (doomed.size > 0) {
      const committed = await commitRevision(api, session, name, base, { ...base.record, versions: Object.fromEntries(entries.filter(([v]) => Number(v) >= min)) });
      if (!committed) return conflict();
    }
    // The base revision, kept until the next change, still lists them: its readers find the versions gone.
    // Older objects below the minimum that nothing lists are what an interrupted trim left behind; young
    // ones may be a create's on another replica (the key destroyed and made again meanwhile), and stay.
    for (const o of findKeyObjects(api, session, name)) {
      if (o.parsed.version < min && (doomed.has(o.id) || isAbandoned(o, doomed))) destroyQuietly(api, session, o.handle);
    }
    this.handles.forget(name);
    return this.describe(name);
  }

  /**
   * One attempt at destroying a key. `removed` lists the CKA_IDs whose metadata earlier attempts of the
   * same destroy already removed; a conflict answers the grown list for the next attempt.
   */
  destroy(name: KeyName, removed: readonly string[] | undefined): { readonly removed: string[] } | { readonly done: true } {
    const { api } = this;
    const session = this.session();
    const stored = readMetadata(api, session, name);
    if (!stored && !removed) throw new HsmBridgeError('KEY_NOT_FOUND', `key ${name} not found`);
    let gone = new Set(removed ?? []);
    if (stored) {
      const base = settledCurrent(stored);
      if (base === CONFLICT) return { removed: [...gone] };
      // Checked under the name's lock, so an enable that ran just before cannot slip past it. An enable still
      // being checked may yet withdraw (its base is what an earlier attempt of this destroy removed): wait.
      if (base.record.state !== 'disabled') {
        if (stored.unsettled) return { removed: [...gone] };
        throw new HsmBridgeError('KEY_NOT_DISABLED', `key ${name} must be disabled before it is destroyed`);
      }
      // Metadata first: from that moment the key does not exist, whatever happens to the rest.
      gone = new Set([...gone, ...removeMetadata(api, session, stored)]);
      this.handles.forget(name);
      // A replica that committed a change (an enable) before we removed its base keeps the key alive:
      // start again from its revision (KEY_NOT_DISABLED, or destroy that one too if still disabled).
      if (readMetadata(api, session, name)) return { removed: [...gone] };
    }
    removeKeyObjects(api, session, name, gone);
    return { done: true };
  }

  describeKey(name: KeyName): KeyMetadata {
    return this.describe(name);
  }

  listKeys(): KeyMetadata[] {
    const keys: KeyMetadata[] = [];
    for (const name of listKeyNames(this.api, this.session())) {
      try {
        keys.push(this.describe(name as KeyName));
      } catch (e) {
        if (!(e instanceof HsmBridgeError)) throw e;
        // One damaged key (a companion object missing) must not hide the others; it fails on its own.
        if (e.code === 'INTERNAL') this.log.error({ key: name }, 'pkcs11: key objects are missing from the HSM; left out of the list');
        else if (e.code !== 'KEY_NOT_FOUND') throw e; // KEY_NOT_FOUND: destroyed meanwhile, or not ours
      }
    }
    return keys;
  }

  // --- operations ----------------------------------------------------------------------------------

  sign(key: KeyRef, algorithm: SignAlgorithm, input: SignInput): Promise<Buffer> {
    const plan = this.mechanisms.signPlan(algorithm, input);
    return this.withKey(key, (session, h) => {
      this.api.C_SignInit(session, plan.mechanism, h.key);
      return this.api.C_Sign(session, notNull(plan.data), Buffer.alloc(signatureLength(key.type)));
    });
  }

  /**
   * Verification runs in the HSM, with the public key object: the same mechanism path as signing, so
   * digest input works for every algorithm exactly as it does for sign (node:crypto cannot verify PSS or
   * PKCS#1 over a precomputed digest).
   */
  verify(key: KeyRef, algorithm: SignAlgorithm, input: SignInput, signature: Buffer): Promise<boolean> {
    const plan = this.mechanisms.signPlan(algorithm, input);
    return this.withKey(key, (session, h) => {
      this.api.C_VerifyInit(session, plan.mechanism, publicHandle(h));
      try {
        this.api.C_Verify(session, notNull(plan.data), signature);
        return true;
      } catch (e) {
        if (isSignatureInvalid(e)) return false;
        throw e;
      }
    });
  }

  /** AES-GCM (the main thread draws the IV) and AES key wrap; RSA-OAEP encryption runs in the main thread. */
  encrypt(key: KeyRef, algorithm: EncryptAlgorithm, plaintext: Buffer, iv: Buffer | undefined, aad: Buffer | undefined): Promise<RawCiphertext> {
    if (algorithm === 'AES_KW') return this.withKey(key, async (session, h) => ({ data: await aesKeyWrap(this.api, session, h.key, plaintext) }));
    return this.withKey(key, (session, h) => gcmEncrypt(this.api, session, h.key, iv!, plaintext, aad));
  }

  decrypt(key: KeyRef, algorithm: EncryptAlgorithm, ciphertext: RawCiphertext, aad: Buffer | undefined): Promise<Buffer> {
    if (algorithm === 'RSA_OAEP_SHA256' || algorithm === 'RSA_OAEP_SHA1') {
      const k = keyTypes[key.type].bits / 8;
      return this.withKey(key, (session, h) =>
        algorithm === 'RSA_OAEP_SHA1' ? this.oaep.sha1(this.api, session, h.key, ciphertext.data, k) : this.oaep.sha256(this.api, session, h.key, ciphertext.data, k));
    }
    if (algorithm === 'AES_KW') return this.withKey(key, (session, h) => aesKeyUnwrap(this.api, session, h.key, ciphertext.data));
    return this.withKey(key, (session, h) => gcmDecrypt(this.api, session, h.key, ciphertext.iv!, ciphertext.data, aad));
  }

  /** Every MAC in the token (paymentMacs.ts); on payment keys also the core's check values and TR-31 derivations. */
  mac(key: KeyRef, algorithm: MacAlgorithm, data: Buffer): Promise<Buffer> {
    return this.withKey(key, (session, h) => this.macOf(session, key, h, algorithm, data));
  }

  /** Recomputes the MAC in the HSM and compares in constant time (the core has checked the length). */
  verifyMac(key: KeyRef, algorithm: MacAlgorithm, data: Buffer, mac: Buffer): Promise<boolean> {
    return this.withKey(key, async (session, h) => {
      const expected = await this.macOf(session, key, h, algorithm, data);
      try {
        return expected.length === mac.length && timingSafeEqual(expected, mac);
      } finally {
        expected.fill(0);
      }
    });
  }

  /** Fills and returns the buffer it is given: no copy of the bytes is left behind in the worker. */
  randomBytes(length: number): Buffer {
    return this.api.C_GenerateRandom(this.session(), Buffer.alloc(length));
  }

  /** The version's public key (SPKI DER), for RSA-OAEP encryption in the main thread. */
  publicKeySpki(key: KeyRef): Promise<Buffer> {
    return this.withKey(key, (session, h) => this.publicSpki(session, key.type, h));
  }

  /** ECB over whole blocks (the core checked the length) with a stored key version (payment, FF1) or a derived session key. */
  async ecb(key: WorkerBlockKey, direction: 'encrypt' | 'decrypt', data: Buffer): Promise<Buffer> {
    if ('transientHandle' in key) {
      try {
        return ecbInToken(this.api, this.session(), key.transientHandle, key.family, direction, data);
      } catch (e) {
        // Its session was lost (an HSM reconnect): the request can be retried from the start.
        if (isHandleStale(e)) throw new HsmBridgeError('BACKEND_UNAVAILABLE', 'the derived key was lost with its HSM session; retry', { cause: e });
        throw e;
      }
    }
    const family = keyTypes[key.type].family;
    if (family !== 'aes' && family !== 'tdes') throw new HsmBridgeError('INCOMPATIBLE_KEY', 'block operations need a TDES or AES key');
    return this.withKey(key, (session, h) => {
      try {
        return ecbInToken(this.api, session, h.key, family, direction, data);
      } catch (e) {
        // The token has the mechanism (capabilities); the key's CKA_ALLOWED_MECHANISMS or usage refuse it:
        // not a payment key or FF1 key that does ECB (an encrypt key is no ECB oracle; an FF1 key only encrypts).
        const code = ckrOf(e);
        if (code === CKR.MECHANISM_INVALID || code === CKR.KEY_FUNCTION_NOT_PERMITTED) {
          throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${key.name} does not allow block operations`, { cause: e });
        }
        throw e;
      }
    });
  }

  /** A DUKPT transaction key as a session object of this worker's session (the worker holds the session for it). */
  deriveDukpt(bdk: KeyRef, derivation: DukptDerivation): Promise<Omit<DerivedKey, 'epoch'>> {
    return this.withKey(bdk, (session, h) => {
      if (derivation.scheme === 'tdes') {
        if (bdk.type !== 'TDES_2KEY') throw new HsmBridgeError('INCOMPATIBLE_KEY', 'TDES DUKPT needs a double-length (TDES_2KEY) BDK');
        return deriveTdesDukpt(this.api, session, h, derivation.ksn);
      }
      return deriveAesDukpt(this.api, session, { type: bdk.type, handle: h.key }, derivation.ksn, derivation.workingKey);
    });
  }

  exportKey(key: KeyRef): Promise<Buffer> {
    return this.withKey(key, (session, h) => {
      if (!requireMetadata(this.api, session, key.name).current.record.exportable) {
        throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${key.name} is not exportable`);
      }
      return exportKeyValue(this.api, session, h.key, keyTypes[key.type].bits / 8);
    });
  }

  /** Raw ECDH in the HSM; Z comes out through a session object (joseMechanisms.ts). The core has checked the peer key. */
  deriveSharedSecret(key: KeyRef, peerPublicKeySpki: Buffer): Promise<Buffer> {
    const fieldLength = Math.ceil(keyTypes[key.type].bits / 8);
    return this.withKey(key, (session, h) => ecdhSharedSecret(this.api, session, h.key, peerPublicKeySpki, fieldLength));
  }

  // --- key ceremonies (ceremonies.ts) -------------------------------------------------------------

  startCeremony(plan: CeremonyPlan): void {
    ceremonies.startCeremony(this.api, this.session(), plan);
  }

  describeCeremony(id: CeremonyId): CeremonyState {
    return ceremonies.describeCeremony(this.api, this.session(), id);
  }

  listCeremonies(): CeremonyState[] {
    return ceremonies.listCeremonies(this.api, this.session());
  }

  stageComponent(id: CeremonyId, entry: ComponentEntry, component: Buffer): Promise<CeremonyState> {
    return ceremonies.stageComponent(this.api, this.session(), id, entry, component);
  }

  stagedComponents(id: CeremonyId): Buffer[] {
    return ceremonies.stagedComponents(this.api, this.session(), id);
  }

  endCeremony(id: CeremonyId): void {
    ceremonies.endCeremony(this.api, this.session(), id);
  }

  // --- internals -----------------------------------------------------------------------------------

  /**
   * The token has every mechanism the capabilities list, so a refusal of the mechanism comes from the
   * key's CKA_ALLOWED_MECHANISMS or usage flags: a MAC its usage does not compute (an M3 key asked for
   * ISO 9797-1 algorithm 1), or a kind of key that computes no MAC.
   */
  private async macOf(session: Handle, key: KeyRef, h: CachedVersion, algorithm: MacAlgorithm, data: Buffer): Promise<Buffer> {
    try {
      return await macInToken(this.api, session, h, algorithm, data);
    } catch (e) {
      const code = ckrOf(e);
      if (code === CKR.MECHANISM_INVALID || code === CKR.KEY_FUNCTION_NOT_PERMITTED) {
        throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${key.name} does not allow ${algorithm}`, { cause: e });
      }
      throw e;
    }
  }

  /** Commits a change whose new key objects are `created` (removed if the commit fails or loses), and describes the key. */
  private async commitWith(created: readonly Handle[], commit: () => Promise<boolean>, name: KeyName): Promise<KeyMetadata | Conflict> {
    return (await commitWithObjects(this.api, this.session(), created, commit)) ? this.describe(name) : CONFLICT;
  }

  /**
   * Runs an operation with the handles of a key version, from the cache or found anew. A handle the HSM
   * calls invalid (the object was deleted, or recreated by another replica) is looked up once more.
   */
  private async withKey<T>(key: KeyRef, operation: (session: Handle, handles: CachedVersion) => T | Promise<T>): Promise<T> {
    const session = this.session();
    for (let attempt = 0; ; attempt++) {
      const handles = this.handles.of(this.api, session, key);
      try {
        return await operation(session, handles);
      } catch (e) {
        if (!isHandleStale(e)) throw e;
        this.handles.delete(key.name, key.version);
        if (attempt > 0) throw new HsmBridgeError('KEY_NOT_FOUND', `key ${key.name} no longer exists`, { cause: e });
      }
    }
  }

  private publicSpki(session: Handle, type: KeyType, h: CachedVersion): Buffer {
    h.spki ??= readPublicKeySpki(this.api, session, publicHandle(h), type);
    return h.spki;
  }

  /**
   * The key as stored in the token (see keyObjects.ts for what counts as existing). Handles and public
   * keys come from the cache while the metadata still lists the same CKA_ID for the version (handleCache.ts).
   */
  private describe(name: KeyName): KeyMetadata {
    const { api } = this;
    const session = this.session();
    const record = requireMetadata(api, session, name).current.record;
    const asymmetric = isAsymmetric(record.type);
    const versions: KeyVersionInfo[] = [];
    for (const version of listedVersions(record)) {
      const listed = record.versions[version]!;
      const handles = this.handles.listed(api, session, name, version, listed, asymmetric);
      if (!handles) continue; // listed, but its objects are gone (an interrupted destroy)
      const { createdAt } = listed;
      versions.push(asymmetric ? { version, createdAt, publicKeySpki: this.publicSpki(session, record.type, handles) } : { version, createdAt });
    }
    const primary = versions.at(-1);
    if (!primary) throw new HsmBridgeError('KEY_NOT_FOUND', `key ${name} not found`);
    return {
      name, type: record.type, purpose: record.purpose, state: record.state, createdAt: record.createdAt,
      ...paymentAttributesOf(record),
      primaryVersion: primary.version,
      ...(record.minDecryptionVersion ? { minDecryptionVersion: record.minDecryptionVersion } : {}),
      versions,
    };
  }
}

/** The core's rule (KeyService.updateKey), checked again where the change is made: at most the primary version, and a listed one. */
function publicHandle(h: VersionHandles): Handle {
  if (!h.publicKey) throw new HsmBridgeError('INTERNAL', 'public key object missing');
  return h.publicKey;
}
