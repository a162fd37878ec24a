/**
 * The software backend: keys generated and used with node:crypto inside this process, persisted in a
 * keystore file sealed under a master key. For trying hsm-bridge out on a machine with no HSM; the keys
 * live in process memory, which is exactly what an HSM exists to prevent.
 *
 * Every change is written to the file (atomically) before the in-memory state changes and before the
 * promise resolves, and changes run one at a time, so the file and memory never disagree.
 */
import { createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import {
  allMacAlgorithms,
  allSignAlgorithms,
  encryptAlgorithms,
  type EncryptAlgorithm,
  type MacAlgorithm,
  type SignAlgorithm,
} from '../../src/algorithms/registry.js';
import type {
  Backend,
  BackendGauges,
  BackendHealth,
  BlockKey,
  Capabilities,
  DukptDerivation,
  ImportTarget,
  KeyRef,
  NewKey,
  RawCiphertext,
  SignInput,
  TransientKey,
  WrappedKey,
} from '../../src/backend/port.js';
import { isTransientKey, wrappingSchemes } from '../../src/backend/port.js';
import type { CeremonyId, CeremonyPlan, CeremonyState, ComponentEntry } from '../../src/ceremonies/record.js';
import { HsmBridgeError, invalid } from '../../src/errors.js';
import type { KeyName, KeyVersion } from '../../src/keys/names.js';
import { allKeyTypes, checkMinDecryptionVersion, keyTypes, paymentAttributesOf, type KeyMetadata, type KeyPurpose, type KeyState, type KeyType } from '../../src/keys/types.js';
import { writeFileAtomic } from '../../src/files/writeFileAtomic.js';
import { blockLength, ecb, type BlockFamily, type Direction } from '../../src/payment/crypto/blockCiphers.js';
import { aesGcmDecrypt, aesGcmEncrypt, aesKeyUnwrap, aesKeyWrap, ecdh, rsaOaepDecrypt, rsaOaepEncrypt, unwrapWrappedKey } from './ciphers.js';
import { newCeremony, openComponents, stateOf, withComponent, type StoredCeremony } from './ceremonyRecords.js';
import { deriveDukptPinKey } from './dukpt.js';
import { generateKeys, importClearKey, importKeyMaterial, type VersionKeys } from './keyMaterial.js';
import {
  mayBeExportable,
  readKeystore,
  resealVersion,
  sealVersion,
  serializeKeystore,
  toMetadata,
  unsealCeremonies,
  unsealKeystore,
  type KeyEntry,
  type StoredKey,
} from './keystoreFile.js';
import { acquireLock, type HeldLock } from './lockFile.js';
import { loadMasterKey } from './masterKey.js';
import { computeMac, macMatches } from './macs.js';
import { makeMasterKeyCheck, type Sealed } from './sealing.js';
import { blockFamilyOf, checkBlockUse, checkMacUse } from './paymentKeyUse.js';
import { digestSignAlgorithms, sign, verify } from './signing.js';
import { TransientKeys } from './transientKeys.js';

const randomBytesAsync = promisify(randomBytes);

export interface SoftwareBackendOptions {
  /** Absolute path of the keystore file. */
  readonly keystorePath: string;
  readonly masterKeyEnv: string;
  readonly masterKeyFile: string;
  readonly env: NodeJS.ProcessEnv;
}

const capabilities: Capabilities = {
  keyTypes: allKeyTypes,
  sign: allSignAlgorithms,
  signDigest: digestSignAlgorithms,
  encrypt: ['AES_GCM', 'RSA_OAEP_SHA256', 'RSA_OAEP_SHA1', 'AES_KW'],
  mac: allMacAlgorithms,
  random: true,
  keyAgreement: ['EC_P256', 'EC_P384'],
  payment: { dukpt: ['tdes', 'aes'], importKeys: true, exportKeys: true },
  // Everything happens in this process: a wrapped key is unwrapped here, and exists in clear for the call.
  keyImport: { wrappings: wrappingSchemes, unwrapsInside: [], ceremonies: true },
  fpe: true,
};

type KeyPair = Extract<VersionKeys, { kind: 'pair' }>;

/** The service's import wrapping key (BYOK): used only by importWrappedKey. */
const isImportWrappingKey = (key: { type: KeyType; purpose: KeyPurpose }) => keyTypes[key.type].family === 'rsa' && key.purpose === 'wrap';


export async function openSoftwareBackend(options: SoftwareBackendOptions, logger: Logger): Promise<Backend> {
  await mkdir(dirname(options.keystorePath), { recursive: true, mode: 0o700 });
  const lock = await acquireLock(`${options.keystorePath}.lock`);
  try {
    const doc = await readKeystore(options.keystorePath);
    const masterKey = await loadMasterKey(
      { env: options.env, envName: options.masterKeyEnv, file: options.masterKeyFile, keystoreExists: doc !== undefined },
      logger,
    );
    const backend = new SoftwareBackend(options.keystorePath, masterKey, doc?.masterKeyCheck ?? makeMasterKeyCheck(masterKey), lock, logger);
    if (doc) {
      backend.entries = unsealKeystore(options.keystorePath, doc, masterKey);
      backend.ceremonies = unsealCeremonies(options.keystorePath, doc, masterKey);
    } else {
      await backend.persist(backend); // a new keystore exists, with its master key check, from the first start
    }
    logger.info(
      { keystorePath: options.keystorePath, keys: backend.entries.size, ceremonies: backend.ceremonies.size },
      'software backend: keystore opened',
    );
    return backend;
  } catch (e) {
    await lock.release();
    throw e;
  }
}

/** What the keystore file holds; a change edits a copy of it (see SoftwareBackend.change). */
interface KeystoreState {
  readonly entries: ReadonlyMap<KeyName, KeyEntry>;
  readonly ceremonies: ReadonlyMap<CeremonyId, StoredCeremony>;
}

interface Draft {
  readonly entries: Map<KeyName, KeyEntry>;
  readonly ceremonies: Map<CeremonyId, StoredCeremony>;
}

class SoftwareBackend implements Backend, KeystoreState {
  readonly kind = 'software';
  entries: ReadonlyMap<KeyName, KeyEntry> = new Map();
  ceremonies: ReadonlyMap<CeremonyId, StoredCeremony> = new Map();
  private writes: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly transientKeys = new TransientKeys();

  constructor(
    private readonly path: string,
    private readonly masterKey: KeyObject,
    private readonly masterKeyCheck: Sealed,
    private readonly lock: HeldLock,
    private readonly logger: Logger,
  ) {}

  capabilities(): Capabilities {
    return capabilities;
  }

  /** In-process: no sessions or connections to report. */
  gauges(): BackendGauges {
    return {};
  }

  async health(): Promise<BackendHealth> {
    return this.closed ? { ready: false, detail: 'the software backend is closed' } : { ready: true };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writes.catch(() => undefined);
    this.entries = new Map();
    this.ceremonies = new Map();
    await this.lock.release();
  }

  // --- lifecycle ---------------------------------------------------------------------------------

  async createKey(key: NewKey): Promise<KeyMetadata> {
    this.checkOpen();
    this.checkExportable(key);
    return this.addKey(key, await generateKeys(key.type));
  }

  async importKey(key: NewKey, material: Buffer): Promise<KeyMetadata> {
    this.checkOpen();
    this.checkExportable(key);
    return this.addKey(key, importClearKey(key.type, material));
  }

  private addKey(key: NewKey, live: VersionKeys): Promise<KeyMetadata> {
    return this.change(({ entries }) => {
      if (entries.has(key.name)) throw new HsmBridgeError('KEY_ALREADY_EXISTS', `key ${key.name} already exists`);
      const attributes = {
        name: key.name,
        type: key.type,
        purpose: key.purpose,
        ...paymentAttributesOf(key),
      };
      const version = sealVersion(this.masterKey, attributes, 1, live);
      const stored: StoredKey = { ...attributes, state: 'enabled', createdAt: version.createdAt, versions: [version] };
      entries.set(key.name, { stored, keys: new Map([[1, live]]) });
      return toMetadata(stored);
    });
  }

  private checkExportable(key: NewKey): void {
    if (key.exportable === true && !mayBeExportable(key)) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `only TDES and AES keys of a payment purpose can be exportable, not a ${key.type} key for ${key.purpose}`);
    }
  }

  async rotateKey(name: KeyName): Promise<KeyMetadata> {
    const { stored } = this.entry(name);
    return this.addVersion(name, stored.type, await generateKeys(stored.type));
  }

  /** Adds the next version, which becomes primary, to a key that must still be of `type`. */
  private addVersion(name: KeyName, type: KeyType, live: VersionKeys): Promise<KeyMetadata> {
    return this.change(({ entries }) => {
      const current = this.entryIn(entries, name); // it may have changed while the key was made
      if (current.stored.type !== type) throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${name} is not a ${type} key`);
      const next = current.stored.versions[current.stored.versions.length - 1]!.version + 1;
      const version = sealVersion(this.masterKey, current.stored, next, live);
      const updated: StoredKey = { ...current.stored, versions: [...current.stored.versions, version] };
      entries.set(name, { stored: updated, keys: new Map([...current.keys, [next, live]]) });
      return toMetadata(updated);
    });
  }

  setKeyState(name: KeyName, state: KeyState): Promise<KeyMetadata> {
    return this.change(({ entries }) => {
      const current = this.entryIn(entries, name);
      const updated: StoredKey = { ...current.stored, state };
      entries.set(name, { ...current, stored: updated });
      return toMetadata(updated);
    });
  }

  async destroyKey(name: KeyName): Promise<void> {
    await this.change(({ entries }) => {
      // Checked here, in the queue of changes, so an enable queued just before cannot slip past it.
      if (this.entryIn(entries, name).stored.state !== 'disabled') {
        throw new HsmBridgeError('KEY_NOT_DISABLED', `key ${name} must be disabled before it is destroyed`);
      }
      entries.delete(name);
    });
  }

  /** Every version is sealed again, since its seal binds minDecryptionVersion (sealing.ts); 1 is stored as absent. */
  setMinDecryptionVersion(name: KeyName, version: KeyVersion): Promise<KeyMetadata> {
    return this.change(({ entries }) => {
      const current = this.entryIn(entries, name);
      // The core checks this too, on what it read before: here it holds for the key being changed. A value
      // above the newest version would make the file unreadable, and a trim would take every version.
      checkMinDecryptionVersion(name, current.stored.versions.map((v) => v.version), version);
      const attributes = { ...current.stored, minDecryptionVersion: version > 1 ? version : undefined };
      const versions = current.stored.versions.map((v) => resealVersion(this.masterKey, attributes, v, current.keys.get(v.version)!));
      const updated: StoredKey = { ...attributes, versions };
      entries.set(name, { stored: updated, keys: current.keys });
      return toMetadata(updated);
    });
  }

  /** The trimmed versions' sealed material leaves the file with the write, and their live keys are dropped. */
  trimKey(name: KeyName): Promise<KeyMetadata> {
    return this.change(({ entries }) => {
      const current = this.entryIn(entries, name);
      // Never the newest version: it is the primary one (the file refuses a minimum above it anyway).
      const min = Math.min(current.stored.minDecryptionVersion ?? 1, current.stored.versions[current.stored.versions.length - 1]!.version);
      const updated: StoredKey = { ...current.stored, versions: current.stored.versions.filter((v) => v.version >= min) };
      entries.set(name, { stored: updated, keys: new Map([...current.keys].filter(([version]) => version >= min)) });
      return toMetadata(updated);
    });
  }

  async describeKey(name: KeyName): Promise<KeyMetadata> {
    return toMetadata(this.entry(name).stored);
  }

  async listKeys(): Promise<KeyMetadata[]> {
    this.checkOpen();
    return [...this.entries.values()].map((e) => toMetadata(e.stored));
  }

  // --- operations ----------------------------------------------------------------------------------

  async sign(key: KeyRef, algorithm: SignAlgorithm, input: SignInput): Promise<Buffer> {
    return sign(algorithm, this.pair(key).privateKey, input);
  }

  async verify(key: KeyRef, algorithm: SignAlgorithm, input: SignInput, signature: Buffer): Promise<boolean> {
    return verify(algorithm, this.pair(key).publicKey, input, signature);
  }

  async encrypt(key: KeyRef, algorithm: EncryptAlgorithm, plaintext: Buffer, aad?: Buffer): Promise<RawCiphertext> {
    this.checkCipherUse(key);
    switch (algorithm) {
      case 'AES_GCM':
        return aesGcmEncrypt(this.secret(key), plaintext, aad);
      case 'AES_KW':
        return aesKeyWrap(this.secret(key), plaintext);
      case 'RSA_OAEP_SHA256':
      case 'RSA_OAEP_SHA1':
        return rsaOaepEncrypt(this.pair(key).publicKey, plaintext, encryptAlgorithms[algorithm].oaepHash);
    }
  }

  async decrypt(key: KeyRef, algorithm: EncryptAlgorithm, ciphertext: RawCiphertext, aad?: Buffer): Promise<Buffer> {
    this.checkCipherUse(key);
    switch (algorithm) {
      case 'AES_GCM':
        return aesGcmDecrypt(this.secret(key), ciphertext, aad);
      case 'AES_KW':
        return aesKeyUnwrap(this.secret(key), ciphertext);
      case 'RSA_OAEP_SHA256':
      case 'RSA_OAEP_SHA1':
        return rsaOaepDecrypt(this.pair(key).privateKey, ciphertext, encryptAlgorithms[algorithm].oaepHash);
    }
  }

  async deriveSharedSecret(key: KeyRef, peerPublicKeySpki: Buffer): Promise<Buffer> {
    return ecdh(this.pair(key).privateKey, createPublicKey({ key: peerPublicKeySpki, format: 'der', type: 'spki' }));
  }

  async mac(key: KeyRef, algorithm: MacAlgorithm, data: Buffer): Promise<Buffer> {
    checkMacUse(this.entry(key.name).stored, algorithm, false);
    return computeMac(algorithm, this.secret(key), data);
  }

  async verifyMac(key: KeyRef, algorithm: MacAlgorithm, data: Buffer, mac: Buffer): Promise<boolean> {
    checkMacUse(this.entry(key.name).stored, algorithm, true);
    return macMatches(algorithm, this.secret(key), data, mac);
  }

  async randomBytes(length: number): Promise<Buffer> {
    this.checkOpen();
    return randomBytesAsync(length);
  }

  // --- payment primitives ---------------------------------------------------------------------------

  async encryptBlocks(key: BlockKey, data: Buffer): Promise<Buffer> {
    return this.blocks(key, 'encrypt', data);
  }

  async decryptBlocks(key: BlockKey, data: Buffer): Promise<Buffer> {
    return this.blocks(key, 'decrypt', data);
  }

  async deriveDukptKey(bdk: KeyRef, derivation: DukptDerivation): Promise<TransientKey> {
    const { stored } = this.entry(bdk.name);
    if (stored.purpose !== 'bdk') throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${bdk.name} is not a BDK`);
    const derived = this.withClearKey(bdk, (clear) => deriveDukptPinKey(stored.type, clear, derivation));
    return this.transientKeys.hold(derived.family, derived.material);
  }

  async releaseTransientKey(key: TransientKey): Promise<void> {
    this.transientKeys.release(key);
  }

  async exportKey(key: KeyRef): Promise<Buffer> {
    const { stored } = this.entry(key.name);
    if (stored.exportable !== true) throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${key.name} is not exportable`);
    return this.withClearKey(key, (clear) => Buffer.from(clear));
  }

  // --- bringing keys in ------------------------------------------------------------------------------

  async importWrappedKey(target: ImportTarget, wrapped: WrappedKey): Promise<KeyMetadata> {
    if (!isImportWrappingKey(this.entry(wrapped.wrappingKey.name).stored)) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${wrapped.wrappingKey.name} is not an import wrapping key (an RSA key of purpose wrap)`);
    }
    // Checked before the unwrap for a clear answer, and again with the change (the key may change meanwhile).
    // An import wrapping key is made here: one whose private half came from outside would protect nothing.
    const type = target.kind === 'create' ? target.key.type : target.type;
    if (target.kind === 'create') {
      this.checkExportable(target.key);
      if (isImportWrappingKey(target.key)) throw new HsmBridgeError('INCOMPATIBLE_KEY', 'an import wrapping key cannot itself be imported');
      if (this.entries.has(target.key.name)) throw new HsmBridgeError('KEY_ALREADY_EXISTS', `key ${target.key.name} already exists`);
    } else {
      const { stored } = this.entry(target.name);
      if (stored.type !== type) throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${target.name} is not a ${type} key`);
      if (isImportWrappingKey(stored)) throw new HsmBridgeError('INCOMPATIBLE_KEY', 'an import wrapping key cannot itself be imported');
    }
    const material = unwrapWrappedKey(this.anyPair(wrapped.wrappingKey).privateKey, wrapped);
    let live: VersionKeys;
    try {
      live = importKeyMaterial(type, material);
    } finally {
      material.fill(0);
    }
    return target.kind === 'create' ? this.addKey(target.key, live) : this.addVersion(target.name, type, live);
  }

  async startCeremony(plan: CeremonyPlan): Promise<void> {
    await this.change(({ ceremonies }) => {
      if (ceremonies.has(plan.id)) throw new HsmBridgeError('CEREMONY_CONFLICT', 'a ceremony with this id exists');
      ceremonies.set(plan.id, newCeremony(this.masterKey, plan));
    });
  }

  async describeCeremony(id: CeremonyId): Promise<CeremonyState> {
    return stateOf(this.ceremony(this.ceremonies, id));
  }

  async listCeremonies(): Promise<CeremonyState[]> {
    this.checkOpen();
    return [...this.ceremonies.values()].map(stateOf);
  }

  stageComponent(id: CeremonyId, entry: ComponentEntry, component: Buffer): Promise<CeremonyState> {
    return this.change(({ ceremonies }) => {
      const staged = withComponent(this.masterKey, this.ceremony(ceremonies, id), entry, component);
      ceremonies.set(id, staged);
      return stateOf(staged);
    });
  }

  async stagedComponents(id: CeremonyId): Promise<Buffer[]> {
    return openComponents(this.masterKey, this.ceremony(this.ceremonies, id));
  }

  async endCeremony(id: CeremonyId): Promise<void> {
    this.checkOpen();
    if (!this.ceremonies.has(id)) return;
    await this.change(({ ceremonies }) => {
      ceremonies.delete(id);
    });
  }

  private ceremony(ceremonies: ReadonlyMap<CeremonyId, StoredCeremony>, id: CeremonyId): StoredCeremony {
    this.checkOpen();
    const c = ceremonies.get(id);
    if (!c) throw new HsmBridgeError('CEREMONY_NOT_FOUND', `there is no ceremony ${id}`);
    return c;
  }

  /** ECB over whole blocks, on a stored key (as its purpose allows) or a transient one. */
  private blocks(key: BlockKey, direction: Direction, data: Buffer): Buffer {
    if (isTransientKey(key)) return this.ecbChecked(key.family, direction, this.transientKeys.material(key), data);
    const family = checkBlockUse(this.entry(key.name).stored, direction);
    return this.withClearKey(key, (clear) => this.ecbChecked(family, direction, clear, data));
  }

  private ecbChecked(family: BlockFamily, direction: Direction, key: Buffer, data: Buffer): Buffer {
    const size = blockLength(family);
    if (data.length === 0 || data.length % size !== 0) throw invalid(`data must be whole ${size}-byte blocks`);
    return ecb(family, direction, key, data);
  }

  /** Runs `use` on a copy of a TDES or AES key version's clear bytes, zeroed as soon as it returns. */
  private withClearKey<T>(ref: KeyRef, use: (clear: Buffer) => T): T {
    blockFamilyOf(this.entry(ref.name).stored);
    const clear = this.secret(ref).export();
    try {
      return use(clear);
    } finally {
      clear.fill(0);
    }
  }

  // --- internals -----------------------------------------------------------------------------------

  /** Only keys of purpose encrypt or wrap encrypt and decrypt: an fpe key must not become a data key. */
  private checkCipherUse(ref: KeyRef): void {
    const { stored } = this.entry(ref.name);
    if (stored.purpose !== 'encrypt' && stored.purpose !== 'wrap') {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${ref.name} (${stored.type}, purpose ${stored.purpose}) cannot encrypt or decrypt`);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new HsmBridgeError('BACKEND_UNAVAILABLE', 'the software backend is closed');
  }

  private entry(name: KeyName): KeyEntry {
    this.checkOpen();
    return this.entryIn(this.entries, name);
  }

  private entryIn(entries: ReadonlyMap<KeyName, KeyEntry>, name: KeyName): KeyEntry {
    const e = entries.get(name);
    if (!e) throw new HsmBridgeError('KEY_NOT_FOUND', `key ${name} does not exist`);
    return e;
  }

  private versionKeys(ref: KeyRef): VersionKeys {
    const keys = this.entry(ref.name).keys.get(ref.version);
    if (!keys) throw new HsmBridgeError('KEY_VERSION_NOT_FOUND', `key ${ref.name} has no version ${ref.version}`);
    return keys;
  }

  /** A key pair for the operations; an import wrapping key serves none of them (only importWrappedKey). */
  private pair(ref: KeyRef): KeyPair {
    if (isImportWrappingKey(this.entry(ref.name).stored)) throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${ref.name} only unwraps imported keys`);
    return this.anyPair(ref);
  }

  private anyPair(ref: KeyRef): KeyPair {
    const keys = this.versionKeys(ref);
    if (keys.kind !== 'pair') throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${ref.name} is not a key pair`);
    return keys;
  }

  private secret(ref: KeyRef): KeyObject {
    const keys = this.versionKeys(ref);
    if (keys.kind !== 'secret') throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${ref.name} is not a secret key`);
    return keys.secretKey;
  }

  /**
   * Applies `edit` to a copy of the keys and ceremonies, writes the copy to the file, and only then makes
   * it current. Changes are queued, so each edit sees the result of the one before it, and the checks an
   * edit makes are atomic with its change.
   */
  private change<T>(edit: (draft: Draft) => T): Promise<T> {
    const run = async () => {
      this.checkOpen();
      const draft: Draft = { entries: new Map(this.entries), ceremonies: new Map(this.ceremonies) };
      const result = edit(draft);
      await this.persist(draft);
      this.entries = draft.entries;
      this.ceremonies = draft.ceremonies;
      return result;
    };
    const result = this.writes.then(run, run);
    this.writes = result.catch(() => undefined);
    return result;
  }

  async persist(state: KeystoreState): Promise<void> {
    try {
      await writeFileAtomic(this.path, serializeKeystore(this.masterKeyCheck, state.entries.values(), state.ceremonies.values()));
    } catch (e) {
      this.logger.error({ err: e, keystorePath: this.path }, 'software backend: cannot write the keystore');
      throw new HsmBridgeError('BACKEND_UNAVAILABLE', 'the software keystore cannot be written', { cause: e });
    }
  }
}
