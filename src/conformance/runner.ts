/**
 * Runs the conformance suites without a test framework, for `hsmb conformance`: a SuiteHost that collects
 * the suites' blocks, hooks and checks, then runs them one at a time, in order, as vitest would
 * (beforeAll hooks before a block's first check, afterAll hooks after its last, even when a hook failed).
 * Each check ends as pass, fail or refused: refused when it passed but met a capability the backend does
 * not offer (SuiteHost.refused), so that only what was really exercised counts as pass.
 */
import type { Body, ConformanceTarget, Suite, SuiteHost } from './host.js';

export type CheckStatus = 'pass' | 'fail' | 'refused';

export interface CheckResult {
  /** The suite's blocks, outermost first, then the check's own name. */
  readonly path: readonly string[];
  readonly status: CheckStatus;
  readonly ms: number;
  /** Why it failed. */
  readonly error?: string;
  /** The capabilities it needed and the backend does not offer. */
  readonly refused?: readonly string[];
}

interface Hook {
  readonly body: Body;
  readonly timeoutMs?: number;
}
interface Check extends Hook {
  readonly kind: 'check';
  readonly name: string;
}
interface Block {
  readonly kind: 'block';
  readonly name: string;
  readonly before: Hook[];
  readonly after: Hook[];
  readonly children: (Block | Check)[];
}

/** A check or hook that takes longer fails: an HSM call has its own deadline, so this only catches a suite that waits forever. */
export const DEFAULT_TIMEOUT_MS = 120_000;

async function timed(hook: Hook): Promise<void> {
  const ms = hook.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  try {
    await Promise.race([Promise.resolve().then(hook.body), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const reason = (e: unknown): string => {
  const error = e as { code?: unknown; message?: unknown } | null;
  const message = typeof error?.message === 'string' ? error.message : String(e);
  return typeof error?.code === 'string' && error.code !== 'ERR_ASSERTION' && !message.includes(error.code) ? `${error.code}: ${message}` : message;
};

class CollectingHost implements SuiteHost {
  readonly root: Block = { kind: 'block', name: '', before: [], after: [], children: [] };
  private open: Block = this.root;
  /** The refusals of the check running now; undefined between checks (a hook's refusal is its checks' business). */
  current: string[] | undefined;

  describe(name: string, body: () => void): void {
    const block: Block = { kind: 'block', name, before: [], after: [], children: [] };
    this.open.children.push(block);
    const outer = this.open;
    this.open = block;
    try {
      body();
    } finally {
      this.open = outer;
    }
  }
  it(name: string, body: Body, timeoutMs?: number): void {
    this.open.children.push({ kind: 'check', name, body, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
  }
  beforeAll(body: Body, timeoutMs?: number): void {
    this.open.before.push({ body, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
  }
  afterAll(body: Body, timeoutMs?: number): void {
    this.open.after.push({ body, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
  }
  refused(what: string): void {
    if (this.current && !this.current.includes(what)) this.current.push(what);
  }
}

export interface RunOptions {
  /** Called as each check ends, for progress output. */
  readonly onResult?: (result: CheckResult) => void;
}

/** Runs `suites` against the target `makeTarget` makes (each suite makes its own); resolves with every check's result, in order. */
export async function runSuites(suites: readonly { readonly suite: Suite; readonly label: string }[], makeTarget: () => Promise<ConformanceTarget>, options: RunOptions = {}): Promise<CheckResult[]> {
  const host = new CollectingHost();
  for (const { suite, label } of suites) suite(host, label, makeTarget);
  const results: CheckResult[] = [];
  const record = (result: CheckResult) => {
    results.push(result);
    options.onResult?.(result);
  };

  const runBlock = async (block: Block, path: string[], failedSetup: string | undefined): Promise<void> => {
    let setup = failedSetup;
    for (const hook of setup === undefined ? block.before : []) {
      try {
        await timed(hook);
      } catch (e) {
        setup = `set-up failed: ${reason(e)}`;
        break;
      }
    }
    for (const child of block.children) {
      const at = [...path, child.name];
      if (child.kind === 'block') {
        await runBlock(child, at, setup);
        continue;
      }
      if (setup !== undefined) {
        record({ path: at, status: 'fail', ms: 0, error: setup });
        continue;
      }
      const refusals: string[] = [];
      host.current = refusals;
      const started = performance.now();
      try {
        await timed(child);
        const ms = Math.round(performance.now() - started);
        record(refusals.length > 0 ? { path: at, status: 'refused', ms, refused: refusals } : { path: at, status: 'pass', ms });
      } catch (e) {
        record({ path: at, status: 'fail', ms: Math.round(performance.now() - started), error: reason(e) });
      } finally {
        host.current = undefined;
      }
    }
    for (const hook of block.after) {
      try {
        await timed(hook);
      } catch (e) {
        record({ path: [...path, '(clean-up)'], status: 'fail', ms: 0, error: reason(e) });
      }
    }
  };
  await runBlock(host.root, [], undefined);
  return results;
}
