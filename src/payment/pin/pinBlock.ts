import { randomBytes } from 'node:crypto';
import { HsmBridgeError, invalid } from '../../errors.js';
import { format4PanField, tdesPanField } from './pan.js';

/**
 * ISO 9564-1 clear PIN blocks. Formats 0-3 are 8 bytes (enciphered with TDES by the caller); format 4 is
 * the AES format whose PIN and PAN fields are combined around two AES-ECB block operations that the
 * caller supplies, so the key can stay in a backend.
 *
 * PINs are Buffers of ASCII digits, never strings, so callers can zero them; every intermediate buffer
 * here is zeroed before returning. A block that does not decode gets one message per format whatever
 * rule it broke: distinct messages would tell an attacker with a decryption oracle which nibbles are
 * wrong, and no message ever carries the block, the PIN or the PAN.
 */

/** The 8-byte formats; 0 and 3 bind the PIN to a PAN, 1 and 2 do not. */
export type TdesPinBlockSpec = { readonly format: 0 | 3; readonly pan: string } | { readonly format: 1 | 2 };
export type TdesPinBlockFormat = TdesPinBlockSpec['format'];

/** One AES-ECB block operation (encrypt or decrypt of exactly 16 bytes) under a key the caller holds. */
export type AesEcbBlockOperation = (block: Buffer) => Buffer | Promise<Buffer>;

export const MIN_PIN_DIGITS = 4;
export const MAX_PIN_DIGITS = 12;
export const TDES_PIN_BLOCK_BYTES = 8;
export const AES_PIN_BLOCK_BYTES = 16;

const FILL_F = 0xf;
const FILL_A = 0xa;

export function assertPin(pin: Buffer): void {
  if (!Buffer.isBuffer(pin) || pin.length < MIN_PIN_DIGITS || pin.length > MAX_PIN_DIGITS || !pin.every(isAsciiDigit)) {
    throw invalid(`PIN must be ${MIN_PIN_DIGITS} to ${MAX_PIN_DIGITS} decimal digits`);
  }
}

/** Encodes a clear 8-byte PIN block in format 0, 1, 2 or 3. */
export function encodePinBlock(pin: Buffer, spec: TdesPinBlockSpec): Buffer {
  assertPin(pin);
  const panField = spec.format === 0 || spec.format === 3 ? tdesPanField(spec.pan) : undefined;
  const nibbles = pinFieldNibbles(spec.format, pin, TDES_PIN_BLOCK_BYTES * 2, fillFor(spec.format));
  const block = packNibbles(nibbles);
  nibbles.fill(0);
  if (panField) xorInto(block, panField);
  return block;
}

/** Decodes a clear 8-byte PIN block; returns the PIN as ASCII digits, which the caller must zero. */
export function decodePinBlock(block: Buffer, spec: TdesPinBlockSpec): Buffer {
  if (!Buffer.isBuffer(block) || block.length !== TDES_PIN_BLOCK_BYTES) {
    throw invalid(`an ISO format ${spec.format} PIN block must be ${TDES_PIN_BLOCK_BYTES} bytes`);
  }
  const panField = spec.format === 0 || spec.format === 3 ? tdesPanField(spec.pan) : undefined;
  const clear = Buffer.from(block);
  if (panField) xorInto(clear, panField);
  const nibbles = unpackNibbles(clear);
  clear.fill(0);
  try {
    return pinFromNibbles(nibbles, spec.format, fillRuleFor(spec.format));
  } finally {
    nibbles.fill(0);
  }
}

/** Format 4 clear PIN field: `4 N PIN A..A` to nibble 16, then 8 random bytes. */
export function encodeFormat4PinField(pin: Buffer): Buffer {
  assertPin(pin);
  const nibbles = pinFieldNibbles(4, pin, 16, () => FILL_A);
  const firstHalf = packNibbles(nibbles);
  const field = Buffer.concat([firstHalf, randomBytes(8)]);
  nibbles.fill(0);
  firstHalf.fill(0);
  return field;
}

/** Decodes a format 4 clear PIN field; the second (random) half is not checked, as ISO defines no rule for it. */
export function decodeFormat4PinField(field: Buffer): Buffer {
  if (!Buffer.isBuffer(field) || field.length !== AES_PIN_BLOCK_BYTES) {
    throw invalid(`an ISO format 4 PIN field must be ${AES_PIN_BLOCK_BYTES} bytes`);
  }
  const nibbles = unpackNibbles(field.subarray(0, 8));
  try {
    return pinFromNibbles(nibbles, 4, (n) => n === FILL_A);
  } finally {
    nibbles.fill(0);
  }
}

/** Format 4 encipherment: C = E(E(PIN field) XOR PAN field). `aesEcb` encrypts one block under the PIN key. */
export async function encipherFormat4(pin: Buffer, pan: string, aesEcb: AesEcbBlockOperation): Promise<Buffer> {
  const panField = format4PanField(pan);
  const pinField = encodeFormat4PinField(pin);
  const scratch: Buffer[] = [pinField];
  try {
    const first = checkedBlock(await aesEcb(pinField));
    scratch.push(first);
    const intermediate = Buffer.from(first);
    scratch.push(intermediate);
    xorInto(intermediate, panField);
    const second = checkedBlock(await aesEcb(intermediate));
    scratch.push(second);
    return Buffer.from(second);
  } finally {
    for (const b of scratch) b.fill(0);
  }
}

/** Format 4 decipherment: PIN field = D(D(C) XOR PAN field). `aesEcbDecrypt` decrypts one block under the PIN key. */
export async function decipherFormat4(block: Buffer, pan: string, aesEcbDecrypt: AesEcbBlockOperation): Promise<Buffer> {
  if (!Buffer.isBuffer(block) || block.length !== AES_PIN_BLOCK_BYTES) {
    throw invalid(`an ISO format 4 PIN block must be ${AES_PIN_BLOCK_BYTES} bytes`);
  }
  const panField = format4PanField(pan);
  const scratch: Buffer[] = [];
  try {
    const first = checkedBlock(await aesEcbDecrypt(Buffer.from(block)));
    scratch.push(first);
    const intermediate = Buffer.from(first);
    scratch.push(intermediate);
    xorInto(intermediate, panField);
    const pinField = checkedBlock(await aesEcbDecrypt(intermediate));
    scratch.push(pinField);
    return decodeFormat4PinField(pinField);
  } finally {
    for (const b of scratch) b.fill(0);
  }
}

// --- nibble-level rules shared by every format ---

type Format = TdesPinBlockFormat | 4;

/** `C N PIN fill...` as one nibble per byte; the caller zeroes it. */
function pinFieldNibbles(format: Format, pin: Buffer, length: number, fill: () => number): Uint8Array {
  const nibbles = new Uint8Array(length);
  nibbles[0] = format;
  nibbles[1] = pin.length;
  for (let i = 0; i < pin.length; i++) nibbles[2 + i] = pin[i]! - 0x30;
  for (let i = 2 + pin.length; i < length; i++) nibbles[i] = fill();
  return nibbles;
}

function pinFromNibbles(nibbles: Uint8Array, format: Format, fillOk: (nibble: number) => boolean): Buffer {
  const length = nibbles[1]!;
  let ok = nibbles[0] === format && length >= MIN_PIN_DIGITS && length <= MAX_PIN_DIGITS;
  if (ok) {
    for (let i = 2; i < 2 + length; i++) ok &&= nibbles[i]! <= 9;
    for (let i = 2 + length; i < nibbles.length; i++) ok &&= fillOk(nibbles[i]!);
  }
  if (!ok) throw new HsmBridgeError('INVALID_ARGUMENT', `PIN block does not decode as ISO format ${format}`);
  const pin = Buffer.alloc(length);
  for (let i = 0; i < length; i++) pin[i] = 0x30 + nibbles[2 + i]!;
  return pin;
}

function fillFor(format: TdesPinBlockFormat): () => number {
  switch (format) {
    case 0:
    case 2:
      return () => FILL_F;
    case 1:
      return randomNibbles(16, 16);
    case 3: {
      const next = randomNibbles(6, 16);
      return () => FILL_A + next();
    }
  }
}

function fillRuleFor(format: TdesPinBlockFormat): (nibble: number) => boolean {
  switch (format) {
    case 0:
    case 2:
      return (n) => n === FILL_F;
    case 1:
      return () => true; // random fill: any nibble
    case 3:
      return (n) => n >= FILL_A;
  }
}

/**
 * Uniform random values in [0, range) drawn from crypto.randomBytes, at most `count` of them. Rejection
 * sampling keeps A-F (range 6) unbiased; the pool is refilled if rejections exhaust it.
 */
function randomNibbles(range: number, count: number): () => number {
  const limit = 256 - (256 % range);
  let pool = randomBytes(count * 2);
  let at = 0;
  return () => {
    for (;;) {
      if (at === pool.length) {
        pool = randomBytes(count * 2);
        at = 0;
      }
      const byte = pool[at++]!;
      if (byte < limit) return byte % range;
    }
  };
}

function packNibbles(nibbles: Uint8Array): Buffer {
  const out = Buffer.alloc(nibbles.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = (nibbles[2 * i]! << 4) | nibbles[2 * i + 1]!;
  return out;
}

function unpackNibbles(bytes: Buffer): Uint8Array {
  const nibbles = new Uint8Array(bytes.length * 2);
  for (let i = 0; i < bytes.length; i++) {
    nibbles[2 * i] = bytes[i]! >> 4;
    nibbles[2 * i + 1] = bytes[i]! & 0xf;
  }
  return nibbles;
}

function xorInto(target: Buffer, mask: Buffer): void {
  for (let i = 0; i < target.length; i++) target[i] = target[i]! ^ mask[i]!;
}

function isAsciiDigit(byte: number): boolean {
  return byte >= 0x30 && byte <= 0x39;
}

/** A block operation that returns anything but 16 bytes is a backend bug, not bad input. */
function checkedBlock(out: Buffer): Buffer {
  if (!Buffer.isBuffer(out) || out.length !== AES_PIN_BLOCK_BYTES) {
    throw new HsmBridgeError('INTERNAL', 'AES block operation returned a block of the wrong size');
  }
  return out;
}
