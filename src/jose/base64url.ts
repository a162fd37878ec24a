/**
 * Base64url without padding (RFC 7515 §2, RFC 4648 §5), strict on input: JOSE objects are compared and
 * re-serialised byte for byte, so only the canonical encoding is accepted (no padding, no whitespace, no
 * '+' or '/', no stray bits in the last character).
 */
import { invalid } from '../errors.js';

const ALPHABET = /^[A-Za-z0-9_-]*$/;

export function encode(data: Buffer | string): string {
  return (typeof data === 'string' ? Buffer.from(data, 'utf8') : data).toString('base64url');
}

/** Decodes `text`, naming `what` (e.g. "protected header") in the INVALID_ARGUMENT error. */
export function decode(text: unknown, what: string): Buffer {
  if (typeof text !== 'string' || !ALPHABET.test(text) || text.length % 4 === 1 || !canonicalTail(text)) {
    throw invalid(`${what} is not base64url (unpadded, RFC 7515)`);
  }
  return Buffer.from(text, 'base64url');
}

/** The unused low bits of the last character must be zero, so that each byte string has one encoding. */
function canonicalTail(text: string): boolean {
  const rest = text.length % 4;
  if (rest === 0) return true;
  const last = text.charCodeAt(text.length - 1);
  const value =
    last >= 65 && last <= 90 ? last - 65 : last >= 97 && last <= 122 ? last - 71 : last >= 48 && last <= 57 ? last + 4 : last === 45 ? 62 : 63;
  return (value & (rest === 2 ? 0x0f : 0x03)) === 0;
}
