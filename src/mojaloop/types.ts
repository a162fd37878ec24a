/** What the drop-in needs of its surroundings: the client's FSPIOP calls, and a logger like the reference's. */
import type { HsmBridgeClient } from '../client/index.js';

/** An HsmBridgeClient, or anything with its FSPIOP methods (a test double, a wrapper that adds tracing). */
export type FspiopClient = Pick<HsmBridgeClient, 'fspiopSign' | 'fspiopValidate' | 'call'>;

/** What the drop-in logs with: a refusal at error level (as the reference), a signing at debug level. */
export interface LogMethods {
  /** As the reference, the signer writes its debug lines only when the logger says debug is on. */
  readonly isDebugEnabled?: boolean;
  debug?(...args: unknown[]): void;
  error?(...args: unknown[]): void;
}

/** The reference takes a logger with child(); the methods are optional here, as callers pass many kinds. */
export interface MojaloopLogger extends LogMethods {
  child(bindings: Record<string, unknown>): LogMethods;
}
