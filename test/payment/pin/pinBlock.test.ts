import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HsmBridgeError } from '../../../src/errors.js';
import { format4PanField, tdesPanField } from '../../../src/payment/pin/pan.js';
import {
  decipherFormat4,
  decodeFormat4PinField,
  decodePinBlock,
  encipherFormat4,
  encodeFormat4PinField,
  encodePinBlock,
  type AesEcbBlockOperation,
  type TdesPinBlockSpec,
} from '../../../src/payment/pin/pinBlock.js';

// Independent AES-ECB (node:crypto) standing in for the backend's block operation.
function aesEcb(keyHex: string, direction: 'encrypt' | 'decrypt'): AesEcbBlockOperation {
  const key = Buffer.from(keyHex, 'hex');
  const algorithm = `aes-${key.length * 8}-ecb`;
  return (block) => {
    const c = direction === 'encrypt' ? createCipheriv(algorithm, key, null) : createDecipheriv(algorithm, key, null);
    c.setAutoPadding(false);
    return Buffer.concat([c.update(block), c.final()]);
  };
}

const pinOf = (s: string): Buffer => Buffer.from(s, 'ascii');
const hex = (b: Buffer): string => b.toString('hex').toUpperCase();
const xorHex = (a: string, b: string): Buffer => {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return Buffer.from(x.map((v, i) => v ^ y[i]!));
};
/** A PAN of `length` digits that differs across lengths (so a wrong PAN length shows up). */
const panOfLength = (length: number): string => '4539876543210987654321'.slice(0, length);

/** Asserts an INVALID_ARGUMENT whose message carries none of the secrets given (PIN, PAN, block hex). */
async function expectRejected(run: () => unknown, secrets: string[], message?: RegExp): Promise<void> {
  let error: unknown;
  try {
    await run();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(HsmBridgeError);
  const e = error as HsmBridgeError;
  expect(e.code).toBe('INVALID_ARGUMENT');
  if (message) expect(e.message).toMatch(message);
  for (const s of secrets) {
    expect(e.message.toUpperCase()).not.toContain(s.toUpperCase());
  }
}

describe('FIELD-NOTES §5 vectors', () => {
  it('format 0: PIN 1234, PAN 5555555551234567 -> 041261AAAAEDCBA9', () => {
    const spec = { format: 0, pan: '5555555551234567' } as const;
    expect(hex(encodePinBlock(pinOf('1234'), spec))).toBe('041261AAAAEDCBA9');
    expect(decodePinBlock(Buffer.from('041261AAAAEDCBA9', 'hex'), spec).toString()).toBe('1234');
  });

  it('format 3: 341261AAAAEDCBA9 with the same PAN decodes to 1234', () => {
    const pin = decodePinBlock(Buffer.from('341261AAAAEDCBA9', 'hex'), { format: 3, pan: '5555555551234567' });
    expect(pin.toString()).toBe('1234');
  });

  it('format 0 from the TDES DUKPT vector: PIN 1234, 13-digit PAN 4012345678909 -> 041274EDCBA9876F', () => {
    const spec = { format: 0, pan: '4012345678909' } as const;
    expect(hex(encodePinBlock(pinOf('1234'), spec))).toBe('041274EDCBA9876F');
    expect(decodePinBlock(Buffer.from('041274EDCBA9876F', 'hex'), spec).toString()).toBe('1234');
  });

  const ep2 = {
    key: 'C1D0F8FB4958670DBA40AB1F3752EF0D',
    block: 'CC17F65586BFD0953010226C4FC5B3CA',
    pan: '432198765432109870',
    pinField: '441234AAAAAAAAAA146C6601F4A8035C',
  };

  it('format 4 (ep2 8.4): the block deciphers to PIN 1234 under the AES key', async () => {
    const pin = await decipherFormat4(Buffer.from(ep2.block, 'hex'), ep2.pan, aesEcb(ep2.key, 'decrypt'));
    expect(pin.toString()).toBe('1234');
  });

  it('format 4 (ep2 8.4): the clear PIN field 441234AAAAAAAAAA146C6601F4A8035C decodes to 1234', () => {
    expect(decodeFormat4PinField(Buffer.from(ep2.pinField, 'hex')).toString()).toBe('1234');
  });

  it('format 4 (ep2 8.4): our PAN field reproduces the block as E(E(PIN field) XOR PAN field)', () => {
    const panField = format4PanField(ep2.pan);
    expect(hex(panField)).toBe('64321987654321098700000000000000');
    const enc = aesEcb(ep2.key, 'encrypt');
    const first = enc(Buffer.from(ep2.pinField, 'hex')) as Buffer;
    const block = enc(Buffer.from(first.map((v, i) => v ^ panField[i]!))) as Buffer;
    expect(hex(block)).toBe(ep2.block);
  });

  it('format 4 from the AES DUKPT vector: A912150391AB65A67E52883D81CE2D15 deciphers to 1234', async () => {
    const decrypt = aesEcb('AF8CB133A78F8DC2D1359F18527593FB', 'decrypt');
    const pin = await decipherFormat4(Buffer.from('A912150391AB65A67E52883D81CE2D15', 'hex'), '4111111111111111', decrypt);
    expect(pin.toString()).toBe('1234');
  });
});

describe('PAN fields', () => {
  it('formats 0/3 take the 12 rightmost digits without the check digit', () => {
    expect(hex(tdesPanField('4539876543210987654'))).toBe('0000654321098765');
  });

  it('formats 0/3 left-pad a 12-digit PAN (11 digits without the check digit) with 0', () => {
    expect(hex(tdesPanField('123456789012'))).toBe('0000012345678901');
  });

  it('format 4 encodes M = length - 12, the full PAN and 0 fill', () => {
    expect(hex(format4PanField('123456789012'))).toBe('01234567890120000000000000000000');
    expect(hex(format4PanField('4539876543210987654'))).toBe('74539876543210987654000000000000');
  });

  it('short PANs (ISO/IEC 7812: 8 digits and up) are left-padded with 0 in every PAN-bound format', () => {
    // 8 digits: 7 without the check digit, right-justified in the 12-digit field.
    expect(hex(tdesPanField('12345678'))).toBe('0000000001234567');
    expect(hex(tdesPanField('40123456789'))).toBe('0000004012345678');
    // Format 4: M = 0 and the PAN left-padded with 0 to 12 digits.
    expect(hex(format4PanField('12345678'))).toBe('00000123456780000000000000000000');
    expect(hex(format4PanField('40123456789'))).toBe('00401234567890000000000000000000');
  });

  it.each(['1234567', '45398765432109876543', '12345678901a', '', ' 123456789012'])('rejects PAN %j', async (pan) => {
    await expectRejected(() => tdesPanField(pan), pan ? [pan.trim()] : [], /PAN must be 8 to 19 decimal digits/);
    await expectRejected(() => format4PanField(pan), pan ? [pan.trim()] : [], /PAN must be 8 to 19 decimal digits/);
  });
});

describe('structure of encoded blocks (checked nibble by nibble, independently of our decoder)', () => {
  const pan = '4539876543210987';
  const panField = '0000' + pan.slice(3, 15);

  it.each([0, 2] as const)('format %i: control, length, PIN, F fill', (format) => {
    const spec: TdesPinBlockSpec = format === 0 ? { format, pan } : { format };
    const block = encodePinBlock(pinOf('98765'), spec);
    const clear = format === 0 ? hex(xorHex(hex(block), panField)) : hex(block);
    expect(clear).toBe(`${format}598765FFFFFFFFF`);
  });

  it('format 1: control, length, PIN, then random fill', () => {
    expect(hex(encodePinBlock(pinOf('98765'), { format: 1 }))).toMatch(/^1598765[0-9A-F]{9}$/);
  });

  it('format 3: fill is A-F only, and every value A-F occurs', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const clear = hex(xorHex(hex(encodePinBlock(pinOf('1234'), { format: 3, pan })), panField));
      expect(clear).toMatch(/^341234[A-F]{10}$/);
      for (const c of clear.slice(6)) seen.add(c);
    }
    expect([...seen].sort().join('')).toBe('ABCDEF');
  });

  it('format 4: the PIN field is 4 N PIN A-fill then random, and the block is E(E(field) XOR PAN field)', async () => {
    const key = randomBytes(32).toString('hex');
    const block = await encipherFormat4(pinOf('123456789'), pan, aesEcb(key, 'encrypt'));
    const dec = aesEcb(key, 'decrypt');
    const mid = dec(block) as Buffer;
    const field = dec(xorHex(hex(mid), '4' + pan + '0'.repeat(15))) as Buffer;
    expect(hex(field)).toMatch(/^49123456789AAAAA[0-9A-F]{16}$/);
    expect(hex(encodeFormat4PinField(pinOf('1234')))).toMatch(/^441234A{10}[0-9A-F]{16}$/);
  });
});

describe('round trips: every format, PIN lengths 4..12, PAN lengths 12..19', () => {
  const pins = Array.from({ length: 9 }, (_, i) => '907856341209'.slice(0, i + 4));
  const pans = Array.from({ length: 8 }, (_, i) => panOfLength(i + 12));

  it.each([0, 1, 2, 3] as const)('format %i', (format) => {
    let count = 0;
    for (const pin of pins) {
      for (const pan of pans) {
        const spec: TdesPinBlockSpec = format === 0 || format === 3 ? { format, pan } : { format };
        const block = encodePinBlock(pinOf(pin), spec);
        expect(block.length).toBe(8);
        expect(decodePinBlock(block, spec).toString()).toBe(pin);
        count++;
      }
    }
    expect(count).toBe(72);
  });

  it.each([16, 24, 32])('format 4 with AES-%i', async (keyBytes) => {
    const key = randomBytes(keyBytes).toString('hex');
    for (const pin of pins) {
      for (const pan of pans) {
        const block = await encipherFormat4(pinOf(pin), pan, aesEcb(key, 'encrypt'));
        expect(block.length).toBe(16);
        expect((await decipherFormat4(block, pan, aesEcb(key, 'decrypt'))).toString()).toBe(pin);
      }
    }
  });

  it('format 4 accepts an async block operation (as a backend provides)', async () => {
    const key = randomBytes(16).toString('hex');
    const enc = aesEcb(key, 'encrypt');
    const dec = aesEcb(key, 'decrypt');
    const block = await encipherFormat4(pinOf('4321'), panOfLength(16), async (b) => enc(b));
    expect((await decipherFormat4(block, panOfLength(16), async (b) => dec(b))).toString()).toBe('4321');
  });
});

describe('random fill', () => {
  const pan = panOfLength(16);
  it.each([1, 3] as const)('two format %i encodings of the same PIN differ', (format) => {
    const spec: TdesPinBlockSpec = format === 3 ? { format, pan } : { format };
    expect(encodePinBlock(pinOf('1234'), spec).equals(encodePinBlock(pinOf('1234'), spec))).toBe(false);
  });

  it('two format 0 and 2 encodings are equal (deterministic formats)', () => {
    expect(encodePinBlock(pinOf('1234'), { format: 0, pan }).equals(encodePinBlock(pinOf('1234'), { format: 0, pan }))).toBe(true);
    expect(encodePinBlock(pinOf('1234'), { format: 2 }).equals(encodePinBlock(pinOf('1234'), { format: 2 }))).toBe(true);
  });

  it('two format 4 PIN fields and enciphered blocks differ', async () => {
    const a = encodeFormat4PinField(pinOf('1234'));
    const b = encodeFormat4PinField(pinOf('1234'));
    expect(a.subarray(0, 8).equals(b.subarray(0, 8))).toBe(true);
    expect(a.subarray(8).equals(b.subarray(8))).toBe(false);
    const enc = aesEcb(randomBytes(16).toString('hex'), 'encrypt');
    expect((await encipherFormat4(pinOf('1234'), pan, enc)).equals(await encipherFormat4(pinOf('1234'), pan, enc))).toBe(false);
  });
});

describe('secrets hygiene', () => {
  it('format 4 zeroes every buffer it handed to or got from the block operation', async () => {
    const key = randomBytes(16).toString('hex');
    const seen: Buffer[] = [];
    const record = (op: AesEcbBlockOperation): AesEcbBlockOperation => (b) => {
      const out = op(b) as Buffer;
      seen.push(b, out);
      return out;
    };
    const block = await encipherFormat4(pinOf('1234'), panOfLength(16), record(aesEcb(key, 'encrypt')));
    expect(seen).toHaveLength(4);
    for (const b of seen) expect(b.every((v) => v === 0)).toBe(true);
    expect(block.every((v) => v === 0)).toBe(false);
    seen.length = 0;
    await decipherFormat4(block, panOfLength(16), record(aesEcb(key, 'decrypt')));
    expect(seen).toHaveLength(4);
    // The first input is the caller's (public) block copied; every later buffer held PIN-derived data.
    for (const b of seen.slice(1)) expect(b.every((v) => v === 0)).toBe(true);
  });
});

describe('input validation', () => {
  it.each(['123', '1234567890123', '12a4', '12 34', ''])('rejects PIN %j', async (pin) => {
    const secrets = pin ? [pin] : [];
    await expectRejected(() => encodePinBlock(pinOf(pin), { format: 2 }), secrets, /PIN must be 4 to 12 decimal digits/);
    await expectRejected(() => encodeFormat4PinField(pinOf(pin)), secrets, /PIN must be 4 to 12 decimal digits/);
  });

  it('rejects a PIN given as a string', async () => {
    await expectRejected(() => encodePinBlock('1234' as unknown as Buffer, { format: 1 }), ['1234']);
  });

  it('rejects blocks of the wrong size', async () => {
    await expectRejected(() => decodePinBlock(Buffer.alloc(16), { format: 1 }), [], /8 bytes/);
    await expectRejected(() => decodeFormat4PinField(Buffer.alloc(8)), [], /16 bytes/);
    await expectRejected(() => decipherFormat4(Buffer.alloc(8), panOfLength(16), aesEcb('00'.repeat(16), 'decrypt')), [], /16 bytes/);
  });
});

describe('blocks that do not decode', () => {
  const pan = '4539876543210987';
  const panField = '0000' + pan.slice(3, 15);
  /** Decodes a clear block given as hex in `format`, applying the PAN field for 0/3, and expects rejection. */
  async function rejectsClear(format: 0 | 1 | 2 | 3, clearHex: string, pin: string): Promise<void> {
    const block = format === 0 || format === 3 ? xorHex(clearHex, panField) : Buffer.from(clearHex, 'hex');
    const spec: TdesPinBlockSpec = format === 0 || format === 3 ? { format, pan } : { format };
    await expectRejected(() => decodePinBlock(block, spec), [pin, pan, hex(block), clearHex], new RegExp(`^PIN block does not decode as ISO format ${format}$`));
  }
  /** The same for a format 4 PIN field, both as a clear field and enciphered under a key. */
  async function rejectsField4(fieldHex: string, pin: string): Promise<void> {
    const field = Buffer.from(fieldHex, 'hex');
    await expectRejected(() => decodeFormat4PinField(field), [pin, fieldHex], /^PIN block does not decode as ISO format 4$/);
    const key = randomBytes(16).toString('hex');
    const enc = aesEcb(key, 'encrypt');
    const block = enc(xorHex(hex(enc(field) as Buffer), hex(format4PanField(pan)))) as Buffer;
    await expectRejected(() => decipherFormat4(block, pan, aesEcb(key, 'decrypt')), [pin, pan, hex(block), fieldHex], /^PIN block does not decode as ISO format 4$/);
  }

  it('a valid clear block built the same way decodes (so the negatives below test the rule, not the helper)', () => {
    expect(decodePinBlock(xorHex('041234FFFFFFFFFF', panField), { format: 0, pan }).toString()).toBe('1234');
    expect(decodeFormat4PinField(Buffer.from('441234AAAAAAAAAA146C6601F4A8035C', 'hex')).toString()).toBe('1234');
  });

  it('bad control nibble', async () => {
    await rejectsClear(0, '241234FFFFFFFFFF', '1234');
    await rejectsClear(1, '041234ABCDEF0123', '1234');
    await rejectsClear(2, '041234FFFFFFFFFF', '1234');
    await rejectsClear(3, '041234ABCDEFABCD', '1234');
    await rejectsField4('341234AAAAAAAAAA146C6601F4A8035C', '1234');
  });

  it('PIN length out of range (3 and 13)', async () => {
    for (const format of [0, 1, 2, 3] as const) {
      const fill = format === 3 ? 'A' : 'F';
      await rejectsClear(format, `${format}3123${fill.repeat(11)}`, '123');
      await rejectsClear(format, `${format}D1234567890123`.padEnd(16, fill), '1234567890123');
    }
    await rejectsField4('43123AAAAAAAAAAA146C6601F4A8035C', '123');
    await rejectsField4('4D1234567890123A146C6601F4A8035C', '1234567890123');
  });

  it('non-digit PIN nibble', async () => {
    await rejectsClear(0, '0412B4FFFFFFFFFF', '12B4');
    await rejectsClear(1, '1412B40123456789', '12B4');
    await rejectsClear(2, '2412B4FFFFFFFFFF', '12B4');
    await rejectsClear(3, '3412B4ABCDEFABCD', '12B4');
    await rejectsField4('4412B4AAAAAAAAAA146C6601F4A8035C', '12B4');
  });

  it('bad fill for formats 0, 2, 3 and 4', async () => {
    await rejectsClear(0, '041234FFFFFFFFFE', '1234');
    await rejectsClear(0, '041234AAAAAAAAAA', '1234');
    await rejectsClear(2, '2412349FFFFFFFFF', '1234');
    await rejectsClear(3, '3412349ABCDEFABC', '1234');
    await rejectsClear(3, '341234ABCDEFABC0', '1234');
    await rejectsField4('441234AAAAAAAAAF146C6601F4A8035C', '1234');
    await rejectsField4('441234FFFFFFFFFF146C6601F4A8035C', '1234');
  });

  it('format 1 accepts any fill (ISO defines it as random)', () => {
    expect(decodePinBlock(Buffer.from('1412340F1E2D3C4B', 'hex'), { format: 1 }).toString()).toBe('1234');
  });

  it('wrong PAN for formats 0, 3 and 4', async () => {
    const pin = '1234';
    const other = '4539876543219999';
    for (const format of [0, 3] as const) {
      const block = encodePinBlock(pinOf(pin), { format, pan });
      await expectRejected(() => decodePinBlock(block, { format, pan: other }), [pin, pan, other, hex(block)], /^PIN block does not decode/);
    }
    const key = randomBytes(16).toString('hex');
    const block = await encipherFormat4(pinOf(pin), pan, aesEcb(key, 'encrypt'));
    await expectRejected(() => decipherFormat4(block, other, aesEcb(key, 'decrypt')), [pin, pan, other, hex(block)], /^PIN block does not decode/);
    // A PAN that differs only in length (M nibble) is also caught by format 4, which binds the full PAN.
    const longer = pan + '0';
    await expectRejected(() => decipherFormat4(block, longer, aesEcb(key, 'decrypt')), [pin, pan, longer, hex(block)], /^PIN block does not decode/);
  });

  it('format 4 under the wrong key does not decode', async () => {
    const block = await encipherFormat4(pinOf('1234'), pan, aesEcb(randomBytes(16).toString('hex'), 'encrypt'));
    await expectRejected(() => decipherFormat4(block, pan, aesEcb(randomBytes(16).toString('hex'), 'decrypt')), ['1234', pan, hex(block)], /^PIN block does not decode/);
  });
});
