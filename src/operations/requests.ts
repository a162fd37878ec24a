/** The plain inputs and results of KeyService's operations, as transports decode and encode them. */
import type { KeyObject } from 'node:crypto';
import type { EncryptAlgorithm, MacAlgorithm, SignAlgorithm } from '../algorithms/registry.js';
import type { KeyVersion } from '../keys/names.js';

/**
 * exportable: the key may later leave the backend in a TR-31 key block (payment keys only). keyUsage: the
 * X9.143 usage of a payment key (P0; B0; K0 or K1; M0, M1, M3 or M6), absent for the purpose's general kind.
 */
export interface CreateKeyInput { name: unknown; type: unknown; purpose?: unknown; exportable?: unknown; keyUsage?: unknown }
/** minDecryptionVersion: versions below it are retired (an existing version, at most the primary one). */
export interface UpdateKeyInput { name: unknown; minDecryptionVersion?: unknown }
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
/** sharedSecret is secret: the caller zeroes it as soon as its KDF has run. */
export interface SharedSecretResult { keyVersion: KeyVersion; sharedSecret: Buffer }
