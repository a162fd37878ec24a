/** The payment services, built on KeyService (and, for the OTP flow, the JOSE service and participant registry). */
import type { ParticipantRegistry } from '../fspiop/participants.js';
import type { JoseService } from '../jose/joseService.js';
import type { KeyService } from '../operations/keyService.js';
import { OtpJweService } from './pin/otpToJwe.js';
import { PinService } from './pin/pinService.js';
import { KeyExchangeService } from './tr31/keyExchangeService.js';

export interface PaymentServices {
  readonly pins: PinService;
  readonly otp: OtpJweService;
  readonly keyExchange: KeyExchangeService;
}

export function createPaymentServices(keys: KeyService, jose: JoseService, participants?: ParticipantRegistry): PaymentServices {
  const pins = new PinService(keys);
  return { pins, otp: new OtpJweService({ keys, pins, jose, ...(participants ? { participants } : {}) }), keyExchange: new KeyExchangeService(keys) };
}

export type { KeyUsed } from './keyUsed.js';
export type { PinBlockFormat, TranslatePinRequest, TranslatePinResult } from './pin/pinService.js';
export type { PinToJweRequest, PinToJweResult } from './pin/otpToJwe.js';
export type { ExportTr31Request, ExportTr31Result, ImportTr31Request, ImportTr31Result } from './tr31/keyExchangeService.js';
