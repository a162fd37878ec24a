import { describe, expect, it } from 'vitest';
import { ConcurrencyLimit } from '../../src/operations/concurrencyLimit.js';

/** A piece of work that runs until released, noting when it started. */
function gate(log: string[], name: string) {
  let release!: () => void;
  const done = new Promise<void>((r) => (release = r));
  return { work: async () => { log.push(`start ${name}`); await done; return name; }, release };
}

describe('ConcurrencyLimit', () => {
  it('runs at most `limit` at once, the rest in arrival order; a failure frees its slot', async () => {
    const log: string[] = [];
    const limit = new ConcurrencyLimit(() => 2);
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => gate(log, n));
    const runs = [limit.run(a!.work), limit.run(b!.work), limit.run(c!.work), limit.run(async () => { log.push('start failing'); throw new Error('boom'); }), limit.run(d!.work)];
    await new Promise((r) => setImmediate(r));
    expect(log).toEqual(['start a', 'start b']);
    b!.release();
    await runs[1];
    await new Promise((r) => setImmediate(r));
    expect(log).toEqual(['start a', 'start b', 'start c']);
    a!.release();
    await expect(runs[3]).rejects.toThrow('boom');
    await new Promise((r) => setImmediate(r));
    expect(log).toEqual(['start a', 'start b', 'start c', 'start failing', 'start d']);
    c!.release();
    d!.release();
    expect(await Promise.all([runs[0], runs[1], runs[2], runs[4]])).toEqual(['a', 'b', 'c', 'd']);
  });

  it('a limit read as 0 (a backend with no session up yet) still lets one run, rather than none ever', async () => {
    const limit = new ConcurrencyLimit(() => 0);
    expect(limit.limit).toBe(1);
    expect(await limit.run(async () => 'ran')).toBe('ran');
  });
});
