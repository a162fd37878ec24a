/**
 * MACs on stored keys: HMAC with node:crypto, and the payment MACs (ISO 9797-1 algorithms 1 and 3, CMAC)
 * with src/payment/crypto on a copy of the clear key that is zeroed straight after.
 */
import { timingSafeEqual, type KeyObject } from 'node:crypto';
import type { MacAlgorithm } from '../../src/algorithms/registry.js';
import { paymentMac } from '../../src/payment/crypto/iso9797.js';
import { hmacSha256 } from './ciphers.js';

export function computeMac(algorithm: MacAlgorithm, key: KeyObject, data: Buffer): Buffer {
  if (algorithm === 'HMAC_SHA256') return hmacSha256(key, data);
  const raw = key.export();
  try {
    return paymentMac(algorithm, raw, data);
  } finally {
    raw.fill(0);
  }
}

/** Full-length comparison in constant time (the core verifies truncated payment MACs through computeMac). */
export function macMatches(algorithm: MacAlgorithm, key: KeyObject, data: Buffer, mac: Buffer): boolean {
  const expected = computeMac(algorithm, key, data);
  try {
    return mac.length === expected.length && timingSafeEqual(mac, expected);
  } finally {
    expected.fill(0);
  }
}
