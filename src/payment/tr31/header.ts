/**
 * The ANSI X9.143 (TR-31) key block header: 16 fixed characters, then the optional blocks. Only the
 * key-derivation binding versions are accepted: B (TDES) and D (AES). Versions A and C bind the key with
 * XOR variants of the KBPK, which X9.143 deprecates; they are refused, never read.
 *
 * Parsing is strict: every character must be printable ASCII, every field is checked, and a bad field is
 * named in the error. Values are not echoed: a malformed length can make key data look like header.
 */
import { invalid } from '../../errors.js';

export type KeyBlockVersion = 'B' | 'D';
export type Exportability = 'E' | 'N' | 'S';

export interface Tr31OptionalBlock {
  id: string;
  data: string;
}

export interface Tr31Header {
  version: KeyBlockVersion;
  keyUsage: string;
  algorithm: string;
  modeOfUse: string;
  keyVersionNumber: string;
  exportability: Exportability;
  optionalBlocks: readonly Tr31OptionalBlock[];
}

/** The length of the fixed part of the header. */
export const FIXED_HEADER_LENGTH = 16;
/** The block length field is four decimal digits. */
export const MAX_KEY_BLOCK_LENGTH = 9999;
/** The ID of the padding block that aligns the optional blocks to the cipher block size. */
export const PADDING_BLOCK_ID = 'PB';

/** The cipher block size of a version, in bytes: the header (as ASCII) and the key field are multiples of it. */
export function cipherBlockSize(version: KeyBlockVersion): 8 | 16 {
  return version === 'B' ? 8 : 16;
}

const PRINTABLE = /^[\x20-\x7e]*$/;
const ALPHANUMERIC_2 = /^[0-9A-Z]{2}$/;
const ALPHANUMERIC_1 = /^[0-9A-Z]$/;
const KEY_VERSION_NUMBER = /^[0-9A-Za-z]{2}$/;
const DIGITS = /^[0-9]+$/;
const HEX = /^[0-9A-F]+$/;

/** Checks the version letter; A and C get their own answer because senders still emit them. */
export function parseVersion(letter: string): KeyBlockVersion {
  if (letter === 'B' || letter === 'D') return letter;
  if (letter === 'A' || letter === 'C') {
    throw invalid('key block versions A and C (variant binding) are deprecated by X9.143 and not accepted; use version B (TDES) or D (AES)');
  }
  throw invalid('key block version is not supported; expected B (TDES) or D (AES)');
}

function checkFixedFields(h: Omit<Tr31Header, 'version' | 'optionalBlocks'>): void {
  if (!ALPHANUMERIC_2.test(h.keyUsage)) throw invalid('key block header: key usage must be 2 characters 0-9 A-Z');
  if (!ALPHANUMERIC_1.test(h.algorithm)) throw invalid('key block header: algorithm must be 1 character 0-9 A-Z');
  if (!ALPHANUMERIC_1.test(h.modeOfUse)) throw invalid('key block header: mode of use must be 1 character 0-9 A-Z');
  if (!KEY_VERSION_NUMBER.test(h.keyVersionNumber)) throw invalid('key block header: key version number must be 2 characters 0-9 A-Z a-z');
  if (h.exportability !== 'E' && h.exportability !== 'N' && h.exportability !== 'S') {
    throw invalid('key block header: exportability must be E, N or S');
  }
}

function checkOptionalBlock(block: Tr31OptionalBlock, index: number): void {
  if (!ALPHANUMERIC_2.test(block.id)) throw invalid(`key block header: optional block ${index + 1} ID must be 2 characters 0-9 A-Z`);
  if (!PRINTABLE.test(block.data)) throw invalid(`key block header: optional block ${index + 1} data must be printable ASCII`);
}

/** Reads one optional block at `at`; returns it and where the next one starts. */
function readOptionalBlock(text: string, at: number, index: number): { block: Tr31OptionalBlock; next: number } {
  const name = `key block header: optional block ${index + 1}`;
  const id = text.slice(at, at + 2);
  const lengthField = text.slice(at + 2, at + 4);
  if (id.length < 2 || lengthField.length < 2) throw invalid(`${name} is truncated`);
  if (!ALPHANUMERIC_2.test(id)) throw invalid(`${name} ID must be 2 characters 0-9 A-Z`);
  if (!HEX.test(lengthField)) throw invalid(`${name} length must be 2 hex digits 0-9 A-F`);
  let length = parseInt(lengthField, 16);
  let dataStart = at + 4;
  if (length === 0) {
    // Extended length: '00', then the number of hex digits of the length, then the length itself.
    const digitsField = text.slice(at + 4, at + 6);
    if (digitsField.length < 2 || !HEX.test(digitsField)) throw invalid(`${name} extended length must give its size in 2 hex digits`);
    const digits = parseInt(digitsField, 16);
    const extended = text.slice(at + 6, at + 6 + digits);
    if (digits === 0 || extended.length < digits || !HEX.test(extended)) throw invalid(`${name} extended length must be hex digits 0-9 A-F`);
    length = parseInt(extended, 16);
    dataStart = at + 6 + digits;
  }
  // The length covers the whole optional block, its ID and length fields included.
  if (length < dataStart - at) throw invalid(`${name} length is shorter than its own ID and length fields`);
  if (at + length > text.length) throw invalid(`${name} runs past the end of the key block`);
  const data = text.slice(dataStart, at + length);
  return { block: { id, data }, next: at + length };
}

/**
 * Parses the header at the start of a key block and checks the block length field against the whole
 * block. Returns the header and its length in characters (where the encrypted key field starts).
 */
export function parseKeyBlockHeader(block: string): { header: Tr31Header; length: number } {
  if (typeof block !== 'string') throw invalid('key block must be a string');
  if (block.length > MAX_KEY_BLOCK_LENGTH) throw invalid(`key block is longer than ${MAX_KEY_BLOCK_LENGTH} characters`);
  if (!PRINTABLE.test(block)) throw invalid('key block must be printable ASCII');
  if (block.length < FIXED_HEADER_LENGTH) throw invalid(`key block is shorter than its ${FIXED_HEADER_LENGTH}-character header`);
  const version = parseVersion(block[0]!);
  const lengthField = block.slice(1, 5);
  if (!DIGITS.test(lengthField)) throw invalid('key block header: block length must be 4 decimal digits');
  if (Number(lengthField) !== block.length) throw invalid("key block header: block length does not match the key block's length");
  const fixed = {
    keyUsage: block.slice(5, 7),
    algorithm: block.slice(7, 8),
    modeOfUse: block.slice(8, 9),
    keyVersionNumber: block.slice(9, 11),
    exportability: block.slice(11, 12) as Exportability,
  };
  checkFixedFields(fixed);
  const countField = block.slice(12, 14);
  if (!DIGITS.test(countField)) throw invalid('key block header: number of optional blocks must be 2 decimal digits');
  if (block.slice(14, 16) !== '00') throw invalid("key block header: reserved field must be '00'");

  const optionalBlocks: Tr31OptionalBlock[] = [];
  let at = FIXED_HEADER_LENGTH;
  for (let i = 0; i < Number(countField); i++) {
    const { block: optional, next } = readOptionalBlock(block, at, i);
    optionalBlocks.push(optional);
    at = next;
  }
  if (at % cipherBlockSize(version) !== 0) {
    throw invalid(`key block header: a version ${version} header with its optional blocks must be a multiple of ${cipherBlockSize(version)} characters`);
  }
  return { header: { version, ...fixed, optionalBlocks }, length: at };
}

function encodeOptionalBlock(block: Tr31OptionalBlock): string {
  const short = 4 + block.data.length;
  if (short <= 0xff) return `${block.id}${short.toString(16).toUpperCase().padStart(2, '0')}${block.data}`;
  // Extended form with a 4-hex-digit length: ID, '00', '04', LLLL, data.
  const long = 10 + block.data.length;
  if (long > 0xffff) throw invalid('key block header: an optional block is too long');
  return `${block.id}0004${long.toString(16).toUpperCase().padStart(4, '0')}${block.data}`;
}

/**
 * The optional blocks as written: the caller's, then a padding block 'PB' when they do not end on a
 * cipher block boundary (X9.143 requires the header to be a whole number of cipher blocks).
 */
export function alignedOptionalBlocks(header: Tr31Header): Tr31OptionalBlock[] {
  const blocks = [...header.optionalBlocks];
  const size = cipherBlockSize(header.version);
  const used = blocks.reduce((sum, b) => sum + encodeOptionalBlock(b).length, 0);
  const short = (size - (used % size)) % size;
  if (short === 0) return blocks;
  // A padding block is at least its 4-character ID and length; fill with '0' up to the boundary.
  const length = short >= 4 ? short : short + size;
  blocks.push({ id: PADDING_BLOCK_ID, data: '0'.repeat(length - 4) });
  return blocks;
}

/**
 * Encodes a header for a key block of `blockLength` characters. The optional blocks are written as
 * given; use alignedOptionalBlocks first when they may need padding.
 */
export function encodeKeyBlockHeader(header: Tr31Header, blockLength: number): string {
  parseVersion(header.version);
  checkFixedFields(header);
  header.optionalBlocks.forEach(checkOptionalBlock);
  if (header.optionalBlocks.length > 99) throw invalid('key block header: at most 99 optional blocks');
  if (!Number.isInteger(blockLength) || blockLength < FIXED_HEADER_LENGTH || blockLength > MAX_KEY_BLOCK_LENGTH) {
    throw invalid(`key block length must be ${FIXED_HEADER_LENGTH} to ${MAX_KEY_BLOCK_LENGTH} characters`);
  }
  const text =
    header.version +
    String(blockLength).padStart(4, '0') +
    header.keyUsage +
    header.algorithm +
    header.modeOfUse +
    header.keyVersionNumber +
    header.exportability +
    String(header.optionalBlocks.length).padStart(2, '0') +
    '00' +
    header.optionalBlocks.map(encodeOptionalBlock).join('');
  if (text.length % cipherBlockSize(header.version) !== 0) {
    throw invalid(`key block header: a version ${header.version} header must be a multiple of ${cipherBlockSize(header.version)} characters`);
  }
  return text;
}
