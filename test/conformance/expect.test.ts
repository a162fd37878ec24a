/**
 * The conformance kit's own expect: every matcher the suites use must pass what it should and fail what
 * it should, or a backend could pass the kit by accident.
 */
import { AssertionError } from 'node:assert';
import { describe, expect as vi, it } from 'vitest';
import { expect } from '../../src/conformance/expect.js';

const fails = (f: () => void) => vi(f).toThrow(AssertionError);
const rejectsWith = async (p: Promise<void>, pattern: RegExp) => {
  await vi(p).rejects.toThrow(AssertionError);
  await vi(p).rejects.toThrow(pattern);
};
class CodedError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

describe('conformance expect', () => {
  it('toBe: identity, with Object.is', () => {
    expect(1).toBe(1);
    expect(NaN).toBe(NaN);
    fails(() => expect({}).toBe({}));
    fails(() => expect(0).toBe(-0));
    expect(1).not.toBe(2);
    fails(() => expect(1).not.toBe(1));
  });

  it('toEqual: by value, recursively; Buffers by bytes; undefined properties ignored; arrays by length and order', () => {
    expect({ a: [1, { b: Buffer.from('x') }], c: undefined }).toEqual({ a: [1, { b: Buffer.from('x') }] });
    expect(Buffer.from([1, 2])).toEqual(new Uint8Array([1, 2]));
    expect(new Date(5)).toEqual(new Date(5));
    fails(() => expect(Buffer.from([1, 2])).toEqual(Buffer.from([1, 3])));
    fails(() => expect(Buffer.from([1, 2])).toEqual([1, 2]));
    fails(() => expect({ a: 1, b: 2 }).toEqual({ a: 1 }));
    fails(() => expect({ a: 1 }).toEqual({ a: 1, b: 2 }));
    fails(() => expect([1, 2]).toEqual([2, 1]));
    fails(() => expect([1]).toEqual([1, undefined]));
    fails(() => expect(new Date(5)).toEqual(new Date(6)));
    expect([3, 4, 5]).not.toEqual([3, 4]);
  });

  it('toMatchObject: the expected properties, recursively, on objects and errors; arrays of the same length', () => {
    const error = new CodedError('UNSUPPORTED_BY_BACKEND', 'no');
    expect(error).toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
    expect({ a: { b: 1, c: 2 }, d: [{ e: 1, f: 2 }] }).toMatchObject({ a: { b: 1 }, d: [{ e: 1 }] });
    fails(() => expect(error).toMatchObject({ code: 'INCOMPATIBLE_KEY' }));
    fails(() => expect({ a: 1 }).toMatchObject({ b: 1 }));
    fails(() => expect({ d: [1, 2] }).toMatchObject({ d: [1] }));
    fails(() => expect(null).toMatchObject({}));
  });

  it('stringMatching inside toMatchObject and toEqual', () => {
    const code = expect.stringMatching(/^KEY_(VERSION_)?NOT_FOUND$/);
    expect({ code: 'KEY_NOT_FOUND' }).toMatchObject({ code });
    expect({ code: 'KEY_VERSION_NOT_FOUND' }).toEqual({ code });
    fails(() => expect({ code: 'INTERNAL' }).toMatchObject({ code }));
    fails(() => expect({ code: 7 }).toMatchObject({ code }));
  });

  it('toContain, toHaveLength, toBeDefined, toBeUndefined, toBeNull, toBeGreaterThan, toBeInstanceOf', () => {
    expect(['a', 'b']).toContain('b');
    expect('abc').toContain('bc');
    fails(() => expect(['a']).toContain('b'));
    fails(() => expect([{ a: 1 }]).toContain({ a: 1 }));
    expect(['a']).not.toContain('b');
    expect(Buffer.alloc(3)).toHaveLength(3);
    fails(() => expect([1]).toHaveLength(2));
    fails(() => expect(undefined).toHaveLength(0));
    expect(0).toBeDefined();
    fails(() => expect(undefined).toBeDefined());
    expect(undefined).toBeUndefined();
    fails(() => expect(null).toBeUndefined());
    expect(null).toBeNull();
    expect(0).not.toBeNull();
    expect(2).toBeGreaterThan(1);
    fails(() => expect(1).toBeGreaterThan(1));
    fails(() => expect('2').toBeGreaterThan(1));
    expect(new CodedError('X', 'y')).toBeInstanceOf(Error);
    fails(() => expect({}).toBeInstanceOf(Error));
  });

  it('rejects: fails when the promise resolves, else matches the reason; resolves matches the value', async () => {
    await expect(Promise.reject(new CodedError('INCOMPATIBLE_KEY', 'wrong purpose'))).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    await expect(Promise.reject(new CodedError('X', 'y'))).rejects.toBeInstanceOf(CodedError);
    await rejectsWith(expect(Promise.resolve(Buffer.from('signed'))).rejects.toMatchObject({ code: 'X' }), /expected a rejection, got/);
    await rejectsWith(expect(Promise.reject(new CodedError('INTERNAL', 'boom'))).rejects.toMatchObject({ code: 'X' }), /rejected with CodedError\(INTERNAL, "boom"\)/);
    await expect(Promise.resolve(undefined)).resolves.toBeUndefined();
    await rejectsWith(expect(Promise.resolve(1)).resolves.toBeUndefined(), /expected 1 to be undefined/);
  });

  it("a message names the failed expectation, and an error shows as its class, code and message, not its stack", () => {
    vi(() => expect(undefined, 'public key of an asymmetric key').toBeDefined()).toThrow(/^public key of an asymmetric key: expected undefined to be defined$/);
    vi(() => expect(new CodedError('INTERNAL', 'boom')).toBe(1)).toThrow(/^expected CodedError\(INTERNAL, "boom"\) to be 1$/);
  });
});
