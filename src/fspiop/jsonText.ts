/**
 * What JSON.parse lets through but a signature check must not: duplicate member names and deep nesting.
 *
 * RFC 8259 §4 leaves duplicate names to the implementation: JSON.parse keeps the last, other parsers the
 * first. When we verify a signature over the canonical form of a parsed body, {"amount":"1","amount":"1000"}
 * would pass as {"amount":"1000"} while a first-wins parser downstream reads "1"; so such a body is refused.
 * Deep nesting is refused because the canonical writer, and JSON.stringify when a body is handed back,
 * recurse (JSON.parse itself does not).
 */
import { JsonTooDeepError, MAX_JSON_DEPTH } from './canonicalJson.js';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

export type JsonBody =
  | { readonly kind: 'json'; readonly value: unknown }
  | { readonly kind: 'not-json' }
  /** JSON, but not to be used: too deep, or a member name given twice. */
  | { readonly kind: 'refused'; readonly reason: string };

export function parseJsonBody(text: string): JsonBody {
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch {
    return { kind: 'not-json' };
  }
  const reason = structureProblem(text);
  return reason === undefined ? { kind: 'json', value } : { kind: 'refused', reason };
}

/**
 * One pass over a text JSON.parse has accepted (the scan relies on that): the member names of each open
 * object, decoded as JSON.parse decodes them, and the number of open containers.
 */
function structureProblem(text: string): string | undefined {
  const open: (Set<string> | undefined)[] = []; // per open container: an object's names so far, or undefined for an array
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = closingQuote(text, i);
      const names = open[open.length - 1];
      if (names !== undefined && nextNonBlank(text, end + 1) === COLON) {
        const raw = text.slice(i + 1, end);
        // Escapes make one name several texts ("a" and "\u0061"): compare decoded names.
        const name = raw.includes('\\') ? (JSON.parse(text.slice(i, end + 1)) as string) : raw;
        if (names.has(name)) return 'the body has a duplicate member name';
        names.add(name);
      }
      i = end;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (open.length === MAX_JSON_DEPTH) return new JsonTooDeepError().message;
      open.push(c === OPEN_OBJECT ? new Set() : undefined);
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      open.pop();
    }
  }
  return undefined;
}

/** The index of the quote that closes the string opening at `start`; a backslash escapes the next character. */
function closingQuote(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === BACKSLASH) i++;
    else if (c === QUOTE) return i;
  }
  return text.length; // unreachable for parsed JSON; ends the scan rather than looping
}

/** The next character that is not JSON whitespace (space, tab, line feed, carriage return). */
function nextNonBlank(text: string, from: number): number {
  let i = from;
  for (let c = text.charCodeAt(i); c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d; c = text.charCodeAt(++i));
  return text.charCodeAt(i);
}
