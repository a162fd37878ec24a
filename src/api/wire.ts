/**
 * Small wire rules the operation declarations share. proto3 cannot leave a plain string unset, so on
 * gRPC an empty string means "not given"; JSON objects that REST carries as JSON travel on gRPC as JSON
 * text; a required message field the client left unset is INVALID_ARGUMENT.
 */
import { invalid } from '../errors.js';
import type { KeyUsed } from '../payment/index.js';

export const given = (value: string): string | undefined => (value === '' ? undefined : value);

/** A gRPC message field that must be set (proto-loader gives null for an unset one). */
export function required<T>(value: T | null | undefined, field: string): T {
  if (value === null || value === undefined) throw invalid(`${field} is required`);
  return value;
}

/** A JSON object carried as text; empty = absent. */
export function jsonObjectText(field: string, text: string): Record<string, unknown> | undefined {
  if (text === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw invalid(`${field} must be a JSON object (as text)`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(`${field} must be a JSON object (as text)`);
  return value as Record<string, unknown>;
}

/** A JOSE object carried as text: a compact serialization as is, or the JSON text of a JSON serialization. */
export function joseObjectText(field: string, text: string): string | object {
  if (text === '') throw invalid(`${field} is required`);
  return text.trimStart().startsWith('{') ? jsonObjectText(field, text)! : text;
}

/** A JOSE serialization as gRPC carries it: compact as is, JSON as text. */
export const serialized = (value: string | object): string => (typeof value === 'string' ? value : JSON.stringify(value));

/** An empty repeated field means "not given". */
export const givenList = <T>(values: readonly T[]): readonly T[] | undefined => (values.length === 0 ? undefined : values);

/** A key a payment call used, as both transports answer it. */
export const keyUsedView = (k: KeyUsed) => ({ keyName: k.keyName, keyVersion: k.keyVersion, keyCheckValue: k.keyCheckValue });

/** An object with only the members that are set, so that a service can tell which were given. */
export const definedOnly = <T extends object>(value: T): T =>
  Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
