/**
 * X9.143 (TR-31) key blocks of versions B and D, built and opened in process. The KBPK stays in the
 * backend: it only computes the CMACs of the derivation inputs below, and the two derived keys (KBEK,
 * KBAK) live in process memory for the duration of one block; callers zero them.
 *
 *   key field  = 2-byte key length in bits || key || padding       (whole cipher blocks)
 *   MAC        = CMAC(KBAK, header as ASCII || clear key field)     (B: TDES, 8 bytes; D: AES, 16 bytes)
 *   block      = header || hex(CBC-encrypt(KBEK, IV = MAC, key field)) || hex(MAC)
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { HsmBridgeError, invalid } from '../../errors.js';
import { cbc, type BlockFamily } from '../crypto/blockCiphers.js';
import { cmacWithKey } from '../crypto/cmac.js';
import {
  alignedOptionalBlocks,
  cipherBlockSize,
  encodeKeyBlockHeader,
  MAX_KEY_BLOCK_LENGTH,
  parseKeyBlockHeader,
  parseVersion,
  type KeyBlockVersion,
  type Tr31Header,
} from './header.js';

/** KBEK and KBAK: clear, derived from the KBPK for one key block; the caller zeroes them. */
export interface KeyBlockKeys {
  readonly encryption: Buffer;
  readonly authentication: Buffer;
}

const family = (version: KeyBlockVersion): BlockFamily => (version === 'B' ? 'tdes' : 'aes');

/**
 * The X9.143 derivation parameters by KBPK length: the algorithm indicator and how many CMAC outputs
 * make one derived key (which is as long as the KBPK).
 */
const derivation: Record<KeyBlockVersion, Record<number, { algorithm: number; parts: number }>> = {
  B: { 16: { algorithm: 0x0000, parts: 2 }, 24: { algorithm: 0x0001, parts: 3 } },
  D: { 16: { algorithm: 0x0002, parts: 1 }, 24: { algorithm: 0x0003, parts: 2 }, 32: { algorithm: 0x0004, parts: 2 } },
};

function derivationFor(version: KeyBlockVersion, kbpkLength: number): { algorithm: number; parts: number } {
  const d = derivation[parseVersion(version)][kbpkLength];
  if (!d) {
    throw new HsmBridgeError(
      'INCOMPATIBLE_KEY',
      version === 'B' ? 'a version B key block needs a TDES KBPK (16 or 24 bytes)' : 'a version D key block needs an AES KBPK (16, 24 or 32 bytes)',
    );
  }
  return d;
}

/**
 * The derivation inputs (X9.143 / TR-31 CMAC KDF, NIST SP 800-108 counter mode): each KBEK/KBAK part is
 * CMAC(KBPK, input). An input is 8 bytes: counter (from 1), key usage indicator (0000 encryption, 0001
 * MAC), separator 00, algorithm indicator, derived key length in bits.
 */
export function keyBlockDerivationInputs(version: KeyBlockVersion, kbpkLength: number): { encryption: Buffer[]; authentication: Buffer[] } {
  const { algorithm, parts } = derivationFor(version, kbpkLength);
  const inputs = (usage: number): Buffer[] =>
    Array.from({ length: parts }, (_, i) => {
      const input = Buffer.alloc(8);
      input[0] = i + 1;
      input.writeUInt16BE(usage, 1);
      input.writeUInt16BE(algorithm, 4);
      input.writeUInt16BE(kbpkLength * 8, 6);
      return input;
    });
  return { encryption: inputs(0x0000), authentication: inputs(0x0001) };
}

/** Derives KBEK and KBAK with the backend's CMAC under the KBPK (TDES-CMAC for B, AES-CMAC for D). */
export async function deriveKeyBlockKeys(
  version: KeyBlockVersion,
  kbpkLength: number,
  cmacUnderKbpk: (input: Buffer) => Promise<Buffer>,
): Promise<KeyBlockKeys> {
  const inputs = keyBlockDerivationInputs(version, kbpkLength);
  const size = cipherBlockSize(version);
  const derive = async (list: Buffer[]): Promise<Buffer> => {
    const parts: Buffer[] = [];
    try {
      for (const input of list) {
        const part = await cmacUnderKbpk(input);
        parts.push(part);
        if (part.length !== size) throw new HsmBridgeError('INTERNAL', 'internal error: the KBPK CMAC has the wrong length');
      }
      const joined = Buffer.concat(parts);
      const key = Buffer.from(joined.subarray(0, kbpkLength));
      joined.fill(0);
      return key;
    } finally {
      for (const part of parts) part.fill(0);
    }
  };
  const encryption = await derive(inputs.encryption);
  try {
    return { encryption, authentication: await derive(inputs.authentication) };
  } catch (e) {
    encryption.fill(0);
    throw e;
  }
}

function checkKeys(version: KeyBlockVersion, keys: KeyBlockKeys): void {
  const lengths = Object.keys(derivation[version]).map(Number);
  if (!lengths.includes(keys.encryption.length) || keys.authentication.length !== keys.encryption.length) {
    throw new HsmBridgeError('INCOMPATIBLE_KEY', `the key block keys do not fit a version ${version} key block`);
  }
}

/** The MAC length of a version in bytes: the full CMAC block. */
function macLength(version: KeyBlockVersion): number {
  return cipherBlockSize(version);
}

function computeMac(version: KeyBlockVersion, kbak: Buffer, headerText: string, clearField: Buffer): Buffer {
  const input = Buffer.concat([Buffer.from(headerText, 'ascii'), clearField]);
  try {
    return cmacWithKey(family(version), kbak, input);
  } finally {
    input.fill(0);
  }
}

const UPPER_HEX = /^(?:[0-9A-F]{2})+$/;

function notVerified(): HsmBridgeError {
  return new HsmBridgeError('DECRYPTION_FAILED', 'the key block does not verify under this KBPK');
}

/**
 * Checks and opens a key block. The MAC covers the clear key field, so the field is decrypted first,
 * but none of its bytes is read before the MAC has been compared (in constant time): a MAC failure and
 * a bad length field give the same error, so the block cannot be used as a padding oracle.
 * Returns the header and the clear key; the caller zeroes the key.
 */
export function openKeyBlock(block: string, keys: KeyBlockKeys): { header: Tr31Header; key: Buffer } {
  const { header, length: headerLength } = parseKeyBlockHeader(block);
  const { version } = header;
  checkKeys(version, keys);
  const size = cipherBlockSize(version);
  const macHex = macLength(version) * 2;
  const fieldHex = block.length - headerLength - macHex;
  const payload = block.slice(headerLength);
  if (fieldHex < 2 * size || fieldHex % (2 * size) !== 0 || !UPPER_HEX.test(payload)) {
    throw invalid(`key block: the encrypted key field and MAC must be upper-case hex, the field whole ${size}-byte blocks`);
  }
  const encrypted = Buffer.from(payload.slice(0, fieldHex), 'hex');
  const mac = Buffer.from(payload.slice(fieldHex), 'hex');
  const clearField = cbc(family(version), 'decrypt', keys.encryption, mac, encrypted);
  try {
    const expected = computeMac(version, keys.authentication, block.slice(0, headerLength), clearField);
    if (!timingSafeEqual(expected, mac)) throw notVerified();
    const bits = clearField.readUInt16BE(0);
    if (bits === 0 || bits % 8 !== 0 || 2 + bits / 8 > clearField.length) throw notVerified();
    return { header, key: Buffer.from(clearField.subarray(2, 2 + bits / 8)) };
  } finally {
    clearField.fill(0);
  }
}

/** The longest key of a header algorithm, in bytes: every key is padded as if it were that long. */
function longestKey(algorithm: string, keyLength: number): number {
  if (algorithm === 'T') return 24;
  if (algorithm === 'A') return 32;
  return keyLength;
}

function checkKeyLength(algorithm: string, keyLength: number): void {
  const allowed = algorithm === 'T' ? [16, 24] : algorithm === 'A' ? [16, 24, 32] : undefined;
  if (keyLength === 0 || keyLength % 8 !== 0 || (allowed && !allowed.includes(keyLength))) {
    throw invalid('key block: the key length does not fit the header algorithm');
  }
}

/**
 * Builds a key block. The key field is padded with random bytes so that every key of the header's
 * algorithm has the same field length (a 2-key TDES key looks like a 3-key one, AES-128 like AES-256),
 * then to whole cipher blocks. `padding` replaces the random padding (tests with published vectors);
 * it must bring the field to whole cipher blocks. Optional blocks are padded with a 'PB' block when
 * they do not end on a cipher block boundary.
 */
export function sealKeyBlock(header: Tr31Header, key: Buffer, keys: KeyBlockKeys, padding?: Buffer): string {
  const version = parseVersion(header.version);
  checkKeys(version, keys);
  checkKeyLength(header.algorithm, key.length);
  const size = cipherBlockSize(version);
  let padLength: number;
  if (padding) {
    padLength = padding.length;
    if ((2 + key.length + padLength) % size !== 0) throw invalid(`key block: the padding must bring the key field to whole ${size}-byte blocks`);
  } else {
    const field = Math.ceil((2 + longestKey(header.algorithm, key.length)) / size) * size;
    padLength = field - 2 - key.length;
  }
  const aligned: Tr31Header = { ...header, optionalBlocks: alignedOptionalBlocks(header) };
  const headerLength = encodeKeyBlockHeader(aligned, MAX_KEY_BLOCK_LENGTH).length;
  const fieldLength = 2 + key.length + padLength;
  const blockLength = headerLength + 2 * fieldLength + 2 * macLength(version);
  if (blockLength > MAX_KEY_BLOCK_LENGTH) throw invalid(`key block would be longer than ${MAX_KEY_BLOCK_LENGTH} characters`);
  const headerText = encodeKeyBlockHeader(aligned, blockLength);

  const clearField = Buffer.alloc(fieldLength);
  try {
    clearField.writeUInt16BE(key.length * 8, 0);
    key.copy(clearField, 2);
    (padding ?? randomBytes(padLength)).copy(clearField, 2 + key.length);
    const mac = computeMac(version, keys.authentication, headerText, clearField);
    const encrypted = cbc(family(version), 'encrypt', keys.encryption, mac, clearField);
    return headerText + encrypted.toString('hex').toUpperCase() + mac.toString('hex').toUpperCase();
  } finally {
    clearField.fill(0);
  }
}
