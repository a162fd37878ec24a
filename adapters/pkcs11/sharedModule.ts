/**
 * One entry per PKCS#11 library path in this process, on the main thread. Cryptoki state is per process:
 * backends on the same library (two "replicas" in one test, two tokens of one HSM) share it, so the
 * library is finalized when the last of them closes, and a reinitialization after a device failure
 * happens once for all of them. The C_Finalize and C_Initialize themselves run in a control worker.
 */
const shared = new Map<string, SharedModule>();

export class SharedModule {
  private refs = 0;
  /** Bumped by every reinitialization: sessions opened in an older generation are dead. */
  generation = 0;
  private reinitializing: Promise<void> | undefined;

  private constructor(readonly library: string) {}

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
   * Runs `reinitialize` (C_Finalize + C_Initialize) once per generation: a caller that saw generation
   * `seen` fail asks for a new one; if another backend already made it, this returns at once.
   */
  async reinitialize(seen: number, reinitialize: () => Promise<void>): Promise<void> {
    if (this.generation !== seen) return;
    this.reinitializing ??= reinitialize()
      .then(() => {
        this.generation++;
      })
      .finally(() => {
        this.reinitializing = undefined;
      });
    return this.reinitializing;
  }
}
