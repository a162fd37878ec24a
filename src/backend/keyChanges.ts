/**
 * For adapters that keep key metadata in the HSM or key manager itself, so that replicas share it and
 * need no database (the PKCS#11 and KMIP adapters): lifecycle changes run one at a time per key name in
 * this process, and a change that lost to another replica's (it returned CONFLICT and left nothing
 * behind) runs again from the new state after a random pause, so that colliding replicas stop colliding.
 */
import { HsmBridgeError } from '../errors.js';

/** The change lost to a concurrent writer and left nothing behind: read the state again and retry. */
export const CONFLICT = Symbol('conflict');
export type Conflict = typeof CONFLICT;

const MAX_ATTEMPTS = 8;

/** A random pause before retry `attempt` (1, 2, ...). */
export function backoffMs(attempt: number): number {
  return Math.min(500, 5 * 2 ** attempt) * (0.5 + Math.random());
}

export class KeyChanges {
  private readonly locks = new Map<string, Promise<unknown>>();

  /** `lost` runs after each lost attempt (an adapter drops what it cached of the key). */
  constructor(private readonly lost: (name: string) => void = () => {}) {}

  run<T>(name: string, change: () => Promise<T | Conflict>): Promise<T> {
    const previous = this.locks.get(name) ?? Promise.resolve();
    const result = previous.catch(() => undefined).then(() => this.untilSettled(name, change));
    const tail = result.catch(() => undefined);
    this.locks.set(name, tail);
    void tail.then(() => {
      if (this.locks.get(name) === tail) this.locks.delete(name);
    });
    return result;
  }

  private async untilSettled<T>(name: string, change: () => Promise<T | Conflict>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const outcome = await change();
      if (outcome !== CONFLICT) return outcome;
      this.lost(name);
      if (attempt === MAX_ATTEMPTS) {
        throw new HsmBridgeError('BACKEND_UNAVAILABLE', `key ${name} is being changed by other replicas at the same time; retry`);
      }
      await new Promise((resolve) => setTimeout(resolve, backoffMs(attempt)));
    }
  }
}
