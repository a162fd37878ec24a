/**
 * The Concat KDF of NIST SP 800-56A §5.8.1 as JOSE uses it for ECDH-ES (RFC 7518 §4.6.2): SHA-256,
 *   OtherInfo = AlgorithmID || PartyUInfo || PartyVInfo || SuppPubInfo,
 * where the first three are length-prefixed (32-bit big-endian) octet strings and SuppPubInfo is the
 * derived key length in bits (32-bit big-endian). AlgorithmID is "enc" for direct ECDH-ES and "alg" for
 * ECDH-ES+AxxxKW. Intermediate hash outputs are zeroed; the caller zeroes Z and the result.
 */
import { createHash } from 'node:crypto';

const lengthPrefixed = (data: Buffer) => {
  const out = Buffer.alloc(4 + data.length);
  out.writeUInt32BE(data.length);
  data.copy(out, 4);
  return out;
};

export interface ConcatKdfInput {
  /** The shared secret Z. */
  readonly z: Buffer;
  /** Length of the derived key in bytes. */
  readonly keyLength: number;
  readonly algorithmId: string;
  /** Decoded "apu" and "apv"; empty when absent. */
  readonly partyUInfo: Buffer;
  readonly partyVInfo: Buffer;
}

export function concatKdf({ z, keyLength, algorithmId, partyUInfo, partyVInfo }: ConcatKdfInput): Buffer {
  const suppPubInfo = Buffer.alloc(4);
  suppPubInfo.writeUInt32BE(keyLength * 8);
  const otherInfo = Buffer.concat([lengthPrefixed(Buffer.from(algorithmId, 'ascii')), lengthPrefixed(partyUInfo), lengthPrefixed(partyVInfo), suppPubInfo]);
  const rounds = Math.ceil(keyLength / 32);
  const blocks: Buffer[] = [];
  const counter = Buffer.alloc(4);
  for (let i = 1; i <= rounds; i++) {
    counter.writeUInt32BE(i);
    blocks.push(createHash('sha256').update(counter).update(z).update(otherInfo).digest());
  }
  const all = Buffer.concat(blocks);
  const key = Buffer.from(all.subarray(0, keyLength));
  all.fill(0);
  for (const b of blocks) b.fill(0);
  return key;
}
