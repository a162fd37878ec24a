/** Shared by the TTLV and message fuzz tests: a seeded PRNG and a mutator of valid messages. */

/** Deterministic PRNG (mulberry32) so that a failing fuzz case can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mutates valid messages (bit flips, byte stores, length-field rewrites, truncation, splicing). */
export function mutate(data: Buffer, rnd: () => number): Buffer {
  const out = Buffer.from(data);
  const pick = (n: number) => Math.floor(rnd() * n);
  switch (pick(6)) {
    case 0:
      out[pick(out.length)]! ^= 1 << pick(8);
      return out;
    case 1:
      out[pick(out.length)] = [0x00, 0xff, 0x80, 0x7f, 0x01, 0x08][pick(6)]!;
      return out;
    case 2: {
      // Rewrite a length field of some item-aligned offset to a hostile value.
      const at = pick(Math.max(1, out.length / 8)) * 8 + 4;
      if (at + 4 <= out.length) out.writeUInt32BE([0, 1, 3, 7, 0xffff_ffff, 0x7fff_fff8, pick(1 << 16)][pick(7)]!, at);
      return out;
    }
    case 3:
      return out.subarray(0, pick(out.length));
    case 4: {
      const at = pick(out.length);
      return Buffer.concat([out.subarray(0, at), Buffer.from([pick(256), pick(256), pick(256)]), out.subarray(at)]);
    }
    default: {
      const a = pick(out.length);
      return Buffer.concat([out.subarray(0, a), out.subarray(pick(out.length))]);
    }
  }
}

