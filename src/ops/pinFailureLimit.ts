/**
 * The limit on PIN blocks that do not decode: at most `maxPerMinute` per caller and per incoming key.
 * Such a block means a wrong key or PAN, or someone probing PIN digits by varying the PAN of a PAN-bound
 * format; beyond the limit, that caller's pin.translate and pin.toJwe calls on that key are refused with
 * RATE_LIMITED for the rest of the minute.
 *
 * A pipeline-level check, so that the core never learns who calls: the payment service marks an
 * undecodable block with the reason PIN_BLOCK_NOT_DECODED (src/payment/pin/pinService.ts); the pipeline
 * hands it to the observe stage with the caller and keys, which feeds the limiter; the authorize stage
 * checks it once the request's keys are known. A refusal is an outcome like any other: audited and
 * counted (hsmb_rate_limit_refusals_total).
 */
import { HsmBridgeError } from '../errors.js';
import type { Outcome, PipelineStages } from '../api/stages.js';

/** The operations that decipher an incoming PIN block; their first key is the incoming one (src/api/operations/payment.ts). */
export const PIN_OPERATIONS: ReadonlySet<string> = new Set(['pin.translate', 'pin.toJwe']);

export const WINDOW_MS = 60_000;
/** Past this many (caller, key) windows, expired ones are dropped on the next failure. */
const SWEEP_ABOVE = 10_000;

export interface PinFailureLimitOptions {
  /** payment.maxPinFailuresPerMinute: failures allowed per caller and key in a minute. */
  readonly maxPerMinute: number;
  /** Milliseconds; injectable for tests. */
  readonly now?: () => number;
}

interface Window {
  readonly start: number;
  failures: number;
}

export class PinFailureLimiter {
  private readonly windows = new Map<string, Window>();
  private readonly now: () => number;

  constructor(private readonly options: PinFailureLimitOptions) {
    this.now = options.now ?? Date.now;
  }

  /** A PIN block from `callerId` under `keyName` did not decode. */
  recordFailure(callerId: string, keyName: string): void {
    const now = this.now();
    const id = windowId(callerId, keyName);
    const window = this.current(id, now);
    if (window) {
      window.failures++;
      return;
    }
    if (this.windows.size >= SWEEP_ABOVE) this.sweep(now);
    this.windows.set(id, { start: now, failures: 1 });
  }

  /** Throws RATE_LIMITED while `callerId` has used up its failures on `keyName` this minute. */
  check(callerId: string, keyName: string): void {
    const window = this.current(windowId(callerId, keyName), this.now());
    if (window && window.failures >= this.options.maxPerMinute) {
      const seconds = Math.ceil((window.start + WINDOW_MS - this.now()) / 1000);
      throw new HsmBridgeError('RATE_LIMITED', `too many PIN blocks that do not decode under key ${keyName}; retry in ${seconds} s`);
    }
  }

  private current(id: string, now: number): Window | undefined {
    const window = this.windows.get(id);
    if (window && now - window.start < WINDOW_MS && now >= window.start) return window;
    if (window) this.windows.delete(id);
    return undefined;
  }

  private sweep(now: number): void {
    for (const [id, window] of this.windows) if (now - window.start >= WINDOW_MS || now < window.start) this.windows.delete(id);
  }
}

/** JSON keeps a caller id holding the separator apart from a different (caller, key) pair. */
const windowId = (callerId: string, keyName: string) => JSON.stringify([callerId, keyName]);

/** The incoming key of a PIN operation's request, if the request named it well-formed. */
const incomingKey = (operation: string, keyNames: readonly string[]): string | undefined => (PIN_OPERATIONS.has(operation) ? keyNames[0] : undefined);

/** `stages` with the limit: checked after the access policy, fed by the outcomes of undecodable blocks. */
export function withPinFailureLimit(stages: PipelineStages, limiter: PinFailureLimiter): PipelineStages {
  return {
    identify: (credentials) => stages.identify(credentials),
    authorize(caller, operation, keyNames, participants) {
      stages.authorize(caller, operation, keyNames, participants);
      const key = incomingKey(operation.name, keyNames);
      if (key !== undefined) limiter.check(caller.id, key);
    },
    audit: (outcome) => stages.audit(outcome),
    observe(outcome: Outcome) {
      const key = incomingKey(outcome.operation.name, outcome.keyNames);
      if (key !== undefined && outcome.reason === 'PIN_BLOCK_NOT_DECODED') limiter.recordFailure(outcome.caller.id, key);
      stages.observe(outcome);
    },
  };
}
