import { describe, expect, it } from 'vitest';
import { HsmBridgeError } from '../../src/errors.js';
import { checkJsonDepth, MAX_JSON_DEPTH } from '../../src/json/depth.js';

/** `levels` nested arrays around 1. */
const deepArray = (levels: number): unknown => JSON.parse(`${'['.repeat(levels)}1${']'.repeat(levels)}`);

describe('checkJsonDepth', () => {
  it(`accepts ${MAX_JSON_DEPTH} levels of objects and arrays and refuses one more, naming the field`, () => {
    expect(() => checkJsonDepth('h', deepArray(MAX_JSON_DEPTH))).not.toThrow();
    expect(() => checkJsonDepth('h', { a: deepArray(MAX_JSON_DEPTH - 1) })).not.toThrow();
    let thrown: unknown;
    try {
      checkJsonDepth('protectedHeader', { a: deepArray(MAX_JSON_DEPTH) });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(HsmBridgeError);
    expect(thrown).toMatchObject({ code: 'INVALID_ARGUMENT', message: `protectedHeader is nested too deeply (more than ${MAX_JSON_DEPTH} levels of objects and arrays)` });
  });

  it('walks a million levels without overflowing the stack, and counts a Buffer as a leaf', () => {
    expect(() => checkJsonDepth('x', deepArray(1_000_000))).toThrow(/nested too deeply/);
    expect(() => checkJsonDepth('x', { b: Buffer.alloc(10_000) })).not.toThrow();
    for (const leaf of [undefined, null, 'text', 12, true]) expect(() => checkJsonDepth('x', leaf)).not.toThrow();
  });
});
