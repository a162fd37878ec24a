/**
 * The core's operations. Each public method checks its arguments and the key, then calls the backend
 * (sign() -> checks -> backend.sign()), so every backend gets the same validation and the same errors.
 * Transports (REST, gRPC) decode their wire format into the plain inputs below and call these methods.
 */
import {
  algorithmsFor,
  defaultAlgorithm,
  macAlgorithms,
  parseEncryptAlgorithm,
  parseMacAlgorithm,
  parseSignAlgorithm,
  signAlgorithms,
  type EncryptAlgorithm,
  type MacAlgorithm,
  type SignAlgorithm,
} from '../algorithms/registry.js';
import { hashes } from '../algorithms/hashes.js';
import type { Backend, Capabilities, KeyRef, SignInput } from '../backend/port.js';
import { HsmBridgeError, invalid } from '../errors.js';
import { parseKeyName, parseKeyVersion, type KeyName, type KeyVersion } from '../keys/names.js';
import { keyTypes, parseKeyPurpose, parseKeyType, type KeyMetadata, type KeyPurpose } from '../keys/types.js';
import { openEnvelope, sealEnvelope, splitRaw } from './ciphertext.js';
import { MetadataCache } from './metadataCache.js';

export interface KeyServiceLimits {
  /** Largest message, plaintext, ciphertext or MAC input, in bytes. */
  readonly maxDataBytes: number;
  /** Largest random byte count per call. */
  readonly maxRandomBytes: number;
}

export interface KeyServiceOptions {
  readonly limits: KeyServiceLimits;
  /** How long key metadata is cached; other replicas see state changes after at most this long. 0 = no cache. */
  readonly metadataCacheTtlMs: number;
}

export interface CreateKeyInput { name: unknown; type: unknown; purpose?: unknown }
export interface SignRequest { name: unknown; algorithm?: unknown; message?: Buffer; digest?: Buffer }
export interface VerifyRequest extends SignRequest { keyVersion?: unknown; signature: Buffer }
export interface EncryptRequest { name: unknown; algorithm?: unknown; plaintext: Buffer; aad?: Buffer }
/** Without keyVersion the ciphertext is an hsm-bridge envelope; with it, the algorithm's raw output. */
export interface DecryptRequest { name: unknown; ciphertext: Buffer; aad?: Buffer; keyVersion?: unknown; algorithm?: unknown }
export interface MacRequest { name: unknown; algorithm?: unknown; data: Buffer }
export interface VerifyMacRequest extends MacRequest { keyVersion?: unknown; mac: Buffer }

export interface SignResult { keyVersion: KeyVersion; algorithm: SignAlgorithm; signature: Buffer }
export interface VerifyResult { keyVersion: KeyVersion; algorithm: SignAlgorithm; valid: boolean }
export interface EncryptResult { keyVersion: KeyVersion; algorithm: EncryptAlgorithm; ciphertext: Buffer }
export interface DecryptResult { keyVersion: KeyVersion; algorithm: EncryptAlgorithm; plaintext: Buffer }
export interface MacResult { keyVersion: KeyVersion; algorithm: MacAlgorithm; mac: Buffer }
export interface VerifyMacResult { keyVersion: KeyVersion; algorithm: MacAlgorithm; valid: boolean }

export class KeyService {
  private readonly cache: MetadataCache;
  private readonly caps: Capabilities;

  constructor(
    private readonly backend: Backend,
    private readonly options: KeyServiceOptions,
  ) {
    this.caps = backend.capabilities();
    this.cache = new MetadataCache((name) => backend.describeKey(name), options.metadataCacheTtlMs);
  }

  get limits(): KeyServiceLimits {
    return this.options.limits;
  }

  capabilities(): Capabilities {
    return this.caps;
  }

  health() {
    return this.backend.health();
  }

  // --- lifecycle ---------------------------------------------------------------------------------

  async createKey(input: CreateKeyInput): Promise<KeyMetadata> {
    const name = parseKeyName(input.name);
    const type = parseKeyType(input.type);
    const purpose = parseKeyPurpose(input.purpose, type);
    if (!this.caps.keyTypes.includes(type)) {
      throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend cannot create ${type} keys`);
    }
    const meta = await this.backend.createKey({ name, type, purpose });
    this.cache.put(meta);
    return meta;
  }

  async listKeys(): Promise<KeyMetadata[]> {
    return this.backend.listKeys();
  }

  /** Always asks the backend, so that what a caller reads is current. */
  async getKey(name: unknown): Promise<KeyMetadata> {
    const meta = await this.backend.describeKey(parseKeyName(name));
    this.cache.put(meta);
    return meta;
  }

  rotateKey(name: unknown): Promise<KeyMetadata> {
    return this.lifecycle(name, (n) => this.backend.rotateKey(n), true);
  }

  enableKey(name: unknown): Promise<KeyMetadata> {
    return this.lifecycle(name, (n) => this.backend.setKeyState(n, 'enabled'), false);
  }

  disableKey(name: unknown): Promise<KeyMetadata> {
    return this.lifecycle(name, (n) => this.backend.setKeyState(n, 'disabled'), false);
  }

  async destroyKey(name: unknown): Promise<void> {
    const keyName = parseKeyName(name);
    const meta = await this.backend.describeKey(keyName);
    if (meta.state !== 'disabled') {
      throw new HsmBridgeError('KEY_NOT_DISABLED', `key ${keyName} must be disabled before it is destroyed`);
    }
    try {
      await this.backend.destroyKey(keyName);
    } finally {
      this.cache.forget(keyName);
    }
  }

  private async lifecycle(
    name: unknown,
    change: (name: KeyName) => Promise<KeyMetadata>,
    requireEnabled: boolean,
  ): Promise<KeyMetadata> {
    const keyName = parseKeyName(name);
    if (requireEnabled) this.checkEnabled(await this.backend.describeKey(keyName));
    try {
      const meta = await change(keyName);
      this.cache.put(meta);
      return meta;
    } catch (e) {
      this.cache.forget(keyName);
      throw e;
    }
  }

  // --- operations ----------------------------------------------------------------------------------

  async sign(req: SignRequest): Promise<SignResult> {
    const meta = await this.usableKey(req.name, 'sign');
    const algorithm = this.pickAlgorithm(meta, 'sign', req.algorithm, parseSignAlgorithm) as SignAlgorithm;
    const input = this.checkSignInput(algorithm, req);
    const key = this.ref(meta, meta.primaryVersion);
    const signature = await this.run(key, () => this.backend.sign(key, algorithm, input));
    return { keyVersion: key.version, algorithm, signature };
  }

  async verify(req: VerifyRequest): Promise<VerifyResult> {
    const meta = await this.usableKey(req.name, 'sign');
    const algorithm = this.pickAlgorithm(meta, 'sign', req.algorithm, parseSignAlgorithm) as SignAlgorithm;
    const input = this.checkSignInput(algorithm, req);
    this.checkSize('signature', req.signature);
    const key = this.ref(meta, await this.version(meta, req.keyVersion));
    const valid = await this.run(key, () => this.backend.verify(key, algorithm, input, req.signature));
    return { keyVersion: key.version, algorithm, valid };
  }

  async encrypt(req: EncryptRequest): Promise<EncryptResult> {
    const meta = await this.usableKey(req.name, 'encrypt');
    const algorithm = this.pickAlgorithm(meta, 'encrypt', req.algorithm, parseEncryptAlgorithm) as EncryptAlgorithm;
    this.checkSize('plaintext', req.plaintext);
    if (req.aad) this.checkSize('aad', req.aad);
    if (algorithm === 'RSA_OAEP_SHA256') {
      if (req.aad) throw invalid('RSA_OAEP_SHA256 takes no aad');
      const max = keyTypes[meta.type].bits / 8 - 2 * hashes.sha256.length - 2;
      if (req.plaintext.length > max) throw invalid(`plaintext is too long for RSA-OAEP with this key (at most ${max} bytes)`);
    }
    const key = this.ref(meta, meta.primaryVersion);
    const raw = await this.run(key, () => this.backend.encrypt(key, algorithm, req.plaintext, req.aad));
    return { keyVersion: key.version, algorithm, ciphertext: sealEnvelope(algorithm, key.version, raw) };
  }

  async decrypt(req: DecryptRequest): Promise<DecryptResult> {
    const meta = await this.usableKey(req.name, 'encrypt');
    this.checkSize('ciphertext', req.ciphertext);
    if (req.aad) this.checkSize('aad', req.aad);
    let algorithm: EncryptAlgorithm;
    let version: KeyVersion;
    let raw;
    if (req.keyVersion === undefined) {
      if (req.algorithm !== undefined && req.algorithm !== '') {
        throw invalid('algorithm goes with keyVersion, for a raw ciphertext; an envelope names its own');
      }
      ({ algorithm, version, raw } = openEnvelope(req.ciphertext));
      this.checkAlgorithmFits(meta, 'encrypt', algorithm);
    } else {
      algorithm = this.pickAlgorithm(meta, 'encrypt', req.algorithm, parseEncryptAlgorithm) as EncryptAlgorithm;
      version = parseKeyVersion(req.keyVersion);
      raw = splitRaw(algorithm, req.ciphertext);
    }
    if (algorithm === 'RSA_OAEP_SHA256' && req.aad) throw invalid('RSA_OAEP_SHA256 takes no aad');
    const key = this.ref(meta, await this.version(meta, version));
    const plaintext = await this.run(key, () => this.backend.decrypt(key, algorithm, raw, req.aad));
    return { keyVersion: key.version, algorithm, plaintext };
  }

  async mac(req: MacRequest): Promise<MacResult> {
    const meta = await this.usableKey(req.name, 'mac');
    const algorithm = this.pickAlgorithm(meta, 'mac', req.algorithm, parseMacAlgorithm) as MacAlgorithm;
    this.checkSize('data', req.data);
    const key = this.ref(meta, meta.primaryVersion);
    return { keyVersion: key.version, algorithm, mac: await this.run(key, () => this.backend.mac(key, algorithm, req.data)) };
  }

  async verifyMac(req: VerifyMacRequest): Promise<VerifyMacResult> {
    const meta = await this.usableKey(req.name, 'mac');
    const algorithm = this.pickAlgorithm(meta, 'mac', req.algorithm, parseMacAlgorithm) as MacAlgorithm;
    this.checkSize('data', req.data);
    const key = this.ref(meta, await this.version(meta, req.keyVersion));
    // A MAC of the wrong length is simply not valid; the backend compares equal lengths in constant time.
    const valid = req.mac.length === macAlgorithms[algorithm].length && (await this.run(key, () => this.backend.verifyMac(key, algorithm, req.data, req.mac)));
    return { keyVersion: key.version, algorithm, valid };
  }

  async randomBytes(length: unknown): Promise<Buffer> {
    const max = this.options.limits.maxRandomBytes;
    if (typeof length !== 'number' || !Number.isInteger(length) || length < 1 || length > max) {
      throw invalid(`length must be a whole number from 1 to ${max}`);
    }
    if (!this.caps.random) throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend has no random number generator`);
    return this.backend.randomBytes(length);
  }

  // --- checks --------------------------------------------------------------------------------------

  private async usableKey(name: unknown, purpose: KeyPurpose): Promise<KeyMetadata> {
    const meta = await this.cache.get(parseKeyName(name));
    this.checkEnabled(meta);
    if (meta.purpose !== purpose) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${meta.name} has purpose ${meta.purpose} and cannot be used to ${purpose}`);
    }
    return meta;
  }

  private checkEnabled(meta: KeyMetadata): void {
    if (meta.state !== 'enabled') throw new HsmBridgeError('KEY_DISABLED', `key ${meta.name} is disabled`);
  }

  private pickAlgorithm<A extends string>(meta: KeyMetadata, purpose: KeyPurpose, requested: unknown, parse: (v: unknown) => A): A {
    const algorithm = requested === undefined || requested === '' ? (defaultAlgorithm(meta.type, purpose) as A | undefined) : parse(requested);
    if (algorithm === undefined) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `${meta.type} keys have no ${purpose} algorithm yet`);
    }
    this.checkAlgorithmFits(meta, purpose, algorithm);
    return algorithm;
  }

  private checkAlgorithmFits(meta: KeyMetadata, purpose: KeyPurpose, algorithm: string): void {
    const fitting = algorithmsFor(meta.type, purpose);
    if (!fitting.includes(algorithm)) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `a ${meta.type} key cannot use ${algorithm}; it can use ${fitting.join(', ') || 'none'}`);
    }
    const supported: readonly string[] = purpose === 'sign' ? this.caps.sign : purpose === 'encrypt' ? this.caps.encrypt : this.caps.mac;
    if (!supported.includes(algorithm)) {
      throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend does not support ${algorithm}`);
    }
  }

  private checkSignInput(algorithm: SignAlgorithm, req: SignRequest): SignInput {
    const { message, digest } = req;
    if ((message === undefined) === (digest === undefined)) throw invalid('give exactly one of message or digest');
    if (message !== undefined) {
      this.checkSize('message', message);
      return { kind: 'message', data: message };
    }
    const hash = signAlgorithms[algorithm].hash;
    if (hash === null) throw invalid(`${algorithm} signs the message itself and cannot sign a digest`);
    if (!this.caps.signDigest.includes(algorithm)) {
      throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend cannot sign a precomputed digest with ${algorithm}`);
    }
    if (digest!.length !== hashes[hash].length) throw invalid(`a ${hash} digest is ${hashes[hash].length} bytes, got ${digest!.length}`);
    return { kind: 'digest', data: digest! };
  }

  private checkSize(field: string, data: Buffer): void {
    if (data.length > this.options.limits.maxDataBytes) {
      throw new HsmBridgeError('PAYLOAD_TOO_LARGE', `${field} is larger than ${this.options.limits.maxDataBytes} bytes`);
    }
  }

  /** The requested version, or the primary one. A version the cache does not know is looked up once more: another replica may have rotated. */
  private async version(meta: KeyMetadata, requested: unknown): Promise<KeyVersion> {
    if (requested === undefined) return meta.primaryVersion;
    const version = parseKeyVersion(requested);
    const has = (m: KeyMetadata) => m.versions.some((v) => v.version === version);
    if (!has(meta) && !has(await this.cache.refresh(meta.name))) {
      throw new HsmBridgeError('KEY_VERSION_NOT_FOUND', `key ${meta.name} has no version ${version}`);
    }
    return version;
  }

  /** Runs a backend operation; a key the backend no longer has (destroyed by another replica) leaves the cache. */
  private async run<T>(key: KeyRef, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (e) {
      if (e instanceof HsmBridgeError && (e.code === 'KEY_NOT_FOUND' || e.code === 'KEY_VERSION_NOT_FOUND')) this.cache.forget(key.name);
      throw e;
    }
  }

  private ref(meta: KeyMetadata, version: KeyVersion): KeyRef {
    return { name: meta.name, version, type: meta.type };
  }
}

