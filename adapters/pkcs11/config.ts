/**
 * The PKCS#11 backend's configuration section and how the user PIN is obtained. The PIN itself is never
 * part of the configuration: it comes from an environment variable or a file, is read at each login
 * (so a rotated PIN file is picked up on reconnect) and is never logged or put in an error.
 */
import { readFile } from 'node:fs/promises';
import { HsmBridgeError } from '../../src/errors.js';
import { PinError } from './errors.js';

export interface Pkcs11Config {
  /** Path of the vendor's PKCS#11 module (.so / .dll), e.g. /usr/lib/softhsm/libsofthsm2.so. */
  readonly library: string;
  /** The token to use, by label (preferred: slot ids can change, SoftHSM moves tokens to random ids). */
  readonly tokenLabel?: string;
  /** The token to use, by slot id. Exactly one of tokenLabel and slot. */
  readonly slot?: number;
  /** Environment variable holding the user PIN. Default HSMB_PKCS11_PIN. */
  readonly pinEnv?: string;
  /** File holding the user PIN (trailing newline ignored). Exclusive with pinEnv. */
  readonly pinFile?: string;
  /** Number of PKCS#11 sessions: the number of HSM operations in flight at once. Default 8. */
  readonly sessionPoolSize?: number;
  /** How long a request waits for a free session before BACKEND_UNAVAILABLE. Default 5000. */
  readonly acquireTimeoutMs?: number;
  /** An HSM call that takes longer fails with BACKEND_UNAVAILABLE (its worker is reused only once the call returns). Default 10000. */
  readonly operationTimeoutMs?: number;
  /** The same for calls that generate keys (create, rotate, import). Default 60000. */
  readonly keyGenerationTimeoutMs?: number;
  /** Callers waiting for a session beyond this many fail at once with BACKEND_UNAVAILABLE. Default 4 x sessionPoolSize. */
  readonly maxQueuedRequests?: number;
  /**
   * For tokens without RSA-OAEP with SHA-256: allow CKM_RSA_X_509 (raw RSA) on RSA encryption keys and
   * remove the OAEP padding in process. Raw RSA with the private key also signs, so such a key is a
   * raw-RSA oracle for anyone with the token PIN. Default false: RSA_OAEP_SHA256 is then offered only
   * when the token does it natively. Applies to keys created while it is on.
   */
  readonly allowRawRsaOaepFallback?: boolean;
}

export const DEFAULT_PIN_ENV = 'HSMB_PKCS11_PIN';
export const DEFAULT_POOL_SIZE = 8;
export const DEFAULT_ACQUIRE_TIMEOUT_MS = 5000;
export const DEFAULT_OPERATION_TIMEOUT_MS = 10_000;
export const DEFAULT_KEY_GENERATION_TIMEOUT_MS = 60_000;
/** Default queue bound: waiters per session (each holds its request, up to ~2 MiB, while it waits). */
const QUEUE_PER_SESSION = 4;

export const pkcs11ConfigSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['library'],
  properties: {
    library: { type: 'string', minLength: 1 },
    tokenLabel: { type: 'string', minLength: 1, maxLength: 32 },
    slot: { type: 'integer', minimum: 0 },
    pinEnv: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
    pinFile: { type: 'string', minLength: 1 },
    sessionPoolSize: { type: 'integer', minimum: 1, maximum: 1024, default: DEFAULT_POOL_SIZE },
    acquireTimeoutMs: { type: 'integer', minimum: 1, maximum: 600_000, default: DEFAULT_ACQUIRE_TIMEOUT_MS },
    operationTimeoutMs: { type: 'integer', minimum: 1, maximum: 600_000, default: DEFAULT_OPERATION_TIMEOUT_MS },
    keyGenerationTimeoutMs: { type: 'integer', minimum: 1, maximum: 600_000, default: DEFAULT_KEY_GENERATION_TIMEOUT_MS },
    maxQueuedRequests: { type: 'integer', minimum: 0, maximum: 1_000_000 },
    allowRawRsaOaepFallback: { type: 'boolean', default: false },
  },
  oneOf: [{ required: ['tokenLabel'] }, { required: ['slot'] }],
  not: { required: ['pinEnv', 'pinFile'] },
} as const;

/** The configuration with defaults applied, as the rest of the adapter uses it. */
export interface ResolvedPkcs11Config {
  readonly library: string;
  readonly token: { readonly label: string } | { readonly slot: number };
  readonly pin: PinSource;
  readonly sessionPoolSize: number;
  readonly acquireTimeoutMs: number;
  readonly operationTimeoutMs: number;
  readonly keyGenerationTimeoutMs: number;
  readonly maxQueuedRequests: number;
  readonly allowRawRsaOaepFallback: boolean;
}

export type PinSource = { readonly env: string } | { readonly file: string };

/** Checks what the JSON Schema checks too, so that create() called directly (tests, embedding) is as strict. */
export function resolveConfig(config: Pkcs11Config): ResolvedPkcs11Config {
  const bad = (m: string) => new HsmBridgeError('INVALID_ARGUMENT', `pkcs11 config: ${m}`);
  if (typeof config.library !== 'string' || config.library === '') throw bad('library is required');
  if ((config.tokenLabel === undefined) === (config.slot === undefined)) throw bad('give exactly one of tokenLabel and slot');
  if (config.pinEnv !== undefined && config.pinFile !== undefined) throw bad('give at most one of pinEnv and pinFile');
  const positive = (v: number | undefined, field: string, fallback?: number) => {
    if (v === undefined) return fallback;
    if (!Number.isInteger(v) || v < 1) throw bad(`${field} must be a whole number from 1`);
    return v;
  };
  const sessionPoolSize = positive(config.sessionPoolSize, 'sessionPoolSize', DEFAULT_POOL_SIZE)!;
  const queued = config.maxQueuedRequests;
  if (queued !== undefined && (!Number.isInteger(queued) || queued < 0)) throw bad('maxQueuedRequests must be a whole number from 0');
  if (config.allowRawRsaOaepFallback !== undefined && typeof config.allowRawRsaOaepFallback !== 'boolean') throw bad('allowRawRsaOaepFallback must be true or false');
  return {
    library: config.library,
    token: config.tokenLabel !== undefined ? { label: config.tokenLabel } : { slot: config.slot! },
    pin: config.pinFile !== undefined ? { file: config.pinFile } : { env: config.pinEnv ?? DEFAULT_PIN_ENV },
    sessionPoolSize,
    acquireTimeoutMs: positive(config.acquireTimeoutMs, 'acquireTimeoutMs', DEFAULT_ACQUIRE_TIMEOUT_MS)!,
    operationTimeoutMs: positive(config.operationTimeoutMs, 'operationTimeoutMs', DEFAULT_OPERATION_TIMEOUT_MS)!,
    keyGenerationTimeoutMs: positive(config.keyGenerationTimeoutMs, 'keyGenerationTimeoutMs', DEFAULT_KEY_GENERATION_TIMEOUT_MS)!,
    maxQueuedRequests: queued ?? QUEUE_PER_SESSION * sessionPoolSize,
    allowRawRsaOaepFallback: config.allowRawRsaOaepFallback ?? false,
  };
}

/** Reads the user PIN. Errors name where it was looked for, never what was found. */
export async function readPin(source: PinSource): Promise<string> {
  let pin: string | undefined;
  if ('env' in source) {
    pin = process.env[source.env];
    if (!pin) throw new PinError(`pkcs11: the user PIN environment variable ${source.env} is not set`);
  } else {
    try {
      pin = (await readFile(source.file, 'utf8')).replace(/\r?\n$/, '');
    } catch (e) {
      throw new PinError(`pkcs11: cannot read the PIN file ${source.file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    if (!pin) throw new PinError(`pkcs11: the PIN file ${source.file} is empty`);
  }
  return pin;
}
