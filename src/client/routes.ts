/**
 * The client's view of the API, derived from the operation declarations (src/api/operations): for each
 * operation, its REST method and path, the path's parameters, its rpc, the schema of its answer (which fields are
 * base64, to give back as Buffers) and whether a retry is safe. Nothing here is written twice: a new
 * operation is callable by name as soon as it is declared.
 */
import { grpcServices, type JsonSchema, type Operation } from '../api/declaration.js';
import { operations } from '../api/operations/index.js';

export interface Route {
  readonly operation: string;
  readonly method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** The path with `:param` placeholders, as the service declares it. */
  readonly path: string;
  readonly params: readonly string[];
  /** It takes a JSON body: the input's fields that are not path parameters. */
  readonly body: boolean;
  readonly response?: JsonSchema;
  /** Sending it twice does no harm: it changes no key, participant or ceremony. */
  readonly idempotent: boolean;
  /** Its rpc: the full service name (hsmbridge.v1.KeyService) and the method. */
  readonly grpc: { readonly service: string; readonly method: string };
}

const routeOf = (op: Operation): Route => ({
  operation: op.name,
  method: op.rest.method,
  path: op.rest.path,
  params: [...op.rest.path.matchAll(/:(\w+)/g)].map((m) => m[1]!),
  body: op.rest.body !== undefined,
  ...(op.rest.response ? { response: op.rest.response } : {}),
  idempotent: op.changesState !== true,
  grpc: { service: grpcServices[op.grpc.service], method: op.grpc.method },
});

/** Every operation's route, by operation name (`keys.sign`). */
export const routes: ReadonlyMap<string, Route> = new Map(operations.map((op) => [op.name, routeOf(op)]));
