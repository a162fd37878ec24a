/**
 * The request pipeline: every operation, on every transport, passes the same stages in this order:
 *   decode (the transport's wire form into the operation's input) -> validate (the JSON depth cap on
 *   every JSON-valued field) -> run (the core service) -> encode -> map errors (a stable code and a
 *   bounded, sanitised message) -> log (one line per request, with only well-formed key names).
 * Secret buffers are zeroed on the way out. A concern that applies to every operation is added here,
 * once; the transports (src/transports/) only carry requests in and answers out.
 */
import { forCaller, type ErrorCode } from '../errors.js';
import { isParticipantId } from '../fspiop/participants.js';
import { parseKeyName } from '../keys/names.js';
import type { Operation, ServicesFor } from './declaration.js';
import { checkJsonDepth } from '../json/depth.js';
import { jsonFieldPaths, valueAt } from './jsonDepth.js';

export type Transport = 'rest' | 'grpc';

/** What the pipeline learns about one request, for the stages after it (the log line). */
export class RequestContext {
  readonly started = performance.now();
  /** The well-formed key names the request names, once decoded. */
  keyNames: readonly string[] = [];
  /** The well-formed participant ids it names: for the policy and audit stages, which name them; not logged. */
  participants: readonly string[] = [];
  /** The error code it ended with, if it failed inside the pipeline. */
  code: ErrorCode | undefined;

  constructor(
    readonly operation: Operation,
    readonly transport: Transport,
  ) {}

  get durationMs(): number {
    return Math.round((performance.now() - this.started) * 10) / 10;
  }

  /** The fields every log line of the request carries: never an input value that did not pass its syntax check. */
  logFields(): { keyName?: string } {
    return this.keyNames[0] === undefined ? {} : { keyName: this.keyNames[0] };
  }
}

const wellFormedKeyName = (value: unknown): string[] => {
  try {
    return [parseKeyName(value)];
  } catch {
    return [];
  }
};

/** The JSON-valued fields of each operation's request, from its REST body schema; computed once. */
const jsonFields = new WeakMap<Operation, readonly string[]>();
function jsonFieldsOf(op: Operation): readonly string[] {
  let paths = jsonFields.get(op);
  if (!paths) jsonFields.set(op, (paths = jsonFieldPaths(op.rest.body)));
  return paths;
}

function zero(value: unknown, fields: readonly string[] | undefined): void {
  if (value === null || typeof value !== 'object') return;
  for (const field of fields ?? []) {
    const buffer = (value as Record<string, unknown>)[field];
    if (Buffer.isBuffer(buffer)) buffer.fill(0);
  }
}

/**
 * Runs one request through the stages and returns the encoded answer, or throws the caller's error
 * (an HsmBridgeError with a bounded message). Secret input buffers are zeroed in the request as it came
 * and in the decoded input, whether or not decoding succeeded. Secret answer buffers are zeroed here
 * once REST has its base64 copies, or when encoding fails; gRPC zeroes them itself once serialized
 * (src/transports/grpc/protos.ts), since its answer message still holds the buffers.
 */
export async function runOperation<Req, In, Out>(
  op: Operation<In, Out>,
  services: ServicesFor,
  context: RequestContext,
  request: Req,
  decode: (request: Req) => In,
  encode: (out: Out, input: In) => unknown,
): Promise<unknown> {
  let input: In | undefined;
  try {
    input = decode(request);
    context.keyNames = (op.keys?.(input) ?? []).flatMap(wellFormedKeyName);
    context.participants = (op.participants?.(input) ?? []).filter(isParticipantId);
    for (const path of jsonFieldsOf(op)) checkJsonDepth(path, valueAt(input, path));
    const out = await op.run(services, input);
    let encoded = false;
    try {
      const answer = encode(out, input);
      encoded = true;
      return answer;
    } finally {
      if (!encoded || context.transport === 'rest') zero(out, op.secrets?.output);
    }
  } catch (e) {
    const error = forCaller(e);
    context.code = error.code;
    throw error;
  } finally {
    zero(request, op.secrets?.input);
    zero(input, op.secrets?.input);
  }
}

/** The log line's level for an outcome: a bug is an error, an unreachable HSM a warning, the rest information. */
export function logLevelOf(code: ErrorCode | undefined): 'error' | 'warn' | 'info' {
  return code === 'INTERNAL' ? 'error' : code === 'BACKEND_UNAVAILABLE' ? 'warn' : 'info';
}
