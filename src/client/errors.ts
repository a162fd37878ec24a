/**
 * One error class for everything a call can fail with: the service's answer carries its stable code
 * (`KEY_NOT_FOUND`, ...); a call that never got an answer has NETWORK_ERROR or TIMEOUT, and an answer that
 * is not the service's (a proxy's 502, 503 or 504 in front of it) has UNAVAILABLE.
 */
import type { ErrorCode } from '../errors.js';

export type ClientErrorCode = ErrorCode | 'NETWORK_ERROR' | 'TIMEOUT' | 'UNAVAILABLE';

export class HsmBridgeClientError extends Error {
  override readonly name = 'HsmBridgeClientError';

  constructor(
    readonly code: ClientErrorCode,
    message: string,
    /** The HTTP status, when the service answered. */
    readonly status?: number,
    /** The request id the service logged the call under. */
    readonly requestId?: string,
    options?: { cause?: unknown; grpcStatus?: number },
  ) {
    super(message, options);
    if (options?.grpcStatus !== undefined) this.grpcStatus = options.grpcStatus;
  }

  /** The gRPC status, when the call went over gRPC. */
  readonly grpcStatus?: number;

  /** The service was unavailable or never answered: a call that changes nothing may be sent again. */
  get transient(): boolean {
    return this.code === 'BACKEND_UNAVAILABLE' || this.code === 'UNAVAILABLE' || this.code === 'NETWORK_ERROR' || this.code === 'TIMEOUT';
  }
}
