/**
 * The backend's payment primitives as the core's payment services use them: each one present, or an
 * UNSUPPORTED_BY_BACKEND error naming it (an adapter module written before payments has none of them).
 */
import type { Backend, BlockKey, DukptDerivation, KeyRef, NewKey, TransientKey } from '../backend/port.js';
import { HsmBridgeError } from '../errors.js';
import type { KeyMetadata } from '../keys/types.js';

export interface PaymentPrimitives {
  encryptBlocks(key: BlockKey, data: Buffer): Promise<Buffer>;
  decryptBlocks(key: BlockKey, data: Buffer): Promise<Buffer>;
  deriveDukptKey(bdk: KeyRef, derivation: DukptDerivation): Promise<TransientKey>;
  releaseTransientKey(key: TransientKey): Promise<void>;
  importKey(key: NewKey, material: Buffer): Promise<KeyMetadata>;
  exportKey(key: KeyRef): Promise<Buffer>;
}

type PrimitiveName = keyof PaymentPrimitives;

export function paymentPrimitives(backend: Backend): PaymentPrimitives {
  const need = <K extends PrimitiveName>(name: K): NonNullable<Backend[K]> => {
    const method = backend[name];
    if (typeof method !== 'function') {
      throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${backend.kind} backend has no payment operations (${name})`);
    }
    return method.bind(backend) as NonNullable<Backend[K]>;
  };
  return {
    encryptBlocks: (key, data) => need('encryptBlocks')(key, data),
    decryptBlocks: (key, data) => need('decryptBlocks')(key, data),
    deriveDukptKey: (bdk, derivation) => need('deriveDukptKey')(bdk, derivation),
    releaseTransientKey: async (key) => {
      // Never throws: it runs in finally blocks, after the answer or the error that matters.
      try {
        await need('releaseTransientKey')(key);
      } catch {
        /* the backend bounds what it keeps */
      }
    },
    importKey: (key, material) => need('importKey')(key, material),
    exportKey: (key) => need('exportKey')(key),
  };
}
