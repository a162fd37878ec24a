/**
 * The core's operations. Each public method checks its arguments and the key, then calls the backend
 * (sign() -> checks -> backend.sign()), so every backend gets the same validation and the same errors.
 * Transports (REST, gRPC) decode their wire format into the plain inputs of requests.ts and call these methods.
 * The payment keys and their primitives are paymentKeys (src/payment/paymentKeys.ts), on the same key cache.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { timingSafeEqual } from 'node:crypto';
import {
  MIN_TRUNCATED_MAC_BYTES,
  algorithmsFor,
  cipherPurposes,
  encryptAlgorithms,
  macAlgorithms,
  parseEncryptAlgorithm,
  parseSignAlgorithm,
  signAlgorithms,
  type EncryptAlgorithm,
  type EncryptAlgorithmInfo,
  type SignAlgorithm,
} from '../algorithms/registry.js';
import type { Backend, Capabilities, KeyRef, RawCiphertext, SignInput } from '../backend/port.js';
import { hashes } from '../algorithms/hashes.js';
import { HsmBridgeError, invalid } from '../errors.js';
import { parseKeyName, parseKeyVersion, type KeyName, type KeyVersion } from '../keys/names.js';
import {
  checkMinDecryptionVersion,
  keyTypes,
  parseKeyPurpose,
  parseKeyType,
  parseKeyUsage,
  type KeyMetadata,
  type KeyPurpose,
  type KeyType,
  type KeyVersionInfo,
} from '../keys/types.js';
import { checkModeOfUse } from '../payment/modeOfUse.js';
import { PaymentKeys } from '../payment/paymentKeys.js';
import { WrappedImport, type WrappingKeyConfig } from './wrappedImport.js';
import { CeremonyService } from '../ceremonies/ceremonyService.js';
import { openEnvelope, sealEnvelope, splitRaw } from './ciphertext.js';
import { AlgorithmChoice } from './algorithmChoice.js';
import { ConcurrencyLimit } from './concurrencyLimit.js';
import { DataProtection, checkDataKeyWrapper } from '../dataProtection/dataProtection.js';
import { KeyResolver, checkEnabled } from './keyResolver.js';
import type { CreateKeyInput, UpdateKeyInput, DecryptRequest, DecryptResult, EncryptRequest, EncryptResult, MacRequest, MacResult, SharedSecretRequest } from './requests.js';
import type { SharedSecretResult, SignRequest, SignResult, VerifyMacRequest, VerifyMacResult, VerifyRequest, VerifyResult } from './requests.js';

export interface KeyServiceLimits {
  /** Largest message, plaintext, ciphertext or MAC input, in bytes. */
  readonly maxDataBytes: number;
  /** Largest random byte count per call. */
  readonly maxRandomBytes: number;
  /** Most items in one batch request; default 256. */
  readonly maxBatchItems?: number;
}

export interface KeyServiceOptions {
  readonly limits: KeyServiceLimits;
  /** How long key metadata is cached; other replicas see state changes after at most this long. 0 = no cache. */
  readonly metadataCacheTtlMs: number;
  /** The import wrapping key (BYOK); default DEFAULT_WRAPPING_KEY. */
  readonly wrappingKey?: WrappingKeyConfig;
  /** How long a key ceremony may take; default one hour. */
  readonly ceremonyTtlMs?: number;
}

/** Most items in one batch request, and most values in one tokenize or FPE request, unless limits.maxBatchItems says otherwise. */
export const DEFAULT_MAX_BATCH_ITEMS = 256;

export const DEFAULT_WRAPPING_KEY: WrappingKeyConfig = { name: 'hsm-bridge-import', type: 'RSA_3072' };

export type * from './requests.js';

/** The operations on a key, as far as checks on the key alone tell them apart (checkKeyFor). */
export type KeyOperation = 'sign' | 'cipher' | 'mac' | 'verifyMac' | 'dataKey';

const curveOfKeyType: Partial<Record<KeyType, string>> = Object.fromEntries(Object.entries(keyTypes).flatMap(([type, info]) => ('nodeCurve' in info ? [[type, info.nodeCurve]] : [])));

export class KeyService {
  private readonly caps: Capabilities;
  private readonly keys: KeyResolver;
  private readonly algorithms: AlgorithmChoice;
  /** The payment keys and their primitives, for the payment services (src/payment), on this service's metadata cache. */
  readonly paymentKeys: PaymentKeys;
  /** Wrapped import (BYOK) and the import wrapping key. */
  readonly wrappedImport: WrappedImport;
  /** Key ceremonies: keys formed from components under dual control. */
  readonly ceremonies: CeremonyService;
  /**
   * The items of all batches in flight at once: twice the backend's sessions or connections now serving,
   * so that none idles while the next item is handed over (the software backend works on libuv's 4 threads).
   */
  readonly batchItems: ConcurrencyLimit;
  /** Data keys, rewrapping, pseudonymisation tokens and format-preserving encryption. */
  readonly dataProtection: DataProtection;

  constructor(
    private readonly backend: Backend,
    private readonly options: KeyServiceOptions,
  ) {
    this.caps = backend.capabilities();
    this.keys = new KeyResolver(backend, options.metadataCacheTtlMs);
    this.algorithms = new AlgorithmChoice(this.caps, backend.kind);
    this.paymentKeys = new PaymentKeys(backend, this.keys);
    this.wrappedImport = new WrappedImport(backend, this.keys, this.paymentKeys, options.wrappingKey ?? DEFAULT_WRAPPING_KEY, (type, purpose) => this.checkUsable(type, purpose));
    this.ceremonies = new CeremonyService(backend, this.paymentKeys, { ttlMs: options.ceremonyTtlMs ?? 3_600_000 });
    this.batchItems = new ConcurrencyLimit(() => 2 * (backend.gauges().sessionPool?.size ?? 4));
    this.dataProtection = new DataProtection(backend, this.caps, this.keys, this, this.batchItems, () => this.maxBatchItems);
  }

  get limits(): KeyServiceLimits {
    return this.options.limits;
  }

  get maxBatchItems(): number {
    return this.options.limits.maxBatchItems ?? DEFAULT_MAX_BATCH_ITEMS;
  }

  /**
   * The checks an operation makes on the key alone: it exists, is enabled, and its purpose and mode of use
   * allow the operation. A batch makes them once, before any item runs, so that what would fail every
   * item fails the request.
   */
  async checkKeyFor(name: unknown, operation: KeyOperation): Promise<void> {
    switch (operation) {
      case 'sign':
        await this.keys.usableKey(name, 'sign');
        return;
      case 'cipher':
        await this.keys.usableKey(name, cipherPurposes);
        return;
      case 'mac':
      case 'verifyMac':
        checkModeOfUse(await this.keys.usableKey(name, 'mac'), operation === 'mac' ? 'generate' : 'verify');
        return;
      case 'dataKey':
        checkDataKeyWrapper(await this.keys.usableKey(name, 'encrypt'));
        return;
    }
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
    if (purpose === 'agree' && !this.caps.keyAgreement.includes(type)) {
      throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend cannot do key agreement with ${type} keys`);
    }
    this.checkUsable(type, purpose);
    const exportable = this.paymentKeys.parseExportable(input.exportable, purpose);
    const keyUsage = parseKeyUsage(input.keyUsage, type, purpose);
    const meta = await this.backend.createKey({ name, type, purpose, ...(exportable ? { exportable } : {}), ...(keyUsage ? { keyUsage } : {}) });
    this.keys.cache.put(meta);
    return meta;
  }

  /** The KCV of a payment key's version (its primary one by default); undefined for other keys. */
  keyCheckValue(meta: KeyMetadata, version?: KeyVersionInfo): Promise<string | undefined> {
    return this.paymentKeys.keyCheckValue(meta, version);
  }

  /**
   * A key that nothing the backend offers could use is not made: every purpose but the PIN, BDK and KBPK
   * kinds needs one offered algorithm that fits the type. Those kinds are for the backend's payment
   * primitives, and a backend without them refuses to create them.
   */
  private checkUsable(type: KeyType, purpose: KeyPurpose): void {
    if (purpose === 'pin' || purpose === 'bdk' || purpose === 'kbpk') return;
    if (purpose === 'wrap' && keyTypes[type].family === 'rsa') {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', 'an RSA key of purpose wrap is the service\'s own import wrapping key (GET /v1/wrapping-key): it is not created through the API');
    }
    const offered: readonly string[] = [
      ...this.caps.sign,
      ...this.caps.encrypt,
      ...this.caps.mac,
      ...(this.caps.keyAgreement.includes(type) ? ['ECDH'] : []),
      ...(this.caps.fpe ? ['FF1'] : []),
    ];
    if (!algorithmsFor(type, purpose).some((a) => offered.includes(a))) {
      throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend offers no algorithm a ${type} key of purpose ${purpose} could use`);
    }
  }

  async listKeys(): Promise<KeyMetadata[]> {
    return this.backend.listKeys();
  }

  /** Always asks the backend, so that what a caller reads is current. */
  getKey(name: unknown): Promise<KeyMetadata> {
    return this.keys.current(name);
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
      this.keys.cache.forget(keyName);
    }
  }

  /**
   * Retires the versions below `minDecryptionVersion` (KEY_VERSION_RETIRED on every use), or brings them
   * back when it is lowered. It names an existing version, at most the primary one.
   */
  async updateKey(input: UpdateKeyInput): Promise<KeyMetadata> {
    const keyName = parseKeyName(input.name);
    if (input.minDecryptionVersion === undefined) throw invalid('give minDecryptionVersion, the only setting that can change');
    const wanted = parseKeyVersion(input.minDecryptionVersion);
    return this.lifecycle(
      keyName,
      async (n) => {
        const meta = await this.backend.describeKey(n);
        checkMinDecryptionVersion(n, meta.versions.map((v) => v.version), wanted);
        return this.backend.setMinDecryptionVersion(n, wanted);
      },
      false,
    );
  }

  /** Destroys, for good, the versions below the key's minDecryptionVersion; answers the key before and after. */
  async trimKey(name: unknown): Promise<{ before: KeyMetadata; after: KeyMetadata }> {
    const keyName = parseKeyName(name);
    const before = await this.backend.describeKey(keyName);
    const after = await this.lifecycle(keyName, (n) => this.backend.trimKey(n), false);
    return { before, after };
  }

  private async lifecycle(
    name: unknown,
    change: (name: KeyName) => Promise<KeyMetadata>,
    requireEnabled: boolean,
  ): Promise<KeyMetadata> {
    const keyName = parseKeyName(name);
    if (requireEnabled) checkEnabled(await this.backend.describeKey(keyName));
    try {
      const meta = await change(keyName);
      this.keys.cache.put(meta);
      return meta;
    } catch (e) {
      this.keys.cache.forget(keyName);
      throw e;
    }
  }

  /**
   * An enabled key of `purpose` and one of its versions (the primary one by default), from the metadata
   * cache: for work done in process with a version's public key (JWS verification, encryption to a key),
   * with the same checks and errors as the operations below.
   */
  async usableKeyVersion(name: unknown, purpose: KeyPurpose, keyVersion?: unknown): Promise<{ meta: KeyMetadata; version: KeyVersionInfo }> {
    return this.keys.findVersion(await this.keys.usableKey(name, purpose), keyVersion);
  }

  // --- operations ----------------------------------------------------------------------------------

  async sign(req: SignRequest): Promise<SignResult> {
    const meta = await this.keys.usableKey(req.name, 'sign');
    const algorithm = this.algorithms.pick(meta, 'sign', req.algorithm, parseSignAlgorithm) as SignAlgorithm;
    const input = this.checkSignInput(algorithm, req);
    const { key, result: signature } = await this.keys.onVersion(meta, req.keyVersion, (k) => this.backend.sign(k, algorithm, input));
    return { keyVersion: key.version, algorithm, signature };
  }

  async verify(req: VerifyRequest): Promise<VerifyResult> {
    const meta = await this.keys.usableKey(req.name, 'sign');
    const algorithm = this.algorithms.pick(meta, 'sign', req.algorithm, parseSignAlgorithm) as SignAlgorithm;
    const input = this.checkSignInput(algorithm, req);
    this.checkSize('signature', req.signature);
    const { key, result: valid } = await this.keys.onVersion(meta, req.keyVersion, (k) => this.backend.verify(k, algorithm, input, req.signature));
    return { keyVersion: key.version, algorithm, valid };
  }

  /** Encrypts data with an `encrypt` key, or wraps key material with a `wrap` key (AES_KW); the key's purpose decides which algorithms fit. */
  async encrypt(req: EncryptRequest): Promise<EncryptResult> {
    const { keyVersion, algorithm, raw } = await this.encryptRaw(req);
    return { keyVersion, algorithm, ciphertext: sealEnvelope(algorithm, keyVersion, raw) };
  }

  /** As encrypt, with the algorithm's raw output rather than an envelope: for work done in process (JWE). */
  async encryptRaw(req: EncryptRequest): Promise<{ keyVersion: KeyVersion; algorithm: EncryptAlgorithm; raw: RawCiphertext }> {
    const meta = await this.keys.usableKey(req.name, cipherPurposes);
    const algorithm = this.algorithms.pick(meta, meta.purpose, req.algorithm, parseEncryptAlgorithm) as EncryptAlgorithm;
    this.checkSize('plaintext', req.plaintext);
    if (req.aad) this.checkSize('aad', req.aad);
    this.checkNoAad(algorithm, req.aad);
    const info: EncryptAlgorithmInfo = encryptAlgorithms[algorithm];
    if (info.oaepHashLength !== undefined) {
      const max = keyTypes[meta.type].bits / 8 - 2 * info.oaepHashLength - 2;
      if (req.plaintext.length > max) throw invalid(`plaintext is too long for RSA-OAEP with this key (at most ${max} bytes)`);
    }
    if (info.wrap && (req.plaintext.length < info.wrap.minLength || req.plaintext.length % info.wrap.blockLength !== 0)) {
      throw invalid(`${algorithm} wraps key material: a multiple of ${info.wrap.blockLength} bytes, at least ${info.wrap.minLength}`);
    }
    const { key, result: raw } = await this.keys.onVersion(meta, req.keyVersion, (k) => this.backend.encrypt(k, algorithm, req.plaintext, req.aad));
    return { keyVersion: key.version, algorithm, raw };
  }

  async decrypt(req: DecryptRequest): Promise<DecryptResult> {
    const meta = await this.keys.usableKey(req.name, cipherPurposes);
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
      this.algorithms.checkFits(meta, meta.purpose, algorithm);
    } else {
      algorithm = this.algorithms.pick(meta, meta.purpose, req.algorithm, parseEncryptAlgorithm) as EncryptAlgorithm;
      version = parseKeyVersion(req.keyVersion);
      raw = splitRaw(algorithm, req.ciphertext);
    }
    this.checkNoAad(algorithm, req.aad);
    const wrap = (encryptAlgorithms[algorithm] as EncryptAlgorithmInfo).wrap;
    if (wrap && (raw.data.length < wrap.minLength + wrap.overhead || raw.data.length % wrap.blockLength !== 0)) {
      throw invalid(`an ${algorithm} ciphertext is a multiple of ${wrap.blockLength} bytes, at least ${wrap.minLength + wrap.overhead}`);
    }
    const { key, result: plaintext } = await this.keys.onVersion(meta, version, (k) => this.backend.decrypt(k, algorithm, raw, req.aad));
    return { keyVersion: key.version, algorithm, plaintext };
  }

  async mac(req: MacRequest): Promise<MacResult> {
    const meta = await this.keys.usableKey(req.name, 'mac');
    checkModeOfUse(meta, 'generate');
    const algorithm = this.algorithms.pickMac(meta, req.algorithm);
    this.checkSize('data', req.data);
    const used = await this.keys.onVersion(meta, undefined, (k) => this.backend.mac(k, algorithm, req.data));
    return { keyVersion: used.key.version, algorithm, mac: used.result, ...(await this.kcvOf(used.meta, used.key.version)) };
  }

  /**
   * The payment MACs may be verified truncated to their leftmost bytes (at least MIN_TRUNCATED_MAC_BYTES),
   * as ISO 8583 messages carry them; HMAC only at full length.
   */
  async verifyMac(req: VerifyMacRequest): Promise<VerifyMacResult> {
    const meta = await this.keys.usableKey(req.name, 'mac');
    checkModeOfUse(meta, 'verify');
    const algorithm = this.algorithms.pickMac(meta, req.algorithm);
    this.checkSize('data', req.data);
    const full = macAlgorithms[algorithm].length;
    const truncatable = macAlgorithms[algorithm].family !== 'hmac';
    const check = async (key: KeyRef): Promise<boolean> => {
      if (req.mac.length === full) return this.backend.verifyMac(key, algorithm, req.data, req.mac);
      if (!truncatable || req.mac.length < MIN_TRUNCATED_MAC_BYTES || req.mac.length > full) return false; // a MAC of another length is simply not valid
      const computed = await this.backend.mac(key, algorithm, req.data);
      try {
        return timingSafeEqual(computed.subarray(0, req.mac.length), req.mac);
      } finally {
        computed.fill(0);
      }
    };
    const used = await this.keys.onVersion(meta, req.keyVersion, check);
    return { keyVersion: used.key.version, algorithm, valid: used.result, ...(await this.kcvOf(used.meta, used.key.version)) };
  }

  private async kcvOf(meta: KeyMetadata, version: KeyVersion): Promise<{ keyCheckValue?: string }> {
    const info = meta.versions.find((v) => v.version === version);
    const kcv = info && (await this.paymentKeys.keyCheckValue(meta, info));
    return kcv ? { keyCheckValue: kcv } : {};
  }

  /**
   * ECDH with a key of purpose 'agree' and a peer's public key on the same curve. For hsm-bridge's own
   * key-agreement schemes (JWE ECDH-ES) only: it is deliberately not an API operation, since the raw
   * shared secret must not be handed to callers. The peer key is checked here (curve, point on the
   * curve: node:crypto refuses a point off the curve when it parses the key) before the backend sees it.
   */
  async deriveSharedSecret(req: SharedSecretRequest): Promise<SharedSecretResult> {
    const meta = await this.keys.usableKey(req.name, 'agree');
    this.algorithms.checkFits(meta, 'agree', 'ECDH');
    const peer = this.peerPublicKey(req.peerPublicKey);
    if (peer.asymmetricKeyType !== 'ec' || peer.asymmetricKeyDetails?.namedCurve !== curveOfKeyType[meta.type]) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `the peer public key is not on the curve of ${meta.type} key ${meta.name}`);
    }
    const spki = peer.export({ format: 'der', type: 'spki' });
    const { key, result: sharedSecret } = await this.keys.onVersion(meta, req.keyVersion, (k) => this.backend.deriveSharedSecret(k, spki));
    return { keyVersion: key.version, sharedSecret };
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

  private checkNoAad(algorithm: EncryptAlgorithm, aad: Buffer | undefined): void {
    if (aad && algorithm !== 'AES_GCM') throw invalid(`${algorithm} takes no aad`);
  }

  private peerPublicKey(peer: KeyObject | Buffer): KeyObject {
    if (!Buffer.isBuffer(peer)) {
      if (peer.type !== 'public') throw invalid('the peer key must be a public key');
      return peer;
    }
    try {
      return createPublicKey({ key: peer, format: 'der', type: 'spki' });
    } catch {
      throw invalid('the peer public key is not a valid SubjectPublicKeyInfo (or its point is not on the curve)');
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
}
