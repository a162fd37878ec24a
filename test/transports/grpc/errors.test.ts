/** The mapping of errors to gRPC statuses (pure logic: the end-to-end suite covers it on the wire). */
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { errorCodes, HsmBridgeError } from '../../../src/errors.js';
import { ERROR_CODE_METADATA, toGrpcFailure } from '../../../src/transports/grpc/errors.js';

describe('toGrpcFailure', () => {
  it.each(errorCodes)('%s keeps its table status, its message as details, and its code in the metadata', (code) => {
    const thrown = new HsmBridgeError(code, `message for ${code}`);
    const { response, error } = toGrpcFailure(thrown);
    expect(error).toBe(thrown);
    expect(response.code).toBe(thrown.grpcStatus);
    expect(response.details).toBe(`message for ${code}`);
    expect(response.metadata?.get(ERROR_CODE_METADATA)).toEqual([code]);
  });

  it('an unknown error becomes INTERNAL with a generic message; the detail stays in the cause, for the log', () => {
    const thrown = new Error('CKR_DEVICE_ERROR while using PIN 123456');
    const { response, error } = toGrpcFailure(thrown);
    expect(response.code).toBe(status.INTERNAL);
    expect(response.details).toBe('internal error');
    expect(response.message).toBe('internal error');
    expect(response.metadata?.get(ERROR_CODE_METADATA)).toEqual(['INTERNAL']);
    expect(error.cause).toBe(thrown);
  });
});
