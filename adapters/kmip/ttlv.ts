/**
 * The KMIP 1.x binary TTLV codec (KMIP 1.4 §9.1): every item is a 3-byte tag, a 1-byte type, a 4-byte
 * big-endian length and a value padded with zeros to a multiple of 8 bytes.
 *
 * The decoder reads what a remote server sent, so it trusts nothing: every length is checked against
 * the bytes actually present before anything is read or allocated, lengths must match the type, padding
 * must be zero, a structure's children must fill it exactly, and depth and item count are bounded.
 * Anything else is a KmipProtocolError; no other exception escapes decodeTtlv.
 */

/** A response (or a request) that is not well-formed TTLV, or not the shape KMIP requires. */
export class KmipProtocolError extends Error {
  override readonly name = 'KmipProtocolError';
}

export type Ttlv =
  | { tag: number; type: 'Structure'; value: Ttlv[] }
  | { tag: number; type: 'Integer'; value: number } // 32-bit signed
  | { tag: number; type: 'LongInteger'; value: bigint } // 64-bit signed
  | { tag: number; type: 'BigInteger'; value: bigint } // two's complement, big-endian, padded to 8
  | { tag: number; type: 'Enumeration'; value: number } // 32-bit unsigned
  | { tag: number; type: 'Boolean'; value: boolean }
  | { tag: number; type: 'TextString'; value: string } // UTF-8
  | { tag: number; type: 'ByteString'; value: Buffer }
  | { tag: number; type: 'DateTime'; value: bigint } // seconds since the epoch, 64-bit signed
  | { tag: number; type: 'Interval'; value: number }; // 32-bit unsigned seconds

export type TtlvType = Ttlv['type'];
type ItemOf<T extends TtlvType> = Extract<Ttlv, { type: T }>;

export interface DecodeLimits {
  /** Largest encoded message accepted, header included. */
  maxBytes: number;
  /** Deepest structure nesting accepted (the outermost item is depth 1). */
  maxDepth: number;
  /** Most items (of any type, structures included) in one message. */
  maxItems: number;
}

export const defaultDecodeLimits: DecodeLimits = Object.freeze({ maxBytes: 1024 * 1024, maxDepth: 16, maxItems: 10_000 });

/** Type bytes of KMIP 1.x (§9.1.1.2). 0x0B (Date-Time Extended) is KMIP 2.0 and not accepted. */
const typeCode = {
  Structure: 0x01,
  Integer: 0x02,
  LongInteger: 0x03,
  BigInteger: 0x04,
  Enumeration: 0x05,
  Boolean: 0x06,
  TextString: 0x07,
  ByteString: 0x08,
  DateTime: 0x09,
  Interval: 0x0a,
} as const satisfies Record<TtlvType, number>;

const typeOfCode = new Map<number, TtlvType>(Object.entries(typeCode).map(([name, code]) => [code, name as TtlvType]));

const HEADER = 8;
const INT32_MIN = -0x8000_0000;
const INT32_MAX = 0x7fff_ffff;
const UINT32_MAX = 0xffff_ffff;
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

/** Fatal: a server sending invalid UTF-8 is malformed, not something to paper over with U+FFFD. */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const padded = (length: number): number => Math.ceil(length / 8) * 8;

/** Tags are 0x42xxxx (KMIP) or 0x54xxxx (extensions, §9.1.3.1); nothing else is a tag. */
function isTag(tag: number): boolean {
  return Number.isInteger(tag) && (tag >>> 16 === 0x42 || tag >>> 16 === 0x54) && tag <= 0xffffff;
}

export function formatTag(tag: number): string {
  return `0x${tag.toString(16).padStart(6, '0').toUpperCase()}`;
}

// ---------------------------------------------------------------------------------------------------
// Encoding. Our own items come from our own code: an out-of-range value is a bug, reported as RangeError.

export function encodeTtlv(item: Ttlv): Buffer {
  const out = Buffer.alloc(encodedLength(item));
  const end = write(item, out, 0);
  if (end !== out.length) throw new Error('TTLV encoder length mismatch'); // unreachable unless the two walks disagree
  return out;
}

function encodedLength(item: Ttlv): number {
  switch (item.type) {
    case 'Structure':
      return HEADER + item.value.reduce((sum, c) => sum + encodedLength(c), 0);
    case 'TextString':
      return HEADER + padded(Buffer.byteLength(item.value, 'utf8'));
    case 'ByteString':
      return HEADER + padded(item.value.length);
    case 'BigInteger':
      return HEADER + bigIntegerBytes(item.value).length;
    default:
      return HEADER + 8;
  }
}

function write(item: Ttlv, out: Buffer, at: number): number {
  if (!isTag(item.tag)) throw new RangeError(`not a KMIP tag: ${item.tag}`);
  out.writeUIntBE(item.tag, at, 3);
  out.writeUInt8(typeCode[item.type], at + 3);
  const v = at + HEADER;
  let length: number;
  switch (item.type) {
    case 'Structure': {
      let p = v;
      for (const c of item.value) p = write(c, out, p);
      length = p - v;
      break;
    }
    case 'Integer':
      if (!Number.isInteger(item.value) || item.value < INT32_MIN || item.value > INT32_MAX) throw new RangeError(`Integer out of range at ${formatTag(item.tag)}`);
      out.writeInt32BE(item.value, v);
      length = 4;
      break;
    case 'Enumeration':
    case 'Interval':
      if (!Number.isInteger(item.value) || item.value < 0 || item.value > UINT32_MAX) throw new RangeError(`${item.type} out of range at ${formatTag(item.tag)}`);
      out.writeUInt32BE(item.value, v);
      length = 4;
      break;
    case 'LongInteger':
    case 'DateTime':
      if (item.value < INT64_MIN || item.value > INT64_MAX) throw new RangeError(`${item.type} out of range at ${formatTag(item.tag)}`);
      out.writeBigInt64BE(item.value, v);
      length = 8;
      break;
    case 'Boolean':
      out.writeBigUInt64BE(item.value ? 1n : 0n, v);
      length = 8;
      break;
    case 'BigInteger': {
      const b = bigIntegerBytes(item.value);
      b.copy(out, v);
      length = b.length;
      break;
    }
    case 'TextString':
      length = out.write(item.value, v, 'utf8');
      break;
    case 'ByteString':
      length = item.value.copy(out, v);
      break;
  }
  out.writeUInt32BE(length, at + 4);
  // The buffer was zero-filled, so skipping over the padding leaves it zero.
  return v + (item.type === 'Structure' ? length : padded(length));
}

/** Two's complement, big-endian, sign-extended to a multiple of 8 bytes (at least 8). */
function bigIntegerBytes(value: bigint): Buffer {
  const negative = value < 0n;
  // The magnitude of ~value for negatives: -1 -> 0, -128 -> 127, so the bytes below fit with a sign bit.
  let hex = (negative ? ~value : value).toString(16);
  if (hex.length % 2) hex = '0' + hex;
  let bytes = Buffer.from(hex === '00' ? '' : hex, 'hex');
  if (bytes.length > 0 && (bytes[0]! & 0x80) !== 0) bytes = Buffer.concat([Buffer.alloc(1), bytes]);
  const out = Buffer.alloc(Math.max(8, padded(bytes.length)));
  bytes.copy(out, out.length - bytes.length);
  if (negative) for (let i = 0; i < out.length; i++) out[i] = ~out[i]! & 0xff;
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Decoding.

/**
 * Exactly one item filling `data`; throws KmipProtocolError on anything malformed: bad tag or type, bad
 * length for the type, non-zero padding, length past the end, too deep, too many items, invalid UTF-8.
 * Never allocates more than the input's size.
 */
export function decodeTtlv(data: Buffer, limits?: Partial<DecodeLimits>): Ttlv {
  const l = { ...defaultDecodeLimits, ...limits };
  for (const [name, n] of Object.entries(l)) if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`decode limit ${name} must be a positive integer`);
  if (data.length > l.maxBytes) throw new KmipProtocolError(`message of ${data.length} bytes exceeds the limit of ${l.maxBytes}`);
  const state = { items: 0, limits: l };
  const [item, end] = read(data, 0, data.length, 1, state);
  if (end !== data.length) throw new KmipProtocolError(`${data.length - end} bytes after the message`);
  return item;
}

interface ReadState {
  items: number;
  readonly limits: DecodeLimits;
}

function read(data: Buffer, at: number, limit: number, depth: number, state: ReadState): [Ttlv, number] {
  if (depth > state.limits.maxDepth) throw new KmipProtocolError(`nesting deeper than ${state.limits.maxDepth}`);
  if (++state.items > state.limits.maxItems) throw new KmipProtocolError(`more than ${state.limits.maxItems} items`);
  if (limit - at < HEADER) throw new KmipProtocolError(`truncated item header at offset ${at}`);
  const tag = data.readUIntBE(at, 3);
  if (!isTag(tag)) throw new KmipProtocolError(`invalid tag ${formatTag(tag)} at offset ${at}`);
  const code = data.readUInt8(at + 3);
  const type = typeOfCode.get(code);
  if (type === undefined) throw new KmipProtocolError(`unknown item type 0x${code.toString(16)} at ${formatTag(tag)}`);
  const length = data.readUInt32BE(at + 4);
  const v = at + HEADER;
  // Structures have no padding of their own; every other value is padded to 8.
  const span = type === 'Structure' ? length : padded(length);
  if (span > limit - v) throw new KmipProtocolError(`${type} ${formatTag(tag)} of length ${length} runs past its container`);
  const end = v + span;
  const fail = (what: string) => new KmipProtocolError(`${type} ${formatTag(tag)}: ${what}`);
  const fixed = (n: number) => {
    if (length !== n) throw fail(`length ${length}, expected ${n}`);
  };
  checkPadding(data, v + length, end, fail);

  switch (type) {
    case 'Structure': {
      const value: Ttlv[] = [];
      let p = v;
      while (p < end) {
        const [c, next] = read(data, p, end, depth + 1, state);
        value.push(c);
        p = next;
      }
      return [{ tag, type, value }, end];
    }
    case 'Integer':
      fixed(4);
      return [{ tag, type, value: data.readInt32BE(v) }, end];
    case 'Enumeration':
    case 'Interval':
      fixed(4);
      return [{ tag, type, value: data.readUInt32BE(v) }, end];
    case 'LongInteger':
    case 'DateTime':
      fixed(8);
      return [{ tag, type, value: data.readBigInt64BE(v) }, end];
    case 'Boolean': {
      fixed(8);
      const n = data.readBigUInt64BE(v);
      if (n > 1n) throw fail('value is neither 0 nor 1');
      return [{ tag, type, value: n === 1n }, end];
    }
    case 'BigInteger': {
      if (length === 0 || length % 8 !== 0) throw fail(`length ${length} is not a positive multiple of 8`);
      const unsigned = BigInt('0x' + data.toString('hex', v, v + length));
      const value = (data[v]! & 0x80) !== 0 ? unsigned - (1n << BigInt(length * 8)) : unsigned;
      return [{ tag, type, value }, end];
    }
    case 'TextString': {
      let value: string;
      try {
        value = utf8.decode(data.subarray(v, v + length));
      } catch {
        throw fail('invalid UTF-8');
      }
      return [{ tag, type, value }, end];
    }
    case 'ByteString': {
      // A copy of its own (not a pooled slice): the caller may hold key material here and zero it.
      const value = Buffer.alloc(length);
      data.copy(value, 0, v, v + length);
      return [{ tag, type, value }, end];
    }
  }
}

function checkPadding(data: Buffer, from: number, to: number, fail: (what: string) => KmipProtocolError): void {
  for (let i = from; i < to; i++) if (data[i] !== 0) throw fail('non-zero padding');
}

/**
 * For framing a stream: the total length of the message that starts with these 8 bytes (tag, type,
 * length). A KMIP message is a structure; anything else, or one larger than maxBytes, is refused before
 * the caller buffers its body.
 */
export function messageLength(first8: Buffer, maxBytes: number): number {
  if (first8.length < HEADER) throw new KmipProtocolError('message header shorter than 8 bytes');
  const tag = first8.readUIntBE(0, 3);
  if (!isTag(tag)) throw new KmipProtocolError(`stream does not start with a KMIP tag (${formatTag(tag)})`);
  if (first8.readUInt8(3) !== typeCode.Structure) throw new KmipProtocolError(`message ${formatTag(tag)} is not a structure`);
  const length = first8.readUInt32BE(4);
  if (length % 8 !== 0) throw new KmipProtocolError(`message length ${length} is not a multiple of 8`);
  const total = HEADER + length;
  if (total > maxBytes) throw new KmipProtocolError(`message of ${total} bytes exceeds the limit of ${maxBytes}`);
  return total;
}

// ---------------------------------------------------------------------------------------------------
// Builders.

export const struct = (tag: number, ...children: Ttlv[]): ItemOf<'Structure'> => ({ tag, type: 'Structure', value: children });
export const int = (tag: number, value: number): ItemOf<'Integer'> => ({ tag, type: 'Integer', value });
export const long = (tag: number, value: bigint): ItemOf<'LongInteger'> => ({ tag, type: 'LongInteger', value });
export const bigInt = (tag: number, value: bigint): ItemOf<'BigInteger'> => ({ tag, type: 'BigInteger', value });
export const enm = (tag: number, value: number): ItemOf<'Enumeration'> => ({ tag, type: 'Enumeration', value });
export const bool = (tag: number, value: boolean): ItemOf<'Boolean'> => ({ tag, type: 'Boolean', value });
export const text = (tag: number, value: string): ItemOf<'TextString'> => ({ tag, type: 'TextString', value });
export const bytes = (tag: number, value: Buffer): ItemOf<'ByteString'> => ({ tag, type: 'ByteString', value });
export const dateTime = (tag: number, seconds: bigint): ItemOf<'DateTime'> => ({ tag, type: 'DateTime', value: seconds });
export const interval = (tag: number, seconds: number): ItemOf<'Interval'> => ({ tag, type: 'Interval', value: seconds });

// ---------------------------------------------------------------------------------------------------
// Readers: for taking apart a decoded response. They throw KmipProtocolError, since a response of the
// wrong shape is the server's fault.

function childrenOfStructure(item: Ttlv): Ttlv[] {
  if (item.type !== 'Structure') throw new KmipProtocolError(`${formatTag(item.tag)} is a ${item.type}, expected a Structure`);
  return item.value;
}

/** Every child of `item` with this tag, in order. */
export function children(item: Ttlv, tag: number): Ttlv[] {
  return childrenOfStructure(item).filter((c) => c.tag === tag);
}

/** The child with this tag, or undefined. A field that occurs more than once is malformed: use children(). */
export function child(item: Ttlv, tag: number): Ttlv | undefined {
  const found = children(item, tag);
  if (found.length > 1) throw new KmipProtocolError(`${formatTag(tag)} occurs ${found.length} times in ${formatTag(item.tag)}`);
  return found[0];
}

/** The child with this tag and type; throws if it is absent or of another type. */
export function required<T extends TtlvType>(item: Ttlv, tag: number, type: T): ItemOf<T> {
  const c = child(item, tag);
  if (c === undefined) throw new KmipProtocolError(`${formatTag(tag)} missing from ${formatTag(item.tag)}`);
  if (c.type !== type) throw new KmipProtocolError(`${formatTag(tag)} is a ${c.type}, expected ${type}`);
  return c as ItemOf<T>;
}

export const structOf = (item: Ttlv, tag: number): ItemOf<'Structure'> => required(item, tag, 'Structure');
export const textOf = (item: Ttlv, tag: number): string => required(item, tag, 'TextString').value;
export const enumOf = (item: Ttlv, tag: number): number => required(item, tag, 'Enumeration').value;
export const intOf = (item: Ttlv, tag: number): number => required(item, tag, 'Integer').value;
export const longOf = (item: Ttlv, tag: number): bigint => required(item, tag, 'LongInteger').value;
export const bigIntOf = (item: Ttlv, tag: number): bigint => required(item, tag, 'BigInteger').value;
export const bytesOf = (item: Ttlv, tag: number): Buffer => required(item, tag, 'ByteString').value;
export const boolOf = (item: Ttlv, tag: number): boolean => required(item, tag, 'Boolean').value;
export const dateTimeOf = (item: Ttlv, tag: number): bigint => required(item, tag, 'DateTime').value;
