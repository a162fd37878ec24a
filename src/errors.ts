/**
 * Every error a caller can see. One table says, for each stable code, the HTTP status and the gRPC
 * status it maps to, so that REST and gRPC never disagree. Messages name what was wrong; they never
 * carry key material, plaintext, PINs or HSM PINs.
 */

/** gRPC status codes we use (values from the gRPC spec, kept here so the core does not import grpc-js). */
export const GrpcStatus = {
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

const table = {
  /** The request is malformed: a missing field, bad base64, a value out of range. */
  INVALID_ARGUMENT: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT },
  /** The algorithm name is not one hsm-bridge knows. */
  UNSUPPORTED_ALGORITHM: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT },
  /** hsm-bridge knows the algorithm or key type, but the configured backend cannot do it (see capabilities). */
  UNSUPPORTED_BY_BACKEND: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT },
  /** The key exists but its type or purpose cannot do this operation or algorithm. */
  INCOMPATIBLE_KEY: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT },
  /** Decryption failed: wrong key, tampered ciphertext, AAD mismatch. Deliberately says no more. */
  DECRYPTION_FAILED: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT },
  /** The request body is not JSON (REST only). */
  UNSUPPORTED_MEDIA_TYPE: { http: 415, grpc: GrpcStatus.INVALID_ARGUMENT },
  /** The request body or a field in it is larger than the configured limit. */
  PAYLOAD_TOO_LARGE: { http: 413, grpc: GrpcStatus.RESOURCE_EXHAUSTED },
  /** The credential (client certificate or bearer token) is missing, invalid or expired; the message says which and nothing more. */
  UNAUTHENTICATED: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED },
  /** The access policy does not let this caller run the operation on the key or participant named. */
  PERMISSION_DENIED: { http: 403, grpc: GrpcStatus.PERMISSION_DENIED },
  KEY_NOT_FOUND: { http: 404, grpc: GrpcStatus.NOT_FOUND },
  KEY_VERSION_NOT_FOUND: { http: 404, grpc: GrpcStatus.NOT_FOUND },
  /** The version is below the key's minDecryptionVersion: it exists but is retired from use. */
  KEY_VERSION_RETIRED: { http: 409, grpc: GrpcStatus.FAILED_PRECONDITION },
  /** No such route (REST only). */
  NOT_FOUND: { http: 404, grpc: GrpcStatus.NOT_FOUND },
  KEY_ALREADY_EXISTS: { http: 409, grpc: GrpcStatus.ALREADY_EXISTS },
  /** No key ceremony with that id: never started, or completed, cancelled or expired and ended. */
  CEREMONY_NOT_FOUND: { http: 404, grpc: GrpcStatus.NOT_FOUND },
  /** The ceremony's time ran out (ceremonies.ttlMs): its staged components are destroyed; start again. */
  CEREMONY_EXPIRED: { http: 410, grpc: GrpcStatus.FAILED_PRECONDITION },
  /** Another request entered that component number at the same moment (another replica); read the ceremony and retry. */
  CEREMONY_CONFLICT: { http: 409, grpc: GrpcStatus.FAILED_PRECONDITION },
  /** Dual control: this identity already entered a component of this ceremony; another custodian must enter the next. */
  DUAL_CONTROL: { http: 403, grpc: GrpcStatus.PERMISSION_DENIED },
  /** A key check value does not match: a component's (which one is named), or the combined key's against expectedKcv. */
  KCV_MISMATCH: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT },
  KEY_DISABLED: { http: 409, grpc: GrpcStatus.FAILED_PRECONDITION },
  /** Destroying a key needs it disabled first, so that a key in use is never destroyed by accident. */
  KEY_NOT_DISABLED: { http: 409, grpc: GrpcStatus.FAILED_PRECONDITION },
  /** Too many PIN blocks from this caller failed to decode under this key this minute; retry after the minute. */
  RATE_LIMITED: { http: 429, grpc: GrpcStatus.RESOURCE_EXHAUSTED },
  /** The HSM or key manager cannot be reached or is not logged in; retry later. */
  BACKEND_UNAVAILABLE: { http: 503, grpc: GrpcStatus.UNAVAILABLE },
  /** The audit trail cannot be written: an operation that would go unrecorded is refused; retry later. */
  AUDIT_UNAVAILABLE: { http: 503, grpc: GrpcStatus.UNAVAILABLE },
  /** A bug or an unexpected backend answer. The message is generic; the log has the detail. */
  INTERNAL: { http: 500, grpc: GrpcStatus.INTERNAL },
} as const satisfies Record<string, { http: number; grpc: GrpcStatusCode }>;

export type ErrorCode = keyof typeof table;

/**
 * A finer cause than the code, for the service itself only (metrics, rate limits, batches), never sent to
 * the caller: an undecodable PIN block is an INVALID_ARGUMENT like any other to the caller.
 * PIN_BLOCK_NOT_DECODED counts towards the PIN-failure limit. BACKEND_BUSY: the backend refused a call
 * for load (every session busy and its queue full), not because it is gone: a batch item waits and
 * tries again.
 */
export type ErrorReason = 'PIN_BLOCK_NOT_DECODED' | 'BACKEND_BUSY';

/** Facts about a request worth an audit record (a ceremony's component number, whether a KCV matched): names and numbers, never an input value. */
export type AuditDetails = Readonly<Record<string, string | number | boolean>>;

export class HsmBridgeError extends Error {
  override readonly name = 'HsmBridgeError';
  readonly code: ErrorCode;
  readonly reason?: ErrorReason;
  /** For the audit record of the failed request; never sent to the caller. */
  readonly details?: AuditDetails;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; reason?: ErrorReason; details?: AuditDetails }) {
    super(message, options);
    this.code = code;
    if (options?.reason !== undefined) this.reason = options.reason;
    if (options?.details !== undefined) this.details = options.details;
  }

  get httpStatus(): number {
    return table[this.code].http;
  }

  get grpcStatus(): GrpcStatusCode {
    return table[this.code].grpc;
  }
}

export const errorCodes = Object.keys(table) as ErrorCode[];

export function httpStatusOf(code: ErrorCode): number {
  return table[code].http;
}

/** Turns anything thrown into an HsmBridgeError; unknown errors become INTERNAL with a generic message. */
export function toHsmBridgeError(e: unknown): HsmBridgeError {
  if (e instanceof HsmBridgeError) return e;
  return new HsmBridgeError('INTERNAL', 'internal error', { cause: e });
}

/** Longest error message a caller receives; anything longer was built from input and is cut (a gRPC status over ~64 KB never arrives). */
export const MAX_ERROR_MESSAGE_CHARS = 300;

/**
 * A caller's value as an error message may quote it: at most `max` characters of it, in JSON quotes, so
 * that control characters and line breaks come out escaped.
 */
export function quote(value: unknown, max = 64): string {
  const text = String(value);
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text);
}

/** The same without the quotes, for a message that shows a value bare (a field path, a parameter name). */
export const excerpt = (value: unknown, max = 64): string => quote(value, max).slice(1, -1);

/**
 * The error as a caller may see it: an HsmBridgeError whose message is at most MAX_ERROR_MESSAGE_CHARS
 * and has no control characters. The check every message passes on its way out, whatever built it.
 */
export function forCaller(e: unknown): HsmBridgeError {
  const error = toHsmBridgeError(e);
  const message = error.message.replace(/[\u0000-\u001f\u007f]/g, ' ');
  if (message === error.message && message.length <= MAX_ERROR_MESSAGE_CHARS) return error;
  return new HsmBridgeError(error.code, message.length > MAX_ERROR_MESSAGE_CHARS ? `${message.slice(0, MAX_ERROR_MESSAGE_CHARS)}…` : message, {
    cause: error,
    ...(error.reason === undefined ? {} : { reason: error.reason }),
    ...(error.details === undefined ? {} : { details: error.details }),
  });
}

/** Shorthand for argument checks. */
export function invalid(message: string): HsmBridgeError {
  return new HsmBridgeError('INVALID_ARGUMENT', message);
}
