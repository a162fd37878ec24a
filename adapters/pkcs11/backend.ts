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
import type { Backend, BackendGauges, BackendHealth, BlockKey, Capabilities, DukptDerivation, KeyRef, NewKey, RawCiphertext, SignInput, TransientKey } from '../../src/backend/port.js';
import type { KeyName } from '../../src/keys/names.js';
import { keyTypes, type KeyMetadata, type KeyState } from '../../src/keys/types.js';
import { hasGcmShape, newGcmIv } from './aesGcm.js';
import type { ResolvedPkcs11Config } from './config.js';
import { Connection } from './connection.js';
import { decryptionFailed } from './errors.js';
import { signatureLength } from './mechanisms.js';
import type { DerivedKey } from './sessionObjects.js';
import { TransientKeys } from './transientKeys.js';
import type { WorkerBlockKey } from './worker/keyOperations.js';
import { isConflictResult, type ConflictResult } from './worker/protocol.js';

const keyEntry = (name: KeyName, version: number) => `${name}\u0000${version}`;

export class Pkcs11Backend implements Backend {
  readonly kind = 'pkcs11';
  /** Lifecycle changes of one name run one at a time in this process (PKCS#11 has no transactions). */
  private readonly changes = new KeyChanges((name) => this.forget(name as KeyName));
  private readonly transients = new TransientKeys();
  /** RSA public keys by name and version, for RSA-OAEP encryption without a worker. */
  private readonly publicKeys = new Map<string, KeyObject>();

  private constructor(
    private readonly connection: Connection,
    private readonly config: ResolvedPkcs11Config,
  ) {}

  static async open(config: ResolvedPkcs11Config, logger: Logger): Promise<Pkcs11Backend> {
    let backend: Pkcs11Backend | undefined;
    // A reconnect drops the cached public keys too: nothing is served from an HSM that went away.
    const connection = await Connection.open(config, logger, () => backend?.publicKeys.clear());
    backend = new Pkcs11Backend(connection, config);
    return backend;
  }

  capabilities(): Capabilities {
    return this.connection.capabilities;
  }

  gauges(): BackendGauges {
    return { sessionPool: this.connection.poolCounts() };
  }

  health(): Promise<BackendHealth> {
    return this.connection.health();
  }

  close(): Promise<void> {
    return this.connection.close();
  }

  // --- lifecycle -----------------------------------------------------------------------------------

  createKey(key: NewKey): Promise<KeyMetadata> {
    return this.lifecycle(key.name, () => this.generating<KeyMetadata | ConflictResult>('create', [key, undefined]));
  }

  /** A TR-31 import: version 1 from clear material (the core checked its length, set parity, and zeroes it). */
  importKey(key: NewKey, material: Buffer): Promise<KeyMetadata> {
    return this.lifecycle(key.name, () => this.generating<KeyMetadata | ConflictResult>('create', [key, material]));
  }

  rotateKey(name: KeyName): Promise<KeyMetadata> {
    return this.lifecycle(name, () => this.generating<KeyMetadata | ConflictResult>('rotate', [name]));
  }

  setKeyState(name: KeyName, state: KeyState): Promise<KeyMetadata> {
    return this.lifecycle(name, () => this.run<KeyMetadata | ConflictResult>('setState', [name, state]));
  }

  destroyKey(name: KeyName): Promise<void> {
    /** CKA_IDs listed by metadata this destroy has already removed (kept across attempts). */
    let removed: string[] | undefined;
    return this.lifecycle(name, async () => {
      const outcome = await this.run<{ removed: string[] } | { done: true }>('destroy', [name, removed]);
      if ('done' in outcome) return undefined;
      removed = outcome.removed;
      return { conflict: true } as const;
    });
  }

  describeKey(name: KeyName): Promise<KeyMetadata> {
    return this.run('describeKey', [name]);
  }

  listKeys(): Promise<KeyMetadata[]> {
    return this.run('listKeys', []);
  }

  // --- operations ----------------------------------------------------------------------------------

  sign(key: KeyRef, algorithm: SignAlgorithm, input: SignInput): Promise<Buffer> {
    return this.run('sign', [key, algorithm, input]);
  }

  verify(key: KeyRef, algorithm: SignAlgorithm, input: SignInput, signature: Buffer): Promise<boolean> {
    if (signature.length !== signatureLength(key.type)) return Promise.resolve(false);
    return this.run('verify', [key, algorithm, input, signature]);
  }

  encrypt(key: KeyRef, algorithm: EncryptAlgorithm, plaintext: Buffer, aad?: Buffer): Promise<RawCiphertext> {
    if (algorithm === 'RSA_OAEP_SHA256' || algorithm === 'RSA_OAEP_SHA1') {
      // Encryption needs only the public key: node:crypto does it (SoftHSM has no OAEP with SHA-256), and
      // an RSA public-key operation is cheap enough for the event loop.
      const { oaepHash } = encryptAlgorithms[algorithm];
      return this.rsaPublicKey(key).then((pub) => ({ data: publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, plaintext) }));
    }
    return this.run('encrypt', [key, algorithm, plaintext, algorithm === 'AES_KW' ? undefined : newGcmIv(), aad]);
  }

  decrypt(key: KeyRef, algorithm: EncryptAlgorithm, ciphertext: RawCiphertext, aad?: Buffer): Promise<Buffer> {
    if (algorithm === 'RSA_OAEP_SHA256' || algorithm === 'RSA_OAEP_SHA1') {
      if (ciphertext.data.length !== keyTypes[key.type].bits / 8) return Promise.reject(decryptionFailed());
    } else if (algorithm !== 'AES_KW' && !hasGcmShape(ciphertext)) {
      return Promise.reject(decryptionFailed());
    }
    return this.run('decrypt', [key, algorithm, ciphertext, aad]);
  }

  mac(key: KeyRef, algorithm: MacAlgorithm, data: Buffer): Promise<Buffer> {
    return this.run('mac', [key, algorithm, data]);
  }

  verifyMac(key: KeyRef, algorithm: MacAlgorithm, data: Buffer, mac: Buffer): Promise<boolean> {
    return this.run('verifyMac', [key, algorithm, data, mac]);
  }

  randomBytes(length: number): Promise<Buffer> {
    return this.run('randomBytes', [length]);
  }

  deriveSharedSecret(key: KeyRef, peerPublicKeySpki: Buffer): Promise<Buffer> {
    return this.run('deriveSharedSecret', [key, peerPublicKeySpki]);
  }

  // --- payment primitives (README.md, "Payment keys") ---------------------------------------------------

  async encryptBlocks(key: BlockKey, data: Buffer): Promise<Buffer> {
    return this.run('ecb', [this.blockKey(key), 'encrypt', data]);
  }

  async decryptBlocks(key: BlockKey, data: Buffer): Promise<Buffer> {
    return this.run('ecb', [this.blockKey(key), 'decrypt', data]);
  }

  async deriveDukptKey(bdk: KeyRef, derivation: DukptDerivation): Promise<TransientKey> {
    this.transients.checkRoom();
    const { value, link } = await this.connection.runOnAny<DerivedKey>('deriveDukpt', [bdk, derivation], { timeoutMs: this.config.operationTimeoutMs });
    // The object lives in that worker's session: that worker destroys it and lets the session go.
    return this.transients.register(value, () => this.connection.runOn(link, 'releaseDerived', [value.handle]).then(() => undefined, () => undefined));
  }

  releaseTransientKey(key: TransientKey): Promise<void> {
    return this.transients.release(key);
  }

  exportKey(key: KeyRef): Promise<Buffer> {
    return this.run('exportKey', [key]);
  }

  // --- internals -----------------------------------------------------------------------------------

  private run<T>(method: string, args: readonly unknown[]): Promise<T> {
    return this.connection.run<T>(method, args, { timeoutMs: this.config.operationTimeoutMs });
  }

  /** Calls that generate keys get the longer deadline (an RSA-4096 key pair can take seconds). */
  private generating<T>(method: string, args: readonly unknown[]): Promise<T> {
    return this.connection.run<T>(method, args, { timeoutMs: this.config.keyGenerationTimeoutMs });
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
    this.connection.broadcast('forget', [name]);
  }

  private blockKey(key: BlockKey): WorkerBlockKey {
    return 'transient' in key ? { transientHandle: this.transients.handleOf(key), family: key.family } : key;
  }

  /** The version's public key as a KeyObject: cached, else read once from the token. */
  private async rsaPublicKey(key: KeyRef): Promise<KeyObject> {
    const cached = this.publicKeys.get(keyEntry(key.name, key.version));
    if (cached) return cached;
    const spki = await this.run<Buffer>('publicKeySpki', [key]);
    const publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    this.publicKeys.set(keyEntry(key.name, key.version), publicKey);
    return publicKey;
  }
}
