/**
 * The PKCS#11 backend's configuration section and how the user PIN is obtained. The PIN itself is never
 * part of the configuration: it comes from an environment variable or a file, is read at each login
 * (so a rotated PIN file is picked up on reconnect) and is never logged or put in an error.
 */
import { readFile } from 'node:fs/promises';
import { HsmBridgeError } from '../../src/errors.js';
import { PinError } from './errors.js';

/** One HSM the backend talks to: a library and a token on it, and how to log in. */
export interface Pkcs11MemberConfig {
  /** A name for logs and health details. Default: member-1, member-2, ... */
  readonly name?: string;
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
  /** Sessions, each owned by a worker thread: the HSM calls in flight at once on this member. Default 8. */
  readonly sessionPoolSize?: number;
}

/**
 * The backend's section: either one member's fields at the top level (one HSM), or `members` (several
 * HSMs holding the same keys through the vendor's replication: an HA group, a cluster, several paths to
 * one partition). The other fields apply to every member.
 */
export interface Pkcs11Config extends Partial<Pkcs11MemberConfig> {
  readonly members?: readonly Pkcs11MemberConfig[];
  /** How long a request waits for a free session before BACKEND_UNAVAILABLE. Default 5000. */
  readonly acquireTimeoutMs?: number;
  /** An HSM call that takes longer fails with BACKEND_UNAVAILABLE (its worker is reused only once the call returns). Default 10000. */
  readonly operationTimeoutMs?: number;
  /** The same for calls that generate keys (create, rotate, import). Default 60000. */
  readonly keyGenerationTimeoutMs?: number;
  /** Callers waiting for a session beyond this many (per member) fail at once with BACKEND_UNAVAILABLE. Default 4 x sessionPoolSize. */
  readonly maxQueuedRequests?: number;
  /** At most one C_Finalize + C_Initialize per member in this long. Default 1000. */
  readonly reinitMinIntervalMs?: number;
  /** A session idle this long is checked (C_GetSessionInfo) before use, and replaced if dead. Default 60000. */
  readonly idleSessionCheckMs?: number;
  /** After a lifecycle change on one member, how long another member may take to show it (vendor replication). Default 5000. */
  readonly replicationWaitMs?: number;
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

const memberProperties = {
  name: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
  library: { type: 'string', minLength: 1 },
  tokenLabel: { type: 'string', minLength: 1, maxLength: 32 },
  slot: { type: 'integer', minimum: 0 },
  pinEnv: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
  pinFile: { type: 'string', minLength: 1 },
  sessionPoolSize: { type: 'integer', minimum: 1, maximum: 1024 },
} as const;

const oneToken = { oneOf: [{ required: ['tokenLabel'] }, { required: ['slot'] }], not: { required: ['pinEnv', 'pinFile'] } } as const;

export const pkcs11ConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...memberProperties,
    members: {
      type: 'array',
      minItems: 1,
      maxItems: 16,
      items: { type: 'object', additionalProperties: false, required: ['library'], properties: memberProperties, ...oneToken },
    },
    acquireTimeoutMs: { type: 'integer', minimum: 1, maximum: 600_000, default: DEFAULT_ACQUIRE_TIMEOUT_MS },
    operationTimeoutMs: { type: 'integer', minimum: 1, maximum: 600_000, default: DEFAULT_OPERATION_TIMEOUT_MS },
    keyGenerationTimeoutMs: { type: 'integer', minimum: 1, maximum: 600_000, default: DEFAULT_KEY_GENERATION_TIMEOUT_MS },
    maxQueuedRequests: { type: 'integer', minimum: 0, maximum: 1_000_000 },
    reinitMinIntervalMs: { type: 'integer', minimum: 0, maximum: 600_000, default: 1000 },
    idleSessionCheckMs: { type: 'integer', minimum: 1, maximum: 86_400_000, default: 60_000 },
    replicationWaitMs: { type: 'integer', minimum: 0, maximum: 600_000, default: 5000 },
    allowRawRsaOaepFallback: { type: 'boolean', default: false },
  },
  // One HSM at the top level, or members: never both.
  oneOf: [
    { required: ['library'], ...oneToken, not: { anyOf: [{ required: ['members'] }, { required: ['pinEnv', 'pinFile'] }] } },
    { required: ['members'], not: { anyOf: ['library', 'tokenLabel', 'slot', 'pinEnv', 'pinFile', 'sessionPoolSize', 'name'].map((f) => ({ required: [f] })) } },
  ],
} as const;

/** One member with defaults applied. */
export interface ResolvedMember {
  readonly name: string;
  readonly library: string;
  readonly token: { readonly label: string } | { readonly slot: number };
  readonly pin: PinSource;
  readonly sessionPoolSize: number;
  readonly maxQueuedRequests: number;
}

/** What applies to every member. */
export interface SharedSettings {
  readonly acquireTimeoutMs: number;
  readonly operationTimeoutMs: number;
  readonly keyGenerationTimeoutMs: number;
  readonly reinitMinIntervalMs: number;
  readonly idleSessionCheckMs: number;
  readonly replicationWaitMs: number;
  readonly allowRawRsaOaepFallback: boolean;
}

/** The configuration with defaults applied, as the rest of the adapter uses it. */
export interface ResolvedPkcs11Config extends SharedSettings {
  readonly members: readonly ResolvedMember[];
}

/** What one member's connection needs: its own fields and the shared ones. */
export type MemberSettings = ResolvedMember & SharedSettings;

export type PinSource = { readonly env: string } | { readonly file: string };

/** Checks what the JSON Schema checks too, so that create() called directly (tests, embedding) is as strict. */
export function resolveConfig(config: Pkcs11Config): ResolvedPkcs11Config {
  const bad = (m: string) => new HsmBridgeError('INVALID_ARGUMENT', `pkcs11 config: ${m}`);
  const whole = (v: number | undefined, field: string, fallback: number, min = 1) => {
    if (v === undefined) return fallback;
    if (!Number.isInteger(v) || v < min) throw bad(`${field} must be a whole number from ${min}`);
    return v;
  };
  const queued = config.maxQueuedRequests;
  if (queued !== undefined) whole(queued, 'maxQueuedRequests', 0, 0);
  if (config.allowRawRsaOaepFallback !== undefined && typeof config.allowRawRsaOaepFallback !== 'boolean') throw bad('allowRawRsaOaepFallback must be true or false');
  const single = (['library', 'tokenLabel', 'slot', 'pinEnv', 'pinFile', 'sessionPoolSize', 'name'] as const).some((f) => config[f] !== undefined);
  if (single === (config.members !== undefined)) throw bad('give either one HSM (library, tokenLabel or slot, ...) or members, not both');
  const given: readonly Pkcs11MemberConfig[] = config.members ?? [config as Pkcs11MemberConfig];
  if (given.length === 0) throw bad('members must list at least one HSM');
  const names = new Set<string>();
  const members = given.map((m, i): ResolvedMember => {
    const where = config.members ? `members[${i}]: ` : '';
    if (typeof m.library !== 'string' || m.library === '') throw bad(`${where}library is required`);
    if ((m.tokenLabel === undefined) === (m.slot === undefined)) throw bad(`${where}give exactly one of tokenLabel and slot`);
    if (m.pinEnv !== undefined && m.pinFile !== undefined) throw bad(`${where}give at most one of pinEnv and pinFile`);
    const name = m.name ?? `member-${i + 1}`;
    if (names.has(name)) throw bad(`${where}the member name ${name} is used twice`);
    names.add(name);
    const sessionPoolSize = whole(m.sessionPoolSize, `${where}sessionPoolSize`, DEFAULT_POOL_SIZE);
    return {
      name,
      library: m.library,
      token: m.tokenLabel !== undefined ? { label: m.tokenLabel } : { slot: m.slot! },
      pin: m.pinFile !== undefined ? { file: m.pinFile } : { env: m.pinEnv ?? DEFAULT_PIN_ENV },
      sessionPoolSize,
      maxQueuedRequests: queued ?? QUEUE_PER_SESSION * sessionPoolSize,
    };
  });
  return {
    members,
    acquireTimeoutMs: whole(config.acquireTimeoutMs, 'acquireTimeoutMs', DEFAULT_ACQUIRE_TIMEOUT_MS),
    operationTimeoutMs: whole(config.operationTimeoutMs, 'operationTimeoutMs', DEFAULT_OPERATION_TIMEOUT_MS),
    keyGenerationTimeoutMs: whole(config.keyGenerationTimeoutMs, 'keyGenerationTimeoutMs', DEFAULT_KEY_GENERATION_TIMEOUT_MS),
    reinitMinIntervalMs: whole(config.reinitMinIntervalMs, 'reinitMinIntervalMs', 1000, 0),
    idleSessionCheckMs: whole(config.idleSessionCheckMs, 'idleSessionCheckMs', 60_000),
    replicationWaitMs: whole(config.replicationWaitMs, 'replicationWaitMs', 5000, 0),
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
