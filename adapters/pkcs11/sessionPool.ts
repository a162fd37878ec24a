/**
 * A fixed-size pool of PKCS#11 sessions. PKCS#11 allows one active operation per session, so each
 * session is lent to one operation at a time; callers beyond the pool size wait in FIFO order, for at
 * most `acquireTimeoutMs`, so that a saturated HSM turns into a clear BACKEND_UNAVAILABLE, not a hang.
 * At most `maxQueued` callers wait: each holds its request in memory, so beyond that they fail at once.
 * Generic over the session type so that its logic is unit-tested without a token.
 */
import { unavailable } from './errors.js';

export interface SessionPoolOptions<S> {
  readonly size: number;
  readonly acquireTimeoutMs: number;
  /** Callers that may wait for a session; more fail at once with BACKEND_UNAVAILABLE. */
  readonly maxQueued: number;
  readonly open: () => S;
  /** Must not throw; the pool calls it on sessions it no longer trusts or needs. */
  readonly close: (session: S) => void;
}

/** The pool was closed (the device is being reconnected, or the backend is closing). */
export class PoolClosedError extends Error {
  override readonly name = 'PoolClosedError';
}

interface Waiter<S> {
  resolve(session: S): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

export class SessionPool<S> {
  private readonly idle: S[] = [];
  /** Insertion-ordered (FIFO), and a waiter that times out leaves in O(1). */
  private readonly waiters = new Set<Waiter<S>>();
  private lent = 0;
  private closed = false;
  private drained: (() => void) | undefined;

  /** Opens every session now, so that a token that cannot serve `size` sessions fails at start. */
  constructor(private readonly options: SessionPoolOptions<S>) {
    try {
      for (let i = 0; i < options.size; i++) this.idle.push(options.open());
    } catch (e) {
      for (const s of this.idle.splice(0)) options.close(s);
      throw e;
    }
  }

  get inUse(): number {
    return this.lent;
  }

  get size(): number {
    return this.options.size;
  }

  /** Callers waiting for a session. */
  get waiting(): number {
    return this.waiters.size;
  }

  acquire(): Promise<S> {
    if (this.closed) return Promise.reject(new PoolClosedError('session pool closed'));
    const session = this.idle.pop();
    if (session !== undefined) {
      this.lent++;
      return Promise.resolve(session);
    }
    if (this.waiters.size >= this.options.maxQueued) {
      return Promise.reject(unavailable(`all ${this.options.size} HSM sessions are busy and ${this.waiters.size} requests are waiting`));
    }
    return new Promise<S>((resolve, reject) => {
      const waiter: Waiter<S> = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(unavailable(`no HSM session became free within ${this.options.acquireTimeoutMs} ms`));
        }, this.options.acquireTimeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  /**
   * Returns a session. `broken` (its last operation failed, and PKCS#11 may leave an operation active
   * after some errors) swaps it for a fresh one: opened before the old one closes, because closing the
   * token's last session logs the user out.
   */
  release(session: S, broken = false): void {
    let next = session;
    if (broken && !this.closed) {
      try {
        next = this.options.open();
        this.options.close(session);
      } catch {
        // Cannot open a replacement: keep the old session; if the device is gone the caller reconnects.
      }
    }
    const waiter = this.closed ? undefined : this.waiters.values().next().value;
    if (waiter) {
      this.waiters.delete(waiter);
      clearTimeout(waiter.timer);
      waiter.resolve(next);
      return;
    }
    this.lent--;
    if (this.closed) {
      this.options.close(next);
      if (this.lent === 0) this.drained?.();
    } else {
      this.idle.push(next);
    }
  }

  /**
   * Stops lending, fails the waiters, closes idle sessions and waits (at most `drainTimeoutMs`) for
   * lent ones to come back: finalizing the module while a call runs on another thread is unsafe.
   */
  async close(drainTimeoutMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new PoolClosedError('session pool closed'));
    }
    this.waiters.clear();
    for (const s of this.idle.splice(0)) this.options.close(s);
    if (this.lent === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, drainTimeoutMs);
      timer.unref();
      this.drained = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
