/**
 * Request ids: the caller's own, so that its logs and ours can be joined, or one made here. Taken from
 * `x-request-id` when it is short and printable (it goes into log lines and audit records as is), else
 * from the trace id of a W3C `traceparent`, else a random UUID. Both transports answer with it
 * (`x-request-id` response header on REST, trailing metadata on gRPC).
 */
import { randomUUID } from 'node:crypto';

export const REQUEST_ID_HEADER = 'x-request-id';
export const TRACEPARENT_HEADER = 'traceparent';

/** Longest caller request id taken; a longer one is ignored (not cut, which could make two ids one). */
export const MAX_REQUEST_ID_CHARS = 128;

/** Visible ASCII only: no spaces, control characters or anything a log viewer could render oddly. */
const CALLER_REQUEST_ID = new RegExp(`^[\\x21-\\x7e]{1,${MAX_REQUEST_ID_CHARS}}$`);
/** version-traceid-parentid-flags (W3C Trace Context, level 1); version ff is invalid. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;

function single(value: unknown): string | undefined {
  const first = Array.isArray(value) ? (value.length === 1 ? value[0] : undefined) : value;
  return typeof first === 'string' ? first : undefined;
}

function traceIdOf(traceparent: string | undefined): string | undefined {
  const m = traceparent === undefined ? null : TRACEPARENT.exec(traceparent.trim());
  if (!m || m[1] === 'ff' || /^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return undefined;
  // Only version 00 is exactly four fields; later versions may append more.
  if (m[1] === '00' && traceparent!.trim().length !== 55) return undefined;
  return m[2];
}

/**
 * The request id for a request with these header (or metadata) values: a header given more than once
 * counts as not given.
 */
export function requestIdFrom(xRequestId: unknown, traceparent: unknown): string {
  const given = single(xRequestId);
  if (given !== undefined && CALLER_REQUEST_ID.test(given)) return given;
  return traceIdOf(single(traceparent)) ?? randomUUID();
}
