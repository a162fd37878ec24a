/**
 * Keys the service keeps for itself (the import wrapping key; the audit key has its own stage): no API
 * operation may name one, so that no caller can decrypt with, disable, destroy or sign with it.
 */
import { invalid } from '../errors.js';

/** The check for the pipeline's admit stage: refuses a request that names one of `reserved` ([name, what it is]). */
export function reservedKeyNames(reserved: ReadonlyArray<readonly [string, string]>): (keyNames: readonly string[]) => void {
  const byName = new Map(reserved);
  return (keyNames) => {
    for (const name of keyNames) {
      const what = byName.get(name);
      if (what !== undefined) throw invalid(`the key name ${name} is reserved for ${what}`);
    }
  };
}
