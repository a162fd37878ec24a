/**
 * Batch forms of operations, derived from the single operation's declaration: the same permission, the
 * same item (the single request without the key name) and the same answer per item, the same core call.
 * A batch carries many items in one request (REST `{items}`, gRPC `items`) and answers one result per
 * item, in order: the single answer, or `{error: {code, message}}`.
 *
 * What concerns one item is that item's result: bad base64, a wrong algorithm, a failed verification.
 * What concerns the whole request fails it, as the single operation would fail: identity and policy
 * (checked once, on every key and participant the items name), more items than limits.maxBatchItems,
 * the key named (unknown, disabled, of another purpose: checked once before any item runs), and an item
 * that meets an unavailable backend or a bug, since then the rest would fail alike. Items run
 * concurrently, within what the backend's sessions can take (KeyService.batchItems). The audit
 * record is one per batch: counts by outcome and the code of each failed item.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import { forCaller, HsmBridgeError, invalid, type AuditDetails, type ErrorCode } from '../errors.js';
import { isKeyName, parseKeyName } from '../keys/names.js';
import { checkJsonDepth } from '../json/depth.js';
import { isStrictBase64 } from './base64.js';
import { permissionOf, type JsonSchema, type KeyUse, type Operation, type ServicesFor } from './declaration.js';
import { jsonFieldPaths, valueAt } from './jsonFields.js';
import { describeSchemaIssue, REQUEST_AJV_OPTIONS, type SchemaIssue } from './schemaIssues.js';
import { zeroFields } from './secretFields.js';
import { errorEnvelopeSchema } from './schemas.js';
import { DEFAULT_MAX_BATCH_ITEMS } from '../operations/keyService.js';


/** One item as decoded: the single operation's input, or why it could not be read. */
type Item<In> = { readonly input: In } | { readonly failed: HsmBridgeError };

export interface BatchInput<In> {
  /** The key of a batch on one key (/v1/keys/{name}/.../batch); absent where each item names its own. */
  readonly name?: string;
  readonly items: readonly Item<In>[];
}

/** One result per item, in the items' order. */
export interface BatchOutput<Out> {
  readonly results: ReadonlyArray<ItemResult<Out>>;
}

export interface BatchOptions<Out> {
  /** `<group>.<action>Batch`; the permission is the single operation's. */
  readonly name: string;
  readonly grpcMethod: string;
  readonly operationId?: string;
  readonly summary: string;
  /** The checks the single operation makes on a key alone (exists, enabled, fits): once per key, before any item runs. */
  readonly checkKey: (services: ServicesFor, name: string) => Promise<void>;
  /** For a verification: whether an answer says valid, for the audit record's counts. */
  readonly valid?: (out: Out) => boolean;
}

/** Codes that no item answers alone: the backend went away or a bug struck, and the other items would meet it too. */
const failsTheRequest: ReadonlySet<ErrorCode> = new Set(['BACKEND_UNAVAILABLE', 'INTERNAL']);

/** How long an item refused for load (BACKEND_BUSY: single requests filled the backend's queue) keeps trying before the batch gives up with 503. */
const BUSY_RETRY_MS = 5000;

/** How long a batch may keep the event loop before it lets other requests have a turn. */
const TURN_EVERY_MS = 2;

/** The failed items an audit record lists one by one; beyond, it gives their number. */
const LISTED_FAILURES = 64;

type ItemResult<Out> = { readonly ok: Out } | { readonly failed: HsmBridgeError };

/** The batch form of `single`. Its REST route is the single one's with /batch added. */
export function batchOf<In, Out>(single: Operation<In, Out>, options: BatchOptions<Out>): Operation<BatchInput<In>, BatchOutput<Out>> {
  const keyed = single.rest.path.includes('/:name');
  const itemBody = single.rest.body!;
  const checkItem = itemValidator(itemBody);
  const jsonPaths = jsonFieldPaths(itemBody);
  const decodeItem = (decode: () => In): Item<In> => {
    try {
      const input = decode();
      for (const path of jsonPaths) checkJsonDepth(path, valueAt(input, path));
      return { input };
    } catch (e) {
      return { failed: forCaller(e) };
    }
  };
  const inputs = (batch: BatchInput<In>): In[] => batch.items.flatMap((item) => ('input' in item ? [item.input] : []));
  const gathered = (of: (input: In) => readonly unknown[]) => (batch: BatchInput<In>) => [...new Set(inputs(batch).flatMap(of))];
  const secret = single.secrets ?? {};
  const answerSchema = resultSchema(single.rest.response!);

  return {
    name: options.name,
    permission: permissionOf(single),
    ...(options.operationId ? { operationId: options.operationId } : {}),
    tag: single.tag,
    summary: options.summary,
    description: `Items are bodies of ${single.rest.method} ${single.rest.path.replace(':name', '{name}')}${keyed ? ' (the key is the path\'s)' : ''}, at most limits.maxBatchItems (default ${DEFAULT_MAX_BATCH_ITEMS}); results come in the same order, each that operation's answer or {error: {code, message}}. ${single.description}`,
    errors: [...new Set<ErrorCode>([...single.errors, 'PAYLOAD_TOO_LARGE'])],
    ...(single.needs ? { needs: single.needs } : {}),
    keys: keyed ? (batch) => [batch.name] : gathered((input) => single.keys?.(input) ?? []),
    ...(single.participants ? { participants: gathered(single.participants) } : {}),
    keysUsed: (out, batch) => uniqueUses(out.results.flatMap((r, i) => ('ok' in r ? (single.keysUsed?.(r.ok, inputOf(batch, i)) ?? []) : []))),
    auditDetails: (batch, out) => (out ? batchDetails(batch, out.results, options.valid) : { items: batch.items.length }),
    secrets: {
      // The request as it came (gRPC: items hold Buffers) and as decoded; each answer of the result.
      input: (secret.input ?? []).flatMap((field) => [`items.${field}`, `items.input.${field}`]),
      output: (secret.output ?? []).map((field) => `results.ok.${field}`),
    },
    run: async (services, batch, caller) => {
      // The batch's key must be well-formed; an FSPIOP item's malformed key is that item's error. A
      // well-formed key that fails its checks fails the request.
      const keyNames = keyed ? [parseKeyName(batch.name)] : gathered((input) => single.keys?.(input) ?? [])(batch).filter(isKeyName);
      for (const name of keyNames) await options.checkKey(services, name);
      const { batchItems } = services.keys;
      const { results, stop } = await runItems(batch, batchItems.limit, (input) => batchItems.run(() => single.run(services, input, caller)));
      if (stop) {
        for (const r of results) if (r && 'ok' in r) zeroFields(r.ok, secret.output);
        throw new HsmBridgeError(stop.code, stop.message, { cause: stop, details: batchDetails(batch, results, options.valid) });
      }
      // Without a stop, every item ran.
      return { results: results as ItemResult<Out>[] };
    },
    rest: {
      method: 'POST',
      path: `${single.rest.path}/batch`,
      ...(single.rest.params ? { params: single.rest.params } : {}),
      // Items are checked one by one (a bad item is its own result), so the route takes any objects...
      body: batchBody({ type: 'object' }),
      // ...and the document shows what each must be.
      documentedBody: batchBody(itemBody),
      response: { type: 'object', additionalProperties: false, required: ['results'], properties: { results: { type: 'array', items: answerSchema } } },
      decode: ({ params, body }, services) => ({
        ...(keyed ? { name: params.name } : {}),
        items: countChecked(body.items as unknown[], services).map((item) => decodeItem(() => single.rest.decode({ params: params ?? {}, body: checkItem(item) }, services))),
      }),
      encode: (out, batch) => ({ results: out.results.map((r, i) => ('ok' in r ? single.rest.encode(r.ok, inputOf(batch, i)) : errorOf(r.failed))) }),
    },
    grpc: {
      service: single.grpc.service,
      method: options.grpcMethod,
      decode: (message: { name?: string; items: Array<Record<string, unknown>> }, services) => {
        if (message.items.length === 0) throw invalid('items: give at least one item');
        countChecked(message.items, services);
        const name = message.name;
        const own = (item: Record<string, unknown>) => {
          if (item.name !== '' && item.name !== name) throw invalid('an item names another key than its batch: leave its name empty');
          return { ...item, name };
        };
        return {
          ...(keyed ? { name } : {}),
          items: message.items.map((item) => decodeItem(() => single.grpc.decode(keyed ? own(item) : item, services))),
        };
      },
      encode: (out, batch) => ({ results: out.results.map((r, i) => ('ok' in r ? { ok: single.grpc.encode(r.ok, inputOf(batch, i)) } : errorOf(r.failed))) }),
    },
  };
}

/** The items, once their count is within limits.maxBatchItems: checked before any is read. */
function countChecked<T>(items: T[], services: ServicesFor): T[] {
  const max = services.keys.maxBatchItems;
  if (items.length > max) throw new HsmBridgeError('PAYLOAD_TOO_LARGE', `a batch holds at most ${max} items; this one has ${items.length}`);
  return items;
}

const batchBody = (items: JsonSchema): JsonSchema => ({
  type: 'object',
  additionalProperties: false,
  required: ['items'],
  properties: { items: { type: 'array', minItems: 1, items } },
});

/** Each result: the single answer's fields, or `error` alone. One object rather than oneOf, which fastify would serialise slowly. */
function resultSchema(answer: JsonSchema): JsonSchema {
  const properties = answer.properties as Record<string, JsonSchema> | undefined;
  if (answer.type !== 'object' || !properties) throw new Error('a batch answer is built from an object schema');
  const error = (errorEnvelopeSchema.properties as Record<string, JsonSchema>).error!;
  return { type: 'object', additionalProperties: false, properties: { ...properties, error }, description: "The item's answer, or {error} when it failed." };
}

const inputOf = <In>(batch: BatchInput<In>, i: number): In => (batch.items[i] as { input: In }).input;

/** A failure as an item's or a value's result on the wire: `{error: {code, message}}`. */
export const errorOf = (e: HsmBridgeError) => ({ error: { code: e.code, message: e.message } });

/**
 * Runs every decoded item on `workers` loops of its own (the service-wide limit is KeyService.batchItems,
 * which `run` goes through), results in item order, giving the event loop a
 * turn every few milliseconds (an FSPIOP validation verifies in process, without a pause of its own). The
 * first failure that concerns the whole request stops it: no further item starts, the ones running
 * finish, and it comes back as `stop` with the results so far (holes where no item ran).
 */
async function runItems<In, Out>(batch: BatchInput<In>, workers: number, run: (input: In) => Promise<Out>): Promise<{ results: Array<ItemResult<Out> | undefined>; stop?: HsmBridgeError }> {
  const results: Array<ItemResult<Out> | undefined> = new Array(batch.items.length);
  let next = 0;
  let stop: HsmBridgeError | undefined;
  let lastTurn = performance.now();
  const runOne = async (input: In): Promise<ItemResult<Out>> => {
    const busyUntil = performance.now() + BUSY_RETRY_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        return { ok: await run(input) };
      } catch (e) {
        const failed = forCaller(e);
        if (failed.reason === 'BACKEND_BUSY' && performance.now() < busyUntil) {
          await sleep(Math.min(50, 2 ** attempt));
          continue;
        }
        if (failsTheRequest.has(failed.code)) stop ??= failed;
        return { failed };
      }
    }
  };
  const worker = async () => {
    while (stop === undefined && next < batch.items.length) {
      const i = next++;
      const item = batch.items[i]!;
      if ('failed' in item && failsTheRequest.has(item.failed.code)) stop ??= item.failed; // a bug in reading it
      results[i] = 'failed' in item ? item : await runOne(item.input);
      if (performance.now() - lastTurn > TURN_EVERY_MS) {
        await setImmediate();
        lastTurn = performance.now();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(workers, batch.items.length) }, worker));
  return stop ? { results, stop } : { results };
}

function uniqueUses(uses: readonly KeyUse[]): KeyUse[] {
  const seen = new Map<string, KeyUse>();
  for (const use of uses) seen.set(`${use.name}\u0000${use.version ?? ''}`, use);
  return [...seen.values()];
}

/**
 * The audit record's facts: how many items, how each ended, and which failed with what (indexes from 0,
 * the first LISTED_FAILURES of them). A batch stopped part-way also says how many items never ran.
 */
function batchDetails<In, Out>(batch: BatchInput<In>, results: ReadonlyArray<ItemResult<Out> | undefined>, valid: ((out: Out) => boolean) | undefined): AuditDetails {
  const codes = new Map<string, number>();
  const failedItems: string[] = [];
  let succeeded = 0;
  let failed = 0;
  let validCount = 0;
  for (let i = 0; i < batch.items.length; i++) {
    const r = results[i];
    if (r === undefined) continue;
    if ('ok' in r) {
      succeeded++;
      if (valid?.(r.ok)) validCount++;
      continue;
    }
    failed++;
    codes.set(r.failed.code, (codes.get(r.failed.code) ?? 0) + 1);
    if (failedItems.length < LISTED_FAILURES) failedItems.push(`${i}:${r.failed.code}`);
  }
  const notRun = batch.items.length - succeeded - failed;
  return {
    items: batch.items.length,
    succeeded,
    failed,
    ...(notRun > 0 ? { notRun } : {}),
    ...(valid ? { valid: validCount, invalid: succeeded - validCount } : {}),
    ...(failed > 0 ? { errorCodes: [...codes].map(([code, n]) => `${code}:${n}`).join(','), failedItems: failedItems.join(',') + (failed > failedItems.length ? `,+${failed - failedItems.length}` : '') } : {}),
  };
}

/**
 * Checks one REST item against the single operation's body schema, with the options the REST transport
 * gives fastify (nothing coerced, added or removed; strict base64): the item back, or INVALID_ARGUMENT.
 */
function itemValidator(schema: JsonSchema): (item: unknown) => unknown {
  let validate: ValidateFunction | undefined;
  return (item) => {
    validate ??= itemAjv().compile(schema);
    if (validate(item)) return item;
    throw invalid(describeSchemaIssue('body', (validate.errors ?? []) as SchemaIssue[]));
  };
}

let ajv: Ajv | undefined;
function itemAjv(): Ajv {
  ajv ??= new Ajv({ ...REQUEST_AJV_OPTIONS, formats: { byte: isStrictBase64 } });
  return ajv;
}
