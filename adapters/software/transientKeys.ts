/**
 * Transient keys (DUKPT transaction keys): the clear key stays in this module, keyed by the opaque
 * object the core holds, and is zeroed when the core releases it. A WeakMap, so that a key the core
 * dropped without releasing (a bug) is at least not kept alive by the backend.
 */
import type { TransientKey } from '../../src/backend/port.js';
import { HsmBridgeError } from '../../src/errors.js';
import type { BlockFamily } from '../../src/payment/crypto/blockCiphers.js';

export class TransientKeys {
  private readonly held = new WeakMap<TransientKey, Buffer>();

  /** Takes ownership of `material`: the caller must not use or zero it afterwards. */
  hold(family: BlockFamily, material: Buffer): TransientKey {
    const key: TransientKey = Object.freeze({ transient: true, family, bits: material.length * 8 });
    this.held.set(key, material);
    return key;
  }

  /** The clear key, borrowed: the caller neither keeps nor zeroes it. */
  material(key: TransientKey): Buffer {
    const material = this.held.get(key);
    // A released (or foreign) transient key reaching an operation is a bug in the core, not bad input.
    if (!material) throw new HsmBridgeError('INTERNAL', 'the transient key has been released or was not made by this backend');
    return material;
  }

  release(key: TransientKey): void {
    this.held.get(key)?.fill(0);
    this.held.delete(key);
  }
}
