/**
 * One entry per PKCS#11 library path in this process, on the main thread. Cryptoki state is per process:
 * backends on the same library (two "replicas" in one test, two tokens of one HSM) share it, so the
 * library is finalized when the last of them closes, and a reinitialization after a device failure
 * happens once for all of them. The C_Finalize and C_Initialize themselves run in a control worker.
 */
import { unavailable } from './errors.js';
import { newTokenSharing, type TokenSharing } from './tokenLock.js';

const shared = new Map<string, SharedModule>();

export class SharedModule {
  private refs = 0;
  /** Bumped by every reinitialization: sessions opened in an older generation are dead. */
  generation = 0;
  private reinitializing: Promise<void> | undefined;
  /** Each connection's wait for its calls in flight, and whether one of its calls is stuck in the HSM. */
  private readonly users = new Set<{ drain(): Promise<void>; stuck(): boolean }>();
  /** Per token: what its workers share (tokenLock.ts): a lock, the revisions being checked, the generation. */
  private readonly sharings = new Map<string, TokenSharing>();
  /** The tail of the connections' openings and closings on this library, which run one at a time. */
  private turns: Promise<unknown> = Promise.resolve();

  private constructor(readonly library: string) {}

  /** Adds a connection; returns its removal. */
  register(user: { drain(): Promise<void>; stuck(): boolean }): () => void {
    this.users.add(user);
    return () => this.users.delete(user);
  }

  /** What the workers on one token of this library share. */
  sharingFor(token: string): TokenSharing {
    let sharing = this.sharings.get(token);
    if (!sharing) {
      sharing = newTokenSharing();
      this.sharings.set(token, sharing);
    }
    return sharing;
  }

  /**
   * Runs a connection's opening or closing after the others' on this library: C_Initialize from two
   * threads at once is not safe (SoftHSM: CKR_SLOT_ID_INVALID at the second connection's first call), and
   * nor is C_Finalize while another connection's workers are still being torn down (SoftHSM: SIGSEGV).
   */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const turn = this.turns.then(work, work);
    this.turns = turn.catch(() => undefined);
    return turn;
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
    this.reinitializing ??= Promise.all([...this.users].map((u) => u.drain()))
      .then(() => {
        // C_Finalize while another thread is inside a call can crash the library: wait for the HSM to return them.
        if ([...this.users].some((u) => u.stuck())) throw unavailable('calls are still waiting for the HSM; reinitializing once they return');
      })
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
