/**
 * PKCS#11 return values (CKR_*) and what each means for hsm-bridge: which ones say the device or the
 * login is gone (drop everything, reconnect, retry once), which ones say a cached object handle is stale
 * (look the key up again), and how the rest become HsmBridgeErrors.
 */
import { HsmBridgeError } from '../../src/errors.js';

/** The CKR values this adapter acts on (PKCS#11 v2.40 §3.6). */
export const CKR = {
  GENERAL_ERROR: 0x05,
  ARGUMENTS_BAD: 0x07,
  ATTRIBUTE_READ_ONLY: 0x10,
  ACTION_PROHIBITED: 0x1b,
  DEVICE_ERROR: 0x30,
  DEVICE_MEMORY: 0x31,
  DEVICE_REMOVED: 0x32,
  ENCRYPTED_DATA_INVALID: 0x40,
  ENCRYPTED_DATA_LEN_RANGE: 0x41,
  FUNCTION_NOT_SUPPORTED: 0x54,
  KEY_HANDLE_INVALID: 0x60,
  KEY_FUNCTION_NOT_PERMITTED: 0x68,
  MECHANISM_INVALID: 0x70,
  MECHANISM_PARAM_INVALID: 0x71,
  OBJECT_HANDLE_INVALID: 0x82,
  PIN_INCORRECT: 0xa0,
  PIN_EXPIRED: 0xa3,
  PIN_LOCKED: 0xa4,
  SESSION_CLOSED: 0xb0,
  SESSION_HANDLE_INVALID: 0xb3,
  SIGNATURE_INVALID: 0xc0,
  SIGNATURE_LEN_RANGE: 0xc1,
  TEMPLATE_INCONSISTENT: 0xd1,
  TOKEN_NOT_PRESENT: 0xe0,
  TOKEN_NOT_RECOGNIZED: 0xe1,
  USER_ALREADY_LOGGED_IN: 0x100,
  USER_NOT_LOGGED_IN: 0x101,
  CRYPTOKI_NOT_INITIALIZED: 0x190,
  CRYPTOKI_ALREADY_INITIALIZED: 0x191,
} as const;

/**
 * The device, the token or our login is gone: sessions and handles are worthless until the module is
 * finalized, initialized and logged in again. USER_NOT_LOGGED_IN is here too: an HSM that restarted
 * behind a network client can keep the session numbers but forget the login.
 */
const DEVICE_GONE = new Set<number>([
  CKR.SESSION_HANDLE_INVALID,
  CKR.SESSION_CLOSED,
  CKR.DEVICE_ERROR,
  CKR.DEVICE_REMOVED,
  CKR.TOKEN_NOT_PRESENT,
  CKR.TOKEN_NOT_RECOGNIZED,
  CKR.CRYPTOKI_NOT_INITIALIZED,
  CKR.USER_NOT_LOGGED_IN,
]);

const HANDLE_STALE = new Set<number>([CKR.OBJECT_HANDLE_INVALID, CKR.KEY_HANDLE_INVALID]);

/**
 * The numeric CKR of an error thrown by pkcs11js, if it is one. pkcs11js 2.1.7 passes the failures of the
 * calls it overrides in JavaScript (C_CreateObject, C_CopyObject, ...) on as a plain Error "CKR_NAME:code".
 */
export function ckrOf(e: unknown): number | undefined {
  if (!(e instanceof Error)) return undefined;
  if (typeof (e as { code?: unknown }).code === 'number' && typeof (e as { method?: unknown }).method === 'string') {
    return (e as unknown as { code: number }).code;
  }
  const plain = /^CKR_[A-Z0-9_]+:(\d+)$/.exec(e.message);
  return plain ? Number(plain[1]) : undefined;
}

/** The CKR name (pkcs11js puts it first in the message), for logs and non-secret error details. */
export function ckrName(e: unknown): string {
  const code = ckrOf(e);
  if (code === undefined) return e instanceof Error ? e.name : 'error';
  const m = /^(CKR_[A-Z0-9_]+)/.exec((e as Error).message);
  return m?.[1] ?? `CKR 0x${code.toString(16)}`;
}

/** Whether a PKCS#11 call failed in this error or its cause (the session may then hold an active operation). */
export const involvesCkr = (e: unknown) => ckrOf(e) !== undefined || (e instanceof Error && ckrOf(e.cause) !== undefined);

/** Also through an error we made with a CKR as its cause (findSlot's, for instance). */
export const isDeviceGone = (e: unknown): boolean => DEVICE_GONE.has(ckrOf(e) ?? -1) || (e instanceof Error && e.cause !== undefined && ckrOf(e.cause) !== undefined && DEVICE_GONE.has(ckrOf(e.cause)!));
export const isHandleStale = (e: unknown) => HANDLE_STALE.has(ckrOf(e) ?? -1);
export const isSignatureInvalid = (e: unknown) => {
  const code = ckrOf(e);
  return code === CKR.SIGNATURE_INVALID || code === CKR.SIGNATURE_LEN_RANGE;
};

/** Every decryption failure is this one answer, whatever the token said (no padding or tag oracle). */
export const decryptionFailed = (cause?: unknown) => new HsmBridgeError('DECRYPTION_FAILED', 'decryption failed', cause === undefined ? undefined : { cause });

export function unavailable(detail: string, cause?: unknown): HsmBridgeError {
  return new HsmBridgeError('BACKEND_UNAVAILABLE', `HSM unavailable: ${detail}`, cause === undefined ? undefined : { cause });
}

/** Every session busy and the queue full: load, not an absent HSM (ErrorReason BACKEND_BUSY). */
export function busy(detail: string): HsmBridgeError {
  return new HsmBridgeError('BACKEND_UNAVAILABLE', `HSM busy: ${detail}`, { reason: 'BACKEND_BUSY' });
}

/**
 * Any error from a PKCS#11 call, as an HsmBridgeError. Errors we already made pass through; a CKR the
 * caller could not have caused becomes INTERNAL (its name goes to the log through `cause`).
 */
export function toBridgeError(e: unknown): HsmBridgeError {
  if (e instanceof HsmBridgeError) return e;
  const code = ckrOf(e);
  if (code === undefined) return new HsmBridgeError('INTERNAL', 'internal error', { cause: e });
  if (DEVICE_GONE.has(code) || code === CKR.DEVICE_MEMORY) return unavailable(ckrName(e), e);
  if (code === CKR.MECHANISM_INVALID || code === CKR.MECHANISM_PARAM_INVALID) {
    return new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the HSM refused the mechanism (${ckrName(e)})`, { cause: e });
  }
  if (code === CKR.KEY_FUNCTION_NOT_PERMITTED) {
    // The key's usage attributes forbid it: a key made before the operation existed (AES_KW needs CKA_WRAP).
    return new HsmBridgeError('INCOMPATIBLE_KEY', 'the key\'s attributes in the HSM do not allow this operation (a key created before it was supported: rotate it)', { cause: e });
  }
  return new HsmBridgeError('INTERNAL', 'unexpected HSM error', { cause: e });
}

/**
 * The PIN is missing, wrong, locked or expired: retrying cannot help, and retrying a wrong PIN counts
 * towards locking the token, so recovery stops on this error. Its message never contains the PIN.
 */
export class PinError extends HsmBridgeError {
  constructor(message: string) {
    super('BACKEND_UNAVAILABLE', `HSM unavailable: ${message}`);
  }
}

/** Login failures: clear, and never with the PIN. */
export function loginError(e: unknown): HsmBridgeError {
  const code = ckrOf(e);
  const why =
    code === CKR.PIN_INCORRECT ? 'the user PIN is incorrect'
    : code === CKR.PIN_LOCKED ? 'the user PIN is locked'
    : code === CKR.PIN_EXPIRED ? 'the user PIN has expired'
    : undefined;
  return why ? new PinError(`pkcs11 login: ${why}`) : unavailable(`pkcs11 login failed (${ckrName(e)})`, e);
}
