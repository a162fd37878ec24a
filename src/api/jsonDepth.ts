/**
 * One depth cap for every JSON-valued field of every request (headers, JWKs, JSON serializations, FSPIOP
 * bodies). Code that walks JSON recursively (JSON.stringify, canonical forms, ajv) overflows the stack on
 * a few thousand levels that JSON.parse accepts without complaint, so the pipeline refuses them first.
 */
import { invalid } from '../errors.js';
// The FSPIOP canonical form's cap, deeper than any JOSE header or FSPIOP body needs: one cap for all JSON.
import { MAX_JSON_DEPTH } from '../fspiop/canonicalJson.js';
import type { JsonSchema } from './declaration.js';

/** The depth of a value, counting objects and arrays (a Buffer is a leaf); walked without recursion. */
function exceedsDepth(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (node === null || typeof node !== 'object' || Buffer.isBuffer(node)) continue;
    if (depth + 1 > max) return true;
    for (const child of Array.isArray(node) ? node : Object.values(node)) stack.push([child, depth + 1]);
  }
  return false;
}

export function checkJsonDepth(field: string, value: unknown): void {
  if (exceedsDepth(value, MAX_JSON_DEPTH)) {
    throw invalid(`${field} is nested too deeply (more than ${MAX_JSON_DEPTH} levels of objects and arrays)`);
  }
}

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
