/**
 * One lock per PKCS#11 library in the process, shared by its token workers through a SharedArrayBuffer:
 * searches of token objects and token writes (tokenWrites.ts: each a search, then the write) never
 * overlap across threads. SoftHSM's file store indexes the token per process, not per thread: a write
 * on one thread between another thread's search and write would hide other processes' changes again,
 * and a token object created while another thread searches raced SoftHSM writing its file (README.md,
 * "Replicas"). Only the worker installs a lock; without one (token-side code run in a test's thread) the
 * sections just run.
 */
let lock: Int32Array | undefined;
/** Sections of this thread now running: the lock is reentrant within a thread (a write's search). */
let depth = 0;
/** How long one wait for the lock lasts before it checks again (a holder frozen by the HSM keeps it). */
const WAIT_SLICE_MS = 50;

/** A fresh lock's memory, for the main thread to hand every worker of one library. */
export const newTokenLock = () => new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);

export function installTokenLock(buffer: SharedArrayBuffer): void {
  lock = new Int32Array(buffer);
}

export function withTokenLock<T>(section: () => T): T {
  if (!lock || depth > 0) return run(section);
  while (Atomics.compareExchange(lock, 0, 0, 1) !== 0) Atomics.wait(lock, 0, 1, WAIT_SLICE_MS);
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
