/**
 * The client's typed methods are generated from the operation declarations (scripts/generateClient.ts):
 * the committed file must be what the generator writes now, and every declared operation must have its
 * method, calling that operation.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { operations } from '../../src/api/operations/index.js';
import { ClientOperations, operationMethods } from '../../src/client/index.js';
import { GENERATED_PATH, generateClientOperations, typeOf } from '../../scripts/generateClient.js';

describe('generated client operations', () => {
  it('are up to date with the declarations (else: npm run generate:client)', () => {
    expect(readFileSync(GENERATED_PATH, 'utf8')).toBe(generateClientOperations());
  });

  it('have one method per declared operation, and each calls its operation with path parameters and body together', async () => {
    expect(Object.keys(operationMethods).sort()).toEqual(operations.map((o) => o.name).sort());
    expect(new Set(Object.values(operationMethods)).size).toBe(operations.length);
    const calls: Array<[string, Record<string, unknown>]> = [];
    class Recorder extends ClientOperations {
      override async call<T>(operation: string, input: Record<string, unknown> = {}): Promise<T> {
        calls.push([operation, input]);
        return undefined as T;
      }
    }
    const recorder = new Recorder() as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    for (const op of operations) {
      const params = [...op.rest.path.matchAll(/:(\w+)/g)].map((m) => m[1]!);
      calls.length = 0;
      await recorder[operationMethods[op.name]!]!(...params.map((p) => `${p}-value`), ...(op.rest.body ? [{ field: 1 }] : []));
      expect(calls, op.name).toEqual([[op.name, { ...Object.fromEntries(params.map((p) => [p, `${p}-value`])), ...(op.rest.body ? { field: 1 } : {}) }]]);
    }
  });

  it('map JSON Schema to the types callers see: base64 as Buffer, enums as literals, required or optional fields, unions', () => {
    expect(typeOf({ type: 'string', format: 'byte' })).toBe('Buffer');
    expect(typeOf({ type: 'string', enum: ['A', 'B'] })).toBe('"A" | "B"');
    expect(typeOf({ type: 'array', items: { type: 'integer' } })).toBe('Array<number>');
    expect(typeOf({ type: 'object', properties: { a: { type: 'boolean' }, b: { type: 'string' } }, required: ['a'] })).toBe('{\n  a: boolean;\n  b?: string;\n}');
    expect(typeOf({ type: 'object', additionalProperties: { type: 'string' } })).toBe('Record<string, string>');
    expect(typeOf({ oneOf: [{ type: 'object', properties: { x: { type: 'string' } }, required: ['x'] }, { type: 'object', properties: { y: { type: 'number' } }, required: ['y'] }] })).toBe('{\n  x: string;\n} | {\n  y: number;\n}');
    // Branches that only say which fields are required leave one object type.
    expect(typeOf({ type: 'object', properties: { m: { type: 'string' } }, oneOf: [{ required: ['m'] }] })).toBe('{\n  m?: string;\n}');
  });
});
