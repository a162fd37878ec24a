import { expect } from 'vitest';
import { HsmBridgeError, type ErrorCode } from '../../src/errors.js';

/**
 * Runs a synchronous call that must fail with an HsmBridgeError of `code`, whose message matches
 * `message` and contains none of `secrets` (compared case-insensitively: hex has two spellings).
 */
export function expectHsmError(run: () => unknown, code: ErrorCode, options: { message?: RegExp; secrets?: readonly string[] } = {}): HsmBridgeError {
  let error: unknown;
  try {
    run();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(HsmBridgeError);
  const e = error as HsmBridgeError;
  expect(e.code).toBe(code);
  if (options.message) expect(e.message).toMatch(options.message);
  for (const secret of options.secrets ?? []) expect(e.message.toUpperCase()).not.toContain(secret.toUpperCase());
  return e;
}
