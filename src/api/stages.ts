/**
 * The pipeline's stages that belong to the deployment rather than to an operation: who the caller is,
 * whether the access policy lets it run the operation on the keys and participants it names, the audit
 * record and the metrics. Each is written once and applied to every declared operation, on both
 * transports. The open stages below let every caller do everything and record nothing: the service's
 * behaviour without an access policy, which src/app.ts allows only on loopback listeners.
 */
import type { PeerCertificate } from 'node:tls';
import type { AuditDetails, ErrorCode, ErrorReason } from '../errors.js';
import type { KeyUse, Operation } from './declaration.js';

export type Transport = 'rest' | 'grpc';

/** What a transport knows of a caller before the request is read. */
export interface Credentials {
  readonly transport: Transport;
  readonly remoteAddress?: string;
  /** The client certificate of a mutual-TLS connection, already verified against the configured CAs. */
  readonly peerCertificate?: PeerCertificate;
  /** The token of an `Authorization: Bearer` header (REST) or `authorization` metadata (gRPC). */
  readonly bearerToken?: string;
}

/** Who is calling, as the identity stage established it. */
export interface Caller {
  /** How the caller proved who it is; 'none' only where no access policy is configured. */
  readonly authenticatedBy: 'certificate' | 'token' | 'none';
  /** A short name for logs and audit records: the certificate's subject CN or the token's sub. */
  readonly id: string;
  /** The certificate's subject as "CN=...", and its SANs ("DNS:...", "URI:..."). */
  readonly certSubject?: string;
  readonly certSans?: readonly string[];
  /** The verified token's claims. */
  readonly jwtClaims?: Readonly<Record<string, unknown>>;
  /** What the access policy grants it, as the identity stage found it (for whoami); absent without a policy. */
  readonly access?: CallerAccess;
}

/** The policy's principals the caller is, and their rules as written. */
export interface CallerAccess {
  readonly principals: readonly string[];
  /** Omitted fields written out: keys [] (no key-bound operation), participants ["*"] (not limited). */
  readonly rules: ReadonlyArray<{ readonly principal: string; readonly allow: readonly string[]; readonly keys: readonly string[]; readonly participants: readonly string[] }>;
}

export const ANONYMOUS: Caller = { authenticatedBy: 'none', id: 'anonymous' };

/** One request as it ended: what the audit and metrics stages see. Never an input value beyond names. */
export interface Outcome {
  readonly operation: Operation;
  readonly transport: Transport;
  readonly requestId: string;
  readonly caller: Caller;
  readonly remoteAddress?: string;
  /** Well-formed key names and participant ids the request named. */
  readonly keyNames: readonly string[];
  readonly participants: readonly string[];
  /** The keys used with their versions, as the operation's result names them; absent when it failed or names none. */
  readonly keysUsed?: readonly KeyUse[];
  /** Present when the authorize stage let it through (whatever came of it after). */
  readonly authorized?: true;
  /** undefined: ok. */
  readonly code?: ErrorCode;
  /** A finer cause of the failure than its code, where one is known (an undecodable PIN block). */
  readonly reason?: ErrorReason;
  /** What the operation (auditDetails) or its error added for the audit record. */
  readonly details?: AuditDetails;
  readonly durationMs: number;
}

export interface PipelineStages {
  /** Establishes the caller, first of all; throws UNAUTHENTICATED for a missing, invalid or expired credential. */
  identify(credentials: Credentials): Promise<Caller>;
  /** Throws PERMISSION_DENIED unless the policy lets `caller` run `operation` on every key and participant named. */
  authorize(caller: Caller, operation: Operation, keyNames: readonly string[], participants: readonly string[]): void;
  /**
   * Last check before the operation runs, after authorize: throws to refuse it (AUDIT_UNAVAILABLE when
   * its audit record could not be written). Optional; the refusal is audited like any failure.
   */
  admit?(operation: Operation, keyNames: readonly string[]): void;
  /** Records the outcome; an operation's answer leaves only once this has settled. */
  audit(outcome: Outcome): Promise<void>;
  /** Counts the outcome (metrics); must not throw. */
  observe(outcome: Outcome): void;
}

export const openStages: PipelineStages = {
  identify: async () => ANONYMOUS,
  authorize: () => undefined,
  audit: async () => undefined,
  observe: () => undefined,
};
