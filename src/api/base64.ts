import { invalid } from '../errors.js';

/**
 * Strict base64 for binary JSON fields: the standard alphabet (RFC 4648 §4), padding optional, and the
 * unused low bits of the last character zero (§3.5), so each byte string has exactly one accepted text.
 * Node's own decoder silently skips anything it does not understand, which would let a typo in a
 * signature or ciphertext turn into different bytes instead of an error.
 */
const SHAPE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

export function isStrictBase64(text: string): boolean {
  if (!SHAPE.test(text)) return false;
  const unpadded = text.endsWith('==') ? text.slice(0, -2) : text.endsWith('=') ? text.slice(0, -1) : text;
  const tail = unpadded.length % 4;
  if (tail === 0) return true;
  // 2 trailing characters carry 1 byte (4 spare bits), 3 carry 2 bytes (2 spare bits).
  const last = ALPHABET.indexOf(unpadded[unpadded.length - 1] as string);
  const spareMask = tail === 2 ? 0b1111 : 0b11;
  return (last & spareMask) === 0;
}

/** Decodes a strict base64 field; anything else is INVALID_ARGUMENT naming the field. */
export function decodeBase64(field: string, text: string): Buffer {
  if (!isStrictBase64(text)) throw invalid(`${field} must be base64 (standard alphabet, padding optional)`);
  return Buffer.from(text, 'base64');
}

/** Decodes an optional field: absent stays absent. */
export function decodeOptionalBase64(field: string, text: string | undefined): Buffer | undefined {
  return text === undefined ? undefined : decodeBase64(field, text);
}

export function encodeBase64(data: Buffer): string {
  return data.toString('base64');
}
