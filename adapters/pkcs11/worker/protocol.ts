/**
 * The messages between the main thread and a token worker (README.md, "Threads"). The main thread never
 * calls PKCS#11: it sends a method name and its arguments, and gets back a value or an error. Values
 * cross by structured clone, which turns Buffers into Uint8Arrays; `revive` turns them back.
 */
import { HsmBridgeError, type ErrorCode } from '../../../src/errors.js';
import { PinError } from '../errors.js';

export interface Request {
  readonly id: number;
  readonly method: string;
  readonly args: readonly unknown[];
}

/** An error as it crosses the thread boundary: what the main thread needs to act on it. */
export interface WireError {
  readonly code: ErrorCode;
  readonly message: string;
  /** The device, token or login went away: the main thread reconnects (and retries once). */
  readonly deviceGone: boolean;
  /** A PIN problem: reconnecting would count towards locking the token. */
  readonly pin: boolean;
  /** The call changed nothing in the token before it failed (a lifecycle change may run again). */
  readonly unchanged?: boolean;
}

export type Response =
  | { readonly kind: 'result'; readonly id: number; readonly value: unknown }
  | { readonly kind: 'error'; readonly id: number; readonly error: WireError }
  | { readonly kind: 'log'; readonly level: 'info' | 'warn' | 'error'; readonly fields: Record<string, unknown>; readonly message: string };

/** How token-side code logs: the worker forwards each line to the main thread's logger. */
export type TokenLog = Record<'info' | 'warn' | 'error', (fields: Record<string, unknown>, message: string) => void>;

/** A lifecycle attempt that lost to another writer and left nothing behind (src/backend/keyChanges.ts). */
export interface ConflictResult {
  readonly conflict: true;
}

export const isConflictResult = (v: unknown): v is ConflictResult => typeof v === 'object' && v !== null && (v as ConflictResult).conflict === true;

/** Uint8Arrays (structured clone's Buffers) back to Buffers, in arrays and plain objects, without copying. */
export function revive<T>(value: T): T {
  if (value instanceof Uint8Array) {
    return (Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)) as T;
  }
  if (Array.isArray(value)) return value.map(revive) as T;
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = revive(v);
    return out as T;
  }
  return value;
}

/**
 * A value as it may be posted cheaply and safely: structured clone copies a view's whole ArrayBuffer. A
 * Buffer decoded from a request is a view on the request's bytes (gRPC: kilobytes for a 256-byte message)
 * or on Node's shared 8 KB pool slab (REST's base64, Buffer.concat), whose other bytes may be other
 * secrets. Such views are copied into Buffers of their own (Buffer.alloc), each also pushed to `copies`
 * when given, for the caller to wipe once posted.
 */
export function unpooled<T>(value: T, copies?: Uint8Array[]): T {
  if (value instanceof Uint8Array) {
    if (value.byteLength === value.buffer.byteLength) return value;
    const own = Buffer.alloc(value.byteLength);
    own.set(value);
    copies?.push(own);
    return own as T;
  }
  // Arrays and plain objects are copied only when something in them was (every call passes here).
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    value.forEach((v, i) => {
      const own = unpooled(v, copies);
      if (own !== v) (out ??= [...value])[i] = own;
    });
    return (out ?? value) as T;
  }
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    let out: Record<string, unknown> | undefined;
    for (const [k, v] of Object.entries(value)) {
      const own = unpooled(v, copies);
      if (own !== v) (out ??= { ...(value as Record<string, unknown>) })[k] = own;
    }
    return (out ?? value) as T;
  }
  return value;
}

/** Zeroes every Buffer in a value: the worker's copies of what it received and sent, once done with. */
export function wipe(value: unknown): void {
  if (value instanceof Uint8Array) value.fill(0);
  else if (Array.isArray(value)) value.forEach(wipe);
  else if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) Object.values(value).forEach(wipe);
}

/** The error for the caller; a PIN problem stays a PinError, which stops every retry. */
export function fromWire(error: WireError): HsmBridgeError {
  return error.pin ? new PinError(error.message.replace(/^HSM unavailable: /, '')) : new HsmBridgeError(error.code, error.message);
}
