/**
 * One depth cap for all JSON hsm-bridge takes in: request fields, JOSE headers inside base64url, FSPIOP
 * bodies and decrypted fields. JSON.parse accepts nesting thousands of levels deep without complaint,
 * but everything that walks JSON recursively afterwards (JSON.stringify, canonical forms, serialisers)
 * overflows the stack on it; so such JSON is refused where it enters.
 */
import { invalid } from '../errors.js';

/** Containers inside containers; the outermost object or array is level 1. FSPIOP bodies and JOSE headers are a handful of levels deep. */
export const MAX_JSON_DEPTH = 64;

/** Whether a value nests objects and arrays deeper than `max` (a Buffer is a leaf); walked without recursion. */
export function exceedsDepth(value: unknown, max: number = MAX_JSON_DEPTH): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (node === null || typeof node !== 'object' || Buffer.isBuffer(node)) continue;
    if (depth + 1 > max) return true;
    for (const child of Array.isArray(node) ? node : Object.values(node)) stack.push([child, depth + 1]);
  }
  return false;
}

/** INVALID_ARGUMENT naming `field` when the value nests deeper than MAX_JSON_DEPTH. */
export function checkJsonDepth(field: string, value: unknown): void {
  if (exceedsDepth(value)) throw invalid(`${field} is nested too deeply (more than ${MAX_JSON_DEPTH} levels of objects and arrays)`);
}
