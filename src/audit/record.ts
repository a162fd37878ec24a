/**
 * The audit trail's records and the bytes its tamper evidence is computed over.
 *
 * The file is JSON lines. Each record's hash is SHA-256 over the exact UTF-8 bytes of its line, without
 * the newline; each record carries its sequence number (from 1) and the hash of the record before it
 * (`prev`; GENESIS for the first), so that a changed, removed or reordered record breaks the chain.
 * A checkpoint record carries an HMAC, computed in the backend, over checkpointMacInput(covered seq,
 * covered hash): whoever rewrites the chain after an edit cannot forge it without the audit key.
 */
import { createHash } from 'node:crypto';
import type { KeyUse } from '../api/declaration.js';
import type { Transport } from '../api/stages.js';
import type { AuditDetails } from '../errors.js';

export const GENESIS = '0'.repeat(64);

/** The fields every record starts with, in this order. */
interface Chained {
  readonly seq: number;
  readonly time: string;
  readonly prev: string;
}

/** One operation: who ran what on which keys and participants, and how it ended. Never an input value. */
export interface OperationRecord extends Chained {
  readonly type: 'operation';
  readonly requestId: string;
  /** 'internal' for what the service does by itself (a ceremony that expired). */
  readonly transport: Transport | 'internal';
  readonly caller: { readonly id: string; readonly authenticatedBy: string };
  readonly operation: string;
  readonly keys: readonly KeyUse[];
  readonly participants: readonly string[];
  /** 'ok' or the error code. */
  readonly outcome: string;
  readonly remoteAddress?: string;
  /** Facts beyond the above (a ceremony's id, a component's number, whether its KCV matched). */
  readonly details?: AuditDetails;
}

/** An HMAC, by the audit key in the backend, over the chain up to and including record `covers.seq`. */
export interface CheckpointRecord extends Chained {
  readonly type: 'checkpoint';
  readonly covers: { readonly seq: number; readonly hash: string };
  readonly key: { readonly name: string; readonly version: number };
  /** base64 */
  readonly mac: string;
}

export type AuditRecord = OperationRecord | CheckpointRecord;

/** What the trail adds to a record: its place in the chain and its time. */
export type Unchained<R extends AuditRecord> = Omit<R, keyof Chained>;

export function hashLine(line: string | Buffer): string {
  return createHash('sha256').update(line).digest('hex'); // a string as UTF-8
}

/** The bytes a checkpoint's HMAC is computed over. */
export function checkpointMacInput(seq: number, hash: string): Buffer {
  return Buffer.from(`hsmb-audit-checkpoint:v1:${seq}:${hash}`, 'ascii');
}
