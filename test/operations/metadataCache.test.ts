/** The metadata cache's logic, with a loader standing in for a backend (pure logic: no HSM needed). */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HsmBridgeError } from '../../src/errors.js';
import { parseKeyName, type KeyName, type KeyVersion } from '../../src/keys/names.js';
import type { KeyMetadata } from '../../src/keys/types.js';
import { MetadataCache } from '../../src/operations/metadataCache.js';

const meta = (name: KeyName): KeyMetadata => ({
  name, type: 'AES_128', purpose: 'encrypt', state: 'enabled', createdAt: '2026-01-01T00:00:00.000Z',
  primaryVersion: 1 as KeyVersion, versions: [{ version: 1 as KeyVersion, createdAt: '2026-01-01T00:00:00.000Z' }],
});

/** A loader that knows the names in `known` and counts its calls. */
function loader(known: Set<string>) {
  const calls: string[] = [];
  const load = async (name: KeyName) => {
    calls.push(name);
    if (!known.has(name)) throw new HsmBridgeError('KEY_NOT_FOUND', `key ${name} not found`);
    return meta(name);
  };
  return { load, calls };
}

afterEach(() => vi.useRealTimers());

describe('MetadataCache', () => {
  it('serves a known key from the cache until the TTL passes', async () => {
    vi.useFakeTimers();
    const { load, calls } = loader(new Set(['a']));
    const cache = new MetadataCache(load, 1000);
    const a = parseKeyName('a');
    await cache.get(a);
    await cache.get(a);
    expect(calls).toEqual(['a']);
    vi.advanceTimersByTime(1001);
    await cache.get(a);
    expect(calls).toEqual(['a', 'a']);
  });

  it('remembers an unknown name for the TTL: KEY_NOT_FOUND without asking the backend again', async () => {
    vi.useFakeTimers();
    const known = new Set<string>();
    const { load, calls } = loader(known);
    const cache = new MetadataCache(load, 1000);
    const x = parseKeyName('x');
    for (let i = 0; i < 50; i++) await expect(cache.get(x)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    expect(calls).toEqual(['x']);
    known.add('x'); // created by another replica: seen once the TTL has passed
    vi.advanceTimersByTime(1001);
    expect((await cache.get(x)).name).toBe('x');
    expect(calls).toEqual(['x', 'x']);
  });

  it('a key created or refreshed through this process is no longer a miss', async () => {
    const known = new Set<string>();
    const { load } = loader(known);
    const cache = new MetadataCache(load, 60_000);
    const y = parseKeyName('y');
    await expect(cache.get(y)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    cache.put(meta(y));
    expect((await cache.get(y)).name).toBe('y');
    const z = parseKeyName('z');
    await expect(cache.get(z)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    known.add('z');
    expect((await cache.refresh(z)).name).toBe('z'); // refresh always asks
    expect((await cache.get(z)).name).toBe('z');
  });

  it('other errors are not remembered, and TTL 0 remembers nothing', async () => {
    let calls = 0;
    const failing = new MetadataCache(async () => {
      calls++;
      throw new HsmBridgeError('BACKEND_UNAVAILABLE', 'down');
    }, 60_000);
    const k = parseKeyName('k');
    await expect(failing.get(k)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    await expect(failing.get(k)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    expect(calls).toBe(2);
    const { load, calls: loads } = loader(new Set());
    const uncached = new MetadataCache(load, 0);
    await expect(uncached.get(k)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    await expect(uncached.get(k)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    expect(loads).toHaveLength(2);
  });

  it('concurrent misses share one lookup', async () => {
    const { load, calls } = loader(new Set(['a']));
    const cache = new MetadataCache(load, 1000);
    await Promise.all(Array.from({ length: 10 }, () => cache.get(parseKeyName('a'))));
    expect(calls).toEqual(['a']);
  });
});
