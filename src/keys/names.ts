import { invalid } from '../errors.js';

declare const keyNameBrand: unique symbol;
declare const keyVersionBrand: unique symbol;

/** A key's name, checked once at the edge: letters, digits, '.', '_' and '-', 1 to 64 characters. */
export type KeyName = string & { readonly [keyNameBrand]: true };
/** A key version: 1 for the first, one more on each rotation. */
export type KeyVersion = number & { readonly [keyVersionBrand]: true };

const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export const isKeyName = (value: unknown): value is KeyName => typeof value === 'string' && KEY_NAME.test(value);

export function parseKeyName(value: unknown): KeyName {
  if (!isKeyName(value)) {
    throw invalid('key name must be 1-64 characters of A-Z a-z 0-9 . _ - and start with a letter or digit');
  }
  return value as KeyName;
}

export const MAX_KEY_VERSION = 0x7fffffff;

export function parseKeyVersion(value: unknown): KeyVersion {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_KEY_VERSION) {
    throw invalid('key version must be a whole number from 1');
  }
  return value as KeyVersion;
}
