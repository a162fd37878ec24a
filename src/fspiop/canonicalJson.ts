/**
 * The canonical JSON text of a parsed JSON value: object members sorted by key (UTF-16 code units, as
 * Array.prototype.sort compares), no whitespace, JSON.stringify's string escaping and number forms.
 * It is byte for byte what safe-stable-stringify gives for a value from JSON.parse, which is the form the
 * Mojaloop reference validator re-serialises a body to before it verifies the signature.
 *
 * Like JSON.stringify, members without a JSON value (undefined, functions) are dropped and array slots
 * holding one become null, and toJSON is honoured. Bigints and cycles are refused: a body is a tree of
 * JSON values.
 */
export function canonicalJson(value: unknown): string {
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
      // A caller's object may hold a Date or similar: serialise what JSON.stringify would.
      if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return canonicalJson((value as { toJSON(): unknown }).toJSON());
      return Array.isArray(value) ? canonicalArray(value) : canonicalObject(value as Record<string, unknown>);
    default:
      throw new TypeError(`canonicalJson: a ${typeof value} is not a JSON value`);
  }
}

function canonicalArray(items: readonly unknown[]): string {
  if (items.length === 0) return '[]';
  let out = '[' + canonicalItem(items[0]);
  for (let i = 1; i < items.length; i++) out += ',' + canonicalItem(items[i]);
  return out + ']';
}

/** As in JSON.stringify, an array slot without a JSON value is written as null. */
function canonicalItem(item: unknown): string {
  return item === undefined || typeof item === 'function' || typeof item === 'symbol' ? 'null' : canonicalJson(item);
}

function canonicalObject(object: Record<string, unknown>): string {
  const keys = Object.keys(object).sort();
  let out = '{';
  let first = true;
  for (const key of keys) {
    const member = object[key];
    // JSON.parse never yields undefined; a caller's object may, and JSON drops such members.
    if (member === undefined || typeof member === 'function' || typeof member === 'symbol') continue;
    out += (first ? '' : ',') + JSON.stringify(key) + ':' + canonicalJson(member);
    first = false;
  }
  return out + '}';
}
