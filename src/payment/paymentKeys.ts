/**
 * The payment keys as the payment services (PIN translation, the OTP flow, TR-31) use them. A key is
 * resolved first (enabled, of the purpose, its mode of use allowing the use, the version, its KCV), and
 * the backend's payment primitives run only on resolved keys: the services never see the backend, since
 * an ECB oracle on a PIN key would undo what the key is for. Built by KeyService on its own key resolver,
 * so a key another replica destroyed leaves the one metadata cache.
 */
import type { Backend, Capabilities, DukptDerivation, KeyRef, TransientKey } from '../backend/port.js';
import { HsmBridgeError, invalid } from '../errors.js';
import { parseKeyName } from '../keys/names.js';
import {
  isPaymentPurpose,
  keyTypes,
  keyUsagesFor,
  paymentKindOf,
  type KeyMetadata,
  type KeyPurpose,
  type KeyType,
  type KeyUsage,
  type KeyVersionInfo,
  type ModeOfUse,
} from '../keys/types.js';
import { refTo, type KeyResolver } from '../operations/keyResolver.js';
import { setOddParity } from './crypto/parity.js';
import { KeyCheckValues, checkBlockFamily, checkBlockOfMaterial } from './kcv.js';
import { checkModeOfUse, type KeyUse } from './modeOfUse.js';

declare const resolvedBrand: unique symbol;

/**
 * A checked, resolved payment key version and its KCV, with the one use it was checked for. Only
 * resolve() makes one (the brand, and at run time the set below), and each primitive runs a key only
 * for the use it was resolved for: a PIN key resolved to encrypt can never decrypt.
 */
export interface PaymentKey {
  readonly meta: KeyMetadata;
  readonly version: KeyVersionInfo;
  readonly ref: KeyRef;
  readonly keyCheckValue: string;
  readonly use: KeyUse;
  readonly [resolvedBrand]: true;
}
/** A payment key version checked to be exportable. */
export interface ExportableKey { meta: KeyMetadata; version: KeyVersionInfo; ref: KeyRef }
/** What the block operations run on: a resolved key, or a DUKPT transaction key derived from one. */
export type PaymentBlockKey = PaymentKey | TransientKey;
/** A key made from clear material by the core's own schemes (TR-31 import): already parsed. */
export interface ImportKeyInput { name: unknown; type: KeyType; purpose: KeyPurpose; exportable: boolean; modeOfUse?: ModeOfUse; keyUsage?: KeyUsage }

/** Every key resolve() returned: a look-alike built elsewhere is refused. */
const resolvedKeys = new WeakSet<PaymentKey>();

/** The key, if resolve() made it for `use` (and, for `purpose`, of that purpose); anything else is a bug in a payment service. */
function checkResolved(key: PaymentKey, use: KeyUse, purpose?: KeyPurpose): PaymentKey {
  if (!resolvedKeys.has(key) || key.use !== use || (purpose !== undefined && key.meta.purpose !== purpose)) {
    throw new HsmBridgeError('INTERNAL', `a payment primitive was called on a key not resolved for ${use}`);
  }
  return key;
}

export class PaymentKeys {
  private readonly caps: Capabilities;
  private readonly kcvs: KeyCheckValues;
  /** Imports run one at a time, so two imports of one value as two kinds cannot both pass the duplicate check. */
  private imports: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly backend: Backend,
    private readonly keys: KeyResolver,
  ) {
    this.caps = backend.capabilities();
    this.kcvs = new KeyCheckValues(backend);
  }

  // --- resolving -----------------------------------------------------------------------------------

  /**
   * An enabled payment key of `purpose`, its version (the primary one by default) and KCV, after checking
   * that its mode of use allows `use`.
   */
  async resolve(name: unknown, purpose: KeyPurpose, use: KeyUse, keyVersion?: unknown): Promise<PaymentKey> {
    const { meta, version } = await this.keys.findVersion(await this.keys.usableKey(name, purpose), keyVersion);
    checkModeOfUse(meta, use);
    const ref = refTo(meta, version.version);
    const keyCheckValue = await this.keys.run(ref, () => this.kcvs.of(meta, version));
    if (keyCheckValue === undefined) throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${meta.name} is not a payment key`);
    const key = { meta, version, ref, keyCheckValue, use } as PaymentKey;
    resolvedKeys.add(key);
    return key;
  }

  /** An enabled, exportable payment key and its version (the primary one by default), read fresh from the backend. */
  async exportable(name: unknown, keyVersion?: unknown): Promise<ExportableKey> {
    const current = await this.keys.current(name);
    if (!isPaymentPurpose(current.purpose)) throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${current.name} is not a payment key and cannot be exported`);
    const { meta, version } = await this.keys.findVersion(await this.keys.usableKey(current.name, current.purpose), keyVersion);
    if (!meta.exportable) throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${meta.name} is not exportable`);
    return { meta, version, ref: refTo(meta, version.version) };
  }

  /** The KCV of a payment key's version (its primary one by default); undefined for other keys. */
  keyCheckValue(meta: KeyMetadata, version?: KeyVersionInfo): Promise<string | undefined> {
    const v = version ?? meta.versions.find((x) => x.version === meta.primaryVersion);
    return v ? this.kcvs.of(meta, v) : Promise.resolve(undefined);
  }

  /**
   * Whether a payment key's check block starts with `prefix` (a KCV someone else computed, as a TR-31
   * key block's KP block carries it), without the block leaving the core.
   */
  checkBlockStartsWith(key: PaymentKey, prefix: Buffer): Promise<boolean> {
    return this.keys.run(key.ref, () => this.kcvs.startsWith(key.meta, key.version, prefix));
  }

  // --- primitives on resolved keys -----------------------------------------------------------------

  /** On a key resolved to encrypt. */
  encryptBlocks(key: PaymentBlockKey, data: Buffer): Promise<Buffer> {
    return this.onBlockKey(key, 'encrypt', (k) => this.backend.encryptBlocks(k, data));
  }

  /** On a key resolved to decrypt, or a DUKPT transaction key. The result may be secret (a clear PIN block): the caller zeroes it. */
  decryptBlocks(key: PaymentBlockKey, data: Buffer): Promise<Buffer> {
    return this.onBlockKey(key, 'decrypt', (k) => this.backend.decryptBlocks(k, data));
  }

  /** The PIN encryption key of a DUKPT transaction under a BDK; the caller releases it (releaseTransientKey). */
  async deriveDukptKey(bdk: PaymentKey, derivation: DukptDerivation): Promise<TransientKey> {
    if (!this.caps.payment.dukpt.includes(derivation.scheme)) {
      throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the backend cannot derive ${derivation.scheme === 'tdes' ? 'TDES' : 'AES'} DUKPT keys`);
    }
    checkResolved(bdk, 'derive', 'bdk');
    return this.keys.run(bdk.ref, () => this.backend.deriveDukptKey(bdk.ref, derivation));
  }

  /** Never throws: it runs in finally blocks, after the answer or the error that matters. */
  async releaseTransientKey(key: TransientKey): Promise<void> {
    try {
      await this.backend.releaseTransientKey(key);
    } catch {
      /* the backend bounds what it keeps */
    }
  }

  /** The CMAC of the key's family (TDES_CMAC, AES_CMAC) under a KBPK: TR-31 key derivation and check values. */
  async cmac(key: PaymentKey, data: Buffer): Promise<Buffer> {
    checkResolved(key, key.use, 'kbpk');
    const algorithm = keyTypes[key.meta.type].family === 'tdes' ? 'TDES_CMAC' : 'AES_CMAC';
    return this.keys.run(key.ref, () => this.backend.mac(key.ref, algorithm, data));
  }

  /** The clear material of an exportable key version, for a TR-31 export. The caller zeroes it. */
  exportKey(key: ExportableKey): Promise<Buffer> {
    return this.keys.run(key.ref, () => this.backend.exportKey(key.ref));
  }

  private async onBlockKey<T>(key: PaymentBlockKey, use: KeyUse, operation: (key: KeyRef | TransientKey) => Promise<T>): Promise<T> {
    if ('transient' in key) {
      // A DUKPT transaction key only deciphers what a terminal enciphered.
      if (use !== 'decrypt') throw new HsmBridgeError('INTERNAL', 'a DUKPT transaction key only decrypts');
      return operation(key);
    }
    const resolved = checkResolved(key, use);
    return this.keys.run(resolved.ref, () => operation(resolved.ref));
  }

  // --- import --------------------------------------------------------------------------------------

  /** Whether a new key may leave the backend in a TR-31 key block: only payment keys, on a backend that exports. */
  parseExportable(value: unknown, purpose: KeyPurpose): boolean {
    if (value === undefined || value === false) return false;
    if (value !== true) throw invalid('exportable must be true or false');
    if (!isPaymentPurpose(purpose)) throw new HsmBridgeError('INCOMPATIBLE_KEY', `only payment keys (pin, mac, bdk, kbpk) can be exportable`);
    if (!this.caps.payment.exportKeys) throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend cannot export keys`);
    return true;
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
    if (!this.caps.payment.importKeys) throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend cannot import keys`);
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
    const family = checkBlockFamily({ type, purpose });
    if (family) {
      const candidate = checkBlockOfMaterial(family, material);
      try {
        await this.assertNotHeldAsAnotherKind(type, kind, candidate);
      } finally {
        candidate.fill(0);
      }
    }
    const meta = await this.backend.importKey({ name, type, ...kind, ...(input.exportable ? { exportable: true } : {}) }, material);
    this.keys.cache.put(meta);
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
    candidate: Buffer,
  ): Promise<void> {
    const family = checkBlockFamily({ type, purpose: kind.purpose });
    if (!family) return;
    for (const meta of await this.backend.listKeys()) {
      if (checkBlockFamily(meta) !== family) continue;
      if (paymentKindOf(meta) === paymentKindOf({ type, ...kind })) continue;
      for (const version of meta.versions) {
        const ref = refTo(meta, version.version);
        let same: boolean;
        try {
          same = await this.keys.run(ref, () => this.kcvs.sameBlock(meta, version, candidate));
        } catch (e) {
          if (e instanceof HsmBridgeError && (e.code === 'KEY_NOT_FOUND' || e.code === 'KEY_VERSION_NOT_FOUND')) continue;
          throw e;
        }
        // Which key holds it is not said: a key block's holder would learn where that value lives.
        if (same) throw new HsmBridgeError('INCOMPATIBLE_KEY', 'this key value is already held by a key of another kind (purpose, usage or mode of use)');
      }
    }
  }

  /**
   * The same rule for a new key the backend unwrapped itself (BYOK), whose value the core never sees:
   * checked from its check block once it exists. A key that breaks the rule, or that cannot be checked,
   * is destroyed (fail closed); only new keys come this way (WrappedImport refuses payment key rotation).
   */
  async refuseHeldAsAnotherKind(meta: KeyMetadata, version: KeyVersionInfo): Promise<void> {
    const kind = { purpose: meta.purpose, ...(meta.keyUsage ? { keyUsage: meta.keyUsage } : {}), ...(meta.modeOfUse ? { modeOfUse: meta.modeOfUse } : {}) };
    let block: Buffer | undefined;
    try {
      block = await this.keys.run(refTo(meta, version.version), () => this.kcvs.blockOf(meta, version));
      if (block) await this.assertNotHeldAsAnotherKind(meta.type, kind, block);
    } catch (e) {
      await this.backend.setKeyState(meta.name, 'disabled').then(() => this.backend.destroyKey(meta.name)).catch(() => undefined);
      this.keys.cache.forget(meta.name);
      if (e instanceof HsmBridgeError && e.code === 'INCOMPATIBLE_KEY') throw new HsmBridgeError('INCOMPATIBLE_KEY', `${e.message}: the imported key was destroyed`);
      throw e;
    } finally {
      block?.fill(0);
    }
  }

}
