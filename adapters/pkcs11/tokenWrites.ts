/**
 * Creating and destroying token objects without losing sight of other processes' objects (README.md,
 * "Replicas").
 *
 * SoftHSM's file store keeps, in each process, an index of the token's objects. A search rebuilds it from
 * the token directory only when the token's generation counter (a file) has moved since this process last
 * looked. But each create or destroy this process makes also moves the counter (read, add one, write) and
 * takes the new value as seen: a change another process made since this one's last search is then never
 * noticed, and the objects it created stay invisible here until some other process writes again. Measured
 * with two processes: B creates Y, A creates Z, and A's searches miss Y until B writes once more. Replicas
 * changing one key thus saw the current metadata revision vanish without its successor (a false
 * KEY_NOT_FOUND, for as long as the token stayed quiet) and missed a competing revision (both writers kept
 * theirs, and one rotation's version was lost after it had signed).
 *
 * So every token write here runs right after a search, with nothing in between: the index catches up, and
 * the write's own count hides nothing. What is left is a change another process makes in those
 * microseconds. A token that keeps its objects in the HSM (network HSMs) pays one search per write.
 * "Nothing in between" holds within the process too: each pair runs under the library's token lock
 * (tokenLock.ts), which every search of token objects takes as well, so no other worker thread searches
 * or writes meanwhile (keys are generated off the token, and only copied in here: versionObjects.ts).
 */
import pkcs11js from 'pkcs11js';
import type { Handle, Pkcs11Api } from './module.js';
import { withTokenLock } from './tokenLock.js';

const A = pkcs11js;
/** Matches nothing (no key name is a newline): the search is made for its side effect, the index. */
const NOTHING: pkcs11js.Template = [
  { type: A.CKA_CLASS, value: A.CKO_DATA },
  { type: A.CKA_LABEL, value: '\n' },
];

/** Brings this process's view of the token up to date (SoftHSM re-indexes on a search). */
export function catchUp(api: Pkcs11Api, session: Handle): void {
  withTokenLock(() => {
    api.C_FindObjectsInit(session, NOTHING);
    api.C_FindObjectsFinal(session);
  });
}

export function createTokenObject(api: Pkcs11Api, session: Handle, template: pkcs11js.Template): Handle {
  return withTokenLock(() => {
    catchUp(api, session);
    return api.C_CreateObject(session, template);
  });
}

/** A copy of `handle` (a session object made off the token) as a token object. */
export function copyIntoToken(api: Pkcs11Api, session: Handle, handle: Handle): Handle {
  return withTokenLock(() => {
    catchUp(api, session);
    return api.C_CopyObject(session, handle, [{ type: A.CKA_TOKEN, value: true }]);
  });
}

export function destroyTokenObject(api: Pkcs11Api, session: Handle, handle: Handle): void {
  withTokenLock(() => {
    catchUp(api, session);
    api.C_DestroyObject(session, handle);
  });
}
