/**
 * How a call reaches the service: REST (./rest.ts) or gRPC (./grpc.ts). The client keeps what both share
 * (request ids, retries, the typed methods); a channel only carries one attempt, with the input and
 * answer in the client's form: the REST shapes, binary values as Buffers.
 */
import type { Route } from './routes.js';

export interface Attempt {
  readonly requestId: string;
  readonly token?: string;
  readonly timeoutMs: number;
}

export interface Channel {
  /** The operation's answer, or an HsmBridgeClientError with the service's stable code. */
  send(route: Route, input: Record<string, unknown>, attempt: Attempt): Promise<unknown>;
  close(): void;
}

export interface CallOptions {
  /** Sent as x-request-id, so that the caller's logs and the service's join; default: a new UUID per call. */
  readonly requestId?: string;
  readonly timeoutMs?: number;
}
