/** W sign workers, each request to the least busy one; the caller's thread makes no PKCS#11 call. */
import { Worker } from 'node:worker_threads';
import type { SignAnswer, SignRequest } from './signWorker.js';
import type { KeyIndex, TokenRef } from './signer.js';

export class WorkerPool {
  private readonly busy: number[];
  private readonly pending = new Map<number, { resolve(sig: Uint8Array): void; reject(e: Error): void }>();
  private nextId = 0;

  private constructor(private readonly workers: Worker[]) {
    this.busy = workers.map(() => 0);
    workers.forEach((w, i) =>
      w.on('message', (a: SignAnswer) => {
        this.busy[i]!--;
        const p = this.pending.get(a.id)!;
        this.pending.delete(a.id);
        if ('sig' in a) p.resolve(a.sig);
        else p.reject(new Error(a.error));
      }),
    );
  }

  static async start(size: number, token: TokenRef): Promise<WorkerPool> {
    const entry = new URL('./signWorker.js', import.meta.url);
    const spawn = () => {
      const w = new Worker(entry, { workerData: token });
      return new Promise<Worker>((resolve, reject) => {
        w.once('message', () => resolve(w));
        w.once('error', reject);
      });
    };
    // SoftHSM's C_Initialize is not safe against itself: in a fresh process, workers initializing at once
    // can each get CKR_OK (state set up twice) or look for the token before it is loaded. One goes first.
    const first = await spawn();
    return new WorkerPool([first, ...(await Promise.all(Array.from({ length: size - 1 }, spawn)))]);
  }

  sign(key: KeyIndex, data: Uint8Array): Promise<Uint8Array> {
    let least = 0;
    for (let i = 1; i < this.busy.length; i++) if (this.busy[i]! < this.busy[least]!) least = i;
    this.busy[least]!++;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.workers[least]!.postMessage({ id, key, data } satisfies SignRequest);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
