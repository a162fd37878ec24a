import { invalid } from '../../errors.js';

/**
 * The PAN fields that bind ISO 9564-1 PIN blocks to a card. A PAN is taken as a string of decimal
 * digits; it is cardholder data, so no error message ever echoes it.
 */

/** ISO/IEC 7812-1: a PAN is 8 to 19 digits; ISO 9564 pads the short ones (see below). */
export const MIN_PAN_DIGITS = 8;
export const MAX_PAN_DIGITS = 19;

const PAN_PATTERN = /^[0-9]+$/;

export function assertPan(pan: string): void {
  if (typeof pan !== 'string' || pan.length < MIN_PAN_DIGITS || pan.length > MAX_PAN_DIGITS || !PAN_PATTERN.test(pan)) {
    throw invalid(`PAN must be ${MIN_PAN_DIGITS} to ${MAX_PAN_DIGITS} decimal digits`);
  }
}

/**
 * Formats 0 and 3 (8 bytes): `0000` then the 12 rightmost PAN digits excluding the check digit.
 * ISO 9564-1 right-justifies the PAN digits and pads them on the left with zeros when fewer than 12
 * remain, so a 12-digit PAN (11 digits without its check digit) gets one leading 0.
 */
export function tdesPanField(pan: string): Buffer {
  assertPan(pan);
  const digits = pan.slice(0, -1).slice(-12).padStart(12, '0');
  return Buffer.from(`0000${digits}`, 'hex');
}

/**
 * Format 4 (16 bytes): nibble M = PAN length - 12 (0 when the PAN has 12 or fewer digits, which are then
 * left-padded with 0 to 12), the PAN digits, then 0 fill to 32 nibbles.
 */
export function format4PanField(pan: string): Buffer {
  assertPan(pan);
  const m = Math.max(0, pan.length - 12);
  return Buffer.from(`${m.toString(16)}${pan.padStart(12, '0')}`.padEnd(32, '0'), 'hex');
}
