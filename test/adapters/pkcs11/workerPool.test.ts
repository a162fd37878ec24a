/** Pure logic of the worker pool (workers are plain numbers here; the SoftHSM suites use real ones). */
import { describe, expect, it } from 'vitest';
import { PoolClosedError, WorkerPool } from '../../../adapters/pkcs11/workerPool.js';

function pool(size: number, acquireTimeoutMs = 1000, maxQueued = 100) {
  const workers = Array.from({ length: size }, (_, i) => i + 1);
  return { p: new WorkerPool<number>(workers, { acquireTimeoutMs, maxQueued }) };
}

describe('WorkerPool', () => {
  it('lends each worker to one caller at a time', async () => {
    const { p } = pool(3);
    const lent = await Promise.all([p.acquire(), p.acquire(), p.acquire()]);
    expect(new Set(lent).size).toBe(3);
    expect(p.inUse).toBe(3);
  });

  it('counts its size, the sessions lent and the callers waiting (for the metrics listener)', async () => {
    const { p } = pool(2);
    expect({ size: p.size, inUse: p.inUse, waiting: p.waiting }).toEqual({ size: 2, inUse: 0, waiting: 0 });
    const a = await p.acquire();
    await p.acquire();
    const third = p.acquire();
    expect({ size: p.size, inUse: p.inUse, waiting: p.waiting }).toEqual({ size: 2, inUse: 2, waiting: 1 });
    p.release(a);
    await third;
    expect({ size: p.size, inUse: p.inUse, waiting: p.waiting }).toEqual({ size: 2, inUse: 2, waiting: 0 });
  });

  it('serves waiters in FIFO order', async () => {
    const { p } = pool(1);
    const first = await p.acquire();
    const order: number[] = [];
    const waiting = [1, 2, 3].map((i) => p.acquire().then((s) => { order.push(i); p.release(s); }));
    p.release(first);
    await Promise.all(waiting);
    expect(order).toEqual([1, 2, 3]);
    expect(p.inUse).toBe(0);
  });

  it('fails a waiter with BACKEND_UNAVAILABLE after the acquire timeout, and forgets it', async () => {
    const { p } = pool(1, 30);
    const s = await p.acquire();
    await expect(p.acquire()).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    p.release(s);
    expect(await p.acquire()).toBe(s); // the timed-out waiter did not take it
  });

  it('queues at most maxQueued callers; the next fails at once with BACKEND_UNAVAILABLE', async () => {
    const { p } = pool(2, 60_000, 3);
    const held = await Promise.all([p.acquire(), p.acquire()]);
    const queued = [p.acquire(), p.acquire(), p.acquire()];
    const started = Date.now();
    await expect(p.acquire()).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    expect(Date.now() - started).toBeLessThan(50); // fail fast, not after the acquire timeout
    for (const s of held) p.release(s);
    const first = await Promise.race(queued.slice(0, 2));
    p.release(first);
    const got = await Promise.all(queued);
    expect(got).toHaveLength(3);
    for (const s of got) if (s !== first) p.release(s);
    // the queue has room again
    expect(await p.acquire()).toBeTypeOf('number');
  });

  it('maxQueued 0: no waiting at all once every session is lent', async () => {
    const { p } = pool(1, 60_000, 0);
    const s = await p.acquire();
    await expect(p.acquire()).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    p.release(s);
    expect(await p.acquire()).toBe(s);
  });

  it('thousands of waiters that time out leave the queue in linear time', async () => {
    const { p } = pool(1, 20, 100_000);
    const held = await p.acquire();
    const waiting = Array.from({ length: 20_000 }, () => p.acquire().then(() => 'got', () => 'timed out'));
    const started = Date.now();
    expect(new Set(await Promise.all(waiting))).toEqual(new Set(['timed out']));
    expect(Date.now() - started).toBeLessThan(2000);
    p.release(held);
    expect(await p.acquire()).toBe(held);
  });

  it('a worker set aside (stuck) is not lent until restored; with all set aside, callers fail at once', async () => {
    const { p } = pool(2);
    const a = await p.acquire();
    const b = await p.acquire();
    const waiter = p.acquire();
    p.setAside(a);
    expect(p.stuck).toBe(1);
    expect(p.inUse).toBe(2);
    p.setAside(b);
    await expect(waiter).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringContaining('past its deadline') });
    await expect(p.acquire()).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    expect(p.waiting).toBe(0);
    p.restore(a);
    expect(await p.acquire()).toBe(a);
    expect(p.stuck).toBe(1);
  });

  it('a drain does not wait for workers set aside: they may never come back', async () => {
    const { p } = pool(2);
    const a = await p.acquire();
    p.setAside(a);
    let settled = false;
    await p.settled(60_000).then(() => (settled = true));
    expect(settled).toBe(true);
  });

  it('settled resolves when the last lent worker comes back, or at its timeout', async () => {
    const { p } = pool(2);
    const a = await p.acquire();
    let settled = false;
    const waiting = p.settled(5000).then(() => { settled = true; });
    await new Promise((r) => setTimeout(r, 10));
    expect(settled).toBe(false);
    p.release(a);
    await waiting;
    await p.acquire();
    await p.settled(30); // a worker stuck in a call never comes back: the wait ends anyway
    expect(p.inUse).toBe(1);
  });

  it('close fails the waiters and waits for lent workers', async () => {
    const { p } = pool(2);
    const a = await p.acquire();
    const b = await p.acquire();
    const waiter = p.acquire();
    let done = false;
    const closing = p.close(5000).then(() => { done = true; });
    await expect(waiter).rejects.toBeInstanceOf(PoolClosedError);
    p.release(a);
    await new Promise((r) => setTimeout(r, 10));
    expect(done).toBe(false);
    p.release(b);
    await closing;
    await expect(p.acquire()).rejects.toBeInstanceOf(PoolClosedError);
  });
});
