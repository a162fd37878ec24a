/** The parent side of signChild.ts: starts the child, waits until it can sign, and matches answers to requests. */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { TAG, frameReader, frameWriter } from './framing.js';
import type { KeyIndex, TokenRef } from './signer.js';
import type { SignAnswer } from './signWorker.js';

export type ChildTransport = 'ipc' | 'pipe';

export class ChildSigner {
  private readonly pending = new Map<number, { resolve(sig: Uint8Array): void; reject(e: Error): void }>();
  private nextId = 0;
  private send!: (id: number, key: KeyIndex, data: Uint8Array) => void;
  private readonly ready: Promise<void>;
  /** Settles when the child exits, with its exit code or the signal that ended it. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(transport: ChildTransport, inner: 'async' | number, token: TokenRef) {
    const entry = new URL('./signChild.js', import.meta.url);
    const args = [transport, String(inner)];
    const env = { ...process.env, ISO_TOKEN: JSON.stringify(token) };
    let child: ChildProcess;
    this.ready = new Promise((resolve, reject) => {
      if (transport === 'ipc') {
        child = fork(entry, args, { env, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        child.on('message', (m: SignAnswer | 'ready') => (m === 'ready' ? resolve() : this.answer(m.id, 'sig' in m ? m.sig : undefined, 'error' in m ? m.error : undefined)));
        this.send = (id, key, data) => child.send({ id, key, data });
      } else {
        child = spawn(process.execPath, [entry.pathname, ...args], { env, stdio: ['pipe', 'pipe', 'inherit'] });
        const write = frameWriter(child.stdin!);
        child.stdout!.on(
          'data',
          frameReader((id, tag, payload) => {
            if (tag === TAG.ready) resolve();
            else if (tag === TAG.ok) this.answer(id, Uint8Array.prototype.slice.call(payload));
            else this.answer(id, undefined, payload.toString());
          }),
        );
        this.send = (id, key, data) => write(id, key, data);
      }
      child.once('exit', (code, signal) => reject(new Error(`sign child exited before it was ready (code ${code}, signal ${signal})`)));
    });
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    this.kill = (signal) => child.kill(signal);
  }

  readonly kill: (signal: NodeJS.Signals) => void;

  static async start(transport: ChildTransport, inner: 'async' | number, token: TokenRef): Promise<ChildSigner> {
    const signer = new ChildSigner(transport, inner, token);
    await signer.ready;
    return signer;
  }

  sign(key: KeyIndex, data: Uint8Array): Promise<Uint8Array> {
    const id = this.nextId++ >>> 0;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.send(id, key, data);
    });
  }

  private answer(id: number, sig?: Uint8Array, error?: string): void {
    const p = this.pending.get(id)!;
    this.pending.delete(id);
    if (sig) p.resolve(sig);
    else p.reject(new Error(error));
  }

  async close(): Promise<void> {
    this.kill('SIGTERM');
    await this.exited;
  }
}
