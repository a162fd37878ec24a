/**
 * The PKCS#11 module as one token worker sees it (worker/tokenWorker.ts). Each worker loads the library
 * itself; Cryptoki state is per process, so the first C_Initialize in the process does the work and the
 * others answer CKR_CRYPTOKI_ALREADY_INITIALIZED, which is success (sessions and login are shared by every
 * thread). One C_Finalize ends every session of the process, so only the control worker calls it, when
 * the main thread says so (sharedModule.ts).
 */
import pkcs11js from 'pkcs11js';
import { CKR, ckrName, ckrOf, unavailable } from './errors.js';

export type Pkcs11Api = pkcs11js.PKCS11;
export type Handle = pkcs11js.Handle;

/**
 * pkcs11js passes an empty Buffer as a NULL pointer, which tokens refuse (CKR_ARGUMENTS_BAD) even
 * where a zero length is valid (an empty plaintext, an HMAC of nothing). An empty view of a non-empty
 * buffer has a real pointer.
 */
export const notNull = (b: Buffer) => (b.length > 0 ? b : Buffer.alloc(1).subarray(0, 0));

/**
 * Loads `library` in this thread and makes sure the module is initialized. `own` says this instance's
 * C_Initialize did the work although another thread initialized the library first: a module that gives
 * each loaded instance state of its own (p11-kit-client.so), which this thread may finalize alone.
 */
export function loadModule(library: string): { api: Pkcs11Api; own: boolean } {
  const api = new pkcs11js.PKCS11();
  try {
    api.load(library);
  } catch (e) {
    throw unavailable(`cannot load the PKCS#11 library ${library}: ${(e as Error).message}`);
  }
  return { api, own: initialize(api) };
}

/** C_Initialize; false when the module was initialized already (by another thread: shared state). */
export function initialize(api: Pkcs11Api): boolean {
  try {
    // OS locking: without it SoftHSM (and others) assume a single-threaded caller; every worker calls at once.
    api.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    return true;
  } catch (e) {
    if (ckrOf(e) !== CKR.CRYPTOKI_ALREADY_INITIALIZED) throw unavailable(`C_Initialize failed (${ckrName(e)})`, e);
    return false;
  }
}

/** C_Finalize, for the whole process; a module that already considers itself finalized is fine. */
export function finalize(api: Pkcs11Api): void {
  try {
    api.C_Finalize();
  } catch {
    // CKR_CRYPTOKI_NOT_INITIALIZED: a failed reinitialization left it finalized.
  }
}
