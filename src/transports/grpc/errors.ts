/**
 * Errors on the gRPC wire: the status from the error code's table (src/errors.ts), the message as
 * details, and the stable code in the trailing metadata, so that clients branch on the code and never
 * on the message text.
 */
import { Metadata, type ServerErrorResponse } from '@grpc/grpc-js';
import { toHsmBridgeError, type HsmBridgeError } from '../../errors.js';

export const ERROR_CODE_METADATA = 'hsmbridge-error-code';

export interface GrpcFailure {
  /** What the client receives. */
  readonly response: ServerErrorResponse;
  /** The error it came from; for INTERNAL its `cause` has the detail, for the log only. */
  readonly error: HsmBridgeError;
}

/** Anything thrown by a handler becomes a status; unknown errors become INTERNAL with a generic message. */
export function toGrpcFailure(thrown: unknown): GrpcFailure {
  const error = toHsmBridgeError(thrown);
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_METADATA, error.code);
  const response: ServerErrorResponse = Object.assign(new Error(error.message), {
    code: error.grpcStatus,
    details: error.message,
    metadata,
  });
  return { response, error };
}
