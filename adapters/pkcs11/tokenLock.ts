/**
 * What the token workers of one PKCS#11 library share in the process, through SharedArrayBuffers, so that
 * they behave as one process and not as replicas of each other.
 *
 * The token lock: searches and reads of token objects, and token writes (tokenWrites.ts: each a search,
 * then the write), never overlap across threads. SoftHSM's file store indexes the token per process, not
 * per thread: a write on one thread between another thread's search and write would hide other
 * processes' changes again, and a token object created while another thread searches raced SoftHSM
 * writing its file (README.md, "Replicas"). Only the worker installs a lock; without one (token-side code
 * run in a test's thread) the sections just run.
 */
import { unavailable } from './errors.js';

let lock: Int32Array | undefined;
/** Sections of this thread now running: the lock is reentrant within a thread (a write's search). */
let depth = 0;
/** How long one wait for the lock lasts before it checks again (a holder frozen by the HSM keeps it). */
const WAIT_SLICE_MS = 50;
/** A worker gives up on a lock held this long (by a call the HSM does not answer): BACKEND_UNAVAILABLE. */
const LOCK_WAIT_MS = 10_000;

/** Revisions this process has published and is still checking (revisions.ts): a digest per slot. */
const CHECKED_SLOTS = 256;
const DIGEST_BYTES = 32;

/** The shared memory of one library, for the main thread to hand every worker of it. */
export interface TokenSharing {
  readonly lock: SharedArrayBuffer;
  /** CHECKED_SLOTS flags (Int32), then CHECKED_SLOTS digests. */
  readonly checked: SharedArrayBuffer;
  /** Bumped before every C_Finalize of the module: handles of an older value may name other objects now. */
  readonly generation: SharedArrayBuffer;
}

export const newTokenSharing = (): TokenSharing => ({
  lock: new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT),
  checked: new SharedArrayBuffer(CHECKED_SLOTS * (Int32Array.BYTES_PER_ELEMENT + DIGEST_BYTES)),
  generation: new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT),
});

let generation: Int32Array = new Int32Array(1);

export function installTokenSharing(sharing: TokenSharing): void {
  lock = new Int32Array(sharing.lock);
  beingChecked = new SharedDigestSet(sharing.checked);
  generation = new Int32Array(sharing.generation);
}

/** The module generation every worker of the library sees (sessions and handles belong to one). */
export const moduleGeneration = (): number => Atomics.load(generation, 0);

/** Called before C_Finalize: from now on, older handles are not to be used. */
export function endModuleGeneration(): void {
  Atomics.add(generation, 0, 1);
}

export function withTokenLock<T>(section: () => T): T {
  if (!lock || depth > 0) return run(section);
  const giveUpAt = Date.now() + LOCK_WAIT_MS;
  while (Atomics.compareExchange(lock, 0, 0, 1) !== 0) {
    if (Date.now() > giveUpAt) throw unavailable('the token is held by a call the HSM does not answer');
    Atomics.wait(lock, 0, 1, WAIT_SLICE_MS);
  }
  try {
    return run(section);
  } finally {
    Atomics.store(lock, 0, 0);
    Atomics.notify(lock, 0, 1);
  }
}

function run<T>(section: () => T): T {
  depth++;
  try {
    return section();
  } finally {
    depth--;
  }
}

/**
 * Digests (SHA-256, hex) of the metadata revisions this process has published and is still checking,
 * seen by every worker of the process: a revision without a witness in the token is known to be
 * unsettled only here (keyObjects.ts, pickCurrent). Without installed sharing, a plain Set (one thread).
 */
export interface DigestSet {
  add(digest: string): void;
  delete(digest: string): void;
  has(digest: string): boolean;
}

export let beingChecked: DigestSet = new Set<string>();

class SharedDigestSet implements DigestSet {
  private readonly flags: Int32Array;
  private readonly digests: Uint8Array;

  constructor(buffer: SharedArrayBuffer) {
    this.flags = new Int32Array(buffer, 0, CHECKED_SLOTS);
    this.digests = new Uint8Array(buffer, CHECKED_SLOTS * Int32Array.BYTES_PER_ELEMENT);
  }

  /** Takes a free slot (0 -> 1 writing, 2 once readable). With every slot taken, the digest goes unrecorded. */
  add(digest: string): void {
    const bytes = Buffer.from(digest, 'hex');
    for (let i = 0; i < CHECKED_SLOTS; i++) {
      if (Atomics.compareExchange(this.flags, i, 0, 1) !== 0) continue;
      this.digests.set(bytes, i * DIGEST_BYTES);
      Atomics.store(this.flags, i, 2);
      return;
    }
  }

  delete(digest: string): void {
    const i = this.slotOf(digest);
    if (i >= 0) Atomics.store(this.flags, i, 0);
  }

  has(digest: string): boolean {
    return this.slotOf(digest) >= 0;
  }

  private slotOf(digest: string): number {
    const bytes = Buffer.from(digest, 'hex');
    for (let i = 0; i < CHECKED_SLOTS; i++) {
      if (Atomics.load(this.flags, i) !== 2) continue;
      if (bytes.equals(this.digests.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES))) return i;
    }
    return -1;
  }
}
