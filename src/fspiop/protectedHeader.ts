/**
 * The FSPIOP-Signature protected header (API Signature v1.1): built for signing, and checked against the
 * request's HTTP headers on validation as the Mojaloop reference validator checks it, so that a switch
 * using us accepts and refuses the same traffic: an empty value counts as absent, and an HTTP Date the
 * signature does not cover is allowed (proxies add one). Beyond the reference, FSPIOP-Encryption must be
 * signed exactly as sent, since it says how to decrypt the body.
 */
import { decode } from '../jose/base64url.js';
import type { FspiopAlgorithm } from './config.js';

/** The HTTP headers that take part, by their lower-case names. */
export interface FspiopHttpHeaders {
  signature?: string;
  uri?: string;
  method?: string;
  source?: string;
  destination?: string;
  date?: string;
  encryption?: string;
}

const headerNames = new Map<string, keyof FspiopHttpHeaders>([
  ['fspiop-signature', 'signature'],
  ['fspiop-uri', 'uri'],
  ['fspiop-http-method', 'method'],
  ['fspiop-source', 'source'],
  ['fspiop-destination', 'destination'],
  ['date', 'date'],
  ['fspiop-encryption', 'encryption'],
]);

export type HeaderInput = Readonly<Record<string, string | readonly string[] | undefined>>;

/**
 * Picks the FSPIOP headers out of a header map in any letter case. A repeated header is an error; an
 * empty one counts as absent, as in the reference validator.
 */
export function pickHeaders(headers: HeaderInput): FspiopHttpHeaders | string {
  const picked: FspiopHttpHeaders = {};
  for (const name in headers) {
    const field = headerNames.get(name) ?? headerNames.get(name.toLowerCase());
    if (field === undefined) continue;
    const value = headers[name];
    if (value === undefined || value === '') continue;
    if (typeof value !== 'string') return Array.isArray(value) ? `the ${name} header is repeated` : `the ${name} header is not text`;
    if (picked[field] !== undefined) return `the ${name} header is repeated`;
    picked[field] = value;
  }
  return picked;
}

/** Members in the order the reference signer writes them. No typ, no kid. */
export function buildProtectedHeader(h: {
  alg: FspiopAlgorithm;
  uri: string;
  method: string;
  source: string;
  destination?: string | undefined;
  date?: string | undefined;
  encryption?: string | undefined;
}): string {
  const header: Record<string, string> = { alg: h.alg, 'FSPIOP-URI': h.uri, 'FSPIOP-HTTP-Method': h.method, 'FSPIOP-Source': h.source };
  if (h.destination !== undefined) header['FSPIOP-Destination'] = h.destination;
  if (h.date !== undefined) header.Date = h.date;
  if (h.encryption !== undefined) header['FSPIOP-Encryption'] = h.encryption;
  return JSON.stringify(header);
}

export interface ParsedSignature {
  readonly alg: FspiopAlgorithm;
  readonly source: string;
  /** The protected header as received (base64url): the first half of the signing input. */
  readonly protectedHeader: string;
  readonly signature: Buffer;
}

const MAX_SIGNATURE_HEADER = 16 * 1024;

/**
 * Parses the FSPIOP-Signature header and checks its protected header against the HTTP headers.
 * Returns the parts to verify, or the reason for refusal.
 */
export function checkSignatureHeaders(h: FspiopHttpHeaders, allowed: ReadonlySet<string>): ParsedSignature | string {
  if (h.signature === undefined) return 'the FSPIOP-Signature header is missing';
  if (h.signature.length > MAX_SIGNATURE_HEADER) return 'the FSPIOP-Signature header is too long';
  let outer: unknown;
  try {
    outer = JSON.parse(h.signature);
  } catch {
    return 'the FSPIOP-Signature header is not JSON';
  }
  const { signature, protectedHeader } = (outer ?? {}) as { signature?: unknown; protectedHeader?: unknown };
  let signatureBytes: Buffer;
  let headerBytes: Buffer;
  try {
    signatureBytes = decode(signature, 'signature');
    headerBytes = decode(protectedHeader, 'protectedHeader');
  } catch {
    signatureBytes = headerBytes = Buffer.alloc(0);
  }
  // Strictly decoded (canonical base64url only), since the protected header's text is the signing input.
  if (signatureBytes.length === 0 || headerBytes.length === 0) return 'the FSPIOP-Signature header must hold base64url "signature" and "protectedHeader" members';
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(headerBytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    return 'the protected header is not base64url JSON';
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return 'the protected header is not a JSON object';

  const alg = header.alg;
  if (typeof alg !== 'string') return 'the protected header has no alg';
  if (!allowed.has(alg)) return `alg ${truncate(alg)} is not allowed (allowed: ${[...allowed].join(', ')})`;
  // We implement no JWS extension, so a critical one must be refused (RFC 7515 4.1.11); b64 is one (RFC 7797).
  if (header.crit !== undefined || header.b64 !== undefined) return 'the protected header uses a JWS extension (crit/b64) that FSPIOP does not define';

  // HTTP values are never empty here (pickHeaders drops empty ones); a falsy member counts as absent, as in the reference.
  const required = [
    ['FSPIOP-URI', h.uri],
    ['FSPIOP-HTTP-Method', h.method],
    ['FSPIOP-Source', h.source],
  ] as const;
  for (const [name, http] of required) {
    const signed = header[name];
    if (!signed) return `the protected header has no ${name}`;
    if (http === undefined) return `the ${name} header is missing`;
    if (signed !== http) return `${name} in the protected header does not match the ${name} header`;
  }
  // Signed, these must match the request; unsigned, only a Date may be sent (it is not part of the message).
  const optional = [
    ['FSPIOP-Destination', h.destination, true],
    ['Date', h.date, false],
    ['FSPIOP-Encryption', h.encryption, true],
  ] as const;
  for (const [name, http, mustBeSigned] of optional) {
    const signed = header[name];
    if (!signed) {
      if (http !== undefined && mustBeSigned) return `the ${name} header is present but the protected header has no ${name}`;
      continue;
    }
    if (http === undefined) return `the protected header has ${name} but the request has no ${name} header`;
    if (signed !== http) return `${name} in the protected header does not match the ${name} header`;
  }
  return { alg: alg as FspiopAlgorithm, source: h.source!, protectedHeader: protectedHeader as string, signature: signatureBytes };
}

function truncate(value: string): string {
  return JSON.stringify(value.length > 32 ? `${value.slice(0, 32)}...` : value);
}
