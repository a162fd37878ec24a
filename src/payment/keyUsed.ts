import type { KeyName, KeyVersion } from '../keys/names.js';
import type { PaymentKey } from './paymentKeys.js';

/** A key a payment call used, as the payments world identifies it: name, version and key check value. */
export interface KeyUsed {
  readonly keyName: KeyName;
  readonly keyVersion: KeyVersion;
  readonly keyCheckValue: string;
}

export function keyUsed(key: PaymentKey): KeyUsed {
  return { keyName: key.meta.name, keyVersion: key.version.version, keyCheckValue: key.keyCheckValue };
}
