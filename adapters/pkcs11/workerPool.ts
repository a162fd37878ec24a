/**
 * The token workers that own PKCS#11 sessions, lent one call at a time (PKCS#11 allows one active
 * operation per session, and a worker's calls are synchronous). Callers beyond the pool wait in FIFO
 * order for at most `acquireTimeoutMs`, so a saturated HSM turns into a clear BACKEND_UNAVAILABLE, not a
 * hang; at most `maxQueued` wait (each holds its request in memory), beyond that they fail at once.
 * A worker whose call passed its deadline is set aside (quarantined) until that call returns; when every
 * worker is set aside, callers fail at once instead of waiting.
 * Generic over the worker type so that its logic is unit-tested without threads or a token.
 */
import { busy, unavailable } from './errors.js';

export interface WorkerPoolOptions {
  readonly acquireTimeoutMs: number;
  /** Callers that may wait for a worker; more fail at once with BACKEND_UNAVAILABLE. */
  readonly maxQueued: number;
}

/** The pool was closed (the device is being reconnected, or the backend is closing). */
export class PoolClosedError extends Error {
  override readonly name = 'PoolClosedError';
}

interface Waiter<W> {
  resolve(worker: W): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

export class WorkerPool<W> {
  private readonly idle: W[];
  /** Insertion-ordered (FIFO), and a waiter that times out leaves in O(1). */
  private readonly waiters = new Set<Waiter<W>>();
  private lent = 0;
  /** Workers stuck in a call past its deadline: neither idle nor counted as lent (a drain does not wait for them). */
  private readonly aside = new Set<W>();
  private closed = false;
  private drained: (() => void) | undefined;

  constructor(
    readonly workers: readonly W[],
    private readonly options: WorkerPoolOptions,
  ) {
    this.idle = [...workers];
  }

  get inUse(): number {
    return this.lent + this.aside.size;
  }

  /** Workers set aside, stuck in a call past its deadline. */
  get stuck(): number {
    return this.aside.size;
  }

  get size(): number {
    return this.workers.length;
  }

  /** Callers waiting for a worker. */
  get waiting(): number {
    return this.waiters.size;
  }

  acquire(): Promise<W> {
    if (this.closed) return Promise.reject(new PoolClosedError('worker pool closed'));
    if (this.allStuck) return Promise.reject(stuckError());
    const worker = this.idle.pop();
    if (worker !== undefined) {
      this.lent++;
      return Promise.resolve(worker);
    }
    if (this.waiters.size >= this.options.maxQueued) {
      return Promise.reject(busy(`all ${this.size} HSM sessions are busy and ${this.waiters.size} requests are waiting`));
    }
    return new Promise<W>((resolve, reject) => {
      const waiter: Waiter<W> = {
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

  release(worker: W): void {
    const waiter = this.closed ? undefined : this.waiters.values().next().value;
    if (waiter) {
      this.waiters.delete(waiter);
      clearTimeout(waiter.timer);
      waiter.resolve(worker);
      return;
    }
    this.lent--;
    if (!this.closed) this.idle.push(worker);
    this.signalIfDrained();
  }

  /**
   * A lent worker whose call passed its deadline: kept out until restore(). Once every worker is, the
   * callers waiting fail at once: waiting would only pile requests up behind an HSM that does not answer.
   */
  setAside(worker: W): void {
    this.aside.add(worker);
    this.lent--;
    if (this.allStuck) {
      for (const w of this.waiters) {
        clearTimeout(w.timer);
        w.reject(stuckError());
      }
      this.waiters.clear();
    }
    this.signalIfDrained();
  }

  /** The stuck call returned: the worker serves again (or is dropped, if the pool closed meanwhile). */
  restore(worker: W): void {
    if (!this.aside.delete(worker)) return;
    this.lent++;
    this.release(worker);
  }

  private get allStuck(): boolean {
    return this.aside.size > 0 && this.aside.size === this.workers.length;
  }

  private signalIfDrained(): void {
    if (this.lent !== 0) return;
    const drained = this.drained;
    this.drained = undefined;
    drained?.();
  }

  /** Resolves once no worker is lent (those set aside do not count), or after `timeoutMs`. */
  settled(timeoutMs: number): Promise<void> {
    if (this.lent === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      timer.unref();
      const previous = this.drained;
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.drained = () => {
        previous?.();
        done();
      };
    });
  }

  /**
   * Stops lending, fails the waiters and waits (at most `drainTimeoutMs`) for lent workers to come back:
   * finalizing the module while a call runs on another thread is unsafe.
   */
  async close(drainTimeoutMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new PoolClosedError('worker pool closed'));
    }
    this.waiters.clear();
    this.idle.length = 0;
    await this.settled(drainTimeoutMs);
  }
}

const stuckError = () => unavailable('every HSM session is waiting for an answer past its deadline');
