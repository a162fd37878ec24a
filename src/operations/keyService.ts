/**
 * The core's operations. Each public method checks its arguments and the key, then calls the backend
 * (sign() -> checks -> backend.sign()), so every backend gets the same validation and the same errors.
 * Transports (REST, gRPC) decode their wire format into the plain inputs below and call these methods.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { timingSafeEqual } from 'node:crypto';
import {
  MIN_TRUNCATED_MAC_BYTES,
  algorithmsFor,
  cipherPurposes,
  defaultAlgorithm,
  encryptAlgorithms,
  macAlgorithms,
  parseEncryptAlgorithm,
  parseMacAlgorithm,
  parseSignAlgorithm,
  signAlgorithms,
  type EncryptAlgorithm,
  type EncryptAlgorithmInfo,
  type MacAlgorithm,
  type SignAlgorithm,
} from '../algorithms/registry.js';
import type { Backend, Capabilities, KeyRef, RawCiphertext, SignInput } from '../backend/port.js';
import { hashes } from '../algorithms/hashes.js';
import { HsmBridgeError, invalid } from '../errors.js';
import { parseKeyName, parseKeyVersion, type KeyName, type KeyVersion } from '../keys/names.js';
import {
  isPaymentPurpose,
  keyTypes,
  keyUsagesFor,
  macAlgorithmAllowed,
  parseKeyPurpose,
  paymentKindOf,
  parseKeyType,
  parseKeyUsage,
  type KeyMetadata,
  type KeyPurpose,
  type KeyType,
  type KeyUsage,
  type KeyVersionInfo,
  type ModeOfUse,
} from '../keys/types.js';
import { KeyCheckValues, checkBlockFamily, checkBlockOfMaterial } from '../payment/kcv.js';
import { paymentPrimitives } from '../payment/paymentBackend.js';
import { setOddParity } from '../payment/crypto/parity.js';
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

/**
 * exportable: the key may later leave the backend in a TR-31 key block (payment keys only). keyUsage: the
 * X9.143 usage of a payment key (P0; B0; K0 or K1; M0, M1, M3 or M6), absent for the purpose's general kind.
 */
export interface CreateKeyInput { name: unknown; type: unknown; purpose?: unknown; exportable?: unknown; keyUsage?: unknown }
/** A key made from clear material by the core's own schemes (TR-31 import): already parsed. */
export interface ImportKeyInput { name: unknown; type: KeyType; purpose: KeyPurpose; exportable: boolean; modeOfUse?: ModeOfUse; keyUsage?: KeyUsage }
/** keyVersion: sign with this (existing) version rather than the primary, e.g. a JWS that named its kid first. */
export interface SignRequest { name: unknown; algorithm?: unknown; message?: Buffer; digest?: Buffer; keyVersion?: unknown }
export interface VerifyRequest extends SignRequest { signature: Buffer }
/** keyVersion: encrypt under this (existing) version rather than the primary. */
export interface EncryptRequest { name: unknown; algorithm?: unknown; plaintext: Buffer; aad?: Buffer; keyVersion?: unknown }
/** Without keyVersion the ciphertext is an hsm-bridge envelope; with it, the algorithm's raw output. */
export interface DecryptRequest { name: unknown; ciphertext: Buffer; aad?: Buffer; keyVersion?: unknown; algorithm?: unknown }
export interface MacRequest { name: unknown; algorithm?: unknown; data: Buffer }
export interface VerifyMacRequest extends MacRequest { keyVersion?: unknown; mac: Buffer }
/** The peer's public key: a KeyObject, or SPKI DER. */
export interface SharedSecretRequest { name: unknown; keyVersion?: unknown; peerPublicKey: KeyObject | Buffer }

export interface SignResult { keyVersion: KeyVersion; algorithm: SignAlgorithm; signature: Buffer }
export interface VerifyResult { keyVersion: KeyVersion; algorithm: SignAlgorithm; valid: boolean }
export interface EncryptResult { keyVersion: KeyVersion; algorithm: EncryptAlgorithm; ciphertext: Buffer }
export interface DecryptResult { keyVersion: KeyVersion; algorithm: EncryptAlgorithm; plaintext: Buffer }
/** keyCheckValue: for payment keys (TDES, AES), the KCV of the version used. */
export interface MacResult { keyVersion: KeyVersion; algorithm: MacAlgorithm; mac: Buffer; keyCheckValue?: string }
export interface VerifyMacResult { keyVersion: KeyVersion; algorithm: MacAlgorithm; valid: boolean; keyCheckValue?: string }
/** What a payment operation does with a key, checked against the key's X9.143 mode of use. */
export type KeyUse = 'encrypt' | 'decrypt' | 'generate' | 'verify' | 'derive';
/** A checked, resolved key for the payment services. */
export interface PaymentKey { meta: KeyMetadata; version: KeyVersionInfo; ref: KeyRef; keyCheckValue: string }
/** sharedSecret is secret: the caller zeroes it as soon as its KDF has run. */
export interface SharedSecretResult { keyVersion: KeyVersion; sharedSecret: Buffer }

const curveOfKeyType: Partial<Record<KeyType, string>> = Object.fromEntries(Object.entries(keyTypes).flatMap(([type, info]) => ('nodeCurve' in info ? [[type, info.nodeCurve]] : [])));

/** The modes of use (X9.143) that allow each use; a key without a mode of use allows what its purpose does. */
const modesAllowing: Record<KeyUse, readonly ModeOfUse[]> = {
  encrypt: ['B', 'E'],
  decrypt: ['B', 'D'],
  generate: ['C', 'G'],
  verify: ['C', 'V'],
  derive: ['X'],
};

export class KeyService {
  private readonly cache: MetadataCache;
  private readonly caps: Capabilities;
  private readonly kcvs: KeyCheckValues;
  /** Imports run one at a time, so two imports of one value as two kinds cannot both pass the duplicate check. */
  private imports: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly backend: Backend,
    private readonly options: KeyServiceOptions,
  ) {
    // An adapter module written before key agreement existed does not report it: it has none.
    const caps = backend.capabilities();
    this.caps = {
      ...caps,
      keyAgreement: caps.keyAgreement ?? [],
      payment: caps.payment ?? { dukpt: [], importKeys: false, exportKeys: false },
    };
    this.cache = new MetadataCache((name) => backend.describeKey(name), options.metadataCacheTtlMs);
    this.kcvs = new KeyCheckValues(backend);
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
    if (purpose === 'agree' && !this.caps.keyAgreement.includes(type)) {
      throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend cannot do key agreement with ${type} keys`);
    }
    this.checkUsable(type, purpose);
    const exportable = this.parseExportable(input.exportable, purpose);
    const keyUsage = parseKeyUsage(input.keyUsage, type, purpose);
    const meta = await this.backend.createKey({ name, type, purpose, ...(exportable ? { exportable } : {}), ...(keyUsage ? { keyUsage } : {}) });
    this.cache.put(meta);
    return meta;
  }

  /**
   * Creates version 1 of a key from clear material that the core's own schemes produced (a TR-31 import).
   * DES ignores parity bits, so TDES material gets odd parity first (the key, and its KCV, are unchanged).
   * A value the backend already holds as another kind of key is refused (see assertNotHeldAsAnotherKind).
   * The caller zeroes the material.
   */
  importKey(input: ImportKeyInput, material: Buffer): Promise<KeyMetadata> {
    const run = () => this.importOne(input, material);
    const result = this.imports.then(run, run);
    this.imports = result.catch(() => undefined);
    return result;
  }

  private async importOne(input: ImportKeyInput, material: Buffer): Promise<KeyMetadata> {
    const name = parseKeyName(input.name);
    const { type, purpose, keyUsage } = input;
    if (!this.caps.keyTypes.includes(type)) {
      throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend cannot hold ${type} keys`);
    }
    if (!this.caps.payment!.importKeys) throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend cannot import keys`);
    if (!keyTypes[type].purposes.includes(purpose as never)) throw new HsmBridgeError('INCOMPATIBLE_KEY', `a ${type} key cannot have purpose ${purpose}`);
    if (material.length * 8 !== keyTypes[type].bits) throw invalid(`a ${type} key is ${keyTypes[type].bits / 8} bytes`);
    if (keyUsage !== undefined && !keyUsagesFor(type, purpose).includes(keyUsage)) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `a ${type} key of purpose ${purpose} cannot have key usage ${keyUsage}`);
    }
    if (input.exportable) this.parseExportable(true, purpose);
    if (keyTypes[type].family === 'tdes') {
      setOddParity(material);
      const parts = Array.from({ length: material.length / 8 }, (_, i) => material.subarray(i * 8, i * 8 + 8));
      if (parts.some((p, i) => parts.some((q, j) => j > i && p.equals(q)))) {
        throw new HsmBridgeError('INCOMPATIBLE_KEY', 'a TDES key whose parts are equal is single DES and is refused');
      }
    }
    const kind = { purpose, ...(keyUsage ? { keyUsage } : {}), ...(input.modeOfUse ? { modeOfUse: input.modeOfUse } : {}) };
    await this.assertNotHeldAsAnotherKind(type, kind, material);
    const meta = await paymentPrimitives(this.backend).importKey({ name, type, ...kind, ...(input.exportable ? { exportable: true } : {}) }, material);
    this.cache.put(meta);
    return meta;
  }

  /**
   * One key value must not be held as two kinds: the same bytes as a PIN key and as a MAC key make
   * ISO9797_ALG1 over one block a TDES-ECB oracle under the PIN key; as a MAC key of usage M1 and one of
   * M3, the retail MAC's single-DES chain exposes the other. The material's whole check block (TDES: ECB
   * of zeros; AES: CMAC of zeros, computed here from the clear value the import has anyway) is compared
   * with the check blocks of every version of the backend's payment keys of the same family (computed by
   * the backend, cached like KCVs); a match with a key of another purpose, usage or mode of use is refused
   * (paymentKindOf: an absent usage or mode is the purpose's general one, so a PIN key exported and
   * imported back as P0, mode B, is the same kind).
   * The whole block, never the 3-byte KCV, so that no two different keys match. A key that cannot be
   * checked fails the import (fail closed), unless it was destroyed meanwhile. Within this process imports
   * are serialized; replicas importing the same value at the same moment are not covered.
   */
  private async assertNotHeldAsAnotherKind(
    type: KeyType,
    kind: { purpose: KeyPurpose; keyUsage?: KeyUsage; modeOfUse?: ModeOfUse },
    material: Buffer,
  ): Promise<void> {
    const family = checkBlockFamily({ type, purpose: kind.purpose });
    if (!family) return;
    const candidate = checkBlockOfMaterial(family, material);
    try {
      for (const meta of await this.backend.listKeys()) {
        if (checkBlockFamily(meta) !== family) continue;
        if (paymentKindOf(meta) === paymentKindOf({ type, ...kind })) continue;
        for (const version of meta.versions) {
          const ref = this.ref(meta, version.version);
          let same: boolean;
          try {
            same = await this.run(ref, () => this.kcvs.sameBlock(meta, version, candidate));
          } catch (e) {
            if (e instanceof HsmBridgeError && (e.code === 'KEY_NOT_FOUND' || e.code === 'KEY_VERSION_NOT_FOUND')) continue;
            throw e;
          }
          // Which key holds it is not said: a key block's holder would learn where that value lives.
          if (same) throw new HsmBridgeError('INCOMPATIBLE_KEY', 'this key value is already held by a key of another kind (purpose, usage or mode of use)');
        }
      }
    } finally {
      candidate.fill(0);
    }
  }

  /**
   * Whether a payment key's check block starts with `prefix` (a KCV someone else computed, as a TR-31
   * key block's KP block carries it), without the block leaving the core.
   */
  checkBlockStartsWith(key: PaymentKey, prefix: Buffer): Promise<boolean> {
    return this.run(key.ref, () => this.kcvs.startsWith(key.meta, key.version, prefix));
  }

  /** The KCV of a payment key's version (its primary one by default); undefined for other keys. */
  keyCheckValue(meta: KeyMetadata, version?: KeyVersionInfo): Promise<string | undefined> {
    const v = version ?? meta.versions.find((x) => x.version === meta.primaryVersion);
    return v ? this.kcvs.of(meta, v) : Promise.resolve(undefined);
  }

  /**
   * A key that nothing the backend offers could use is not made: the PIN, BDK and KBPK kinds need the
   * backend's payment primitives; every other purpose needs one offered algorithm that fits the type.
   */
  private checkUsable(type: KeyType, purpose: KeyPurpose): void {
    if (purpose === 'pin' || purpose === 'bdk' || purpose === 'kbpk') {
      if (typeof this.backend.encryptBlocks !== 'function') {
        throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend has no payment operations for ${purpose} keys`);
      }
      return;
    }
    const offered: readonly string[] = [...this.caps.sign, ...this.caps.encrypt, ...this.caps.mac, ...(this.caps.keyAgreement.includes(type) ? ['ECDH'] : [])];
    if (!algorithmsFor(type, purpose).some((a) => offered.includes(a))) {
      throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend offers no algorithm a ${type} key of purpose ${purpose} could use`);
    }
  }

  private parseExportable(value: unknown, purpose: KeyPurpose): boolean {
    if (value === undefined || value === false) return false;
    if (value !== true) throw invalid('exportable must be true or false');
    if (!isPaymentPurpose(purpose)) throw new HsmBridgeError('INCOMPATIBLE_KEY', `only payment keys (pin, mac, bdk, kbpk) can be exportable`);
    if (!this.caps.payment!.exportKeys) throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend cannot export keys`);
    return true;
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

  /**
   * An enabled key of `purpose` and one of its versions (the primary one by default), from the metadata
   * cache: for work done in process with a version's public key (JWS verification, encryption to a key),
   * with the same checks and errors as the operations below.
   */
  async usableKeyVersion(name: unknown, purpose: KeyPurpose, keyVersion?: unknown): Promise<{ meta: KeyMetadata; version: KeyVersionInfo }> {
    return this.findVersion(await this.usableKey(name, purpose), keyVersion);
  }

  // --- operations ----------------------------------------------------------------------------------

  async sign(req: SignRequest): Promise<SignResult> {
    const meta = await this.usableKey(req.name, 'sign');
    const algorithm = this.pickAlgorithm(meta, 'sign', req.algorithm, parseSignAlgorithm) as SignAlgorithm;
    const input = this.checkSignInput(algorithm, req);
    const key = this.ref(meta, await this.version(meta, req.keyVersion));
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

  /** Encrypts data with an `encrypt` key, or wraps key material with a `wrap` key (AES_KW); the key's purpose decides which algorithms fit. */
  async encrypt(req: EncryptRequest): Promise<EncryptResult> {
    const { keyVersion, algorithm, raw } = await this.encryptRaw(req);
    return { keyVersion, algorithm, ciphertext: sealEnvelope(algorithm, keyVersion, raw) };
  }

  /** As encrypt, with the algorithm's raw output rather than an envelope: for work done in process (JWE). */
  async encryptRaw(req: EncryptRequest): Promise<{ keyVersion: KeyVersion; algorithm: EncryptAlgorithm; raw: RawCiphertext }> {
    const meta = await this.usableKey(req.name, cipherPurposes);
    const algorithm = this.pickAlgorithm(meta, meta.purpose, req.algorithm, parseEncryptAlgorithm) as EncryptAlgorithm;
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
    const key = this.ref(meta, await this.version(meta, req.keyVersion));
    const raw = await this.run(key, () => this.backend.encrypt(key, algorithm, req.plaintext, req.aad));
    return { keyVersion: key.version, algorithm, raw };
  }

  async decrypt(req: DecryptRequest): Promise<DecryptResult> {
    const meta = await this.usableKey(req.name, cipherPurposes);
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
      this.checkAlgorithmFits(meta, meta.purpose, algorithm);
    } else {
      algorithm = this.pickAlgorithm(meta, meta.purpose, req.algorithm, parseEncryptAlgorithm) as EncryptAlgorithm;
      version = parseKeyVersion(req.keyVersion);
      raw = splitRaw(algorithm, req.ciphertext);
    }
    this.checkNoAad(algorithm, req.aad);
    const wrap = (encryptAlgorithms[algorithm] as EncryptAlgorithmInfo).wrap;
    if (wrap && (raw.data.length < wrap.minLength + wrap.overhead || raw.data.length % wrap.blockLength !== 0)) {
      throw invalid(`an ${algorithm} ciphertext is a multiple of ${wrap.blockLength} bytes, at least ${wrap.minLength + wrap.overhead}`);
    }
    const key = this.ref(meta, await this.version(meta, version));
    const plaintext = await this.run(key, () => this.backend.decrypt(key, algorithm, raw, req.aad));
    return { keyVersion: key.version, algorithm, plaintext };
  }

  async mac(req: MacRequest): Promise<MacResult> {
    const meta = await this.usableKey(req.name, 'mac');
    this.checkModeOfUse(meta, 'generate');
    const algorithm = this.pickMacAlgorithm(meta, req.algorithm);
    this.checkSize('data', req.data);
    const key = this.ref(meta, meta.primaryVersion);
    const mac = await this.run(key, () => this.backend.mac(key, algorithm, req.data));
    return { keyVersion: key.version, algorithm, mac, ...(await this.kcvOf(meta, key.version)) };
  }

  /**
   * The payment MACs may be verified truncated to their leftmost bytes (at least MIN_TRUNCATED_MAC_BYTES),
   * as ISO 8583 messages carry them; HMAC only at full length.
   */
  async verifyMac(req: VerifyMacRequest): Promise<VerifyMacResult> {
    const meta = await this.usableKey(req.name, 'mac');
    this.checkModeOfUse(meta, 'verify');
    const algorithm = this.pickMacAlgorithm(meta, req.algorithm);
    this.checkSize('data', req.data);
    const key = this.ref(meta, await this.version(meta, req.keyVersion));
    const full = macAlgorithms[algorithm].length;
    const truncatable = macAlgorithms[algorithm].family !== 'hmac';
    let valid: boolean;
    if (req.mac.length === full) {
      valid = await this.run(key, () => this.backend.verifyMac(key, algorithm, req.data, req.mac));
    } else if (truncatable && req.mac.length >= MIN_TRUNCATED_MAC_BYTES && req.mac.length < full) {
      const computed = await this.run(key, () => this.backend.mac(key, algorithm, req.data));
      valid = timingSafeEqual(computed.subarray(0, req.mac.length), req.mac);
      computed.fill(0);
    } else {
      valid = false; // a MAC of another length is simply not valid
    }
    return { keyVersion: key.version, algorithm, valid, ...(await this.kcvOf(meta, key.version)) };
  }

  private async kcvOf(meta: KeyMetadata, version: KeyVersion): Promise<{ keyCheckValue?: string }> {
    const info = meta.versions.find((v) => v.version === version);
    const kcv = info && (await this.kcvs.of(meta, info));
    return kcv ? { keyCheckValue: kcv } : {};
  }

  /**
   * An enabled payment key of `purpose`, its version (the primary one by default) and KCV, after checking
   * that its mode of use allows `use`: for the payment services (src/payment), which call the backend's
   * payment primitives themselves.
   */
  async paymentKey(name: unknown, purpose: KeyPurpose, use: KeyUse, keyVersion?: unknown): Promise<PaymentKey> {
    const { meta, version } = await this.findVersion(await this.usableKey(name, purpose), keyVersion);
    this.checkModeOfUse(meta, use);
    const ref = this.ref(meta, version.version);
    const keyCheckValue = await this.run(ref, () => this.kcvs.of(meta, version));
    if (keyCheckValue === undefined) throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${meta.name} is not a payment key`);
    return { meta, version, ref, keyCheckValue };
  }

  /** The backend, for the payment services: they call its payment primitives on keys resolved by paymentKey(). */
  backendForPayments(): Backend {
    return this.backend;
  }

  /** Runs a backend call on a resolved key; a key another replica destroyed leaves the metadata cache. */
  onKey<T>(key: KeyRef, operation: () => Promise<T>): Promise<T> {
    return this.run(key, operation);
  }

  private checkModeOfUse(meta: KeyMetadata, use: KeyUse): void {
    if (meta.modeOfUse !== undefined && !modesAllowing[use].includes(meta.modeOfUse)) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${meta.name} has mode of use ${meta.modeOfUse}, which does not allow it to ${use}`);
    }
  }

  /**
   * ECDH with a key of purpose 'agree' and a peer's public key on the same curve. For hsm-bridge's own
   * key-agreement schemes (JWE ECDH-ES) only: it is deliberately not an API operation, since the raw
   * shared secret must not be handed to callers. The peer key is checked here (curve, point on the
   * curve: node:crypto refuses a point off the curve when it parses the key) before the backend sees it.
   */
  async deriveSharedSecret(req: SharedSecretRequest): Promise<SharedSecretResult> {
    const meta = await this.usableKey(req.name, 'agree');
    this.checkAlgorithmFits(meta, 'agree', 'ECDH');
    const peer = this.peerPublicKey(req.peerPublicKey);
    if (peer.asymmetricKeyType !== 'ec' || peer.asymmetricKeyDetails?.namedCurve !== curveOfKeyType[meta.type]) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `the peer public key is not on the curve of ${meta.type} key ${meta.name}`);
    }
    const spki = peer.export({ format: 'der', type: 'spki' });
    const key = this.ref(meta, await this.version(meta, req.keyVersion));
    return { keyVersion: key.version, sharedSecret: await this.run(key, () => this.backend.deriveSharedSecret(key, spki)) };
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

  /** An enabled key of `purpose` (or of one of several, for the operations that serve more than one). */
  private async usableKey(name: unknown, purpose: KeyPurpose | readonly KeyPurpose[]): Promise<KeyMetadata> {
    const meta = await this.cache.get(parseKeyName(name));
    this.checkEnabled(meta);
    const purposes = typeof purpose === 'string' ? [purpose] : purpose;
    if (!purposes.includes(meta.purpose)) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${meta.name} has purpose ${meta.purpose} and cannot be used to ${purposes.join(' or ')}`);
    }
    return meta;
  }

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

  /**
   * A MAC algorithm the key's type and X9.143 usage allow (macAlgorithmAllowed): the requested one, or by
   * default the first the usage allows (an M3 key's default is the retail MAC).
   */
  private pickMacAlgorithm(meta: KeyMetadata, requested: unknown): MacAlgorithm {
    const allowed = (algorithmsFor(meta.type, 'mac') as MacAlgorithm[]).filter((a) => macAlgorithmAllowed(meta.keyUsage, a));
    const algorithm = requested === undefined || requested === '' ? allowed[0] : parseMacAlgorithm(requested);
    if (algorithm === undefined) throw new HsmBridgeError('INCOMPATIBLE_KEY', `${meta.type} keys have no mac algorithm yet`);
    this.checkAlgorithmFits(meta, 'mac', algorithm);
    if (!allowed.includes(algorithm)) {
      const usage = meta.keyUsage === undefined ? 'no key usage (ISO9797_ALG3 needs a key of usage M3)' : `key usage ${meta.keyUsage}`;
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${meta.name} has ${usage} and cannot use ${algorithm}; it can use ${allowed.join(', ') || 'none'}`);
    }
    return algorithm;
  }

  private checkAlgorithmFits(meta: KeyMetadata, purpose: KeyPurpose, algorithm: string): void {
    const fitting = algorithmsFor(meta.type, purpose);
    if (!fitting.includes(algorithm)) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `a ${meta.type} key cannot use ${algorithm}; it can use ${fitting.join(', ') || 'none'}`);
    }
    const supported: readonly string[] =
      purpose === 'sign' ? this.caps.sign
      : purpose === 'encrypt' || purpose === 'wrap' ? this.caps.encrypt
      : purpose === 'mac' ? this.caps.mac
      : this.caps.keyAgreement.includes(meta.type) ? ['ECDH'] : [];
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

  /** The requested version, or the primary one. */
  private async version(meta: KeyMetadata, requested: unknown): Promise<KeyVersion> {
    return requested === undefined ? meta.primaryVersion : (await this.findVersion(meta, requested)).version.version;
  }

  /**
   * The requested version (or the primary one) and the metadata it was found in. A version the cache does
   * not know is looked up once more, with one refresh: another replica may have rotated.
   */
  private async findVersion(meta: KeyMetadata, requested: unknown): Promise<{ meta: KeyMetadata; version: KeyVersionInfo }> {
    const wanted = requested === undefined ? meta.primaryVersion : parseKeyVersion(requested);
    const find = (m: KeyMetadata) => m.versions.find((v) => v.version === wanted);
    const known = find(meta);
    if (known) return { meta, version: known };
    const current = await this.cache.refresh(meta.name);
    this.checkEnabled(current);
    const found = find(current);
    if (!found) throw new HsmBridgeError('KEY_VERSION_NOT_FOUND', `key ${meta.name} has no version ${wanted}`);
    return { meta: current, version: found };
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

