import type { FspiopService, ParticipantRegistry } from '../fspiop/index.js';
import type { JoseService } from '../jose/joseService.js';
import type { PaymentServices } from '../payment/index.js';

/**
 * The issue-3 services a transport may expose beside KeyService. Each is optional so that a transport can
 * be built on KeyService alone (its routes and rpcs are then simply absent); startApp always gives both.
 */
export interface ExtraServices {
  /** JWS, JWE and the JWKS document. */
  readonly jose?: JoseService;
  /** FSPIOP signatures and the participant key registry they validate with. */
  readonly fspiop?: FspiopServices;
  /** PIN translation, the OTP-to-JWE flow and TR-31 key exchange. */
  readonly payment?: PaymentServices;
}

export interface FspiopServices {
  readonly service: FspiopService;
  readonly participants: ParticipantRegistry;
}

/** The reason both transports give for a well-formed JWS whose signatures do not verify. */
export const JWS_NOT_VALID_REASON = 'no signature verifies with the key';
