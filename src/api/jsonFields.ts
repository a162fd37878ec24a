/**
 * The JSON-valued fields of an operation's request, found from its REST body schema, for the pipeline's
 * depth cap (src/json/depth.ts): each such field is checked once the request is decoded, on both
 * transports, before any service sees it.
 */
import type { JsonSchema } from './declaration.js';

const isFreeForm = (schema: JsonSchema): boolean =>
  (schema.type === 'object' && schema.additionalProperties === true) ||
  (Array.isArray(schema.oneOf) && (schema.oneOf as JsonSchema[]).some(isFreeForm)) ||
  // A field with no type at all takes any JSON value.
  (schema.type === undefined && schema.oneOf === undefined && schema.properties === undefined);

/**
 * The dot paths of a request schema's free-form JSON fields (objects of any members, or values of any
 * type), found by walking its closed objects: the fields the depth cap applies to.
 */
export function jsonFieldPaths(schema: JsonSchema | undefined, prefix = ''): string[] {
  const properties = schema?.properties as Record<string, JsonSchema> | undefined;
  if (!properties) return [];
  return Object.entries(properties).flatMap(([name, field]) => {
    const path = prefix + name;
    if (isFreeForm(field)) return [path];
    return field.type === 'object' ? jsonFieldPaths(field, `${path}.`) : [];
  });
}

/** The value at a dot path of a decoded request, if every step is an object. */
export function valueAt(input: unknown, path: string): unknown {
  let node: unknown = input;
  for (const step of path.split('.')) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[step];
  }
  return node;
}
