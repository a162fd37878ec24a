/**
 * ANSI X9.24-1:2009 TDES DUKPT, receiving side: the PIN encryption key of a transaction from the BDK (or
 * from the initial key) and the KSN. The non-reversible key generation process mixes key halves with XOR
 * and single DES, which a generic PKCS#11 HSM cannot do inside its boundary, so this runs in process on
 * clear keys. Every intermediate is zeroed here; the caller zeroes the key it gets back.
 */
import { HsmBridgeError } from '../../errors.js';
import { desEcb, ecb, xorInPlace } from '../crypto/blockCiphers.js';
import { checkTdesKsn, TDES_COUNTER_BITS, tdesKsnCounter } from './ksn.js';

/** XORed into the BDK for the right half of the initial key, and into the key register inside the one-way function. */
export const TDES_BDK_VARIANT: Buffer = Buffer.from('C0C0C0C000000000C0C0C0C000000000', 'hex');

/** Turns the current future key into the PIN encryption key. */
const PIN_VARIANT = Buffer.from('00000000000000FF00000000000000FF', 'hex');

/** The leftmost 8 bytes of the KSN with the 21 counter bits cleared: what the BDK encrypts into the initial key. */
export function tdesInitialKeyInput(ksn: Buffer): Buffer {
  checkTdesKsn(ksn);
  const block = Buffer.from(ksn.subarray(0, 8));
  block[7] = block[7]! & 0xe0;
  return block;
}

/** The initial key (IPEK): TDES(BDK, input) || TDES(BDK XOR variant, input). */
function initialKey(bdk: Buffer, ksn: Buffer): Buffer {
  requireDoubleLength(bdk, 'BDK');
  const input = tdesInitialKeyInput(ksn);
  const variantBdk = xorInPlace(Buffer.from(bdk), TDES_BDK_VARIANT);
  const left = ecb('tdes', 'encrypt', bdk, input);
  const right = ecb('tdes', 'encrypt', variantBdk, input);
  try {
    return Buffer.concat([left, right]);
  } finally {
    for (const secret of [variantBdk, left, right]) secret.fill(0);
  }
}

/** One half of the one-way function: DES(keyLeft, data XOR keyRight) XOR keyRight. */
function halfStep(key: Buffer, data: Buffer): Buffer {
  const left = key.subarray(0, 8);
  const right = key.subarray(8, 16);
  const input = xorInPlace(Buffer.from(data), right);
  try {
    return xorInPlace(desEcb('encrypt', left, input), right);
  } finally {
    input.fill(0);
  }
}

/** X9.24-1 non-reversible key generation: a new double-length key from the key register and the KSN register. */
function nonReversibleKey(key: Buffer, ksnRegister: Buffer): Buffer {
  const rightHalf = halfStep(key, ksnRegister);
  const variantKey = xorInPlace(Buffer.from(key), TDES_BDK_VARIANT);
  const leftHalf = halfStep(variantKey, ksnRegister);
  try {
    return Buffer.concat([leftHalf, rightHalf]);
  } finally {
    for (const secret of [rightHalf, variantKey, leftHalf]) secret.fill(0);
  }
}

/**
 * The current future key for the KSN (one non-reversible step per counter bit set, high to low), XOR the
 * PIN variant. The caller zeroes the result.
 */
export function tdesDukptPinKeyFromIpek(ipek: Buffer, ksn: Buffer): Buffer {
  requireDoubleLength(ipek, 'initial key');
  checkTdesKsn(ksn);
  const counter = tdesKsnCounter(ksn);
  // The 8-byte KSN register: the rightmost 8 KSN bytes with the counter cleared, then its bits set one by one.
  const register = Buffer.from(ksn.subarray(2, 10));
  register[5] = register[5]! & 0xe0;
  register[6] = 0;
  register[7] = 0;
  let key: Buffer = Buffer.from(ipek);
  for (let bit = TDES_COUNTER_BITS - 1; bit >= 0; bit--) {
    const mask = 1 << bit;
    if ((counter & mask) === 0) continue;
    register.writeUIntBE(register.readUIntBE(5, 3) | mask, 5, 3);
    const next = nonReversibleKey(key, register);
    key.fill(0);
    key = next;
  }
  return xorInPlace(key, PIN_VARIANT);
}

/** The PIN encryption key of a transaction, from a clear double-length BDK (the software backend). The caller zeroes it. */
export function deriveTdesDukptPinKey(bdk: Buffer, ksn: Buffer): Buffer {
  const ipek = initialKey(bdk, ksn);
  try {
    return tdesDukptPinKeyFromIpek(ipek, ksn);
  } finally {
    ipek.fill(0);
  }
}

function requireDoubleLength(key: Buffer, what: string): void {
  // X9.24-1:2009 DUKPT is defined for double-length keys only; a TDES_3KEY BDK is a caller's choice, so a 4xx.
  if (key.length !== 16) throw new HsmBridgeError('INCOMPATIBLE_KEY', `TDES DUKPT needs a double-length (TDES_2KEY) ${what}`);
}
