/**
 * The request pipeline: every operation, on every transport, passes the same stages in this order:
 *   identify (who calls: ./stages.ts, as soon as the request arrives) -> decode (the transport's wire
 *   form into the operation's input) -> validate (the JSON depth cap on every JSON-valued field) ->
 *   authorize (the access policy, on the keys and participants named) -> admit (e.g. the audit trail can
 *   record it) -> run (the core service) ->
 *   encode -> map errors (a stable code and a bounded, sanitised message) -> audit -> observe (metrics)
 *   -> log (one line per request, with only well-formed key names; the transports write it).
 * An operation declared `access: 'open'` skips identify and authorize, one declared 'authenticated' skips
 * authorize. Secret buffers are zeroed on the way out. A concern that applies to every operation is added here,
 * once; the transports (src/transports/) only carry requests in and answers out.
 */
import { forCaller, type AuditDetails, type ErrorCode, type ErrorReason, type HsmBridgeError } from '../errors.js';
import { isParticipantId } from '../fspiop/participants.js';
import { isKeyName } from '../keys/names.js';
import { randomUUID } from 'node:crypto';
import { checkJsonDepth } from '../json/depth.js';
import type { KeyUse, Operation, ServicesFor } from './declaration.js';
import { jsonFieldPaths, valueAt } from './jsonFields.js';
import { zeroFields } from './secretFields.js';
import { ANONYMOUS, openStages, type Caller, type Credentials, type Outcome, type PipelineStages, type Transport } from './stages.js';

/** What the pipeline learns about one request, for the stages after it (the log line). */
export class RequestContext {
  readonly started = performance.now();
  /** Who calls, once the identity stage has run. */
  caller: Caller = ANONYMOUS;
  remoteAddress: string | undefined;
  /** The well-formed key names the request names, once decoded. */
  keyNames: readonly string[] = [];
  /** The well-formed participant ids it names: for the policy and audit stages, which name them; not logged. */
  participants: readonly string[] = [];
  /** The keys the operation used, with versions, from its result: for the audit stage. */
  keysUsed: readonly KeyUse[] | undefined;
  /** The authorize stage let it through. */
  authorized = false;
  /** The error code it ended with, if it failed inside the pipeline. */
  code: ErrorCode | undefined;
  /** Its finer cause, where the error names one (for metrics and the PIN-failure limit). */
  reason: ErrorReason | undefined;
  /** Facts for the audit record, from the operation or its error. */
  details: AuditDetails | undefined;

  constructor(
    readonly operation: Operation,
    readonly transport: Transport,
    /** The caller's request id, or one made here; every log line and audit record of the request carries it. */
    readonly requestId: string = randomUUID(),
  ) {}

  get durationMs(): number {
    return Math.round((performance.now() - this.started) * 10) / 10;
  }

  outcome(): Outcome {
    return {
      operation: this.operation,
      transport: this.transport,
      requestId: this.requestId,
      caller: this.caller,
      ...(this.remoteAddress === undefined ? {} : { remoteAddress: this.remoteAddress }),
      keyNames: this.keyNames,
      participants: this.participants,
      ...(this.keysUsed === undefined ? {} : { keysUsed: this.keysUsed }),
      ...(this.authorized ? { authorized: true as const } : {}),
      ...(this.code === undefined ? {} : { code: this.code }),
      ...(this.reason === undefined ? {} : { reason: this.reason }),
      ...(this.details === undefined ? {} : { details: this.details }),
      durationMs: this.durationMs,
    };
  }

  /** The fields every log line of the request carries: never an input value that did not pass its syntax check. */
  logFields(): { keyName?: string } {
    return this.keyNames[0] === undefined ? {} : { keyName: this.keyNames[0] };
  }
}

/** The JSON-valued fields of each operation's request, from its REST body schema; computed once. */
const jsonFields = new WeakMap<Operation, readonly string[]>();
function jsonFieldsOf(op: Operation): readonly string[] {
  let paths = jsonFields.get(op);
  if (!paths) jsonFields.set(op, (paths = jsonFieldPaths(op.rest.body)));
  return paths;
}

/** The pipeline of one service instance: the core services, and the deployment's stages around them. */
export class Pipeline {
  constructor(
    readonly services: ServicesFor,
    readonly stages: PipelineStages = openStages,
  ) {}

  /** The identity stage, which the transports run as soon as a request arrives, before reading it. */
  async identify(context: RequestContext, credentials: Credentials): Promise<void> {
    context.remoteAddress = credentials.remoteAddress;
    if (context.operation.access === 'open') return;
    try {
      context.caller = await this.stages.identify(credentials);
    } catch (e) {
      throw this.failed(context, e);
    }
  }

  /**
   * Runs one identified request through the remaining stages and returns the encoded answer, or throws
   * the caller's error (an HsmBridgeError with a bounded message). Secret input buffers are zeroed in
   * the request as it came and in the decoded input, whether or not decoding succeeded. Secret answer
   * buffers are zeroed here once REST has its base64 copies, or when encoding fails; gRPC zeroes them
   * itself once serialized (src/transports/grpc/protos.ts), since its answer message still holds them.
   */
  async run<Req, In, Out>(op: Operation<In, Out>, context: RequestContext, request: Req, decode: (request: Req, services: ServicesFor) => In, encode: (out: Out, input: In) => unknown): Promise<unknown> {
    let input: In | undefined;
    let answer: unknown;
    try {
      input = decode(request, this.services);
      const given = op.keys?.(input) ?? [];
      const named = op.resolveKeys ? [...given, ...(await op.resolveKeys(this.services, input))] : given;
      context.keyNames = named.filter(isKeyName);
      context.participants = (op.participants?.(input) ?? []).filter(isParticipantId);
      for (const path of jsonFieldsOf(op)) checkJsonDepth(path, valueAt(input, path));
      if (op.access === undefined) this.stages.authorize(context.caller, op, context.keyNames, context.participants);
      context.authorized = true;
      this.stages.admit?.(op, context.keyNames);
      const out = await op.run(this.services, input, context.caller);
      context.keysUsed = op.keysUsed?.(out, input);
      context.details = op.auditDetails?.(input, out);
      let encoded = false;
      try {
        answer = encode(out, input);
        encoded = true;
      } finally {
        if (!encoded || context.transport === 'rest') zeroFields(out, op.secrets?.output);
      }
    } catch (e) {
      if (input !== undefined && context.details === undefined) context.details = op.auditDetails?.(input, undefined);
      throw this.failed(context, e);
    } finally {
      zeroFields(request, op.secrets?.input);
      zeroFields(input, op.secrets?.input);
    }
    try {
      await this.settle(context);
    } catch (e) {
      throw forCaller(e);
    }
    return answer;
  }

  /** The caller's error for a failure, once audited and counted. */
  private failed(context: RequestContext, e: unknown): HsmBridgeError {
    const error = forCaller(e);
    context.code = error.code;
    context.reason = error.reason;
    if (error.details !== undefined) context.details = { ...context.details, ...error.details };
    void this.settle(context).catch(() => undefined);
    return error;
  }

  private async settle(context: RequestContext): Promise<void> {
    const outcome = context.outcome();
    this.stages.observe(outcome);
    await this.stages.audit(outcome);
  }
}

/** The log line's level for an outcome: a bug is an error, an unreachable HSM a warning, the rest information. */
export function logLevelOf(code: ErrorCode | undefined): 'error' | 'warn' | 'info' {
  return code === 'INTERNAL' ? 'error' : code === 'BACKEND_UNAVAILABLE' ? 'warn' : 'info';
}
