/**
 * PIN translation (ISO 9564-1 formats 0, 1, 3 and 4 under TDES and AES PIN keys, or from a DUKPT
 * terminal) and the POS/ATM OTP flow (an enciphered PIN block in, a JWE for the switch out).
 *
 * A generic HSM cannot translate a PIN block inside its boundary, so the clear PIN block and the PIN
 * exist in this process between the decryption under the incoming key and the encryption under the
 * outgoing one: as Buffers (never strings), zeroed in `finally` blocks before any answer or error leaves.
 * Errors never carry a PIN block, a PIN or a PAN.
 *
 * Translation rules (ANSI X9.8-1 / PCI PIN, as HSMs enforce them): a PIN bound to a PAN (formats 0, 3
 * and 4) stays bound to the same PAN, so it may become format 0, 3 or 4 only, never format 1, and the
 * PAN cannot change; format 2 is for chip cards offline and is never enciphered for interchange.
 * Formats 0, 1 and 3 are enciphered with TDES keys, format 4 with AES keys.
 */
import type { Logger } from 'pino';
import { HsmBridgeError, invalid } from '../../errors.js';
import type { DukptDerivation, TransientKey } from '../../backend/port.js';
import { keyTypes } from '../../keys/types.js';
import { checkAesKsn, checkTdesKsn } from '../dukpt/ksn.js';
import type { AesDukptWorkingKey } from '../dukpt/aesDukpt.js';
import { keyUsed, type KeyUsed } from '../keyUsed.js';
import type { PaymentBlockKey, PaymentKey, PaymentKeys } from '../paymentKeys.js';
import type { OtpKeys } from './otpKeys.js';
import { MAX_PAN_DIGITS, MIN_PAN_DIGITS, assertPan } from './pan.js';
import { AES_PIN_BLOCK_BYTES, TDES_PIN_BLOCK_BYTES, decipherFormat4, decodePinBlock, encipherFormat4, encodePinBlock } from './pinBlock.js';

export const pinBlockFormats = ['ISO_FORMAT_0', 'ISO_FORMAT_1', 'ISO_FORMAT_3', 'ISO_FORMAT_4'] as const;
export type PinBlockFormat = (typeof pinBlockFormats)[number];

const formatNumber: Record<PinBlockFormat, 0 | 1 | 3 | 4> = { ISO_FORMAT_0: 0, ISO_FORMAT_1: 1, ISO_FORMAT_3: 3, ISO_FORMAT_4: 4 };
const panBound = (f: PinBlockFormat) => f !== 'ISO_FORMAT_1';
const familyOf = (f: PinBlockFormat): 'tdes' | 'aes' => (f === 'ISO_FORMAT_4' ? 'aes' : 'tdes');

export const aesDukptWorkingKeys: readonly AesDukptWorkingKey[] = ['AES_128', 'AES_192', 'AES_256', 'TDES_2KEY', 'TDES_3KEY'];

/** An incoming DUKPT key: the BDK is the request's keyName; the KSN comes from the terminal. */
export interface DukptInput {
  readonly ksn: Buffer;
  /** AES DUKPT only: the working key type; default AES_128 for format 4, TDES_2KEY otherwise. */
  readonly workingKey?: unknown;
}

export interface PinSide {
  readonly keyName: unknown;
  readonly keyVersion?: unknown;
  readonly format: unknown;
  /** The card's PAN (8 to 19 digits), for the PAN-bound formats. */
  readonly pan?: unknown;
}

export interface IncomingPin extends PinSide {
  /** Set when the block comes from a DUKPT terminal: keyName is then a BDK. */
  readonly dukpt?: DukptInput;
}

export interface TranslatePinRequest {
  readonly incoming: IncomingPin;
  readonly outgoing: PinSide;
  readonly pinBlock: Buffer;
}

export interface TranslatePinResult {
  readonly pinBlock: Buffer;
  readonly incoming: KeyUsed;
  readonly outgoing: KeyUsed;
}

/** What withClearPin reports once the clear PIN is gone: the incoming key it was deciphered under. */
interface DecipheredWith {
  readonly key: KeyUsed;
}

export class PinService {
  constructor(
    private readonly keys: PaymentKeys,
    private readonly logger: Logger,
    private readonly otpKeys: OtpKeys,
  ) {}

  async translate(req: TranslatePinRequest): Promise<TranslatePinResult> {
    const { format: inFormat, pan: inPan } = this.parseIncoming(req.incoming, req.pinBlock);
    const outFormat = parseFormat(req.outgoing?.format, 'outgoing.format');
    let outPan: string | undefined;
    if (panBound(outFormat)) {
      if (panBound(inFormat)) {
        // The PAN a PIN is bound to cannot change in translation; the outgoing PAN defaults to the incoming one.
        const given = req.outgoing.pan === undefined ? inPan : panFor(req.outgoing, outFormat, 'outgoing');
        if (given !== inPan) throw invalid('outgoing.pan must equal incoming.pan: a PIN bound to a PAN cannot be moved to another PAN');
        outPan = given;
      } else {
        outPan = panFor(req.outgoing, outFormat, 'outgoing');
      }
    } else {
      if (panBound(inFormat)) {
        throw invalid(`a PIN block bound to a PAN (${inFormat}) cannot be translated to ${outFormat}, which carries no PAN (ANSI X9.8-1)`);
      }
      if (req.outgoing.pan !== undefined) throw invalid(`${outFormat} carries no PAN: omit outgoing.pan`);
    }
    const outgoing = await this.keys.resolve(req.outgoing.keyName, 'pin', 'encrypt', req.outgoing.keyVersion);
    this.otpKeys.refuseAsOutgoing(outgoing);
    checkFamily(outgoing, outFormat, 'outgoing');
    let pinBlock: Buffer | undefined;
    const opened = await this.withClearPin(req.incoming, inFormat, inPan, req.pinBlock, async (pin) => {
      pinBlock = await this.encipher(outgoing, pin, outFormat, outPan);
    });
    return { pinBlock: pinBlock!, incoming: opened.key, outgoing: keyUsed(outgoing) };
  }

  /**
   * Deciphers an incoming PIN block and hands the clear PIN (ASCII digits) to `use`, then zeroes it. For
   * the OTP flow, which puts the digits into a JWE and nowhere else.
   */
  async withClearPin(
    incoming: IncomingPin,
    format: PinBlockFormat,
    pan: string | undefined,
    block: Buffer,
    use: (pin: Buffer) => Promise<void>,
  ): Promise<DecipheredWith> {
    const { key, blockKey, release } = await this.openIncomingKey(incoming, format);
    let pin: Buffer | undefined;
    try {
      try {
        pin = await this.decipher(blockKey, block, format, pan);
      } catch (e) {
        // A block that does not decode means a wrong key or PAN, or someone probing PIN digits by varying
        // the PAN (an attack on PAN-bound formats): worth an operator's eye. Never the block or the PAN.
        // The reason lets the pipeline count it, and limit such failures per caller and key (src/ops/pinFailureLimit.ts).
        if (e instanceof HsmBridgeError && e.code === 'INVALID_ARGUMENT') {
          this.logger.warn({ keyName: key.keyName, format }, 'PIN block did not decode');
          throw new HsmBridgeError('INVALID_ARGUMENT', e.message, { cause: e, reason: 'PIN_BLOCK_NOT_DECODED' });
        }
        throw e;
      }
      await use(pin);
      return { key };
    } finally {
      pin?.fill(0);
      await release();
    }
  }

  /** Parses the incoming side's format, PAN and block for withClearPin (translation and the OTP flow). */
  parseIncoming(incoming: IncomingPin, block: Buffer): { format: PinBlockFormat; pan?: string } {
    const format = parseFormat(incoming?.format, 'incoming.format');
    const pan = panFor(incoming, format, 'incoming');
    checkBlockLength(block, format);
    return { format, ...(pan === undefined ? {} : { pan }) };
  }

  // --- keys ----------------------------------------------------------------------------------------

  private async openIncomingKey(
    incoming: IncomingPin,
    format: PinBlockFormat,
  ): Promise<{ key: KeyUsed; blockKey: PaymentBlockKey; release: () => Promise<void> }> {
    if (incoming.dukpt === undefined) {
      const pinKey = await this.keys.resolve(incoming.keyName, 'pin', 'decrypt', incoming.keyVersion);
      checkFamily(pinKey, format, 'incoming');
      return { key: keyUsed(pinKey), blockKey: pinKey, release: async () => {} };
    }
    const bdk = await this.keys.resolve(incoming.keyName, 'bdk', 'derive', incoming.keyVersion);
    const derivation = dukptDerivation(bdk, incoming.dukpt, format);
    const transient: TransientKey = await this.keys.deriveDukptKey(bdk, derivation);
    return { key: keyUsed(bdk), blockKey: transient, release: () => this.keys.releaseTransientKey(transient) };
  }

  // --- blocks --------------------------------------------------------------------------------------

  private async decipher(key: PaymentBlockKey, block: Buffer, format: PinBlockFormat, pan: string | undefined): Promise<Buffer> {
    if (format === 'ISO_FORMAT_4') return decipherFormat4(block, pan!, (b) => this.keys.decryptBlocks(key, b));
    const clear = await this.keys.decryptBlocks(key, block);
    try {
      const n = formatNumber[format] as 0 | 1 | 3;
      return decodePinBlock(clear, n === 1 ? { format: 1 } : { format: n, pan: pan! });
    } finally {
      clear.fill(0);
    }
  }

  private async encipher(key: PaymentBlockKey, pin: Buffer, format: PinBlockFormat, pan: string | undefined): Promise<Buffer> {
    if (format === 'ISO_FORMAT_4') return encipherFormat4(pin, pan!, (b) => this.keys.encryptBlocks(key, b));
    const n = formatNumber[format] as 0 | 1 | 3;
    const clear = encodePinBlock(pin, n === 1 ? { format: 1 } : { format: n, pan: pan! });
    try {
      return await this.keys.encryptBlocks(key, clear);
    } finally {
      clear.fill(0);
    }
  }
}

// --- request checks ------------------------------------------------------------------------------------

function parseFormat(value: unknown, field: string): PinBlockFormat {
  if (value === 'ISO_FORMAT_2') {
    throw invalid(`${field}: ISO format 2 is for chip cards offline only and is never enciphered for interchange (ISO 9564-1)`);
  }
  if (typeof value !== 'string' || !(pinBlockFormats as readonly string[]).includes(value)) {
    throw invalid(`${field} must be one of ${pinBlockFormats.join(', ')}`);
  }
  return value as PinBlockFormat;
}

/** The side's PAN when its format needs one (checked: digits, length), else undefined (and none may be given). */
function panFor(side: PinSide, format: PinBlockFormat, name: string): string | undefined {
  if (!panBound(format)) {
    if (side.pan !== undefined) throw invalid(`${format} carries no PAN: omit ${name}.pan`);
    return undefined;
  }
  if (side.pan === undefined || side.pan === '') throw invalid(`${format} binds the PIN to the card: ${name}.pan is required`);
  if (typeof side.pan !== 'string') throw invalid(`${name}.pan must be a string of digits`);
  try {
    assertPan(side.pan);
  } catch {
    throw invalid(`${name}.pan must be ${MIN_PAN_DIGITS} to ${MAX_PAN_DIGITS} decimal digits`);
  }
  return side.pan;
}

function checkBlockLength(block: Buffer, format: PinBlockFormat): void {
  const expected = format === 'ISO_FORMAT_4' ? AES_PIN_BLOCK_BYTES : TDES_PIN_BLOCK_BYTES;
  if (!Buffer.isBuffer(block) || block.length !== expected) {
    throw invalid(`an ${format} PIN block is ${expected} bytes (${expected * 2} hex digits)`);
  }
}

function checkFamily(key: PaymentKey, format: PinBlockFormat, side: string): void {
  const family = keyTypes[key.meta.type].family;
  if (family !== familyOf(format)) {
    throw new HsmBridgeError(
      'INCOMPATIBLE_KEY',
      `${side} key ${key.meta.name} is ${key.meta.type}: ${format} is enciphered with ${familyOf(format) === 'aes' ? 'an AES' : 'a TDES'} key`,
    );
  }
}

/** The DUKPT scheme follows the BDK: a TDES BDK is X9.24-1, an AES BDK X9.24-3. */
function dukptDerivation(bdk: PaymentKey, dukpt: DukptInput, format: PinBlockFormat): DukptDerivation {
  if (typeof dukpt !== 'object' || dukpt === null || !Buffer.isBuffer(dukpt.ksn)) throw invalid('incoming.dukpt.ksn is required (hex)');
  const family = keyTypes[bdk.meta.type].family;
  if (family === 'tdes') {
    if (dukpt.workingKey !== undefined) throw invalid('incoming.dukpt.workingKey is for AES DUKPT only; TDES DUKPT keys are double-length TDES');
    if (format === 'ISO_FORMAT_4') throw new HsmBridgeError('INCOMPATIBLE_KEY', 'TDES DUKPT keys cannot encipher ISO_FORMAT_4 blocks (AES)');
    checkTdesKsn(dukpt.ksn);
    return { scheme: 'tdes', ksn: dukpt.ksn };
  }
  const workingKey = dukpt.workingKey ?? (format === 'ISO_FORMAT_4' ? 'AES_128' : 'TDES_2KEY');
  if (typeof workingKey !== 'string' || !(aesDukptWorkingKeys as readonly string[]).includes(workingKey)) {
    throw invalid(`incoming.dukpt.workingKey must be one of ${aesDukptWorkingKeys.join(', ')}`);
  }
  const workingFamily = workingKey.startsWith('AES') ? 'aes' : 'tdes';
  if (workingFamily !== familyOf(format)) {
    throw new HsmBridgeError('INCOMPATIBLE_KEY', `a ${workingKey} working key cannot encipher ${format} blocks`);
  }
  checkAesKsn(dukpt.ksn);
  return { scheme: 'aes', ksn: dukpt.ksn, workingKey: workingKey as AesDukptWorkingKey };
}

