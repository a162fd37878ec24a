import { HsmBridgeError } from '../errors.js';
import { encryptAlgorithms, type EncryptAlgorithm } from '../algorithms/registry.js';
import { MAX_KEY_VERSION, type KeyVersion } from '../keys/names.js';
import type { RawCiphertext } from '../backend/port.js';

/**
 * hsm-bridge's ciphertext envelope, so that a ciphertext names the key version and algorithm that made
 * it and decrypts after any number of rotations:
 *
 *   'H' 'B' | format 0x01 | algorithm id (1 byte) | key version (uint32 BE) | body
 *
 * body: AES_GCM = IV (12) || ciphertext || tag (16); RSA_OAEP_SHA256 / RSA_OAEP_SHA1 = the RSA
 * ciphertext; AES_KW = the wrapped key (RFC 3394 output).
 */
const MAGIC = Buffer.from('HB', 'latin1');
const FORMAT = 1;
const HEADER_LENGTH = 8;
const algorithmIds: Record<EncryptAlgorithm, number> = { AES_GCM: 1, RSA_OAEP_SHA256: 2, RSA_OAEP_SHA1: 3, AES_KW: 4 };

export interface OpenedCiphertext {
  readonly algorithm: EncryptAlgorithm;
  readonly version: KeyVersion;
  readonly raw: RawCiphertext;
}

export function sealEnvelope(algorithm: EncryptAlgorithm, version: KeyVersion, raw: RawCiphertext): Buffer {
  const header = Buffer.alloc(HEADER_LENGTH);
  MAGIC.copy(header, 0);
  header[2] = FORMAT;
  header[3] = algorithmIds[algorithm];
  header.writeUInt32BE(version, 4);
  return Buffer.concat(raw.iv ? [header, raw.iv, raw.data] : [header, raw.data]);
}

export function openEnvelope(envelope: Buffer): OpenedCiphertext {
  if (envelope.length <= HEADER_LENGTH || !envelope.subarray(0, 2).equals(MAGIC) || envelope[2] !== FORMAT) {
    throw new HsmBridgeError('INVALID_ARGUMENT', 'ciphertext is not an hsm-bridge ciphertext (give keyVersion to decrypt a raw one)');
  }
  const id = envelope[3];
  const algorithm = (Object.keys(algorithmIds) as EncryptAlgorithm[]).find((a) => algorithmIds[a] === id);
  const version = envelope.readUInt32BE(4);
  if (!algorithm || version < 1 || version > MAX_KEY_VERSION) {
    throw new HsmBridgeError('INVALID_ARGUMENT', 'ciphertext header is malformed');
  }
  return { algorithm, version: version as KeyVersion, raw: splitRaw(algorithm, envelope.subarray(HEADER_LENGTH)) };
}

/** Splits an algorithm's raw output (for AES_GCM: IV || ciphertext || tag) into its parts. */
export function splitRaw(algorithm: EncryptAlgorithm, body: Buffer): RawCiphertext {
  const info = encryptAlgorithms[algorithm];
  if ('ivLength' in info) {
    if (body.length < info.ivLength + info.tagLength) {
      throw new HsmBridgeError('INVALID_ARGUMENT', 'ciphertext is too short for AES-GCM');
    }
    return { iv: body.subarray(0, info.ivLength), data: body.subarray(info.ivLength) };
  }
  return { data: body };
}
