/**
 * The backend port: the one interface every adapter (PKCS#11, KMIP, software, a vendor's own) implements.
 * It speaks in keys and operations, never in PKCS#11 or KMIP terms. Keys are addressed by name and
 * version; the backend stores all key metadata itself, so any number of replicas can share it.
 *
 * The core (src/operations/keyService.ts, and src/payment/paymentKeys.ts for the payment primitives)
 * validates every request before it reaches a backend: the key exists and is enabled, the algorithm fits
 * the key's type and purpose, the version exists, sizes are within limits, digests have the hash's length.
 * A backend may therefore trust its arguments, and should spend its checks on what only it can know (its
 * own mechanisms, its device's state).
 */
import type { EncryptAlgorithm, MacAlgorithm, SignAlgorithm } from '../algorithms/registry.js';
import type { KeyName, KeyVersion } from '../keys/names.js';
import type { KeyMetadata, KeyPurpose, KeyState, KeyType, KeyUsage, ModeOfUse } from '../keys/types.js';
import type { CeremonyId, CeremonyPlan, CeremonyState, ComponentEntry } from '../ceremonies/record.js';

/** A resolved key version, as the core hands it to an operation. */
export interface KeyRef {
  readonly name: KeyName;
  readonly version: KeyVersion;
  readonly type: KeyType;
}

export interface NewKey {
  readonly name: KeyName;
  readonly type: KeyType;
  readonly purpose: KeyPurpose;
  /** May leave the backend through exportKey (TR-31 export). Only TDES/AES keys of payment purposes; default false. */
  readonly exportable?: boolean;
  /** Set by a TR-31 import only; the backend stores it with the key and returns it in KeyMetadata. */
  readonly modeOfUse?: ModeOfUse;
  /**
   * The X9.143 key usage (payment keys only, checked by the core against type and purpose); absent means
   * the purpose's general kind. The backend stores it with the key and returns it in KeyMetadata.
   */
  readonly keyUsage?: KeyUsage;
}

/**
 * A key that the backend derived for one request (a DUKPT transaction key) and keeps for as long as the
 * core holds it: a session object in an HSM, a closure in the software backend. Opaque to the core, which
 * releases it (releaseTransientKey) as soon as its request is done, error or not.
 */
export interface TransientKey {
  readonly transient: true;
  readonly family: 'tdes' | 'aes';
  readonly bits: number;
}

/** A key for the block operations: a stored key version, or a transient key. */
export type BlockKey = KeyRef | TransientKey;

export const isTransientKey = (key: BlockKey): key is TransientKey => 'transient' in key;

/**
 * Which DUKPT transaction key to derive from a BDK: ANSI X9.24-1:2009 TDES DUKPT (10-byte KSN; the PIN
 * encryption variant of the current future key, double-length), or ANSI X9.24-3:2017 AES DUKPT (12-byte
 * KSN; the PIN encryption working key of the given type, no longer than the BDK). The core checks the KSN
 * (length, counter rules) before a backend sees it; src/payment/dukpt has the algorithms.
 */
export type DukptDerivation =
  | { readonly scheme: 'tdes'; readonly ksn: Buffer }
  | { readonly scheme: 'aes'; readonly ksn: Buffer; readonly workingKey: 'AES_128' | 'AES_192' | 'AES_256' | 'TDES_2KEY' | 'TDES_3KEY' };

/** What a backend can do for payments; a backend that serves no payment keys lists nothing. */
export interface PaymentCapabilities {
  /** The DUKPT schemes deriveDukptKey serves. */
  readonly dukpt: readonly ('tdes' | 'aes')[];
  /** importKey works (TR-31 import). */
  readonly importKeys: boolean;
  /** exportKey works for keys created or imported exportable (TR-31 export). */
  readonly exportKeys: boolean;
}

/**
 * How a wrapped key (BYOK) is wrapped: the CKM_RSA_AES_KEY_WRAP layout of PKCS#11 v2.40. A fresh AES-256
 * key encrypted with RSA-OAEP (SHA-256 or SHA-1, MGF1 with the same hash, no label) under the service's
 * import wrapping key, followed by the target key wrapped with AES key wrap with padding (RFC 5649)
 * under that AES key. Private keys travel as PKCS#8 DER, secret keys as their raw bytes.
 */
export type WrappingScheme = 'RSA_OAEP_SHA256_AES_KWP' | 'RSA_OAEP_SHA1_AES_KWP';
export const wrappingSchemes: readonly WrappingScheme[] = ['RSA_OAEP_SHA256_AES_KWP', 'RSA_OAEP_SHA1_AES_KWP'];

/** A wrapped key, split by the core: the OAEP part is as long as the wrapping key's modulus. */
export interface WrappedKey {
  /** A version of the import wrapping key (an RSA key of purpose wrap). */
  readonly wrappingKey: KeyRef;
  readonly scheme: WrappingScheme;
  /** RSA-OAEP of the AES-256 transport key. */
  readonly encryptedKey: Buffer;
  /** RFC 5649 wrap of the target under the transport key. */
  readonly wrappedTarget: Buffer;
}

/** Where a wrapped key goes: version 1 of a new key, or the next version of an existing key (rotation by import). */
export type ImportTarget =
  | { readonly kind: 'create'; readonly key: NewKey }
  | { readonly kind: 'rotate'; readonly name: KeyName; readonly type: KeyType };

/** Bringing keys in: wrapped import (BYOK) and key ceremonies. */
export interface KeyImportCapabilities {
  /** The schemes importWrappedKey unwraps; empty when the backend cannot import wrapped keys. */
  readonly wrappings: readonly WrappingScheme[];
  /**
   * The key types whose wrapped material is unwrapped inside the backend (PKCS#11 C_UnwrapKey). For the
   * other types in keyTypes, the clear material exists in this process for the one import call (the
   * software backend always; an HSM that cannot unwrap a type), zeroed after: the docs say so.
   */
  readonly unwrapsInside: readonly KeyType[];
  /** Key ceremonies: plans and staged components kept by the backend (startCeremony and the rest). */
  readonly ceremonies: boolean;
}

/** Sign either a message (the backend hashes it) or a digest the caller computed with the algorithm's hash. */
export type SignInput =
  | { readonly kind: 'message'; readonly data: Buffer }
  | { readonly kind: 'digest'; readonly data: Buffer };

/**
 * A ciphertext as the algorithm produces it, without hsm-bridge's envelope.
 * AES_GCM: iv is the 12-byte IV and data is ciphertext || 16-byte tag. RSA_OAEP_*, AES_KW: data only.
 */
export interface RawCiphertext {
  readonly iv?: Buffer;
  readonly data: Buffer;
}

export interface Capabilities {
  readonly keyTypes: readonly KeyType[];
  readonly sign: readonly SignAlgorithm[];
  readonly encrypt: readonly EncryptAlgorithm[];
  readonly mac: readonly MacAlgorithm[];
  /** The sign algorithms for which sign/verify accept a precomputed digest (input kind 'digest'). */
  readonly signDigest: readonly SignAlgorithm[];
  readonly random: boolean;
  /** The key types (EC curves) whose keys of purpose 'agree' can do ECDH (deriveSharedSecret). */
  readonly keyAgreement: readonly KeyType[];
  readonly payment: PaymentCapabilities;
  readonly keyImport: KeyImportCapabilities;
  /** encryptBlocks works on AES keys of purpose fpe (FF1's AES, src/dataProtection/ff1.ts), and such keys can be made. */
  readonly fpe: boolean;
}

export interface BackendHealth {
  readonly ready: boolean;
  /** A short reason when not ready; never a secret. */
  readonly detail?: string;
}

/** The backend's own resources, for the metrics listener (src/metrics); each adapter reports what applies to it. */
export interface BackendGauges {
  /** A pool of HSM sessions (PKCS#11) or connections (KMIP): its size, those lent out and the callers waiting for one. */
  readonly sessionPool?: { readonly size: number; readonly inUse: number; readonly waiting: number };
  /** Several HSMs behind one backend (PKCS#11 members): whether each serves, its calls in flight, and its calls so far. */
  readonly members?: readonly { readonly name: string; readonly serving: boolean; readonly inFlight: number; readonly calls: number }[];
}

export interface Backend {
  /** A short name for logs and metrics: 'pkcs11', 'software', 'kmip'. */
  readonly kind: string;

  /** What this backend can do. Constant for the life of the backend (discovered at start). */
  capabilities(): Capabilities;
  health(): Promise<BackendHealth>;
  /** Gauges read at each metrics scrape: cheap and without I/O. */
  gauges(): BackendGauges;
  /** Releases sessions, connections and files. The backend is unusable afterwards. */
  close(): Promise<void>;

  // Key lifecycle. Each throws HsmBridgeError: KEY_NOT_FOUND, KEY_ALREADY_EXISTS, BACKEND_UNAVAILABLE.
  /** Creates version 1 of a new key, enabled. */
  createKey(key: NewKey): Promise<KeyMetadata>;
  /** Creates the next version of an existing key, which becomes primary; older versions stay usable. */
  rotateKey(name: KeyName): Promise<KeyMetadata>;
  setKeyState(name: KeyName, state: KeyState): Promise<KeyMetadata>;
  /** Destroys every version of the key in the backend. Irreversible. KEY_NOT_DISABLED unless disabled, checked atomically with the destroy. */
  destroyKey(name: KeyName): Promise<void>;
  describeKey(name: KeyName): Promise<KeyMetadata>;
  listKeys(): Promise<KeyMetadata[]>;
  /**
   * Stores the key's minDecryptionVersion (see KeyMetadata): versions below it are retired, not destroyed.
   * The core checks the version first, but another replica may change the key in between (destroy it and
   * make it again): the backend checks again, atomically with the write, INVALID_ARGUMENT above the newest
   * version and KEY_VERSION_NOT_FOUND for one it does not list. It survives rotation, disabling and
   * reopening, and other replicas read it with the key.
   */
  setMinDecryptionVersion(name: KeyName, version: KeyVersion): Promise<KeyMetadata>;
  /**
   * Destroys, for good, every version below the key's stored minDecryptionVersion, never the newest (read
   * atomically with the destroy, so that a lowering by another replica is never overtaken) and answers
   * what is left. Nothing to destroy is not an error.
   */
  trimKey(name: KeyName): Promise<KeyMetadata>;

  // Operations. The key is resolved and checked by the core; see the file comment.
  sign(key: KeyRef, algorithm: SignAlgorithm, input: SignInput): Promise<Buffer>;
  verify(key: KeyRef, algorithm: SignAlgorithm, input: SignInput, signature: Buffer): Promise<boolean>;
  encrypt(key: KeyRef, algorithm: EncryptAlgorithm, plaintext: Buffer, aad?: Buffer): Promise<RawCiphertext>;
  /** Throws DECRYPTION_FAILED, and nothing more specific, when the ciphertext does not decrypt. */
  decrypt(key: KeyRef, algorithm: EncryptAlgorithm, ciphertext: RawCiphertext, aad?: Buffer): Promise<Buffer>;
  /**
   * Besides mac keys, the core calls this on payment keys for its own schemes: AES_CMAC of zeros on any
   * AES payment key (its key check value) and TDES_CMAC / AES_CMAC on a KBPK (TR-31 key derivation).
   */
  mac(key: KeyRef, algorithm: MacAlgorithm, data: Buffer): Promise<Buffer>;
  /** Compares in constant time (or inside the HSM). */
  verifyMac(key: KeyRef, algorithm: MacAlgorithm, data: Buffer, mac: Buffer): Promise<boolean>;
  randomBytes(length: number): Promise<Buffer>;
  /**
   * Raw ECDH (SEC 1 §3.3.1): the x coordinate Z of d * Q, with the key's private half and the peer's
   * public key (SPKI DER, same curve, point checked by the core). Z is secret: it exists for the core's
   * KDF (JWE ECDH-ES) and is never returned to callers; whoever receives it zeroes it after use.
   */
  deriveSharedSecret(key: KeyRef, peerPublicKeySpki: Buffer): Promise<Buffer>;

  // Payment primitives (TDES and AES keys of the payment purposes). The core builds the schemes on them
  // (ISO 9564 PIN blocks, key check values, X9.24 DUKPT, TR-31) and never offers them as API operations:
  // an ECB oracle on a PIN key would undo what the key is for. A backend that serves no payment keys
  // refuses to create them and answers these with UNSUPPORTED_BY_BACKEND.
  /**
   * ECB encryption of whole blocks (8 bytes for TDES, 16 for AES; the core checks). Also on AES keys of
   * purpose fpe when capabilities().fpe: FF1 (src/dataProtection/ff1.ts) is built on it, many blocks a call.
   */
  encryptBlocks(key: BlockKey, data: Buffer): Promise<Buffer>;
  /** ECB decryption of whole blocks. The result may be secret (a clear PIN block): the caller zeroes it. */
  decryptBlocks(key: BlockKey, data: Buffer): Promise<Buffer>;
  /** The PIN encryption key of a DUKPT transaction, derived from a BDK (purpose bdk) inside the backend where it can. */
  deriveDukptKey(bdk: KeyRef, derivation: DukptDerivation): Promise<TransientKey>;
  /** Forgets a transient key (destroys the session object). Never throws. */
  releaseTransientKey(key: TransientKey): Promise<void>;
  /**
   * Creates version 1 of a new key from clear material (a TR-31 import: the core has already checked the
   * material's length and set DES parity). The backend zeroes nothing; the core zeroes the material.
   */
  importKey(key: NewKey, material: Buffer): Promise<KeyMetadata>;
  /** The clear material of an exportable key version, for a TR-31 export; INCOMPATIBLE_KEY when the key is not exportable. The core zeroes it. */
  exportKey(key: KeyRef): Promise<Buffer>;

  // Bringing keys in (keyImport capabilities). A backend that cannot answers UNSUPPORTED_BY_BACKEND.
  /**
   * Creates a key version from a wrapped key (BYOK; see WrappingScheme). The backend unwraps it (inside the
   * HSM where it can), checks the material against the type before anything is kept (an RSA modulus of
   * the type's size, an EC key on the type's curve, a secret of the type's length), and gives the new
   * version the attributes of a generated key of its purpose (sensitive, non-extractable unless
   * exportable). DECRYPTION_FAILED when either layer does not unwrap (wrong wrapping-key version,
   * tampered or truncated blob, an OAEP part that is not a 32-byte key); INCOMPATIBLE_KEY when the material
   * is another kind of key (a well-formed private key of another kind, size or curve: RSA-3072 for
   * RSA_2048, P-384 for EC_P256; a TDES key whose parts are equal), or wrappingKey is not an RSA key of
   * purpose wrap; INVALID_ARGUMENT when it is malformed (a secret of another length: raw bytes say no
   * type; bytes that are not PKCS#8; a private key whose parts disagree). A failed import leaves no object behind.
   */
  importWrappedKey(target: ImportTarget, wrapped: WrappedKey): Promise<KeyMetadata>;
  /** Stores a new ceremony's plan (src/ceremonies/record.ts). */
  startCeremony(plan: CeremonyPlan): Promise<void>;
  /** CEREMONY_NOT_FOUND when there is none (never started, completed, cancelled or expired). */
  describeCeremony(id: CeremonyId): Promise<CeremonyState>;
  /** Every ceremony the backend holds, for the expiry sweep. */
  listCeremonies(): Promise<CeremonyState[]>;
  /**
   * Stages one component as a sensitive object nothing can use, with its entry, and answers the new state.
   * Atomic with its checks, also against other replicas: CEREMONY_CONFLICT when entry.number is already
   * entered, DUAL_CONTROL when an earlier entry has the same custodian (sameCustodian), CEREMONY_NOT_FOUND
   * when the ceremony is gone. The core has checked the component (length, parity, KCV) and zeroes it.
   */
  stageComponent(id: CeremonyId, entry: ComponentEntry, component: Buffer): Promise<CeremonyState>;
  /**
   * The staged components in number order, in clear, for the core to combine (one call, zeroed by the
   * caller): the backends here cannot XOR keys inside (SoftHSM has no CKM_XOR_BASE_AND_DATA).
   */
  stagedComponents(id: CeremonyId): Promise<Buffer[]>;
  /** Destroys the plan and every staged component (completion, cancellation, expiry); nothing when it is gone. */
  endCeremony(id: CeremonyId): Promise<void>;
}
