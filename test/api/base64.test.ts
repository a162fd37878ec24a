/** Strict base64 (pure logic): one accepted text per byte string, standard alphabet, padding optional. */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HsmBridgeError } from '../../src/errors.js';
import { decodeBase64, isStrictBase64 } from '../../src/api/base64.js';

describe('strict base64', () => {
  it('accepts what Buffer encodes, with and without padding, for every length remainder', () => {
    for (let n = 0; n < 40; n++) {
      const data = randomBytes(n);
      const padded = data.toString('base64');
      for (const text of [padded, padded.replace(/=+$/, '')]) {
        expect(isStrictBase64(text), text).toBe(true);
        expect(decodeBase64('f', text)).toEqual(data);
      }
    }
  });

  it.each([
    ['base64url characters', 'ab-_'],
    ['whitespace', 'aGVs bG8='],
    ['a newline', 'aGVs\nbG8='],
    ['a single character group', 'a'],
    ['five characters', 'abcde'],
    ['padding in the middle', 'aa==aaaa'],
    ['three padding characters', 'a==='],
    ['padding after a full group', 'aaaa='],
    ['non-zero spare bits, 1 byte', 'QR=='],
    ['non-zero spare bits, 2 bytes', 'QUJ='],
    ['non-zero spare bits, unpadded', 'QUJ'],
    ['non-ASCII', 'aGVsbG8é'],
  ])('refuses %s', (_what, text) => {
    expect(isStrictBase64(text)).toBe(false);
    expect(() => decodeBase64('signature', text)).toThrow(HsmBridgeError);
    try {
      decodeBase64('signature', text);
    } catch (e) {
      expect((e as HsmBridgeError).code).toBe('INVALID_ARGUMENT');
      expect((e as HsmBridgeError).message).toContain('signature');
    }
  });

  it('the empty string is zero bytes', () => {
    expect(decodeBase64('aad', '')).toHaveLength(0);
  });
});
