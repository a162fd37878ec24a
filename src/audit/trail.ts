/**
 * The audit trail writer: chains each record to the one before it as it is appended (so that the
 * order in the file is the order of the chain), writes data-plane records in batches (at most
 * flushRecords records or flushMs apart, never a write per record and never synchronous I/O), and
 * writes and fsyncs a state change's record before its answer leaves. Every checkpointRecords records,
 * and every checkpointMs while records come, it appends a checkpoint with an HMAC over the chain head
 * computed in the backend.
 *
 * When a write fails, the records stay queued, in order, and are retried every flushMs; meanwhile
 * `failing` is true (state changes are refused before they run: ./stage.ts) and, once more than
 * maxPendingRecords wait, `backlogged` (every audited operation is refused).
 */
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import type { Logger } from 'pino';
import { HsmBridgeError } from '../errors.js';
import type { AuditConfig } from './config.js';
import { checkpointMacInput, hashLine, type CheckpointRecord, type OperationRecord, type Unchained } from './record.js';

/** Where the lines go: the audit file, appended. */
export interface AuditSink {
  write(data: string): Promise<void>;
  /** Makes every write so far durable. */
  sync(): Promise<void>;
  close(): Promise<void>;
}

export class FileSink implements AuditSink {
  private constructor(
    readonly handle: FileHandle,
    /** The file's length after the last write that succeeded. */
    private size: number,
  ) {}

  /** Opens `path` for appending (created 0600 when absent); throws when it cannot. */
  static async open(path: string): Promise<FileSink> {
    const handle = await open(path, 'a', 0o600);
    try {
      return new FileSink(handle, (await handle.stat()).size);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  /** Appends `data` whole or not at all: a write that failed halfway is cut off, so that a retry leaves no broken record. */
  async write(data: string): Promise<void> {
    const bytes = Buffer.from(data, 'utf8');
    try {
      await this.handle.appendFile(bytes);
    } catch (e) {
      await this.handle.truncate(this.size).catch(() => undefined);
      throw e;
    }
    this.size += bytes.length;
  }

  sync(): Promise<void> {
    return this.handle.datasync();
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/** Computes checkpoint MACs with the audit key, in the backend. */
export interface CheckpointSigner {
  readonly keyName: string;
  mac(data: Buffer): Promise<{ version: number; mac: Buffer }>;
}

/** The last record of the chain: its sequence number (0 for an empty trail) and hash. */
export interface ChainHead {
  readonly seq: number;
  readonly hash: string;
}

export type TrailOptions = Pick<AuditConfig, 'checkpointRecords' | 'checkpointMs' | 'flushRecords' | 'flushMs' | 'maxPendingRecords'>;

/** What the trail reports as it writes (the metrics' audit counters). */
export interface TrailHooks {
  readonly recordsWritten?: (count: number) => void;
  readonly sinkFailed?: () => void;
}

export class AuditTrail {
  private pending: string[] = [];
  /** The chain of writes: one at a time, in order. */
  private writes: Promise<void> = Promise.resolve();
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly checkpointTimer: NodeJS.Timeout;
  private sinceCheckpoint = 0;
  private checkpointing: Promise<void> | undefined;
  /** The last write's error, until a write succeeds. */
  private failure: unknown;

  constructor(
    private readonly sink: AuditSink,
    private head: ChainHead,
    private readonly signer: CheckpointSigner,
    private readonly options: TrailOptions,
    private readonly logger: Logger,
    private readonly hooks: TrailHooks = {},
  ) {
    this.checkpointTimer = setInterval(() => {
      if (this.sinceCheckpoint > 0) void this.checkpoint();
    }, options.checkpointMs).unref();
  }

  /** The last write failed: a record appended now may not reach the file. */
  get failing(): boolean {
    return this.failure !== undefined;
  }

  /** So many records wait for the file that no more may be added. */
  get backlogged(): boolean {
    return this.pending.length >= this.options.maxPendingRecords;
  }

  /**
   * Appends an operation's record. `durable`: resolves once it is written and fsynced, or throws
   * AUDIT_UNAVAILABLE; otherwise it resolves at once and the record is written with the next batch.
   */
  append(record: Unchained<OperationRecord>, durable: boolean): Promise<void> {
    this.chain(record);
    if (++this.sinceCheckpoint >= this.options.checkpointRecords) void this.checkpoint();
    if (durable) return this.flush(true);
    if (this.pending.length >= this.options.flushRecords) this.flushInBackground();
    else this.flushFor(this.options.flushMs);
    return Promise.resolve();
  }

  /** Appends a checkpoint over the current head now (also run on a timer and every checkpointRecords records). */
  checkpoint(): Promise<void> {
    this.checkpointing ??= this.writeCheckpoint().finally(() => (this.checkpointing = undefined));
    return this.checkpointing;
  }

  /** Seals the trail with a last checkpoint and closes the file: before the backend closes. */
  async close(): Promise<void> {
    clearInterval(this.checkpointTimer);
    await this.checkpointing;
    if (this.sinceCheckpoint > 0) await this.checkpoint();
    clearTimeout(this.flushTimer);
    await this.flush(true).catch((e: unknown) => this.logger.error({ err: e, unwritten: this.pending.length }, 'audit: records could not be written before closing'));
    await this.sink.close();
  }

  private chain(record: Unchained<OperationRecord> | Unchained<CheckpointRecord>): void {
    const seq = this.head.seq + 1;
    const line = JSON.stringify({ seq, time: new Date().toISOString(), prev: this.head.hash, ...record });
    this.head = { seq, hash: hashLine(line) };
    this.pending.push(line);
  }

  private async writeCheckpoint(): Promise<void> {
    const covers = this.head;
    if (covers.seq === 0) return;
    this.sinceCheckpoint = 0;
    try {
      const { version, mac } = await this.signer.mac(checkpointMacInput(covers.seq, covers.hash));
      this.chain({ type: 'checkpoint', covers, key: { name: this.signer.keyName, version }, mac: mac.toString('base64') });
      this.flushInBackground();
    } catch (e) {
      // The records stay in the chain; the next checkpoint covers them (counted, so that the timer tries again).
      this.sinceCheckpoint++;
      this.logger.warn({ err: e }, 'audit: the checkpoint MAC could not be computed');
    }
  }

  private flushFor(ms: number): void {
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined;
      this.flushInBackground();
    }, ms).unref();
  }

  private flushInBackground(): void {
    this.flush(false).catch(() => undefined); // logged in writeOut; retried on a timer
  }

  /** Writes every queued record (and fsyncs with `sync`); throws AUDIT_UNAVAILABLE when it cannot. */
  flush(sync = false): Promise<void> {
    const done = this.writes.then(() => this.writeOut(sync));
    this.writes = done.catch(() => undefined);
    return done;
  }

  private async writeOut(sync: boolean): Promise<void> {
    const lines = this.pending.splice(0);
    try {
      if (lines.length > 0) await this.sink.write(`${lines.join('\n')}\n`);
      if (sync) await this.sink.sync();
    } catch (e) {
      this.hooks.sinkFailed?.();
      this.pending.unshift(...lines);
      if (this.failure === undefined) this.logger.error({ err: e }, 'audit: the audit trail cannot be written; state changes are refused until it can');
      this.failure = e;
      this.flushFor(this.options.flushMs);
      throw new HsmBridgeError('AUDIT_UNAVAILABLE', 'the audit trail cannot be written; retry later', { cause: e });
    }
    if (lines.length > 0) this.hooks.recordsWritten?.(lines.length);
    if (this.failure !== undefined) this.logger.warn('audit: the audit trail is written again');
    this.failure = undefined;
  }
}
