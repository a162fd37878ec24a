/**
 * The PKCS#11 backend: implements the Backend port on a token. This is the main thread's side: it checks
 * what needs no HSM, serialises lifecycle changes per key name, and hands every PKCS#11 call to a token
 * worker with a deadline (connection.ts, worker/keyOperations.ts). RSA-OAEP encryption needs only the
 * public key and runs here with node:crypto.
 */
import { constants, createPublicKey, publicEncrypt, type KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { encryptAlgorithms, type EncryptAlgorithm, type MacAlgorithm, type SignAlgorithm } from '../../src/algorithms/registry.js';
import { CONFLICT, KeyChanges } from '../../src/backend/keyChanges.js';
import type { Backend, BackendGauges, BackendHealth, BlockKey, Capabilities, DukptDerivation, ImportTarget, KeyRef, NewKey, RawCiphertext, SignInput, TransientKey, WrappedKey } from '../../src/backend/port.js';
import { isTransientKey } from '../../src/backend/port.js';
import type { CeremonyId, CeremonyPlan, CeremonyState, ComponentEntry } from '../../src/ceremonies/record.js';
import type { KeyName, KeyVersion } from '../../src/keys/names.js';
import { keyTypes, type KeyMetadata, type KeyState } from '../../src/keys/types.js';
import { hasGcmShape, newGcmIv } from './aesGcm.js';
import type { ResolvedPkcs11Config } from './config.js';
import { Members, type MemberCallOptions } from './members.js';
import { decryptionFailed } from './errors.js';
import { signatureLength } from './mechanisms.js';
import type { DerivedKey } from './sessionObjects.js';
import { TransientKeys } from './transientKeys.js';
import type { WorkerLink } from './workerLink.js';
import { isConflictResult, type ConflictResult } from './worker/protocol.js';

const keyEntry = (name: KeyName, version: number) => `${name}\u0000${version}`;

export class Pkcs11Backend implements Backend {
  readonly kind = 'pkcs11';
  /** Lifecycle changes of one name run one at a time in this process (PKCS#11 has no transactions). */
  private readonly changes = new KeyChanges((name) => this.forget(name as KeyName));
  private readonly transients = new TransientKeys<WorkerLink>();
  /** RSA public keys by name and version, for RSA-OAEP encryption without a worker. */
  private readonly publicKeys = new Map<string, KeyObject>();

  private constructor(
    private readonly members: Members,
    private readonly config: ResolvedPkcs11Config,
  ) {}

  static async open(config: ResolvedPkcs11Config, logger: Logger): Promise<Pkcs11Backend> {
    let backend: Pkcs11Backend | undefined;
    // A reconnect drops the cached public keys too: nothing is served from an HSM that went away.
    const members = await Members.open(config, logger, () => backend?.publicKeys.clear());
    backend = new Pkcs11Backend(members, config);
    return backend;
  }

  capabilities(): Capabilities {
    return this.members.capabilities;
  }

  gauges(): BackendGauges {
    const members = this.members.memberGauges();
    return { sessionPool: this.members.poolCounts(), ...(members ? { members } : {}) };
  }

  health(): Promise<BackendHealth> {
    return this.members.health();
  }

  close(): Promise<void> {
    return this.members.close();
  }

  // --- lifecycle -----------------------------------------------------------------------------------

  createKey(key: NewKey): Promise<KeyMetadata> {
    return this.lifecycle(key.name, () => this.change<KeyMetadata | ConflictResult>(key.name, 'create', [key, undefined], this.config.keyGenerationTimeoutMs));
  }

  /** A TR-31 import: version 1 from clear material (the core checked its length, set parity, and zeroes it). */
  importKey(key: NewKey, material: Buffer): Promise<KeyMetadata> {
    return this.lifecycle(key.name, () => this.change<KeyMetadata | ConflictResult>(key.name, 'create', [key, material], this.config.keyGenerationTimeoutMs));
  }

  rotateKey(name: KeyName): Promise<KeyMetadata> {
    return this.lifecycle(name, () => this.change<KeyMetadata | ConflictResult>(name, 'rotate', [name], this.config.keyGenerationTimeoutMs));
  }

  setKeyState(name: KeyName, state: KeyState): Promise<KeyMetadata> {
    return this.lifecycle(name, () => this.change<KeyMetadata | ConflictResult>(name, 'setState', [name, state], this.config.operationTimeoutMs));
  }

  setMinDecryptionVersion(name: KeyName, version: KeyVersion): Promise<KeyMetadata> {
    return this.lifecycle(name, () => this.change<KeyMetadata | ConflictResult>(name, 'setMinDecryptionVersion', [name, version], this.config.operationTimeoutMs));
  }

  trimKey(name: KeyName): Promise<KeyMetadata> {
    return this.lifecycle(name, () => this.change<KeyMetadata | ConflictResult>(name, 'trim', [name], this.config.operationTimeoutMs));
  }

  destroyKey(name: KeyName): Promise<void> {
    /** CKA_IDs listed by metadata this destroy has already removed (kept across attempts). */
    let removed: string[] | undefined;
    return this.lifecycle(name, async () => {
      const outcome = await this.change<{ removed: string[] } | { done: true }>(name, 'destroy', [name, removed], this.config.operationTimeoutMs);
      if ('done' in outcome) return undefined;
      removed = outcome.removed;
      return { conflict: true } as const;
    });
  }

  describeKey(name: KeyName): Promise<KeyMetadata> {
    return this.read('describeKey', [name], name);
  }

  listKeys(): Promise<KeyMetadata[]> {
    return this.read('listKeys', []);
  }

  // --- operations ----------------------------------------------------------------------------------

  sign(key: KeyRef, algorithm: SignAlgorithm, input: SignInput): Promise<Buffer> {
    return this.read('sign', [key, algorithm, input], key.name);
  }

  verify(key: KeyRef, algorithm: SignAlgorithm, input: SignInput, signature: Buffer): Promise<boolean> {
    if (signature.length !== signatureLength(key.type)) return Promise.resolve(false);
    return this.read('verify', [key, algorithm, input, signature], key.name);
  }

  encrypt(key: KeyRef, algorithm: EncryptAlgorithm, plaintext: Buffer, aad?: Buffer): Promise<RawCiphertext> {
    if (algorithm === 'RSA_OAEP_SHA256' || algorithm === 'RSA_OAEP_SHA1') {
      // Encryption needs only the public key: node:crypto does it (SoftHSM has no OAEP with SHA-256), and
      // an RSA public-key operation is cheap enough for the event loop.
      const { oaepHash } = encryptAlgorithms[algorithm];
      return this.rsaPublicKey(key).then((pub) => ({ data: publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, plaintext) }));
    }
    return this.read('encrypt', [key, algorithm, plaintext, algorithm === 'AES_KW' ? undefined : newGcmIv(), aad], key.name);
  }

  decrypt(key: KeyRef, algorithm: EncryptAlgorithm, ciphertext: RawCiphertext, aad?: Buffer): Promise<Buffer> {
    if (algorithm === 'RSA_OAEP_SHA256' || algorithm === 'RSA_OAEP_SHA1') {
      if (ciphertext.data.length !== keyTypes[key.type].bits / 8) return Promise.reject(decryptionFailed());
    } else if (algorithm !== 'AES_KW' && !hasGcmShape(ciphertext)) {
      return Promise.reject(decryptionFailed());
    }
    return this.read('decrypt', [key, algorithm, ciphertext, aad], key.name);
  }

  mac(key: KeyRef, algorithm: MacAlgorithm, data: Buffer): Promise<Buffer> {
    return this.read('mac', [key, algorithm, data], key.name);
  }

  verifyMac(key: KeyRef, algorithm: MacAlgorithm, data: Buffer, mac: Buffer): Promise<boolean> {
    return this.read('verifyMac', [key, algorithm, data, mac], key.name);
  }

  randomBytes(length: number): Promise<Buffer> {
    return this.read('randomBytes', [length]);
  }

  deriveSharedSecret(key: KeyRef, peerPublicKeySpki: Buffer): Promise<Buffer> {
    return this.read('deriveSharedSecret', [key, peerPublicKeySpki], key.name);
  }

  // --- payment primitives (README.md, "Payment keys") ---------------------------------------------------

  async encryptBlocks(key: BlockKey, data: Buffer): Promise<Buffer> {
    return this.blocks(key, 'encrypt', data);
  }

  async decryptBlocks(key: BlockKey, data: Buffer): Promise<Buffer> {
    return this.blocks(key, 'decrypt', data);
  }

  async deriveDukptKey(bdk: KeyRef, derivation: DukptDerivation): Promise<TransientKey> {
    this.transients.checkRoom();
    const { value, link } = await this.members.run<DerivedKey>('deriveDukpt', [bdk, derivation], this.options(true, bdk.name));
    // The object lives in that worker's session: that worker destroys it and lets the session go.
    const release = () => this.members.runOn(link, 'releaseDerived', [value.handle, value.epoch], Date.now() + this.config.operationTimeoutMs).then(() => undefined, () => undefined);
    return this.transients.register(value, link, release);
  }

  releaseTransientKey(key: TransientKey): Promise<void> {
    return this.transients.release(key);
  }

  exportKey(key: KeyRef): Promise<Buffer> {
    return this.read('exportKey', [key], key.name);
  }

  // --- bringing keys in (keyUnwrap.ts, ceremonies.ts) ----------------------------------------------------

  /** A lifecycle change like createKey or rotateKey, whose new version is unwrapped instead of generated. */
  importWrappedKey(target: ImportTarget, wrapped: WrappedKey): Promise<KeyMetadata> {
    const name = target.kind === 'create' ? target.key.name : target.name;
    return this.lifecycle(name, () => this.change<KeyMetadata | ConflictResult>(name, 'importWrapped', [target, wrapped], this.config.keyGenerationTimeoutMs));
  }

  async startCeremony(plan: CeremonyPlan): Promise<void> {
    await this.members.run('startCeremony', [plan], this.options(false));
  }

  describeCeremony(id: CeremonyId): Promise<CeremonyState> {
    return this.read('describeCeremony', [id]);
  }

  listCeremonies(): Promise<CeremonyState[]> {
    return this.read('listCeremonies', []);
  }

  async stageComponent(id: CeremonyId, entry: ComponentEntry, component: Buffer): Promise<CeremonyState> {
    return (await this.members.run<CeremonyState>('stageComponent', [id, entry, component], this.options(false))).value;
  }

  stagedComponents(id: CeremonyId): Promise<Buffer[]> {
    return this.read('stagedComponents', [id]);
  }

  /** Idempotent: destroying what is already gone does nothing. */
  endCeremony(id: CeremonyId): Promise<void> {
    return this.read('endCeremony', [id]);
  }

  // --- internals -----------------------------------------------------------------------------------

  /** One deadline for the whole call: retries, reconnects and waits for a member all count against it. */
  private options(idempotent: boolean, key?: string, timeoutMs = this.config.operationTimeoutMs): MemberCallOptions {
    return { deadline: Date.now() + timeoutMs, idempotent, ...(key === undefined ? {} : { key }) };
  }

  /** A call that changes nothing in the token: safe to retry on another member. */
  private async read<T>(method: string, args: readonly unknown[], key?: string): Promise<T> {
    return (await this.members.run<T>(method, args, this.options(true, key))).value;
  }

  /**
   * One attempt at a lifecycle change, on one member (the vendor replicates it); never retried elsewhere
   * once it may have run. Calls that generate keys get the longer deadline (an RSA-4096 pair takes seconds).
   */
  private async change<T>(name: KeyName, method: string, args: readonly unknown[], timeoutMs: number): Promise<T> {
    const { value, link } = await this.members.run<T>(method, args, this.options(false, name, timeoutMs));
    this.members.changed(name, link);
    return value;
  }

  /** ECB with a stored key (any member) or a derived key, which lives in one worker's session: that worker runs it. */
  private blocks(key: BlockKey, direction: 'encrypt' | 'decrypt', data: Buffer): Promise<Buffer> {
    if (!isTransientKey(key)) return this.read('ecb', [key, direction, data], key.name);
    const { derived, owner } = this.transients.entryOf(key);
    return this.members.runOn(owner, 'ecb', [{ transientHandle: derived.handle, epoch: derived.epoch, family: key.family }, direction, data], Date.now() + this.config.operationTimeoutMs);
  }

  /**
   * A lifecycle change (src/backend/keyChanges.ts): each attempt runs in a worker; one that lost to
   * another replica answers a ConflictResult and is retried. Afterwards every worker drops what it
   * cached of the key.
   */
  private lifecycle<T>(name: KeyName, attempt: () => Promise<T | ConflictResult>): Promise<T> {
    return this.changes
      .run(name, async () => {
        const outcome = await attempt();
        return isConflictResult(outcome) ? CONFLICT : outcome;
      })
      .finally(() => this.forget(name));
  }

  private forget(name: KeyName): void {
    for (const k of this.publicKeys.keys()) if (k.startsWith(`${name}\u0000`)) this.publicKeys.delete(k);
    this.members.broadcast('forget', [name]);
  }

  /** The version's public key as a KeyObject: cached, else read once from the token. */
  private async rsaPublicKey(key: KeyRef): Promise<KeyObject> {
    const cached = this.publicKeys.get(keyEntry(key.name, key.version));
    if (cached) return cached;
    const spki = await this.read<Buffer>('publicKeySpki', [key], key.name);
    const publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    this.publicKeys.set(keyEntry(key.name, key.version), publicKey);
    return publicKey;
  }
}
