import { describe, expect, it } from 'vitest';
import { canonicalJson, JsonTooDeepError, MAX_JSON_DEPTH } from '../../src/fspiop/canonicalJson.js';
import { safeStableStringify } from './support.js';

/** Deterministic PRNG (mulberry32) so that a failure reproduces. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const awkwardChars = ['a', 'Z', '0', ' ', '"', '\\', '/', '\b', '\f', '\n', '\r', '\t', '\u0000', '\u001f', '\u007f', 'é', '€', '\u2028', '\u2029', '😀', '\ud800', '\udfff', '\ufeff', 'ß', 'İ', '_', '-'];

function randomString(rand: () => number): string {
  const length = Math.floor(rand() * 8);
  let s = '';
  for (let i = 0; i < length; i++) s += awkwardChars[Math.floor(rand() * awkwardChars.length)];
  return s;
}

const numbers = [0, -0, 1, -1, 0.1, 1e21, 1e-7, 123456789012345680000, 5e-324, 1.7976931348623157e308, 0.30000000000000004, -1.5e-10, 2 ** 53, 100, 1e20];

function randomValue(rand: () => number, depth: number): unknown {
  const r = rand();
  if (depth > 4 || r < 0.35) {
    const kind = Math.floor(rand() * 5);
    if (kind === 0) return randomString(rand);
    if (kind === 1) return numbers[Math.floor(rand() * numbers.length)];
    if (kind === 2) return rand() < 0.5;
    if (kind === 3) return null;
    return Math.round((rand() - 0.5) * 1e6) / 100;
  }
  if (r < 0.6) return Array.from({ length: Math.floor(rand() * 5) }, () => randomValue(rand, depth + 1));
  const object: Record<string, unknown> = {};
  for (let i = Math.floor(rand() * 6); i > 0; i--) object[randomString(rand)] = randomValue(rand, depth + 1);
  return object;
}

describe('canonicalJson matches safe-stable-stringify on parsed JSON', () => {
  const cases: Record<string, string> = {
    'empty object': '{}',
    'empty array': '[]',
    'nested empties': '{"a":{},"b":[],"c":[{}],"d":[[]]}',
    'unsorted keys': '{"b":1,"a":2,"B":3,"_":4,"aa":5,"":6}',
    'UTF-16 order, not code points': '{"\uff61":1,"\ud83d\ude00":2,"\u00e9":3,"e":4}',
    'numeric-looking keys': '{"10":1,"2":2,"1":3,"-1":4,"01":5}',
    'escapes': '{"s":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\\u007f\\u2028\\u2029"}',
    'lone surrogates': '["\\ud800","\\udfff","\\ud83d\\ude00x"]',
    'numbers': '[0,-0,1.0,1e2,1E+2,-1.5e-7,1e21,0.000001,1e-7,12345678901234567890,1e400,-1e400,5e-324]',
    'literals': '[true,false,null]',
    'string at top level': '"just a string"',
    'number at top level': '42.50',
    'whitespace everywhere': ' { "a" : [ 1 , 2 , { "c" : null , "b" : true } ] , "z" : "x y" } ',
    '__proto__ member': '{"__proto__":{"x":1},"a":1}',
    'deep nesting': '[[[[[[[[[[{"k":[[[[1]]]]}]]]]]]]]]]',
    'FSPIOP transfer': JSON.stringify({ transferId: 'x', amount: { currency: 'USD', amount: '1.00' }, extensionList: { extension: [{ key: 'k', value: 'v' }] } }),
  };
  for (const [name, text] of Object.entries(cases)) {
    it(name, () => {
      const value = JSON.parse(text) as unknown;
      expect(canonicalJson(value)).toBe(safeStableStringify(value));
    });
  }

  it('2,000 random documents (unicode, escapes, numbers, nesting)', () => {
    const rand = prng(20261124);
    for (let i = 0; i < 2000; i++) {
      // Through JSON text and back, so the value is exactly what a parser would hand us.
      const value = JSON.parse(JSON.stringify(randomValue(rand, 0)) ?? 'null') as unknown;
      const ours = canonicalJson(value);
      expect(ours).toBe(safeStableStringify(value));
      expect(JSON.parse(ours)).toEqual(value);
    }
  });

  it('treats a caller object as JSON.stringify would: undefined members dropped, array holes null, toJSON used', () => {
    const value = { b: undefined, a: [undefined, 1], d: new Date(0), c: { toJSON: () => ({ y: 1, x: 2 }) } };
    expect(canonicalJson(value)).toBe(safeStableStringify(value));
    expect(canonicalJson(value)).toBe('{"a":[null,1],"c":{"x":2,"y":1},"d":"1970-01-01T00:00:00.000Z"}');
  });

  it('refuses a bigint rather than inventing a form', () => {
    expect(() => canonicalJson({ n: 1n })).toThrow(TypeError);
  });

  it(`nests up to ${MAX_JSON_DEPTH} levels; deeper (100,000 levels, or a cycle) is a JsonTooDeepError, not a stack overflow`, () => {
    const arrays = (levels: number) => JSON.parse('['.repeat(levels) + ']'.repeat(levels)) as unknown;
    const objects = (levels: number) => JSON.parse('{"a":'.repeat(levels) + '0' + '}'.repeat(levels)) as unknown;
    expect(canonicalJson(arrays(MAX_JSON_DEPTH))).toBe('['.repeat(MAX_JSON_DEPTH) + ']'.repeat(MAX_JSON_DEPTH));
    expect(canonicalJson(objects(MAX_JSON_DEPTH))).toBe(safeStableStringify(objects(MAX_JSON_DEPTH)));
    for (const value of [arrays(MAX_JSON_DEPTH + 1), objects(MAX_JSON_DEPTH + 1), arrays(100_000), objects(100_000)]) {
      expect(() => canonicalJson(value)).toThrow(JsonTooDeepError);
    }
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    expect(() => canonicalJson(cycle)).toThrow(JsonTooDeepError);
    // toJSON is called once per value, as JSON.stringify does, so one returning itself cannot loop.
    const selfish = { a: 1, toJSON() { return this; } };
    expect(canonicalJson(selfish)).toBe(JSON.stringify(selfish));
  });
});
