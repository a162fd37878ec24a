/**
 * The frame around every unary handler: declared operations run through the request pipeline
 * (src/api/pipeline.ts), which decodes, checks, runs and maps errors; this frame turns the outcome into a
 * gRPC answer or status (errors.ts) and writes the call's one log line: method, status, duration and the
 * pipeline's fields (only well-formed key names). Never the request or response: they carry plaintext,
 * signatures and MAC inputs.
 */
import { Metadata, status, type handleUnaryCall } from '@grpc/grpc-js';
import type { Level, Logger } from 'pino';
import { grpcServices, logLevelOf, RequestContext, type Credentials, type Operation, type Pipeline, type ServicesFor } from '../../api/index.js';
import { invalid } from '../../errors.js';
import { toGrpcFailure } from './errors.js';
import { isMalformed, type MalformedRequest } from './protos.js';
import { REQUEST_ID_HEADER, requestIdFrom, TRACEPARENT_HEADER } from '../../ops/requestId.js';

type Callback = Parameters<handleUnaryCall<unknown, unknown>>[1];
type Call = Parameters<handleUnaryCall<unknown, unknown>>[0];

/** The caller's request id (x-request-id or traceparent metadata), or a new one. */
const requestIdOf = (call: Call): string => requestIdFrom(call.metadata.get(REQUEST_ID_HEADER), call.metadata.get(TRACEPARENT_HEADER));

/** Answers a call with the outcome of `work`, its request id in the trailing metadata, and writes its log line. */
function respond(call: Call, callback: Callback, method: string, logger: Logger, started: number, requestId: string, work: Promise<unknown>, fields: Record<string, unknown> | (() => Record<string, unknown>), successLevel: Level): void {
  const finished = (grpcStatus: status, extra: Record<string, unknown> = {}) => ({
    method,
    requestId,
    status: call.cancelled ? 'CANCELLED' : status[grpcStatus],
    durationMs: Math.round((performance.now() - started) * 10) / 10,
    ...(typeof fields === 'function' ? fields() : fields),
    ...extra,
  });
  work.then(
    (response) => {
      logger[successLevel](finished(status.OK), 'grpc call');
      const trailer = new Metadata();
      trailer.set(REQUEST_ID_HEADER, requestId);
      callback(null, response, trailer);
    },
    (thrown: unknown) => {
      const { response, error } = toGrpcFailure(thrown);
      response.metadata!.set(REQUEST_ID_HEADER, requestId);
      const line = finished(error.grpcStatus, { code: error.code });
      const level = logLevelOf(error.code);
      if (level === 'error') logger.error({ ...line, err: error.cause ?? thrown }, 'grpc call failed');
      else if (level === 'warn') logger.warn(line, 'grpc call failed');
      else logger.info(line, 'grpc call');
      callback(response);
    },
  );
}

const notDecoded = (method: string) => invalid(`the request is not a valid ${method} request message`);

/** The rpc of a declared operation: the request pipeline, in the frame above. */
/** What the connection and metadata say of the caller; the identity stage judges them. */
function credentialsOf(call: Call): Credentials {
  const certificate = call.getAuthContext().sslPeerCertificate;
  const authorization = call.metadata.get('authorization')[0];
  const bearer = typeof authorization === 'string' && /^Bearer /i.test(authorization) ? authorization.slice(7).trim() : undefined;
  return {
    transport: 'grpc',
    remoteAddress: call.getPeer(),
    ...(certificate && Object.keys(certificate).length > 0 ? { peerCertificate: certificate } : {}),
    ...(bearer ? { bearerToken: bearer } : {}),
  };
}

export function operationCall(op: Operation, pipeline: Pipeline, logger: Logger): handleUnaryCall<unknown, unknown> {
  const method = `${grpcServices[op.grpc.service]}/${op.grpc.method}`;
  const decode = (request: unknown, services: ServicesFor) => {
    if (isMalformed(request)) throw notDecoded(op.grpc.method);
    return op.grpc.decode(request, services);
  };
  return (call, callback) => {
    const context = new RequestContext(op, 'grpc', requestIdOf(call));
    const work = pipeline.identify(context, credentialsOf(call)).then(() => pipeline.run(op, context, call.request, decode, op.grpc.encode));
    respond(call, callback, method, logger, context.started, context.requestId, work, () => context.logFields(), 'info');
  };
}

/** A handler outside the declared operations (grpc.health.v1.Health/Check), in the same frame. */
export function unaryCall<Req, Res>(method: string, logger: Logger, handle: (request: Req) => Promise<Res>, successLevel: Level = 'info'): handleUnaryCall<Req | MalformedRequest, Res> {
  return (call, callback) => {
    const request = call.request;
    const work = isMalformed(request) ? Promise.reject(notDecoded(method.split('/').pop() ?? '')) : Promise.resolve().then(() => handle(request));
    respond(call as Call, callback as Callback, method, logger, performance.now(), requestIdOf(call as Call), work, {}, successLevel);
  };
}
