/**
 * The X9.143 optional blocks that carry key check values: KC, of the key the block wraps, and KP, of the
 * KBPK that protects it. Their data is the KCV method (two digits: '00' the legacy TDES check value, the
 * encryption of a zero block; '01' the CMAC of a zero block, for TDES or AES) and then the KCV in hex,
 * usually 6 digits for '00' and 10 for '01'. A sender adds them so that the receiver notices a wrong key
 * before using it; an import checks every one present and refuses a mismatch.
 */
import { timingSafeEqual } from 'node:crypto';
import { invalid, type HsmBridgeError } from '../../errors.js';
import { blockLength, ecb, type BlockFamily } from '../crypto/blockCiphers.js';
import { cmacWithKey } from '../crypto/cmac.js';
import type { Tr31Header } from './header.js';

export type CheckValueMethod = 'legacy' | 'cmac';

export interface CheckValueBlock {
  readonly id: 'KC' | 'KP';
  readonly method: CheckValueMethod;
  /** The leftmost bytes of the check block, as the sender wrote them. */
  readonly kcv: Buffer;
}

const DATA = /^(0[01])((?:[0-9A-F]{2})+)$/;
/** Fewer than 2 bytes would match a wrong key too often to mean anything. */
const MIN_KCV_BYTES = 2;

/** The KC or KP block of a header, parsed; undefined when the header has none. `family` is the family of the key it is about. */
export function checkValueBlock(header: Tr31Header, id: 'KC' | 'KP', family: BlockFamily): CheckValueBlock | undefined {
  const found = header.optionalBlocks.filter((b) => b.id === id);
  if (found.length === 0) return undefined;
  if (found.length > 1) throw invalid(`key block header: optional block ${id} appears more than once`);
  const match = DATA.exec(found[0]!.data);
  if (!match) throw invalid(`key block header: optional block ${id} must be a KCV method ('00' or '01') and the KCV in upper-case hex`);
  const method: CheckValueMethod = match[1] === '00' ? 'legacy' : 'cmac';
  const kcv = Buffer.from(match[2]!, 'hex');
  if (method === 'legacy' && family !== 'tdes') throw invalid(`key block header: optional block ${id}: the legacy check value ('00') is for TDES keys; an AES key's is a CMAC ('01')`);
  if (kcv.length < MIN_KCV_BYTES || kcv.length > blockLength(family)) {
    throw invalid(`key block header: optional block ${id}: a check value is ${MIN_KCV_BYTES} to ${blockLength(family)} bytes`);
  }
  return { id, method, kcv };
}

/** The whole check block of clear key material by a method; the caller zeroes it. */
export function checkBlockOf(family: BlockFamily, method: CheckValueMethod, key: Buffer): Buffer {
  const zeros = Buffer.alloc(blockLength(family));
  return method === 'legacy' ? ecb(family, 'encrypt', key, zeros) : cmacWithKey(family, key, zeros);
}

/** Refuses the import when a check block does not start with the KCV the block carries (constant time; the values are not echoed). */
export function assertCheckValue(block: CheckValueBlock, checkBlock: Buffer): void {
  const matches = block.kcv.length <= checkBlock.length && timingSafeEqual(checkBlock.subarray(0, block.kcv.length), block.kcv);
  if (!matches) throw checkValueMismatch(block);
}

export function checkValueMismatch(block: CheckValueBlock): HsmBridgeError {
  return invalid(`key block: the check value in optional block ${block.id} does not match ${block.id === 'KC' ? 'the key in the block' : 'the KBPK'}`);
}
