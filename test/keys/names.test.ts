/** Key names: isKeyName answers what parseKeyName checks, on the same cases. */
import { describe, expect, it } from 'vitest';
import { isKeyName, parseKeyName } from '../../src/keys/names.js';

const wellFormed = ['a', 'Z9', 'payee-fsp.sign_v2', '0key', 'k'.repeat(64)];
const malformed: unknown[] = ['', 'k'.repeat(65), '-starts-with-dash', '.hidden', '_x', 'bad name!', '../x', 'a/b', 'key\n', 'é', 42, null, undefined, ['a'], { name: 'a' }];

describe('key names', () => {
  it.each(wellFormed)('%s is a key name', (name) => {
    expect(isKeyName(name)).toBe(true);
    expect(parseKeyName(name)).toBe(name);
  });

  it.each(malformed)('%s is not', (value) => {
    expect(isKeyName(value)).toBe(false);
    expect(() => parseKeyName(value)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
