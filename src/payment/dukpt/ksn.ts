/**
 * Key serial numbers as they arrive in a request, checked before any derivation. A KSN is not secret (the
 * terminal sends it in clear), but it decides how many derivation steps run, so its counter rules are
 * enforced here: a counter the originating device can never use is refused, not derived.
 */
import { invalid } from '../../errors.js';

/** ANSI X9.24-1:2009: 10-byte KSN; the rightmost 21 bits are the transaction counter, which has at most 10 one bits. */
export const TDES_KSN_BYTES = 10;
export const TDES_COUNTER_BITS = 21;
export const TDES_MAX_COUNTER_ONES = 10;

/** ANSI X9.24-3:2017: 12-byte KSN = 8-byte initial key ID + 32-bit transaction counter with at most 16 one bits. */
export const AES_KSN_BYTES = 12;
export const AES_INITIAL_KEY_ID_BYTES = 8;
export const AES_MAX_COUNTER_ONES = 16;

function ones(value: number): number {
  let count = 0;
  for (let v = value >>> 0; v !== 0; v &= v - 1) count++;
  return count;
}

/** The 21-bit transaction counter of a 10-byte TDES KSN (length not checked). */
export function tdesKsnCounter(ksn: Buffer): number {
  return ((ksn[7]! & 0x1f) << 16) | (ksn[8]! << 8) | ksn[9]!;
}

/** The 32-bit transaction counter of a 12-byte AES KSN (length not checked). */
export function aesKsnCounter(ksn: Buffer): number {
  return ksn.readUInt32BE(AES_INITIAL_KEY_ID_BYTES);
}

export function checkTdesKsn(ksn: Buffer): void {
  if (!Buffer.isBuffer(ksn) || ksn.length !== TDES_KSN_BYTES) throw invalid(`a TDES DUKPT KSN is ${TDES_KSN_BYTES} bytes`);
  const counter = tdesKsnCounter(ksn);
  if (counter === 0) throw invalid('the KSN transaction counter must not be 0');
  if (ones(counter) > TDES_MAX_COUNTER_ONES) {
    throw invalid(`the KSN transaction counter has more than ${TDES_MAX_COUNTER_ONES} one bits, which no device uses`);
  }
}

export function checkAesKsn(ksn: Buffer): void {
  if (!Buffer.isBuffer(ksn) || ksn.length !== AES_KSN_BYTES) throw invalid(`an AES DUKPT KSN is ${AES_KSN_BYTES} bytes`);
  const counter = aesKsnCounter(ksn);
  if (counter === 0) throw invalid('the KSN transaction counter must not be 0');
  if (ones(counter) > AES_MAX_COUNTER_ONES) {
    throw invalid(`the KSN transaction counter has more than ${AES_MAX_COUNTER_ONES} one bits, which no device uses`);
  }
}
