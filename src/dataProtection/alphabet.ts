/**
 * The characters FF1 values are written in. By default the first `radix` of 0-9 then a-z (radix 10: digits,
 * an MSISDN; radix 36: lower-case alphanumerics, as NIST's samples); or an alphabet the caller gives, one
 * character per numeral, for other formats (upper-case account ids, hex). A value keeps its length and
 * alphabet through encryption.
 */
import { invalid } from '../errors.js';
import { MAX_NUMERALS, minLength } from './ff1.js';
import { isWellFormed } from './text.js';

const DEFAULT_SYMBOLS = '0123456789abcdefghijklmnopqrstuvwxyz';
/** Most characters an alphabet of the caller's may have. */
export const MAX_ALPHABET = 256;

export interface Alphabet {
  readonly radix: number;
  readonly symbols: readonly string[];
  readonly numeralOf: ReadonlyMap<string, number>;
  /** The shortest value FF1 takes in this radix (radix^length >= 1,000,000). */
  readonly minLength: number;
}

/** The alphabet of a request: radix alone (2 to 36), an alphabet alone, or both when they agree. */
export function alphabetOf(radix: unknown, alphabet: unknown): Alphabet {
  let symbols: string[];
  if (alphabet === undefined) {
    if (typeof radix !== 'number' || !Number.isInteger(radix) || radix < 2 || radix > DEFAULT_SYMBOLS.length) {
      throw invalid(`radix must be a whole number from 2 to ${DEFAULT_SYMBOLS.length} (or give an alphabet)`);
    }
    symbols = Array.from(DEFAULT_SYMBOLS.slice(0, radix));
  } else {
    if (typeof alphabet !== 'string' || !isWellFormed(alphabet)) throw invalid('alphabet must be a string of distinct characters (well-formed Unicode)');
    symbols = Array.from(alphabet);
    if (symbols.length < 2 || symbols.length > MAX_ALPHABET || new Set(symbols).size !== symbols.length) {
      throw invalid(`alphabet must have 2 to ${MAX_ALPHABET} distinct characters`);
    }
    if (radix !== undefined && radix !== symbols.length) throw invalid(`radix ${String(radix)} does not match the alphabet's ${symbols.length} characters`);
  }
  return { radix: symbols.length, symbols, numeralOf: new Map(symbols.map((c, i) => [c, i])), minLength: minLength(symbols.length) };
}

/** A value as numerals; INVALID_ARGUMENT (that value's) naming what is wrong, never the value itself. */
export function numeralsOf(alphabet: Alphabet, value: unknown): number[] {
  if (typeof value !== 'string') throw invalid('a value must be a string');
  // Each numeral is one or two UTF-16 units: a value longer than twice the limit is refused unread.
  if (value.length > 2 * MAX_NUMERALS) throw invalid(`a value is longer than ${MAX_NUMERALS} characters`);
  const numerals: number[] = [];
  if (!isWellFormed(value)) throw invalid('a value must be well-formed Unicode (no lone surrogate)');
  for (const c of value) {
    const n = alphabet.numeralOf.get(c);
    if (n === undefined) throw invalid(`a value has a character outside the radix-${alphabet.radix} alphabet`);
    numerals.push(n);
  }
  if (numerals.length < alphabet.minLength) {
    throw invalid(`a value is too short for FF1: radix^length must be at least 1,000,000, so at least ${alphabet.minLength} characters in radix ${alphabet.radix}`);
  }
  if (numerals.length > MAX_NUMERALS) throw invalid(`a value is longer than ${MAX_NUMERALS} characters`);
  return numerals;
}

export const textOf = (alphabet: Alphabet, numerals: readonly number[]): string => numerals.map((n) => alphabet.symbols[n]).join('');
