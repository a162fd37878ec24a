/**
 * One entry per PKCS#11 library path in this process, on the main thread. Cryptoki state is per process:
 * backends on the same library (two "replicas" in one test, two tokens of one HSM) share it, so the
 * library is finalized when the last of them closes, and a reinitialization after a device failure
 * happens once for all of them. The C_Finalize and C_Initialize themselves run in a control worker.
 */
import { newTokenSharing } from './tokenLock.js';

const shared = new Map<string, SharedModule>();

export class SharedModule {
  private refs = 0;
  /** Bumped by every reinitialization: sessions opened in an older generation are dead. */
  generation = 0;
  private reinitializing: Promise<void> | undefined;
  /** Each connection's wait for its calls in flight: C_Finalize under a call on another thread is unsafe. */
  private readonly drains = new Set<() => Promise<void>>();
  /** What every worker on this library shares: the token lock and the revisions being checked (tokenLock.ts). */
  readonly sharing = newTokenSharing();

  private constructor(readonly library: string) {}

  /** Adds a connection's drain; returns its removal. */
  register(drain: () => Promise<void>): () => void {
    this.drains.add(drain);
    return () => this.drains.delete(drain);
  }

  /** Each call must be paired with release(). */
  static acquire(library: string): SharedModule {
    let mod = shared.get(library);
    if (!mod) {
      mod = new SharedModule(library);
      shared.set(library, mod);
    }
    mod.refs++;
    return mod;
  }

  /** Whether this was the last user, which must then finalize the module. */
  release(): boolean {
    if (--this.refs > 0) return false;
    shared.delete(this.library);
    return true;
  }

  /**
   * Runs `reinitialize` (C_Finalize + C_Initialize) once per generation, after every connection on the
   * library has drained: a caller that saw generation `seen` fail asks for a new one; if another
   * connection already made it, this returns at once.
   */
  async reinitialize(seen: number, reinitialize: () => Promise<void>): Promise<void> {
    if (this.generation !== seen) return;
    this.reinitializing ??= Promise.all([...this.drains].map((drain) => drain()))
      .then(reinitialize)
      .then(() => {
        this.generation++;
      })
      .finally(() => {
        this.reinitializing = undefined;
      });
    return this.reinitializing;
  }
}
