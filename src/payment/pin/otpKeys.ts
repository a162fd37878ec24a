/**
 * The keys kept for OTP entry (configuration payment.otpIncomingKeys): the only PIN keys and BDKs whose
 * blocks the OTP flow may decipher into a JWE, and never a translation's outgoing key, so that no
 * customer PIN can be moved under one and then read out. An entry is a key name, or `name:KCV` to pin it
 * to one key value: a key destroyed and made again under that name from another value (a customer key,
 * say) then fails the check. The list is read on every call (tests grow it after start).
 */
import { HsmBridgeError } from '../../errors.js';
import type { PaymentKey } from '../paymentKeys.js';

/** `name` or `name:KCV` (6 hex digits); the configuration schema checks the same. */
export const OTP_KEY_ENTRY_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(:[0-9A-Fa-f]{6})?$';

export class OtpKeys {
  constructor(private readonly entries: readonly string[]) {}

  private find(name: string): { kcv?: string } | undefined {
    for (const entry of this.entries) {
      const [entryName, kcv] = entry.split(':');
      if (entryName === name) return kcv === undefined ? {} : { kcv: kcv.toUpperCase() };
    }
    return undefined;
  }

  has(name: string): boolean {
    return this.find(name) !== undefined;
  }

  /** Throws INCOMPATIBLE_KEY unless the key is listed (and has the listed KCV, when one is given). */
  check(key: PaymentKey): void {
    const entry = this.find(key.meta.name);
    if (!entry) throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${key.meta.name} is not configured for the OTP flow (payment.otpIncomingKeys)`);
    if (entry.kcv !== undefined && entry.kcv !== key.keyCheckValue) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${key.meta.name} does not have the check value payment.otpIncomingKeys gives for it`);
    }
  }

  /** Refuses an OTP key as the key a PIN is translated into. */
  refuseAsOutgoing(key: PaymentKey): void {
    if (this.has(key.meta.name)) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${key.meta.name} is kept for OTP entry (payment.otpIncomingKeys): no PIN is translated into it`);
    }
  }
}
