/**
 * Pseudonymisation tokens: HMAC-SHA-256, with a key of purpose tokenize in the backend, of the context and
 * the value, domain-separated and length-prefixed so that no (context, value) pair can pass for another:
 *
 *   "hsm-bridge token v1" || 0x00 || u32be(len(context)) || context || value      (UTF-8)
 *
 * A token is `v<key version>:` then the 32-byte MAC in base64url (43 characters). The same value and
 * context under the same key version always give the same token (joins and look-ups work on it); another
 * context, key or version gives an unrelated one; nothing turns a token back into its value.
 */
import { invalid } from '../errors.js';
import type { KeyVersion } from '../keys/names.js';
import { isWellFormed } from './text.js';

const DOMAIN = Buffer.from('hsm-bridge token v1\u0000', 'utf8');
/** Longest context, in UTF-8 bytes: a column or purpose name, not data. */
export const MAX_CONTEXT_BYTES = 256;
/** Longest value, in UTF-8 bytes: names, MSISDNs, account and document ids. */
export const MAX_VALUE_BYTES = 1024;

/** The context as UTF-8: a non-empty string of at most MAX_CONTEXT_BYTES, or INVALID_ARGUMENT. */
export function checkContext(context: unknown): Buffer {
  if (typeof context !== 'string' || context === '' || !isWellFormed(context)) throw invalid('context must be a non-empty, well-formed string (what the tokens are for: a column, a purpose)');
  const bytes = Buffer.from(context, 'utf8');
  if (bytes.length > MAX_CONTEXT_BYTES) throw invalid(`context is longer than ${MAX_CONTEXT_BYTES} bytes`);
  return bytes;
}

/** The HMAC input for one value: INVALID_ARGUMENT (that value's) when it is empty or too long. */
export function tokenInput(context: Buffer, value: unknown): Buffer {
  if (typeof value !== 'string' || value === '' || !isWellFormed(value)) throw invalid('a value must be a non-empty, well-formed string');
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > MAX_VALUE_BYTES) throw invalid(`a value is longer than ${MAX_VALUE_BYTES} bytes`);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(context.length);
  const input = Buffer.concat([DOMAIN, length, context, bytes]);
  bytes.fill(0);
  return input;
}

export function tokenOf(version: KeyVersion, mac: Buffer): string {
  return `v${version}:${mac.toString('base64url')}`;
}
