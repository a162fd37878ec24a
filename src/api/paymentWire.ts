/**
 * The payment calls' wire rules, shared by REST and gRPC so that both accept and refuse the same input:
 * PIN blocks and KSNs are hex (either case in, upper case out), key blocks text. REST's JSON Schemas
 * check the same shapes first (schemas.ts); gRPC has only these checks. Messages name the field and the
 * expected shape, never the value: a PIN block or a PAN must not come back in an error.
 */
import { invalid } from '../errors.js';
import { MAX_PAN_DIGITS, MIN_PAN_DIGITS } from '../payment/pin/pan.js';
import { MAX_KEY_BLOCK_CHARS } from '../payment/tr31/keyExchangeService.js';

/** ISO 9564 PIN blocks: 8 bytes (formats 0, 1, 3; TDES) or 16 bytes (format 4; AES). */
export const PIN_BLOCK_HEX_DIGITS = [16, 32] as const;
/** DUKPT KSNs: 10 bytes (TDES, X9.24-1) or 12 bytes (AES, X9.24-3). */
export const KSN_HEX_DIGITS = [20, 24] as const;
export { MAX_KEY_BLOCK_CHARS };
/** Longest field that names a format, working key, JWE algorithm or exportability: far above any valid one. */
export const MAX_NAME_CHARS = 32;
/** A PAN is 8 to 19 digits (ISO/IEC 7812-1). */
export const PAN_PATTERN = `^[0-9]{${MIN_PAN_DIGITS},${MAX_PAN_DIGITS}}$`;
/** Key blocks are printable ASCII (X9.143). */
export const KEY_BLOCK_PATTERN = '^[\\x20-\\x7E]+$';

const HEX = /^[0-9A-Fa-f]*$/;

function hexField(field: string, text: unknown, lengths: readonly number[], what: string): Buffer {
  if (typeof text !== 'string' || !HEX.test(text) || !lengths.includes(text.length)) {
    throw invalid(`${field} must be ${what}: ${lengths.join(' or ')} hex digits`);
  }
  return Buffer.from(text, 'hex');
}

export const parsePinBlock = (field: string, text: unknown): Buffer => hexField(field, text, PIN_BLOCK_HEX_DIGITS, 'a PIN block');
export const parseKsn = (field: string, text: unknown): Buffer => hexField(field, text, KSN_HEX_DIGITS, 'a key serial number');

export const toHex = (data: Buffer): string => data.toString('hex').toUpperCase();

/** What gRPC cannot check with a schema: the PAN's shape (REST checks it with PAN_PATTERN as well). */
export function checkPan(field: string, pan: string | undefined): void {
  if (pan !== undefined && !new RegExp(PAN_PATTERN).test(pan)) throw invalid(`${field} must be ${MIN_PAN_DIGITS} to ${MAX_PAN_DIGITS} decimal digits`);
}

export function checkKeyBlockText(text: string): void {
  if (text.length > MAX_KEY_BLOCK_CHARS) throw invalid(`keyBlock is at most ${MAX_KEY_BLOCK_CHARS} characters`);
  if (!new RegExp(KEY_BLOCK_PATTERN).test(text)) throw invalid('keyBlock must be a TR-31 key block: printable ASCII text');
}
