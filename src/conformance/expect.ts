/**
 * The assertions of the conformance suites: the small part of the familiar `expect` API they use, on
 * node:assert's AssertionError, so that the suites need no test framework in the installed package.
 * Semantics follow the usual ones: toEqual compares recursively, by value, ignoring properties that are
 * undefined; toMatchObject checks that the actual value holds the expected properties.
 */
import { AssertionError } from 'node:assert';
import { inspect } from 'node:util';

/** A value that matches by a rule of its own, inside toEqual or toMatchObject (expect.stringMatching). */
class Asymmetric {
  constructor(
    readonly description: string,
    readonly test: (actual: unknown) => boolean,
  ) {}
  [inspect.custom](): string {
    return this.description;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const bytesOf = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);

function equals(actual: unknown, expected: unknown, subset: boolean): boolean {
  if (expected instanceof Asymmetric) return expected.test(actual);
  if (Object.is(actual, expected)) return true;
  if (!isObject(actual) || !isObject(expected)) return false;
  if (ArrayBuffer.isView(actual) || ArrayBuffer.isView(expected)) {
    return ArrayBuffer.isView(actual) && ArrayBuffer.isView(expected) && bytesOf(actual).equals(bytesOf(expected));
  }
  if (actual instanceof Date || expected instanceof Date) {
    return actual instanceof Date && expected instanceof Date && actual.getTime() === expected.getTime();
  }
  if (Array.isArray(actual) || Array.isArray(expected)) {
    return Array.isArray(actual) && Array.isArray(expected) && actual.length === expected.length && actual.every((a, i) => equals(a, expected[i], subset));
  }
  const defined = (o: Record<string, unknown>) => Object.keys(o).filter((k) => o[k] !== undefined);
  const expectedKeys = defined(expected);
  if (!subset && defined(actual).length !== expectedKeys.length) return false;
  return expectedKeys.every((k) => equals(actual[k], expected[k], subset));
}

/** Errors as their class, code and message: a stack inside a report says nothing about the backend. */
const show = (v: unknown): string => {
  if (!(v instanceof Error)) return inspect(v, { depth: 6, breakLength: 120 });
  const code = (v as { code?: unknown }).code;
  return `${v.constructor.name}(${typeof code === 'string' ? `${code}, ` : ''}${JSON.stringify(v.message)})`;
};

export interface Matchers<R> {
  readonly not: Matchers<R>;
  toBe(expected: unknown): R;
  toEqual(expected: unknown): R;
  toMatchObject(expected: object): R;
  toContain(item: unknown): R;
  toHaveLength(length: number): R;
  toBeDefined(): R;
  toBeUndefined(): R;
  toBeNull(): R;
  toBeGreaterThan(n: number | bigint): R;
  toBeInstanceOf(type: abstract new (...args: never[]) => unknown): R;
}

type Check = (actual: unknown) => { pass: boolean; says: string };

const checks = {
  toBe: (e: unknown): Check => (a) => ({ pass: Object.is(a, e), says: `to be ${show(e)}` }),
  toEqual: (e: unknown): Check => (a) => ({ pass: equals(a, e, false), says: `to equal ${show(e)}` }),
  toMatchObject: (e: object): Check => (a) => ({ pass: equals(a, e, true), says: `to match ${show(e)}` }),
  toContain: (item: unknown): Check => (a) => ({
    pass: typeof a === 'string' ? typeof item === 'string' && a.includes(item) : Array.isArray(a) && a.includes(item),
    says: `to contain ${show(item)}`,
  }),
  toHaveLength: (n: number): Check => (a) => ({ pass: (a as { length?: unknown } | null | undefined)?.length === n, says: `to have length ${n}` }),
  toBeDefined: (): Check => (a) => ({ pass: a !== undefined, says: 'to be defined' }),
  toBeUndefined: (): Check => (a) => ({ pass: a === undefined, says: 'to be undefined' }),
  toBeNull: (): Check => (a) => ({ pass: a === null, says: 'to be null' }),
  toBeGreaterThan: (n: number | bigint): Check => (a) => ({ pass: (typeof a === 'number' || typeof a === 'bigint') && a > n, says: `to be greater than ${n}` }),
  toBeInstanceOf: (type: abstract new (...args: never[]) => unknown): Check => (a) => ({ pass: a instanceof type, says: `to be an instance of ${type.name}` }),
};

type Settle = (check: Check, negated: boolean) => unknown;

function matchers(settle: Settle, negated = false): Matchers<never> {
  const m = {} as Record<string, unknown>;
  for (const [name, make] of Object.entries(checks)) m[name] = (...args: unknown[]) => settle((make as (...a: unknown[]) => Check)(...args), negated);
  Object.defineProperty(m, 'not', { get: () => matchers(settle, !negated) });
  return m as unknown as Matchers<never>;
}

function judge(actual: unknown, check: Check, negated: boolean, message: string | undefined, what = 'expected'): void {
  const { pass, says } = check(actual);
  if (pass !== negated) return;
  const text = `${message ? `${message}: ` : ''}${what} ${show(actual)} ${negated ? 'not ' : ''}${says}`;
  throw new AssertionError({ message: text, actual, operator: says });
}

export interface Expectation extends Matchers<void> {
  /** The promise must reject; the matcher then applies to the reason. */
  readonly rejects: Matchers<Promise<void>>;
  readonly resolves: Matchers<Promise<void>>;
}

export function expect(actual: unknown, message?: string): Expectation {
  const expectation = matchers((check, negated) => judge(actual, check, negated, message)) as Matchers<void>;
  const rejects = () =>
    matchers(async (check, negated) => {
      const outcome = await Promise.resolve(actual).then((value) => ({ rejected: false, value }), (reason: unknown) => ({ rejected: true, value: reason }));
      if (!outcome.rejected) throw new AssertionError({ message: `${message ? `${message}: ` : ''}expected a rejection, got ${show(outcome.value)}` });
      judge(outcome.value, check, negated, message, 'rejected with');
    });
  const resolves = () => matchers(async (check, negated) => judge(await actual, check, negated, message));
  return Object.defineProperties(expectation, { rejects: { get: rejects }, resolves: { get: resolves } }) as Expectation;
}

/** A string matching `pattern`, inside toEqual or toMatchObject. */
expect.stringMatching = (pattern: RegExp): unknown => new Asymmetric(`stringMatching(${pattern})`, (a) => typeof a === 'string' && pattern.test(a));
