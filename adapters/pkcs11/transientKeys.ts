/**
 * DUKPT transaction keys (session objects the token worker derived: dukptDerivation.ts) as the opaque
 * TransientKeys the core holds. A session object lives as long as its session, so the worker that made
 * it keeps that session open until the key is released here. The core releases in a finally block; in
 * case it does not, a key expires after TRANSIENT_TTL_MS, and at most MAX_LIVE exist at once.
 */
import type { TransientKey } from '../../src/backend/port.js';
import { HsmBridgeError } from '../../src/errors.js';
import { unavailable } from './errors.js';
import type { DerivedKey } from './sessionObjects.js';

/** Far longer than any request; only a key the core forgot lives this long. */
export const TRANSIENT_TTL_MS = 30_000;
const MAX_LIVE = 4096;

interface Live<Owner> {
  readonly derived: DerivedKey;
  /** The worker whose session holds the object: only it can use the handle (another module instance cannot). */
  readonly owner: Owner;
  /** Destroys the object in the worker that made it; never throws. */
  readonly destroy: () => Promise<void>;
  readonly timer: NodeJS.Timeout;
}

export class TransientKeys<Owner> {
  private readonly live = new WeakMap<TransientKey, Live<Owner>>();
  private count = 0;

  /** Refuses before any HSM work when too many keys are alive (a caller that never releases). */
  checkRoom(): void {
    if (this.count >= MAX_LIVE) throw unavailable(`${MAX_LIVE} derived keys are in use; retry`);
  }

  /** Takes over a derived session object of `owner`'s session, which `destroy` removes, as a TransientKey. */
  register(derived: DerivedKey, owner: Owner, destroy: () => Promise<void>): TransientKey {
    const { family, bits } = derived;
    const key: TransientKey = Object.freeze({ transient: true as const, family, bits });
    const timer = setTimeout(() => void this.release(key), TRANSIENT_TTL_MS);
    timer.unref();
    this.live.set(key, { derived, owner, destroy, timer });
    this.count++;
    return key;
  }

  /** The session object behind a TransientKey this backend made and has not released, and the worker holding it. */
  entryOf(key: TransientKey): { readonly derived: DerivedKey; readonly owner: Owner } {
    const entry = this.live.get(key);
    if (!entry) throw new HsmBridgeError('INTERNAL', 'the derived key was released or was not made by this backend');
    return entry;
  }

  /** Destroys the session object; never throws (a key lost with its session is gone already). */
  async release(key: TransientKey): Promise<void> {
    const entry = this.live.get(key);
    if (!entry) return;
    this.live.delete(key);
    this.count--;
    clearTimeout(entry.timer);
    await entry.destroy();
  }
}
