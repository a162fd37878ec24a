import { HsmBridgeError } from '../errors.js';
import type { KeyMetadata, ModeOfUse } from '../keys/types.js';

/** What a payment operation does with a key, checked against the key's X9.143 mode of use. */
export type KeyUse = 'encrypt' | 'decrypt' | 'generate' | 'verify' | 'derive';

/** The modes of use (X9.143) that allow each use; a key without a mode of use allows what its purpose does. */
const modesAllowing: Record<KeyUse, readonly ModeOfUse[]> = {
  encrypt: ['B', 'E'],
  decrypt: ['B', 'D'],
  generate: ['C', 'G'],
  verify: ['C', 'V'],
  derive: ['X'],
};

export function checkModeOfUse(meta: KeyMetadata, use: KeyUse): void {
  if (meta.modeOfUse !== undefined && !modesAllowing[use].includes(meta.modeOfUse)) {
    throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${meta.name} has mode of use ${meta.modeOfUse}, which does not allow it to ${use}`);
  }
}
