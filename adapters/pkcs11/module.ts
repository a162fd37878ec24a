/**
 * Loading and initializing a PKCS#11 module, shared per library path within the process. Cryptoki state
 * is process-global (a second C_Initialize fails, one C_Finalize ends every session of the process), so
 * backends on the same library (two "replicas" in one test, or two tokens) share one instance, counted by
 * reference, and a reinitialization after a device failure happens once for all of them.
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

const loaded = new Map<string, Pkcs11Module>();

export class Pkcs11Module {
  private refs = 0;
  /** Bumped by every C_Initialize: sessions and handles from an older generation are dead. */
  generation = 0;
  private reinitializing: Promise<void> | undefined;

  private constructor(
    readonly library: string,
    readonly api: Pkcs11Api,
  ) {}

  /** The loaded and initialized module for `library`; each call must be paired with release(). */
  static acquire(library: string): Pkcs11Module {
    let mod = loaded.get(library);
    if (!mod) {
      const api = new pkcs11js.PKCS11();
      try {
        api.load(library);
      } catch (e) {
        throw unavailable(`cannot load the PKCS#11 library ${library}: ${(e as Error).message}`);
      }
      mod = new Pkcs11Module(library, api);
      mod.initialize();
      loaded.set(library, mod);
    }
    mod.refs++;
    return mod;
  }

  release(): void {
    if (--this.refs > 0) return;
    loaded.delete(this.library);
    try {
      this.api.C_Finalize();
    } catch {
      // Already finalized by a failed reinitialization: nothing left to release.
    }
    try {
      this.api.close();
    } catch {
      // The library stays mapped; harmless at shutdown.
    }
  }

  /**
   * C_Finalize + C_Initialize, once per generation: a caller that saw generation `seen` fail asks for a
   * new one; if another backend already made it, this returns at once.
   */
  async reinitialize(seen: number): Promise<void> {
    if (this.generation !== seen) return;
    if (!this.reinitializing) {
      this.reinitializing = (async () => {
        try {
          this.api.C_Finalize();
        } catch {
          // The module may already consider itself finalized (CKR_CRYPTOKI_NOT_INITIALIZED).
        }
        this.initialize();
      })().finally(() => {
        this.reinitializing = undefined;
      });
    }
    return this.reinitializing;
  }

  private initialize(): void {
    try {
      // OS locking: without it SoftHSM (and others) assume a single-threaded caller, and the *Async calls
      // run on libuv's thread pool.
      this.api.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (e) {
      if (ckrOf(e) !== CKR.CRYPTOKI_ALREADY_INITIALIZED) throw unavailable(`C_Initialize failed (${ckrName(e)})`, e);
    }
    this.generation++;
  }
}
