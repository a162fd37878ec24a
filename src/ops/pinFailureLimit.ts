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

/** Calls let through and not yet finished, per (caller, key): each may still fail, so each holds a slot. */
type InFlight = Map<string, number>;

export class PinFailureLimiter {
  private readonly windows = new Map<string, Window>();
  private readonly inFlight: InFlight = new Map();
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

  /**
   * Throws RATE_LIMITED while `callerId` has used up its failures on `keyName` this minute, counting the
   * calls still running as failures to come (so that a burst of concurrent calls cannot pass the limit
   * together); otherwise holds a slot until finish().
   */
  begin(callerId: string, keyName: string): void {
    const id = windowId(callerId, keyName);
    const running = this.inFlight.get(id) ?? 0;
    const window = this.current(id, this.now());
    if ((window?.failures ?? 0) + running >= this.options.maxPerMinute) {
      const seconds = window ? Math.ceil((window.start + WINDOW_MS - this.now()) / 1000) : 1;
      throw new HsmBridgeError('RATE_LIMITED', `too many PIN blocks that do not decode under key ${keyName}; retry in ${seconds} s`);
    }
    this.inFlight.set(id, running + 1);
  }

  /** A call begin() let through has finished; `failed`: its PIN block did not decode. */
  finish(callerId: string, keyName: string, failed: boolean): void {
    const id = windowId(callerId, keyName);
    const running = (this.inFlight.get(id) ?? 1) - 1;
    if (running > 0) this.inFlight.set(id, running);
    else this.inFlight.delete(id);
    if (failed) this.recordFailure(callerId, keyName);
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
  // Every other stage (admit, audit, ...) passes through unchanged.
  return {
    ...stages,
    authorize(caller, operation, keyNames, participants) {
      stages.authorize(caller, operation, keyNames, participants);
      const key = incomingKey(operation.name, keyNames);
      if (key !== undefined) limiter.begin(caller.id, key);
    },
    observe(outcome: Outcome) {
      const key = incomingKey(outcome.operation.name, outcome.keyNames);
      // Only a call that authorize let through holds a slot (begin()).
      if (key !== undefined && outcome.authorized) {
        limiter.finish(outcome.caller.id, key, outcome.reason === 'PIN_BLOCK_NOT_DECODED');
      }
      stages.observe(outcome);
    },
  };
}
