/**
 * DUKPT in process: the software backend holds the BDK in memory anyway, so the transaction key is
 * derived here with src/payment/dukpt and handed to TransientKeys, which zeroes it on release.
 */
import type { DukptDerivation } from '../../src/backend/port.js';
import { HsmBridgeError } from '../../src/errors.js';
import type { KeyType } from '../../src/keys/types.js';
import type { BlockFamily } from '../../src/payment/crypto/blockCiphers.js';
import { deriveAesDukptPinKey } from '../../src/payment/dukpt/aesDukpt.js';
import { deriveTdesDukptPinKey } from '../../src/payment/dukpt/tdesDukpt.js';

export interface DerivedKey {
  readonly family: BlockFamily;
  /** The clear transaction key; the caller owns and zeroes it. */
  readonly material: Buffer;
}

/** The PIN encryption key of a DUKPT transaction, from a BDK of `bdkType` (clear, borrowed: not zeroed here). */
export function deriveDukptPinKey(bdkType: KeyType, bdk: Buffer, derivation: DukptDerivation): DerivedKey {
  if (derivation.scheme === 'tdes') {
    // X9.24-1:2009 defines TDES DUKPT for double-length BDKs only.
    if (bdkType !== 'TDES_2KEY') throw new HsmBridgeError('INCOMPATIBLE_KEY', `TDES DUKPT needs a TDES_2KEY BDK, not ${bdkType}`);
    return { family: 'tdes', material: deriveTdesDukptPinKey(bdk, derivation.ksn) };
  }
  if (bdkType !== 'AES_128' && bdkType !== 'AES_256') throw new HsmBridgeError('INCOMPATIBLE_KEY', `AES DUKPT needs an AES BDK, not ${bdkType}`);
  const family: BlockFamily = derivation.workingKey.startsWith('TDES') ? 'tdes' : 'aes';
  return { family, material: deriveAesDukptPinKey(bdkType, bdk, derivation.ksn, derivation.workingKey) };
}
