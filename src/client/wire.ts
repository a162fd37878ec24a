/**
 * Binary values between the client's Buffers and the API's JSON: every Buffer in a request goes as base64,
 * and every field an answer's schema marks `format: byte` comes back as a Buffer.
 */
import type { JsonSchema } from '../api/declaration.js';

/** The request as JSON: Buffers (and other byte arrays) become base64 strings, at any depth. */
export function toWire(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  if (Array.isArray(value)) return value.map(toWire);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => [k, toWire(v)]));
  }
  return value;
}

const isByte = (schema: JsonSchema | undefined) => schema?.type === 'string' && schema.format === 'byte';

/** The branches a value may match: the schema itself, or its oneOf/anyOf/allOf alternatives. */
export function branches(schema: JsonSchema): JsonSchema[] {
  const alternatives = [schema.oneOf, schema.anyOf, schema.allOf].flatMap((a) => (Array.isArray(a) ? (a as JsonSchema[]) : []));
  return alternatives.length > 0 ? [schema, ...alternatives.flatMap(branches)] : [schema];
}

/** The answer with its base64 fields as Buffers, as far as the schema says where they are. */
export function fromWire(value: unknown, schema: JsonSchema | undefined): unknown {
  if (schema === undefined) return value;
  const options = branches(schema);
  if (typeof value === 'string') return options.some(isByte) ? Buffer.from(value, 'base64') : value;
  if (Array.isArray(value)) {
    const items = options.map((s) => s.items as JsonSchema | undefined).find((s) => s !== undefined);
    return value.map((v) => fromWire(v, items));
  }
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const field = options.map((s) => (s.properties as Record<string, JsonSchema> | undefined)?.[k]).find((s) => s !== undefined)
        ?? options.map((s) => s.additionalProperties).find((s): s is JsonSchema => typeof s === 'object' && s !== null);
      out[k] = fromWire(v, field);
    }
    return out;
  }
  return value;
}
