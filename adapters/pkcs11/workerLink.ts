/**
 * The main thread's end of one token worker (worker/tokenWorker.ts): calls with a deadline. PKCS#11
 * cannot cancel a call, so a call past its deadline fails for its caller (BACKEND_UNAVAILABLE) while
 * the worker stays busy with it; the link counts it as overdue until the late answer arrives, and the
 * connection does not lend the worker again before that (the worker is quarantined).
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { HsmBridgeError } from '../../src/errors.js';
import { unavailable } from './errors.js';
import { fromWire, revive, unpooled, wipe, type Request, type Response, type WireError } from './worker/protocol.js';
import type { WorkerSetup } from './worker/tokenWorker.js';

/** A failed call: the error for the caller, and what the worker said about the device. */
export class WorkerCallError extends Error {
  override readonly name = 'WorkerCallError';
  constructor(
    readonly error: HsmBridgeError,
    readonly wire: WireError | undefined,
  ) {
    super(error.message);
  }
}

interface Pending {
  resolve(value: unknown): void;
  reject(e: WorkerCallError): void;
  timer: NodeJS.Timeout | undefined;
  overdue: boolean;
}

/**
 * The compiled worker is a .js file next to this one. Run from the TypeScript sources (tests, tsx), a
 * worker thread does not inherit the parent's loader hooks, and transpiling its module graph in every
 * worker costs most of a second each: the worker is bundled once per process with esbuild (a dev
 * dependency) into node_modules/.cache, where its packages resolve.
 */
let sourceBundle: Promise<URL> | undefined;

async function workerScript(): Promise<URL> {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new URL('./worker/tokenWorker.js', here);
  sourceBundle ??= (async () => {
    const [{ build }, { createHash }, fs, path, { fileURLToPath, pathToFileURL }] = await Promise.all([
      import('esbuild'), import('node:crypto'), import('node:fs/promises'), import('node:path'), import('node:url'),
    ]);
    const entry = fileURLToPath(new URL('./worker/tokenWorker.ts', here));
    const result = await build({ entryPoints: [entry], bundle: true, platform: 'node', format: 'esm', packages: 'external', write: false, logLevel: 'silent' });
    const code = result.outputFiles[0]!.contents;
    const dir = path.join(fileURLToPath(new URL('../../node_modules/.cache/hsm-bridge/', here)));
    const file = path.join(dir, `tokenWorker-${createHash('sha256').update(code).digest('hex').slice(0, 16)}.mjs`);
    await fs.mkdir(dir, { recursive: true });
    const temporary = `${file}.${process.pid}`;
    await fs.writeFile(temporary, code);
    await fs.rename(temporary, file);
    return pathToFileURL(file);
  })();
  return sourceBundle;
}

export class WorkerLink {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private overdueCount = 0;
  private exitedWith: string | undefined;
  /** The module generation this worker's session belongs to (connection.ts reopens it when older). */
  generation = -1;

  private constructor(
    private readonly worker: Worker,
    readonly label: string,
    private readonly logger: Logger,
    /** Called when an overdue call finally answers, and when the worker exits. */
    private readonly onSettled: (link: WorkerLink) => void,
  ) {
    worker.on('message', (m: Response) => this.receive(m));
    worker.on('error', (e) => logger.error({ worker: label, err: e }, 'pkcs11: token worker failed'));
    worker.on('exit', (code) => this.exited(`the token worker stopped (exit code ${code})`));
    // The process may exit while a worker is stuck in a call the HSM never answers.
    worker.unref();
  }

  static async spawn(setup: WorkerSetup, label: string, logger: Logger, onSettled: (link: WorkerLink) => void): Promise<WorkerLink> {
    const worker = new Worker(await workerScript(), { workerData: setup, name: `hsmb-pkcs11-${label}` });
    return new WorkerLink(worker, label, logger, onSettled);
  }

  /** Calls that passed their deadline and have not returned: while any, the worker is stuck. */
  get overdue(): number {
    return this.overdueCount;
  }

  get alive(): boolean {
    return this.exitedWith === undefined;
  }

  /** Calls `method` in the worker; fails with BACKEND_UNAVAILABLE when it has not answered within `timeoutMs`. */
  call<T>(method: string, args: readonly unknown[], timeoutMs: number): Promise<T> {
    if (this.exitedWith !== undefined) return Promise.reject(new WorkerCallError(unavailable(this.exitedWith), undefined));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const entry: Pending = { resolve: resolve as (v: unknown) => void, reject, timer: undefined, overdue: false };
      entry.timer = setTimeout(() => {
        entry.overdue = true;
        this.overdueCount++;
        reject(new WorkerCallError(unavailable(`the HSM did not answer ${method} within ${timeoutMs} ms`), undefined));
      }, timeoutMs);
      this.pending.set(id, entry);
      const copies: Uint8Array[] = [];
      try {
        this.worker.postMessage({ id, method, args: unpooled(args, copies) } satisfies Request);
      } finally {
        // The worker has its own copy now (or none); ours may hold a plaintext or a key component.
        for (const copy of copies) copy.fill(0);
      }
    });
  }

  /** Ends the thread. A thread stuck in a PKCS#11 call ends when that call returns. */
  async terminate(): Promise<void> {
    await this.worker.terminate();
  }

  private receive(message: Response): void {
    if (message.kind === 'log') {
      this.logger[message.level]({ worker: this.label, ...message.fields }, message.message);
      return;
    }
    const entry = this.pending.get(message.id);
    if (!entry) return;
    this.pending.delete(message.id);
    clearTimeout(entry.timer);
    if (entry.overdue) {
      // Its caller has long had its 503; only the worker's availability changes. A late result may be a secret.
      if (message.kind === 'result') wipe(message.value);
      this.overdueCount--;
      this.onSettled(this);
      return;
    }
    if (message.kind === 'result') entry.resolve(revive(message.value));
    else entry.reject(new WorkerCallError(fromWire(message.error), message.error));
  }

  private exited(why: string): void {
    this.exitedWith = why;
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      if (!entry.overdue) entry.reject(new WorkerCallError(unavailable(why), undefined));
    }
    this.pending.clear();
    this.overdueCount = 0;
    this.onSettled(this);
  }
}
