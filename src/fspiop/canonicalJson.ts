/**
 * The canonical JSON text of a parsed JSON value: object members sorted by key (UTF-16 code units, as
 * Array.prototype.sort compares), no whitespace, JSON.stringify's string escaping and number forms.
 * It is byte for byte what safe-stable-stringify gives for a value from JSON.parse, which is the form the
 * Mojaloop reference validator re-serialises a body to before it verifies the signature.
 *
 * Like JSON.stringify, members without a JSON value (undefined, functions) are dropped and array slots
 * holding one become null, and toJSON is honoured. Bigints are refused, and so is nesting deeper than
 * MAX_JSON_DEPTH (which also stops a cycle): JSON.parse builds a 100,000-level array without complaint,
 * and a recursive writer would then overflow the stack. FSPIOP bodies are a handful of levels deep.
 */

import { MAX_JSON_DEPTH } from '../json/depth.js';

export { MAX_JSON_DEPTH };

/** The value nests objects and arrays more than MAX_JSON_DEPTH levels deep. */
export class JsonTooDeepError extends RangeError {
  override readonly name = 'JsonTooDeepError';
  constructor() {
    super(`body is nested too deeply (more than ${MAX_JSON_DEPTH} levels of objects and arrays)`);
  }
}

/** Throws JsonTooDeepError for nesting beyond MAX_JSON_DEPTH and TypeError for a value that is not JSON. */
export function canonicalJson(value: unknown): string {
  return write(value, 0);
}

/** `depth` counts the containers around `value`; the recursion is bounded by MAX_JSON_DEPTH. */
function write(value: unknown, depth: number): string {
  // A caller's object may hold a Date or similar: serialise what JSON.stringify would (toJSON once, not again on its result).
  if (typeof value === 'object' && value !== null && typeof (value as { toJSON?: unknown }).toJSON === 'function') value = (value as { toJSON(): unknown }).toJSON();
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      // JSON.parse turns 1e999 into Infinity; both JSON.stringify and the reference write null.
      return Number.isFinite(value) ? String(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object':
      if (value === null) return 'null';
      if (depth >= MAX_JSON_DEPTH) throw new JsonTooDeepError();
      return Array.isArray(value) ? writeArray(value, depth + 1) : writeObject(value as Record<string, unknown>, depth + 1);
    default:
      throw new TypeError(`canonicalJson: a ${typeof value} is not a JSON value`);
  }
}

function writeArray(items: readonly unknown[], depth: number): string {
  if (items.length === 0) return '[]';
  let out = '[' + writeItem(items[0], depth);
  for (let i = 1; i < items.length; i++) out += ',' + writeItem(items[i], depth);
  return out + ']';
}

/** As in JSON.stringify, an array slot without a JSON value is written as null. */
function writeItem(item: unknown, depth: number): string {
  return item === undefined || typeof item === 'function' || typeof item === 'symbol' ? 'null' : write(item, depth);
}

function writeObject(object: Record<string, unknown>, depth: number): string {
  const keys = Object.keys(object).sort();
  let out = '{';
  let first = true;
  for (const key of keys) {
    const member = object[key];
    // JSON.parse never yields undefined; a caller's object may, and JSON drops such members.
    if (member === undefined || typeof member === 'function' || typeof member === 'symbol') continue;
    out += (first ? '' : ',') + JSON.stringify(key) + ':' + write(member, depth);
    first = false;
  }
  return out + '}';
}
