/**
 * Every failure leaves the REST transport as `{ "error": { "code", "message" } }` with one of our stable
 * codes. fastify's own errors (schema validation, body limit, content type, JSON syntax) are translated
 * here so that a caller never sees a framework-specific shape, and never a 5xx for bad input.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { HsmBridgeError, type ErrorCode } from '../../errors.js';
import { describeSchemaIssue, type SchemaIssue } from '../../api/schemaIssues.js';

export interface ErrorEnvelope {
  error: { code: ErrorCode; message: string };
}

export function envelope(code: ErrorCode, message: string): ErrorEnvelope {
  return { error: { code, message } };
}

/** fastify error codes that mean the request itself is unacceptable, with our code for each. */
const frameworkCodes: Record<string, { code: ErrorCode; message: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'PAYLOAD_TOO_LARGE', message: 'request body is larger than the configured limit' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'request body must be application/json' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'INVALID_ARGUMENT', message: 'content-length does not match the body' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'INVALID_ARGUMENT', message: 'request body is empty; send a JSON object' },
  FST_ERR_BAD_URL: { code: 'INVALID_ARGUMENT', message: 'request URL is malformed' },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'INVALID_ARGUMENT', message: 'request body is not valid JSON' },
};

/** Translates anything thrown while serving a request into our error; unknown errors become INTERNAL. */
export function toRestError(error: unknown): HsmBridgeError {
  if (error instanceof HsmBridgeError) {
    return error.code === 'INTERNAL' ? new HsmBridgeError('INTERNAL', 'internal error', { cause: error }) : error;
  }
  if (typeof error !== 'object' || error === null) return new HsmBridgeError('INTERNAL', 'internal error', { cause: error });
  const e = error as Partial<FastifyError> & { validation?: SchemaIssue[] };
  if (e.validation) {
    return new HsmBridgeError('INVALID_ARGUMENT', describeSchemaIssue(e.validationContext, e.validation));
  }
  const known = e.code !== undefined ? frameworkCodes[e.code] : undefined;
  if (known) return new HsmBridgeError(known.code, known.message);
  // JSON syntax errors arrive as SyntaxError; their text can quote the body, so it is not repeated.
  if (error instanceof SyntaxError) return new HsmBridgeError('INVALID_ARGUMENT', 'request body is not valid JSON');
  if (e.statusCode === 413) return new HsmBridgeError('PAYLOAD_TOO_LARGE', 'request body is larger than the configured limit');
  if (e.statusCode === 415) return new HsmBridgeError('UNSUPPORTED_MEDIA_TYPE', 'request body must be application/json');
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new HsmBridgeError('INVALID_ARGUMENT', 'request is malformed');
  }
  return new HsmBridgeError('INTERNAL', 'internal error', { cause: error });
}

export function errorHandler(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const mapped = toRestError(error);
  if (mapped.code === 'INTERNAL') {
    // The detail goes to the log only; the caller gets the generic message.
    request.log.error({ err: mapped.cause ?? error }, 'request failed');
  } else if (mapped.code === 'BACKEND_UNAVAILABLE') {
    request.log.warn({ code: mapped.code, reason: mapped.message }, 'backend unavailable');
  }
  return reply.code(mapped.httpStatus).send(envelope(mapped.code, mapped.message));
}

export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return reply.code(404).send(envelope('NOT_FOUND', `no route ${request.method} ${(request.url.split('?')[0] ?? '').slice(0, 200)}`));
}
