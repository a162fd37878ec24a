/**
 * Limits on the work one JWS or JWE may ask for. Each signature or recipient can cost a public-key
 * operation (a backend RSA decryption for a JWE), so a request carries at most a few, never the same one
 * twice, and a key named without a version is tried at its two newest versions only (the primary and the
 * one it replaced, which is what a rotation in progress needs).
 */
import { invalid } from '../errors.js';

export const MAX_JWS_SIGNATURES = 16;
export const MAX_JWE_RECIPIENTS = 16;
export const MAX_VERSIONS_TRIED = 2;

/** Refuses a value seen twice (undefined values are ignored): a repeat costs another operation and proves nothing more. */
export function refuseRepeats(values: ReadonlyArray<string | undefined>, message: string): void {
  const seen = new Set<string>();
  for (const v of values) {
    if (v === undefined) continue;
    if (seen.has(v)) throw invalid(message);
    seen.add(v);
  }
}
