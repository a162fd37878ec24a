/**
 * The kit's runner on small made-up suites: order, hooks, the three results, and that a failing or hung
 * check or set-up cannot pass or stop the run.
 */
import { describe, expect, it } from 'vitest';
import type { ConformanceTarget, Suite } from '../../src/conformance/host.js';
import { runSuites } from '../../src/conformance/runner.js';

const noTarget = async (): Promise<ConformanceTarget> => ({ open: () => Promise.reject(new Error('unused')), cleanup: async () => undefined });
const run = (suite: Suite) => runSuites([{ suite, label: 'x' }], noTarget);
const summary = (results: Awaited<ReturnType<typeof run>>) => results.map((r) => `${r.path.join('/')}=${r.status}${r.error ? `:${r.error}` : ''}${r.refused ? `:${r.refused.join(',')}` : ''}`);

describe('conformance runner', () => {
  it('runs hooks and checks in the order vitest does, nested blocks inside their parents', async () => {
    const seen: string[] = [];
    const results = await run((t, label) => {
      t.describe(`suite ${label}`, () => {
        t.beforeAll(() => void seen.push('before'));
        t.afterAll(() => void seen.push('after'));
        t.it('one', () => void seen.push('one'));
        t.describe('inner', () => {
          t.beforeAll(() => void seen.push('inner before'));
          t.afterAll(() => void seen.push('inner after'));
          t.it('two', () => void seen.push('two'));
        });
        t.it('three', async () => void seen.push('three'));
      });
    });
    expect(seen).toEqual(['before', 'one', 'inner before', 'two', 'inner after', 'three', 'after']);
    expect(summary(results)).toEqual(['suite x/one=pass', 'suite x/inner/two=pass', 'suite x/three=pass']);
  });

  it('pass, fail with the reason (and the error code), refused with what was not offered', async () => {
    const results = await run((t) => {
      t.it('passes', () => undefined);
      t.it('fails', () => {
        throw Object.assign(new Error('wrong purpose'), { code: 'INCOMPATIBLE_KEY' });
      });
      t.it('meets what is not offered', () => {
        t.refused('sign ES256');
        t.refused('sign ES256');
        t.refused('random');
      });
      t.it('refused, then fails', () => {
        t.refused('random');
        throw new Error('no');
      });
    });
    expect(summary(results)).toEqual(['passes=pass', 'fails=fail:INCOMPATIBLE_KEY: wrong purpose', 'meets what is not offered=refused:sign ES256,random', 'refused, then fails=fail:no']);
  });

  it('a failed set-up fails every check under it, still runs the clean-up, and the run goes on', async () => {
    let cleaned = false;
    const results = await run((t) => {
      t.describe('broken', () => {
        t.beforeAll(() => {
          throw new Error('HSM not there');
        });
        t.afterAll(() => void (cleaned = true));
        t.it('a', () => undefined);
        t.describe('deeper', () => t.it('b', () => undefined));
      });
      t.it('after', () => undefined);
    });
    expect(cleaned).toBe(true);
    expect(summary(results)).toEqual(['broken/a=fail:set-up failed: HSM not there', 'broken/deeper/b=fail:set-up failed: HSM not there', 'after=pass']);
  });

  it('a check that never ends fails at its timeout; a failed clean-up is reported', async () => {
    const results = await run((t) => {
      t.it('hangs', () => new Promise(() => undefined), 50);
      t.it('next', () => undefined);
      t.afterAll(() => {
        throw new Error('could not close');
      });
    });
    expect(summary(results)).toEqual(['hangs=fail:timed out after 50 ms', 'next=pass', '(clean-up)=fail:could not close']);
  });

  it('a refusal made outside a check (in a hook) marks no check', async () => {
    const results = await run((t) => {
      t.beforeAll(() => t.refused('wrapped import'));
      t.it('plain', () => undefined);
    });
    expect(summary(results)).toEqual(['plain=pass']);
  });
});
