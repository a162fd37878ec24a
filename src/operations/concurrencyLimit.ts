/**
 * At most `limit` pieces of work at once, the rest waiting in arrival order: what keeps the items of
 * every batch in flight together within what the backend's sessions can take, so that batches queue
 * here rather than overflow the backend's own queue (which refuses with BACKEND_UNAVAILABLE).
 */
export class ConcurrencyLimit {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  private current = 1;
  private readAt = -Infinity;

  /** `limitNow` is read again at most once a second (the backend's sessions may change); the limit is at least 1. */
  constructor(private readonly limitNow: () => number) {}

  get limit(): number {
    const now = performance.now();
    if (now - this.readAt >= 1000) {
      this.current = Math.max(1, this.limitNow());
      this.readAt = now;
    }
    return this.current;
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.running < this.limit) this.running++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await work();
    } finally {
      // The slot passes straight to the next in line, or is given back.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
