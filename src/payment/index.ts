/** The payment services, built on KeyService's payment keys (and, for the OTP flow, the JOSE service and participant registry). */
import { pino, type Logger } from 'pino';
import type { ParticipantRegistry } from '../fspiop/participants.js';
import type { JoseService } from '../jose/joseService.js';
import type { KeyService } from '../operations/keyService.js';
import { OtpKeys } from './pin/otpKeys.js';
import { OtpJweService } from './pin/otpToJwe.js';
import { PinService } from './pin/pinService.js';
import { KeyExchangeService } from './tr31/keyExchangeService.js';

export interface PaymentServices {
  readonly pins: PinService;
  readonly otp: OtpJweService;
  readonly keyExchange: KeyExchangeService;
}

export interface PaymentOptions {
  /** The PIN keys and BDKs kept for OTP entry, `name` or `name:KCV` (config payment.otpIncomingKeys); none by default. */
  readonly otpIncomingKeys?: readonly string[];
  readonly participants?: ParticipantRegistry;
  readonly logger?: Logger;
}

export function createPaymentServices(keys: KeyService, jose: JoseService, options: PaymentOptions = {}): PaymentServices {
  const logger = options.logger ?? pino({ level: 'silent' });
  const otpKeys = new OtpKeys(options.otpIncomingKeys ?? []);
  const { paymentKeys } = keys;
  const pins = new PinService(paymentKeys, logger, otpKeys);
  const otp = new OtpJweService({ keys, paymentKeys, pins, jose, ...(options.participants ? { participants: options.participants } : {}), otpKeys, logger });
  return { pins, otp, keyExchange: new KeyExchangeService(paymentKeys) };
}

export type { KeyUsed } from './keyUsed.js';
export type { PinBlockFormat, TranslatePinRequest, TranslatePinResult } from './pin/pinService.js';
export type { PinToJweRequest, PinToJweResult } from './pin/otpToJwe.js';
export type { ExportTr31Request, ExportTr31Result, ImportTr31Request, ImportTr31Result } from './tr31/keyExchangeService.js';
