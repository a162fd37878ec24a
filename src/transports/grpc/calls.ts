/**
 * The frame around every unary handler: decode failures become INVALID_ARGUMENT, errors become a
 * status (errors.ts), and each call writes one log line with the method, status, duration and key
 * name. Never the request or response: they carry plaintext, signatures and MAC inputs.
 */
import { status, type handleUnaryCall } from '@grpc/grpc-js';
import type { Level, Logger } from 'pino';
import { invalid } from '../../errors.js';
import { toGrpcFailure } from './errors.js';
import { isMalformed, type MalformedRequest } from './protos.js';

export interface CallOptions {
  /** The level of the log line of a successful call; health probes use 'debug' to keep logs quiet. */
  readonly successLevel?: Level;
}

/**
 * The key name a request addresses, for the log (as `keyName`: `key` is a redacted path in src/log.ts);
 * only something short enough to be a key name. KeyService requests name it `name`, JOSE and FSPIOP
 * requests `key`, PIN requests `incoming.key_name`.
 */
function loggedKeyName(request: unknown): string | undefined {
  const r = request as { name?: unknown; key?: unknown; incoming?: { keyName?: unknown } | null };
  const name = typeof r.name === 'string' && r.name !== '' ? r.name : typeof r.key === 'string' ? r.key : r.incoming?.keyName;
  return typeof name === 'string' && name.length > 0 && name.length <= 64 ? name : undefined;
}

export function unaryCall<Req, Res>(
  method: string,
  logger: Logger,
  handle: (request: Req) => Promise<Res>,
  options: CallOptions = {},
): handleUnaryCall<Req | MalformedRequest, Res> {
  return (call, callback) => {
    const started = performance.now();
    const request = call.request;
    const keyName = isMalformed(request) ? undefined : loggedKeyName(request);
    const finished = (grpcStatus: status, extra: Record<string, unknown> = {}) => ({
      method,
      status: call.cancelled ? 'CANCELLED' : status[grpcStatus],
      durationMs: Math.round((performance.now() - started) * 10) / 10,
      ...(keyName === undefined ? {} : { keyName }),
      ...extra,
    });
    const run = isMalformed(request)
      ? Promise.reject(invalid(`the request is not a valid ${method.split('/').pop() ?? ''} request message`))
      : Promise.resolve().then(() => handle(request));
    run.then(
      (response) => {
        logger[options.successLevel ?? 'info'](finished(status.OK), 'grpc call');
        callback(null, response);
      },
      (thrown: unknown) => {
        const { response, error } = toGrpcFailure(thrown);
        const line = finished(error.grpcStatus, { code: error.code });
        if (error.code === 'INTERNAL') logger.error({ ...line, err: error.cause ?? thrown }, 'grpc call failed');
        else if (error.code === 'BACKEND_UNAVAILABLE') logger.warn(line, 'grpc call failed');
        else logger.info(line, 'grpc call');
        callback(response);
      },
    );
  };
}
