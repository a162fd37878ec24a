/**
 * What each stored key may do through the payment primitives: exactly what the core's schemes need, as
 * an HSM's key attributes would allow it (see src/backend/port.ts), and no more. The core checks first;
 * this is the backend's own line, because an ECB oracle on a data key, or a MAC under a PIN key, would
 * turn one kind of key into another.
 */
import { macAlgorithms, type MacAlgorithm } from '../../src/algorithms/registry.js';
import { HsmBridgeError } from '../../src/errors.js';
import { isPaymentPurpose, keyTypes, macAlgorithmAllowed, type KeyPurpose, type KeyType, type KeyUsage } from '../../src/keys/types.js';
import type { BlockFamily, Direction } from '../../src/payment/crypto/blockCiphers.js';

interface KeyKind {
  readonly name: string;
  readonly type: KeyType;
  readonly purpose: KeyPurpose;
  readonly keyUsage?: KeyUsage;
}

const refuse = (key: KeyKind, what: string) =>
  new HsmBridgeError('INCOMPATIBLE_KEY', `key ${key.name} (${key.type}, purpose ${key.purpose}) cannot ${what}`);

/** The block cipher family of a TDES or AES key; INCOMPATIBLE_KEY for any other key. */
export function blockFamilyOf(key: KeyKind): BlockFamily {
  const family = keyTypes[key.type].family;
  if (family !== 'tdes' && family !== 'aes') throw refuse(key, 'do block cipher operations');
  return family;
}

/**
 * ECB on stored keys: both ways on PIN keys (PIN blocks); encryption on every TDES payment key as well,
 * because its key check value is the encryption of a zero block. AES keys' check values are CMACs.
 * Encryption only on AES keys of purpose fpe: FF1 uses AES forwards in both of its directions.
 */
export function checkBlockUse(key: KeyKind, direction: Direction): BlockFamily {
  const family = blockFamilyOf(key);
  const allowed =
    key.purpose === 'pin' ||
    (direction === 'encrypt' && ((family === 'tdes' && isPaymentPurpose(key.purpose)) || (family === 'aes' && key.purpose === 'fpe')));
  if (!allowed) throw refuse(key, `${direction} raw blocks`);
  return family;
}

/**
 * MACs: a MAC key computes and verifies the algorithms of its family its X9.143 usage allows (an M3 key
 * only the retail MAC, which no other key computes); a token key (purpose tokenize) HMAC-SHA-256 and
 * nothing else; besides, any AES payment key
 * computes AES_CMAC (its check value, and a KBPK's TR-31 key derivation) and a TDES KBPK computes
 * TDES_CMAC (its TR-31 key derivation).
 */
export function checkMacUse(key: KeyKind, algorithm: MacAlgorithm, verify: boolean): void {
  const info: { family: string; keyType?: KeyType } = macAlgorithms[algorithm];
  const family = keyTypes[key.type].family;
  if (info.family !== family || (info.keyType !== undefined && info.keyType !== key.type)) throw refuse(key, `compute ${algorithm}`);
  if (key.purpose === 'mac') {
    if (!macAlgorithmAllowed(key.keyUsage, algorithm)) throw refuse(key, `${verify ? 'verify' : 'compute'} ${algorithm} (key usage ${key.keyUsage ?? 'none'})`);
    return;
  }
  if (key.purpose === 'tokenize' && algorithm === 'HMAC_SHA256') return;
  const derivation =
    !verify && isPaymentPurpose(key.purpose) && (algorithm === 'AES_CMAC' || (algorithm === 'TDES_CMAC' && key.purpose === 'kbpk'));
  if (!derivation) throw refuse(key, `${verify ? 'verify' : 'compute'} ${algorithm}`);
}
