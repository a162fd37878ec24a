/**
 * The mapping between X9.143 key block header fields and hsm-bridge keys. Only the usages hsm-bridge
 * has a key purpose for are accepted, each with the modes of use and algorithms X9.143 allows for it;
 * anything else is refused rather than widened, because the header is what binds a key to its use.
 */
import { HsmBridgeError } from '../../errors.js';
import { defaultKeyUsage, keyTypeInfo, keyUsagesFor, widestModeOfUse, type KeyPurpose, type KeyType, type KeyUsage, type ModeOfUse } from '../../keys/types.js';
import type { Exportability, KeyBlockVersion, Tr31Header } from './header.js';

type Algorithm = 'T' | 'A';

interface UsageRule {
  readonly purpose: KeyPurpose;
  readonly modes: readonly ModeOfUse[];
  readonly algorithms: readonly Algorithm[];
  /** Key lengths in bytes the usage needs, when narrower than the algorithm's. */
  readonly lengths?: readonly number[];
}

const usages: Readonly<Record<KeyUsage, UsageRule>> = {
  /** PIN encryption. */
  P0: { purpose: 'pin', modes: ['E', 'D', 'B'], algorithms: ['T', 'A'] },
  /** DUKPT base derivation key: it only derives. */
  B0: { purpose: 'bdk', modes: ['X'], algorithms: ['T', 'A'] },
  /** Key encryption or wrapping: payShield and others protect TR-31 blocks with K0 keys, so it serves as a KBPK, and stays K0. */
  K0: { purpose: 'kbpk', modes: ['E', 'D', 'B'], algorithms: ['T', 'A'] },
  /** TR-31 / X9.143 key block protection key. */
  K1: { purpose: 'kbpk', modes: ['E', 'D', 'B'], algorithms: ['T', 'A'] },
  /** ISO 16609 MAC algorithm 1 (TDES CBC-MAC). */
  M0: { purpose: 'mac', modes: ['C', 'G', 'V'], algorithms: ['T'] },
  /** ISO 9797-1 MAC algorithm 1. */
  M1: { purpose: 'mac', modes: ['C', 'G', 'V'], algorithms: ['T'] },
  /** ISO 9797-1 MAC algorithm 3 (retail MAC): a double-length TDES key. */
  M3: { purpose: 'mac', modes: ['C', 'G', 'V'], algorithms: ['T'], lengths: [16] },
  /** ISO 9797-1:2011 MAC algorithm 5 (CMAC). */
  M6: { purpose: 'mac', modes: ['C', 'G', 'V'], algorithms: ['T', 'A'] },
};

function incompatible(message: string): HsmBridgeError {
  return new HsmBridgeError('INCOMPATIBLE_KEY', message);
}

function keyTypeFor(algorithm: Algorithm, keyLength: number): KeyType {
  if (algorithm === 'T') {
    if (keyLength === 16) return 'TDES_2KEY';
    if (keyLength === 24) return 'TDES_3KEY';
    throw incompatible('key block: a TDES key (algorithm T) must be 16 or 24 bytes');
  }
  if (keyLength === 16) return 'AES_128';
  if (keyLength === 32) return 'AES_256';
  if (keyLength === 24) throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', 'key block: AES-192 keys are not supported (no AES_192 key type)');
  throw incompatible('key block: an AES key (algorithm A) must be 16 or 32 bytes');
}

/** What an imported key becomes, from its header and the length of the unwrapped key. */
export function keyFromHeader(
  header: Tr31Header,
  keyLength: number,
): { type: KeyType; purpose: KeyPurpose; keyUsage: KeyUsage; modeOfUse: ModeOfUse; exportable: boolean } {
  const rule = Object.hasOwn(usages, header.keyUsage) ? usages[header.keyUsage as KeyUsage] : undefined;
  if (!rule) throw incompatible(`key block: key usage ${header.keyUsage} is not supported; supported: ${Object.keys(usages).join(', ')}`);
  if (!(rule.algorithms as readonly string[]).includes(header.algorithm)) {
    throw incompatible(`key block: algorithm ${header.algorithm} is not allowed for key usage ${header.keyUsage}; allowed: ${rule.algorithms.join(', ')}`);
  }
  if (!(rule.modes as readonly string[]).includes(header.modeOfUse)) {
    throw incompatible(`key block: mode of use ${header.modeOfUse} is not allowed for key usage ${header.keyUsage}; allowed: ${rule.modes.join(', ')}`);
  }
  if (header.version === 'B' && header.algorithm === 'A') throw incompatible('key block: an AES key cannot come in a version B (TDES) key block');
  const type = keyTypeFor(header.algorithm as Algorithm, keyLength);
  if (rule.lengths && !rule.lengths.includes(keyLength)) {
    throw incompatible(`key block: key usage ${header.keyUsage} needs a key of ${rule.lengths.join(' or ')} bytes`);
  }
  return { type, purpose: rule.purpose, keyUsage: header.keyUsage as KeyUsage, modeOfUse: header.modeOfUse as ModeOfUse, exportable: header.exportability === 'E' };
}

/**
 * The header for exporting a key: its own key usage (or, for a key created without one, its purpose's
 * general kind: P0, B0, K1, M1 / M6), its family's algorithm, its own mode of use or the purpose's
 * widest, key version number '00', no optional blocks. Only exportable keys qualify.
 */
export function headerForKey(
  meta: { type: KeyType; purpose: KeyPurpose; keyUsage?: KeyUsage; modeOfUse?: ModeOfUse; exportable?: boolean },
  version: KeyBlockVersion,
  exportability: Exportability,
): Tr31Header {
  const family = keyTypeInfo(meta.type).family;
  const keyUsage = meta.keyUsage ?? defaultKeyUsage(meta.type, meta.purpose);
  if (keyUsage === undefined || (family !== 'tdes' && family !== 'aes')) {
    throw incompatible(`a ${meta.type} key of purpose ${meta.purpose} cannot be exported in a key block`);
  }
  if (!keyUsagesFor(meta.type, meta.purpose).includes(keyUsage)) {
    throw incompatible(`a ${meta.type} key of purpose ${meta.purpose} cannot carry key usage ${keyUsage}`);
  }
  if (meta.exportable !== true) throw incompatible('the key is not exportable');
  const rule = usages[keyUsage];
  const modeOfUse = meta.modeOfUse ?? widestModeOfUse[meta.purpose]!;
  if (!rule.modes.includes(modeOfUse)) {
    throw incompatible(`the key's mode of use ${modeOfUse} is not allowed for key usage ${keyUsage}`);
  }
  if (exportability !== 'E' && exportability !== 'N' && exportability !== 'S') {
    throw new HsmBridgeError('INVALID_ARGUMENT', 'exportability must be E, N or S');
  }
  if (version !== 'B' && version !== 'D') throw new HsmBridgeError('INVALID_ARGUMENT', 'key block version must be B or D');
  if (version === 'B' && family === 'aes') throw incompatible('an AES key cannot be exported in a version B (TDES) key block');
  return {
    version,
    keyUsage,
    algorithm: family === 'tdes' ? 'T' : 'A',
    modeOfUse,
    keyVersionNumber: '00',
    exportability,
    optionalBlocks: [],
  };
}

/** Security strength in bits (NIST SP 800-57 part 1): what a key protects and what protects it. */
const strength: Partial<Record<KeyType, number>> = { TDES_2KEY: 80, TDES_3KEY: 112, AES_128: 128, AES_256: 256 };

/**
 * X9.143 / X9.24-1: a KBPK must be at least as strong as the key it protects (a 2-key TDES KBPK cannot
 * carry a 3-key TDES or an AES key; an AES-128 KBPK cannot carry an AES-256 key). For import and export.
 */
export function assertKbpkProtects(kbpk: KeyType, key: KeyType): void {
  const protecting = strength[kbpk];
  const protectedBits = strength[key];
  if (protecting === undefined || protectedBits === undefined) throw incompatible(`a ${kbpk} KBPK cannot protect a ${key} key`);
  if (protecting < protectedBits) throw incompatible(`a ${kbpk} KBPK is weaker than the ${key} key it would protect`);
}
