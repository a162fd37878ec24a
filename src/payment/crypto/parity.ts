/** DES key parity: each byte's lowest bit makes its count of one bits odd. DES ignores these bits. */

/** Sets odd parity in place and returns the same buffer. */
export function setOddParity(key: Buffer): Buffer {
  for (let i = 0; i < key.length; i++) {
    const high = key[i]! & 0xfe;
    key[i] = high | (popCount(high) % 2 === 0 ? 1 : 0);
  }
  return key;
}

export function hasOddParity(key: Buffer): boolean {
  return key.every((b) => popCount(b) % 2 === 1);
}

/** Whether a TDES key's 8-byte parts all differ (compare after setOddParity): equal parts would make it single DES. */
export function hasDistinctParts(key: Buffer): boolean {
  const parts = Array.from({ length: key.length / 8 }, (_, i) => key.subarray(i * 8, i * 8 + 8));
  return parts.every((p, i) => parts.every((q, j) => i === j || !p.equals(q)));
}

function popCount(b: number): number {
  let n = 0;
  for (let x = b; x; x >>= 1) n += x & 1;
  return n;
}
