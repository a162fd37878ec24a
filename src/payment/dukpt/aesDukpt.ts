/**
 * ANSI X9.24-3:2017 AES DUKPT, receiving side: the PIN encryption working key of a transaction from the
 * BDK and the KSN. Every step is "derived key = leftmost bytes of AES-ECB(previous key, derivation data)",
 * so the derivation is given as a list of steps: an HSM runs each one as CKM_AES_ECB_ENCRYPT_DATA and the
 * keys never leave it; deriveAesDukptPinKey runs the same steps in process for the software backend.
 */
import { HsmBridgeError } from '../../errors.js';
import { ecb } from '../crypto/blockCiphers.js';
import { AES_INITIAL_KEY_ID_BYTES, aesKsnCounter, checkAesKsn } from './ksn.js';

export type AesDukptWorkingKey = 'AES_128' | 'AES_192' | 'AES_256' | 'TDES_2KEY' | 'TDES_3KEY';
export type AesDukptBdkType = 'AES_128' | 'AES_256';

/** One derivation step: Key_n = first `bytes` bytes of ECB-encrypt(Key_{n-1}, data); data is one block per 16 key bytes. */
export interface AesDukptStep {
  readonly data: Buffer;
  readonly bytes: number;
}

type DerivedKeyType = AesDukptBdkType | AesDukptWorkingKey;

/**
 * X9.24-3 6.3.2: the algorithm indicator and length of each key type, and its strength in bits, which
 * bounds what a derivation key may produce (a 3-key TDES key is 192 bits long but 112 bits strong, so an
 * AES-128 BDK may derive it: the standard's own test vectors do).
 */
const keyTypes: Record<DerivedKeyType, { algorithm: number; bits: number; strength: number }> = {
  TDES_2KEY: { algorithm: 0x0000, bits: 128, strength: 80 },
  TDES_3KEY: { algorithm: 0x0001, bits: 192, strength: 112 },
  AES_128: { algorithm: 0x0002, bits: 128, strength: 128 },
  AES_192: { algorithm: 0x0003, bits: 192, strength: 192 },
  AES_256: { algorithm: 0x0004, bits: 256, strength: 256 },
};

/** Key usage indicators (X9.24-3 table 2). */
const USAGE_INITIAL_KEY = 0x8001;
const USAGE_KEY_DERIVATION = 0x8000;
const USAGE_PIN_ENCRYPTION = 0x1000;

const BLOCK = 16;

/**
 * The derivation data for a key of `type`: version 1, block counter, usage, algorithm, length in bits,
 * then 8 bytes of KSN data; repeated with block counters 1, 2 when the key is longer than one block.
 */
function derivationData(usage: number, type: DerivedKeyType, ksnData: Buffer): AesDukptStep {
  const { algorithm, bits } = keyTypes[type];
  const bytes = bits / 8;
  const blocks = Math.ceil(bytes / BLOCK);
  const data = Buffer.alloc(blocks * BLOCK);
  for (let i = 0; i < blocks; i++) {
    const block = data.subarray(i * BLOCK, (i + 1) * BLOCK);
    block[0] = 0x01;
    block[1] = i + 1;
    block.writeUInt16BE(usage, 2);
    block.writeUInt16BE(algorithm, 4);
    block.writeUInt16BE(bits, 6);
    ksnData.copy(block, 8);
  }
  return { data, bytes };
}

/** The rightmost half of the initial key ID followed by a 32-bit counter. */
function counterData(ksn: Buffer, counter: number): Buffer {
  const out = Buffer.alloc(8);
  ksn.copy(out, 0, AES_INITIAL_KEY_ID_BYTES / 2, AES_INITIAL_KEY_ID_BYTES);
  out.writeUInt32BE(counter >>> 0, 4);
  return out;
}

/**
 * From the BDK (Key_0) to the PIN encryption working key (last step): the initial key, one intermediate
 * derivation key per counter bit set (high to low), then the working key. The steps carry no secret.
 */
export function aesDukptPinKeySteps(bdkType: AesDukptBdkType, ksn: Buffer, workingKey: AesDukptWorkingKey): AesDukptStep[] {
  checkAesKsn(ksn);
  if (!Object.hasOwn(keyTypes, bdkType) || !Object.hasOwn(keyTypes, workingKey)) throw new RangeError('unknown AES DUKPT key type');
  if (keyTypes[workingKey].strength > keyTypes[bdkType].strength) {
    throw new HsmBridgeError('INVALID_ARGUMENT', `an ${bdkType} BDK cannot derive a stronger ${workingKey} working key`);
  }
  const steps: AesDukptStep[] = [derivationData(USAGE_INITIAL_KEY, bdkType, ksn.subarray(0, AES_INITIAL_KEY_ID_BYTES))];
  const counter = aesKsnCounter(ksn);
  let working = 0;
  for (let bit = 31; bit >= 0; bit--) {
    const mask = (1 << bit) >>> 0;
    if ((counter & mask) === 0) continue;
    working = (working | mask) >>> 0;
    steps.push(derivationData(USAGE_KEY_DERIVATION, bdkType, counterData(ksn, working)));
  }
  steps.push(derivationData(USAGE_PIN_ENCRYPTION, workingKey, counterData(ksn, counter)));
  return steps;
}

/** The PIN encryption working key from a clear BDK (the software backend). The caller zeroes it. */
export function deriveAesDukptPinKey(bdkType: AesDukptBdkType, bdk: Buffer, ksn: Buffer, workingKey: AesDukptWorkingKey): Buffer {
  if (!Object.hasOwn(keyTypes, bdkType) || bdk.length !== keyTypes[bdkType].bits / 8) throw new RangeError('the BDK does not match its type');
  const steps = aesDukptPinKeySteps(bdkType, ksn, workingKey);
  let key: Buffer = Buffer.from(bdk);
  for (const step of steps) {
    const block = ecb('aes', 'encrypt', key, step.data);
    key.fill(0);
    key = Buffer.from(block.subarray(0, step.bytes));
    block.fill(0);
  }
  return key;
}
