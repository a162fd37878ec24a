import { describe, expect, it } from 'vitest';
import { forCaller, HsmBridgeError, MAX_ERROR_MESSAGE_CHARS, quote } from '../src/errors.js';

describe('quote', () => {
  it('quotes a short value as JSON, escaping control characters and line breaks', () => {
    expect(quote('abc')).toBe('"abc"');
    expect(quote('a\nb\u0000"')).toBe('"a\\nb\\u0000\\""');
    expect(quote(42)).toBe('"42"');
  });

  it('keeps at most the first `max` characters of a long value', () => {
    const q = quote('"'.repeat(50_000));
    expect(q.length).toBeLessThan(64 * 2 + 4);
    expect(quote('x'.repeat(100), 8)).toBe('"xxxxxxxx…"');
  });
});

describe('forCaller', () => {
  it('passes a short, clean error through as it is', () => {
    const e = new HsmBridgeError('KEY_NOT_FOUND', 'key k1 does not exist');
    expect(forCaller(e)).toBe(e);
  });

  it(`cuts a message to ${MAX_ERROR_MESSAGE_CHARS} characters and blanks control characters, keeping the code`, () => {
    const long = forCaller(new HsmBridgeError('INVALID_ARGUMENT', `bad ${'x'.repeat(100_000)}`));
    expect(long.code).toBe('INVALID_ARGUMENT');
    expect(long.message.length).toBe(MAX_ERROR_MESSAGE_CHARS + 1);
    const controls = forCaller(new HsmBridgeError('INVALID_ARGUMENT', 'line one\nline two\r\u0007'));
    expect(controls.message).toBe('line one line two  ');
  });

  it('turns anything else into INTERNAL with a generic message', () => {
    expect(forCaller(new Error(`secret ${'y'.repeat(10)}`))).toMatchObject({ code: 'INTERNAL', message: 'internal error' });
  });
});
