/**
 * Bring your own key (BYOK): keys imported wrapped under the service's import wrapping key, in the
 * CKM_RSA_AES_KEY_WRAP layout that Vault, Google Cloud KMS import jobs and CloudHSM use (see
 * WrappingScheme in src/backend/port.ts). The wrapping key is an RSA key of purpose wrap under a reserved
 * name, made on first use and rotatable; nothing but an import can use it (no API algorithm fits the
 * purpose, and the pipeline refuses operations that name it).
 *
 * The core checks what it can know without the material (names, type, purpose, usage, the scheme, the
 * blob's shape, the wrapping key's version); the backend unwraps, inside the HSM where it can, and checks
 * the material against the type before it keeps anything.
 */
import type { Backend, ImportTarget, WrappingScheme } from '../backend/port.js';
import { wrappingSchemes } from '../backend/port.js';
import { HsmBridgeError, invalid } from '../errors.js';
import { parseKeyName, type KeyName } from '../keys/names.js';
import { publicKeyForms, type PublicKeyForms } from '../keys/publicKey.js';
import { isPaymentPurpose, keyTypes, parseKeyPurpose, parseKeyType, parseKeyUsage, type KeyMetadata, type KeyType } from '../keys/types.js';
import type { PaymentKeys } from '../payment/paymentKeys.js';
import { checkEnabled, refTo, type KeyResolver } from './keyResolver.js';

/** AES key wrap with padding adds 8 bytes and works on 8-byte blocks; the smallest wrap is 16 bytes. */
const KWP_MIN = 16;
const KWP_BLOCK = 8;

export interface WrappingKeyConfig {
  /** The reserved name of the import wrapping key. */
  readonly name: string;
  readonly type: 'RSA_3072' | 'RSA_4096';
}

export interface WrappedKeyInput {
  wrappedKey: Buffer;
  wrapping: unknown;
  wrappingKeyVersion?: unknown;
}

export interface ImportWrappedInput extends WrappedKeyInput {
  name: unknown;
  type: unknown;
  purpose?: unknown;
  exportable?: unknown;
  keyUsage?: unknown;
}

export interface ImportVersionInput extends WrappedKeyInput {
  name: unknown;
}

export interface WrappingKeyView {
  readonly keyName: string;
  readonly keyVersion: number;
  readonly publicKey: PublicKeyForms;
  /** The schemes this backend unwraps. */
  readonly wrappings: readonly WrappingScheme[];
}

export class WrappedImport {
  private readonly wrappingKeyName: KeyName;

  constructor(
    private readonly backend: Backend,
    private readonly keys: KeyResolver,
    private readonly paymentKeys: PaymentKeys,
    private readonly wrappingKey: WrappingKeyConfig,
    /** KeyService's check that some offered algorithm fits a type and purpose. */
    private readonly checkUsable: (type: KeyType, purpose: KeyMetadata['purpose']) => void,
  ) {
    this.wrappingKeyName = parseKeyName(wrappingKey.name);
  }

  /** The reserved name: no API operation may name it (the pipeline's admit stage, src/api/reservedKeys.ts). */
  get reservedName(): string {
    return this.wrappingKeyName;
  }

  /** The wrapping key's primary version and public key, made on first use. */
  async describeWrappingKey(): Promise<WrappingKeyView> {
    return this.viewOf(await this.wrappingKeyMeta());
  }

  /** Makes the wrapping key's next version, which new imports use; older versions keep unwrapping what was wrapped under them. */
  async rotateWrappingKey(): Promise<WrappingKeyView> {
    await this.wrappingKeyMeta();
    const meta = await this.backend.rotateKey(this.wrappingKeyName);
    this.keys.cache.put(meta);
    return this.viewOf(meta);
  }

  /** Version 1 of a new key from a wrapped key. */
  async importKey(input: ImportWrappedInput): Promise<KeyMetadata> {
    const name = parseKeyName(input.name);
    const type = parseKeyType(input.type);
    const purpose = parseKeyPurpose(input.purpose, type);
    this.checkType(type);
    // Also refuses RSA keys of purpose wrap: only the service makes those.
    this.checkUsable(type, purpose);
    const exportable = this.paymentKeys.parseExportable(input.exportable, purpose);
    const keyUsage = parseKeyUsage(input.keyUsage, type, purpose);
    const target: ImportTarget = { kind: 'create', key: { name, type, purpose, ...(exportable ? { exportable } : {}), ...(keyUsage ? { keyUsage } : {}) } };
    return this.run(target, input);
  }

  /** The next version of an existing, enabled key from a wrapped key: rotation by import. */
  async importVersion(input: ImportVersionInput): Promise<KeyMetadata> {
    const name = parseKeyName(input.name);
    const meta = await this.keys.current(name);
    checkEnabled(meta);
    // A payment key's value must not be held as two kinds, which the core can check only once the version
    // exists, and a version cannot be taken back alone: payment keys come in as new keys.
    if (isPaymentPurpose(meta.purpose)) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${name} is a payment key: import the new value as a new key (payment keys are replaced, not rotated by import)`);
    }
    this.checkType(meta.type);
    return this.run({ kind: 'rotate', name, type: meta.type }, input);
  }

  private async run(target: ImportTarget, input: WrappedKeyInput): Promise<KeyMetadata> {
    const scheme = this.parseScheme(input.wrapping);
    const wrapping = await this.wrappingKeyMeta();
    const version = await this.keys.version(wrapping, input.wrappingKeyVersion);
    const modulusBytes = keyTypes[wrapping.type].bits / 8;
    const blob = input.wrappedKey;
    const wrappedLength = blob.length - modulusBytes;
    if (wrappedLength < KWP_MIN || wrappedLength % KWP_BLOCK !== 0) {
      throw invalid(`wrappedKey is the ${modulusBytes}-byte RSA-OAEP part (this wrapping key version's modulus) followed by an AES key wrap of at least ${KWP_MIN} bytes, a multiple of ${KWP_BLOCK}`);
    }
    const name = target.kind === 'create' ? target.key.name : target.name;
    const wrapped = {
      wrappingKey: refTo(wrapping, version),
      scheme,
      encryptedKey: blob.subarray(0, modulusBytes),
      wrappedTarget: blob.subarray(modulusBytes),
    };
    let meta: KeyMetadata;
    try {
      meta = await this.backend.importWrappedKey(target, wrapped);
    } finally {
      this.keys.cache.forget(name);
    }
    const created = meta.versions.find((v) => v.version === meta.primaryVersion)!;
    if (isPaymentPurpose(meta.purpose)) await this.paymentKeys.refuseHeldAsAnotherKind(meta, created);
    this.keys.cache.put(meta);
    return meta;
  }

  private parseScheme(value: unknown): WrappingScheme {
    if (typeof value !== 'string' || !(wrappingSchemes as readonly string[]).includes(value)) {
      throw invalid(`wrapping is one of ${wrappingSchemes.join(', ')}`);
    }
    const offered = this.backend.capabilities().keyImport.wrappings;
    if (!offered.includes(value as WrappingScheme)) {
      throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend unwraps ${offered.length ? offered.join(', ') : 'no wrapped keys'}`);
    }
    return value as WrappingScheme;
  }

  private checkType(type: KeyType): void {
    const caps = this.backend.capabilities();
    if (caps.keyImport.wrappings.length === 0) throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend cannot import wrapped keys`);
    if (!caps.keyTypes.includes(type)) throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend cannot hold ${type} keys`);
  }

  /** The wrapping key, made when it does not exist yet (by whichever replica gets there first). */
  private async wrappingKeyMeta(): Promise<KeyMetadata> {
    if (this.backend.capabilities().keyImport.wrappings.length === 0) {
      throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend cannot import wrapped keys`);
    }
    let meta: KeyMetadata;
    try {
      meta = await this.keys.current(this.wrappingKeyName);
    } catch (e) {
      if (!(e instanceof HsmBridgeError) || e.code !== 'KEY_NOT_FOUND') throw e;
      try {
        meta = await this.backend.createKey({ name: this.wrappingKeyName, type: this.wrappingKey.type, purpose: 'wrap' });
      } catch (e2) {
        if (!(e2 instanceof HsmBridgeError) || e2.code !== 'KEY_ALREADY_EXISTS') throw e2;
        meta = await this.backend.describeKey(this.wrappingKeyName);
      }
      this.keys.cache.put(meta);
    }
    if (meta.purpose !== 'wrap' || keyTypes[meta.type].family !== 'rsa') {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${meta.name} exists but is not an RSA key of purpose wrap: rename it or configure another keyImport.wrappingKeyName`);
    }
    checkEnabled(meta);
    return meta;
  }

  private viewOf(meta: KeyMetadata): WrappingKeyView {
    const primary = meta.versions.find((v) => v.version === meta.primaryVersion);
    const publicKey = primary && publicKeyForms(meta, primary);
    if (!publicKey) throw new HsmBridgeError('INTERNAL', `the import wrapping key ${meta.name} has no public key`);
    return { keyName: meta.name, keyVersion: meta.primaryVersion, publicKey, wrappings: this.backend.capabilities().keyImport.wrappings };
  }
}
