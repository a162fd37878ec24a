import { describe, expect, it } from 'vitest';
import {
  bigInt,
  bool,
  bytes,
  child,
  children,
  dateTime,
  decodeTtlv,
  encodeTtlv,
  enm,
  enumOf,
  int,
  interval,
  intOf,
  KmipProtocolError,
  long,
  messageLength,
  struct,
  text,
  textOf,
  type Ttlv,
} from '../../../adapters/kmip/ttlv.js';
import { mutate, prng } from './fuzz.js';

/** "42 00 20 | 02 | ..." as printed in the specification -> bytes. */
const spec = (s: string): Buffer => Buffer.from(s.replace(/[\s|]/g, ''), 'hex');

/**
 * KMIP Specification v1.4 (OASIS Standard), §9.1.2 "Examples", tag 0x420020 (Compromise Date) used for every
 * primitive: http://docs.oasis-open.org/kmip/spec/v1.4/os/kmip-spec-v1.4-os.html (the same examples appear
 * in §9.1.2 of KMIP 1.0-1.3). Each row: the spec's sentence, our item, the spec's bytes.
 */
const specExamples: Array<[string, Ttlv, string]> = [
  ['An Integer containing the decimal value 8', int(0x420020, 8), '42 00 20 | 02 | 00 00 00 04 | 00 00 00 08 00 00 00 00'],
  [
    'A Long Integer containing the decimal value 123456789000000000',
    long(0x420020, 123456789000000000n),
    '42 00 20 | 03 | 00 00 00 08 | 01 B6 9B 4B A5 74 92 00',
  ],
  [
    'A Big Integer containing the decimal value 1234567890000000000000000000',
    bigInt(0x420020, 1234567890000000000000000000n),
    '42 00 20 | 04 | 00 00 00 10 | 00 00 00 00 03 FD 35 EB 6B C2 DF 46 18 08 00 00',
  ],
  ['An Enumeration with value 255', enm(0x420020, 255), '42 00 20 | 05 | 00 00 00 04 | 00 00 00 FF 00 00 00 00'],
  ['A Boolean with the value True', bool(0x420020, true), '42 00 20 | 06 | 00 00 00 08 | 00 00 00 00 00 00 00 01'],
  [
    "A Text String with the value 'Hello World'",
    text(0x420020, 'Hello World'),
    '42 00 20 | 07 | 00 00 00 0B | 48 65 6C 6C 6F 20 57 6F 72 6C 64 00 00 00 00 00',
  ],
  [
    'A Byte String with the value { 0x01, 0x02, 0x03 }',
    bytes(0x420020, Buffer.from([1, 2, 3])),
    '42 00 20 | 08 | 00 00 00 03 | 01 02 03 00 00 00 00 00',
  ],
  [
    'A Date-Time, containing the value for Friday, March 14, 2008, 11:56:40 GMT',
    dateTime(0x420020, BigInt(Date.UTC(2008, 2, 14, 11, 56, 40) / 1000)),
    '42 00 20 | 09 | 00 00 00 08 | 00 00 00 00 47 DA 67 F8',
  ],
  ['An Interval, containing the value for 10 days', interval(0x420020, 10 * 24 * 3600), '42 00 20 | 0A | 00 00 00 04 | 00 0D 2F 00 00 00 00 00'],
  [
    'A Structure containing an Enumeration, value 254, followed by an Integer, value 255, having tags 420004 and 420005 respectively',
    struct(0x420020, enm(0x420004, 254), int(0x420005, 255)),
    '42 00 20 | 01 | 00 00 00 20 | 42 00 04 | 05 | 00 00 00 04 | 00 00 00 FE 00 00 00 00 | 42 00 05 | 02 | 00 00 00 04 | 00 00 00 FF 00 00 00 00',
  ],
];

describe('TTLV: the specification examples (KMIP 1.4 §9.1.2)', () => {
  it.each(specExamples)('%s: encodes byte-exact and decodes back', (_, item, hex) => {
    expect(encodeTtlv(item).toString('hex')).toBe(spec(hex).toString('hex'));
    expect(decodeTtlv(spec(hex))).toEqual(item);
  });
});

describe('TTLV: values at the edges of each type', () => {
  const roundTrips: Ttlv[] = [
    int(0x420001, -1),
    int(0x420001, -0x8000_0000),
    int(0x420001, 0x7fff_ffff),
    enm(0x420001, 0xffff_ffff),
    interval(0x420001, 0),
    long(0x420001, -(1n << 63n)),
    long(0x420001, (1n << 63n) - 1n),
    dateTime(0x420001, -1n),
    bool(0x420001, false),
    text(0x420001, ''),
    text(0x420001, 'exactly8'),
    text(0x420001, 'clé € 🔑'),
    text(0x420001, '\ufeffBOM kept'),
    bytes(0x420001, Buffer.alloc(0)),
    bytes(0x420001, Buffer.alloc(17, 0xab)),
    struct(0x420001),
    struct(0x540001, struct(0x420002, struct(0x420003, text(0x420004, 'deep')))),
  ];
  it.each(roundTrips.map((i) => [i.type, i] as const))('%s round-trips', (_, item) => {
    const encoded = encodeTtlv(item);
    expect(encoded.length % 8).toBe(0);
    expect(decodeTtlv(encoded)).toEqual(item);
  });

  it('BigInteger: two’s complement, sign-extended to a multiple of 8 bytes', () => {
    const cases: Array<[bigint, string]> = [
      [0n, '0000000000000000'],
      [1n, '0000000000000001'],
      [-1n, 'ffffffffffffffff'],
      [127n, '000000000000007f'],
      [128n, '0000000000000080'],
      [-128n, 'ffffffffffffff80'],
      [-129n, 'ffffffffffffff7f'],
      [(1n << 63n) - 1n, '7fffffffffffffff'],
      [1n << 63n, '00000000000000008000000000000000'], // needs a sign byte, so 16 bytes
      [-(1n << 63n), '8000000000000000'],
      [-(1n << 63n) - 1n, 'ffffffffffffffff7fffffffffffffff'],
    ];
    for (const [value, hex] of cases) {
      const encoded = encodeTtlv(bigInt(0x420052, value));
      expect(encoded.subarray(8).toString('hex'), `${value}`).toBe(hex);
      expect(encoded.readUInt32BE(4)).toBe(hex.length / 2);
      expect(decodeTtlv(encoded)).toEqual(bigInt(0x420052, value));
    }
    // A 4096-bit RSA modulus (top bit set) round-trips with one extra sign byte rounded up to 8.
    const modulus = (1n << 4095n) | 12345n;
    const encoded = encodeTtlv(bigInt(0x420052, modulus));
    expect(encoded.readUInt32BE(4)).toBe(520);
    expect(decodeTtlv(encoded)).toEqual(bigInt(0x420052, modulus));
  });

  it('refuses to encode values that do not fit their type', () => {
    expect(() => encodeTtlv(int(0x420001, 0x8000_0000))).toThrow(RangeError);
    expect(() => encodeTtlv(int(0x420001, 1.5))).toThrow(RangeError);
    expect(() => encodeTtlv(enm(0x420001, -1))).toThrow(RangeError);
    expect(() => encodeTtlv(interval(0x420001, 2 ** 32))).toThrow(RangeError);
    expect(() => encodeTtlv(long(0x420001, 1n << 63n))).toThrow(RangeError);
    expect(() => encodeTtlv(int(0x430001, 1))).toThrow(RangeError); // not a KMIP tag
  });

  it('decoded byte strings are copies, not views of the input', () => {
    const encoded = encodeTtlv(bytes(0x420043, Buffer.from('00112233', 'hex')));
    const decoded = decodeTtlv(encoded);
    encoded.fill(0);
    expect(decoded.type === 'ByteString' && decoded.value.toString('hex')).toBe('00112233');
  });
});

/** A hand-built item header, so a test can state exactly the malformation it makes. */
const item = (tag: number, type: number, length: number, value: Buffer): Buffer => {
  const h = Buffer.alloc(8);
  h.writeUIntBE(tag, 0, 3);
  h.writeUInt8(type, 3);
  h.writeUInt32BE(length, 4);
  return Buffer.concat([h, value]);
};
const zeros = (n: number) => Buffer.alloc(n);

describe('TTLV: malformed input is a KmipProtocolError', () => {
  const cases: Array<[string, Buffer, RegExp]> = [
    ['empty input', zeros(0), /truncated/],
    ['a header cut short', spec('42 00 20 02 00 00'), /truncated/],
    ['a tag outside 0x42xxxx/0x54xxxx', item(0x430020, 2, 4, zeros(8)), /invalid tag/],
    ['an unknown type byte', item(0x420020, 0x0c, 4, zeros(8)), /unknown item type/],
    ['KMIP 2.0 Date-Time Extended', item(0x420020, 0x0b, 8, zeros(8)), /unknown item type/],
    ['an Integer of length 8', item(0x420020, 2, 8, zeros(8)), /length 8, expected 4/],
    ['an Enumeration of length 2', item(0x420020, 5, 2, zeros(8)), /length 2, expected 4/],
    ['an Interval of length 0', item(0x420020, 0x0a, 0, zeros(0)), /length 0, expected 4/],
    ['a LongInteger of length 4', item(0x420020, 3, 4, zeros(8)), /length 4, expected 8/],
    ['a DateTime of length 16', item(0x420020, 9, 16, zeros(16)), /length 16, expected 8/],
    ['a Boolean of length 1', item(0x420020, 6, 1, spec('01 00 00 00 00 00 00 00')), /length 1, expected 8/],
    ['a Boolean of value 2', item(0x420020, 6, 8, spec('00 00 00 00 00 00 00 02')), /neither 0 nor 1/],
    ['a Boolean with a high byte set', item(0x420020, 6, 8, spec('01 00 00 00 00 00 00 01')), /neither 0 nor 1/],
    ['a BigInteger of length 12', item(0x420020, 4, 12, zeros(16)), /multiple of 8/],
    ['a BigInteger of length 0', item(0x420020, 4, 0, zeros(0)), /multiple of 8/],
    ['non-zero padding after an Integer', item(0x420020, 2, 4, spec('00 00 00 08 00 00 00 01')), /non-zero padding/],
    ['non-zero padding after a TextString', item(0x420020, 7, 3, Buffer.from('abc\0\0\0\0x')), /non-zero padding/],
    ['an unpadded TextString', item(0x420020, 7, 3, Buffer.from('abc')), /runs past/],
    ['a ByteString longer than the input', item(0x420020, 8, 0xffff_fff0, zeros(8)), /runs past/],
    ['invalid UTF-8 (a lone continuation byte)', item(0x420020, 7, 1, spec('80 00 00 00 00 00 00 00')), /invalid UTF-8/],
    ['invalid UTF-8 (an overlong NUL)', item(0x420020, 7, 2, spec('C0 80 00 00 00 00 00 00')), /invalid UTF-8/],
    ['invalid UTF-8 (a UTF-16 surrogate)', item(0x420020, 7, 3, spec('ED A0 80 00 00 00 00 00')), /invalid UTF-8/],
    ['bytes after the item', Buffer.concat([encodeTtlv(int(0x420020, 1)), zeros(8)]), /after the message/],
    [
      'a structure whose length ends inside a child',
      item(0x420020, 1, 8, encodeTtlv(int(0x420004, 1))),
      /runs past its container/,
    ],
    [
      'a structure whose children leave a gap',
      item(0x420020, 1, 20, Buffer.concat([encodeTtlv(int(0x420004, 1)), zeros(4)])),
      /truncated item header/,
    ],
    ['a structure longer than the input', item(0x420020, 1, 0x100, encodeTtlv(int(0x420004, 1))), /runs past/],
  ];
  it.each(cases)('%s', (_, data, message) => {
    expect(() => decodeTtlv(data)).toThrow(KmipProtocolError);
    expect(() => decodeTtlv(data)).toThrow(message);
  });

  it('enforces the depth limit', () => {
    let nested: Ttlv = int(0x420001, 1);
    for (let i = 0; i < 20; i++) nested = struct(0x420002, nested);
    const encoded = encodeTtlv(nested);
    expect(() => decodeTtlv(encoded)).toThrow(/nesting deeper than 16/);
    expect(decodeTtlv(encoded, { maxDepth: 21 })).toEqual(nested);
    expect(() => decodeTtlv(encoded, { maxDepth: 20 })).toThrow(KmipProtocolError);
  });

  it('enforces the item-count limit', () => {
    const many = struct(0x420001, ...Array.from({ length: 99 }, (_, i) => int(0x420002, i)));
    const encoded = encodeTtlv(many);
    expect(decodeTtlv(encoded, { maxItems: 100 })).toEqual(many);
    expect(() => decodeTtlv(encoded, { maxItems: 99 })).toThrow(/more than 99 items/);
  });

  it('enforces the size limit before reading anything', () => {
    const big = encodeTtlv(bytes(0x420001, Buffer.alloc(1000)));
    expect(() => decodeTtlv(big, { maxBytes: 1000 })).toThrow(/exceeds the limit/);
    expect(decodeTtlv(big, { maxBytes: 1008 }).tag).toBe(0x420001);
  });
});

describe('messageLength (stream framing)', () => {
  it('returns header + body length for a structure', () => {
    expect(messageLength(spec('42 00 7B 01 00 00 00 C0'), 1 << 20)).toBe(0xc8);
    expect(messageLength(spec('42 00 7B 01 00 00 00 00'), 8)).toBe(8);
  });
  it('refuses what cannot start a KMIP message, before the body is buffered', () => {
    expect(() => messageLength(spec('42 00 7B 01 00 00 00'), 1 << 20)).toThrow(/shorter than 8/);
    expect(() => messageLength(spec('15 03 03 00 02 02 28 00'), 1 << 20)).toThrow(/KMIP tag/); // a TLS alert record
    expect(() => messageLength(spec('42 00 7B 02 00 00 00 04'), 1 << 20)).toThrow(/not a structure/);
    expect(() => messageLength(spec('42 00 7B 01 00 00 00 0C'), 1 << 20)).toThrow(/multiple of 8/);
    expect(() => messageLength(spec('42 00 7B 01 FF FF FF F8'), 1 << 20)).toThrow(/exceeds the limit/);
    expect(() => messageLength(spec('42 00 7B 01 00 00 00 C0'), 0xc7)).toThrow(KmipProtocolError);
  });
});

describe('readers', () => {
  const payload = struct(0x42007c, enm(0x420057, 2), text(0x420094, 'uid-1'), text(0x42004c, 'a'), text(0x42004c, 'b'));
  it('find children by tag and check their type', () => {
    expect(enumOf(payload, 0x420057)).toBe(2);
    expect(textOf(payload, 0x420094)).toBe('uid-1');
    expect(children(payload, 0x42004c).map((c) => c.value)).toEqual(['a', 'b']);
    expect(child(payload, 0x420001)).toBeUndefined();
  });
  it('throw KmipProtocolError on absent, mistyped or repeated fields', () => {
    expect(() => textOf(payload, 0x420001)).toThrow(KmipProtocolError);
    expect(() => intOf(payload, 0x420057)).toThrow(/is a Enumeration, expected Integer/);
    expect(() => child(payload, 0x42004c)).toThrow(/occurs 2 times/);
    expect(() => children(int(0x420001, 1), 0x420001)).toThrow(/expected a Structure/);
  });
});

/** Valid seeds for the fuzzer: every spec example, plus a message with every type nested. */
const fuzzSeeds: Buffer[] = [
  ...specExamples.map(([, , hex]) => spec(hex)),
  encodeTtlv(
    struct(
      0x42007b,
      struct(0x42007a, struct(0x420069, int(0x42006a, 1), int(0x42006b, 4)), dateTime(0x420092, 1_700_000_000n), int(0x42000d, 1)),
      struct(
        0x42000f,
        enm(0x42005c, 0x0a),
        enm(0x42007f, 0),
        struct(
          0x42007c,
          text(0x420094, 'a1b2c3'),
          bigInt(0x420052, (1n << 2047n) + 99n),
          long(0x420001, -5n),
          bool(0x420002, true),
          bytes(0x420043, Buffer.alloc(32, 7)),
          interval(0x420003, 60),
        ),
      ),
    ),
  ),
];

describe('TTLV fuzz: mutated and truncated messages', () => {
  it('never throw anything but KmipProtocolError, and never hang', () => {
    const seed = 0x5eed_0001;
    const rnd = prng(seed);
    const started = Date.now();
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < 30_000; i++) {
      const base = fuzzSeeds[i % fuzzSeeds.length]!;
      let input = mutate(base, rnd);
      if (rnd() < 0.3) input = mutate(input, rnd);
      try {
        const decoded = decodeTtlv(input);
        accepted++;
        // Whatever decodes must survive a round trip (bytes may differ: a BigInteger may carry extra sign bytes).
        expect(decodeTtlv(encodeTtlv(decoded)), `iteration ${i} (seed ${seed})`).toEqual(decoded);
      } catch (e) {
        if (!(e instanceof KmipProtocolError)) throw new Error(`iteration ${i} (seed ${seed}) threw ${String(e)} for ${input.toString('hex')}`);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(accepted); // the mutations really do break things
    expect(accepted).toBeGreaterThan(0); // and some survive (a flipped value byte), exercising the success path
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});
