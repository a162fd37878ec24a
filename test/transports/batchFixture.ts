/**
 * The batch suites' harness: REST (fastify inject) and gRPC (a real grpc-js client) served by one
 * KeyService on one backend, so that a SoftHSM token is opened once per file; further services with other
 * limits can be stood up on the same backend. Each wire is driven through one interface: items go in with
 * their bytes as Buffers (REST sends them as base64, a string goes as it is), and each result comes back
 * as {ok} or {error} with its bytes as Buffers, so that one test body runs on both transports.
 */
import { Writable } from 'node:stream';
import type { ServiceError } from '@grpc/grpc-js';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import type { PipelineStages } from '../../src/api/stages.js';
import type { Backend } from '../../src/backend/port.js';
import { HsmBridgeError } from '../../src/errors.js';
import { FspiopService, ParticipantRegistry } from '../../src/fspiop/index.js';
import { JoseService } from '../../src/jose/joseService.js';
import { KeyService, type KeyServiceLimits } from '../../src/operations/keyService.js';
import { createPaymentServices } from '../../src/payment/index.js';
import { startGrpcServer, type RunningGrpcServer } from '../../src/transports/grpc/server.js';
import { buildRestServer } from '../../src/transports/rest/server.js';
import { connect, type TestClients } from './grpc/grpcClient.js';

/** The six batches on one key, by the single operation they repeat. */
export type KeyOp = 'sign' | 'verify' | 'encrypt' | 'decrypt' | 'mac' | 'verifyMac';
export const keyOps: readonly KeyOp[] = ['sign', 'verify', 'encrypt', 'decrypt', 'mac', 'verifyMac'];

const restPath: Record<KeyOp, string> = { sign: 'sign', verify: 'verify', encrypt: 'encrypt', decrypt: 'decrypt', mac: 'mac', verifyMac: 'mac/verify' };
const rpc: Record<KeyOp, string> = { sign: 'Sign', verify: 'Verify', encrypt: 'Encrypt', decrypt: 'Decrypt', mac: 'GenerateMac', verifyMac: 'VerifyMac' };

/** The status each transport gives an error code, for the codes these suites meet (src/errors.ts). */
export const statusOf: Record<string, { http: number; grpc: number }> = {
  INVALID_ARGUMENT: { http: 400, grpc: 3 },
  INCOMPATIBLE_KEY: { http: 400, grpc: 3 },
  PAYLOAD_TOO_LARGE: { http: 413, grpc: 8 },
  KEY_NOT_FOUND: { http: 404, grpc: 5 },
  KEY_DISABLED: { http: 409, grpc: 9 },
  PERMISSION_DENIED: { http: 403, grpc: 7 },
  UNAUTHENTICATED: { http: 401, grpc: 16 },
  BACKEND_UNAVAILABLE: { http: 503, grpc: 14 },
};

export type Item = Record<string, unknown>;
/** One item's result, whatever the wire: the single operation's answer, or the item's error. */
export type Result = { ok: Record<string, any> } | { error: { code: string; message: string } };
/** A whole call: its answer, or how it failed (HTTP status or gRPC status, and the error code). */
export type Outcome = { ok: true; answer: any } | { ok: false; status: number; code: string | undefined; message: string };

export interface Wire {
  readonly name: 'REST' | 'gRPC';
  /** The status of `code` on this wire. */
  status(code: string): number;
  /** The batch of `op` on key `name`; raw results in `answer.results`. */
  batch(op: KeyOp, name: string, items: readonly Item[]): Promise<Outcome>;
  /** The single operation, for comparison. */
  single(op: KeyOp, name: string, item: Item): Promise<Outcome>;
  fspiopBatch(op: 'sign' | 'validate', items: readonly FspiopItem[]): Promise<Outcome>;
  fspiopSingle(op: 'sign' | 'validate', item: FspiopItem): Promise<Outcome>;
  /** A raw result as {ok} or {error}. */
  result(raw: any): Result;
  /** A bytes field of an answer as a Buffer (REST: base64). */
  bytes(value: unknown): Buffer;
}

/**
 * An FSPIOP sign item ({key, method, uri, source, destination?, date?, body}) or validate item
 * ({headers, body, decryptWith?}); `body` is JSON text.
 */
export type FspiopItem = Record<string, unknown> & { body: string };

/** An item as REST takes it: Buffers as base64, everything else as it is. */
export const toRest = (item: Item): Item => Object.fromEntries(Object.entries(item).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString('base64') : v]));
const toGrpcFspiop = (item: FspiopItem): Item => ({ ...item, body: Buffer.from(item.body, 'utf8') });

export function restWire(app: FastifyInstance, headers: Record<string, string> = {}): Wire {
  const call = async (url: string, payload: unknown): Promise<Outcome> => {
    const r = await app.inject({ method: 'POST', url, payload: payload as object, headers });
    const body = r.body === '' ? undefined : JSON.parse(r.body);
    return r.statusCode === 200 ? { ok: true, answer: body } : { ok: false, status: r.statusCode, code: body?.error?.code, message: body?.error?.message ?? '' };
  };
  return {
    name: 'REST',
    status: (code) => statusOf[code]!.http,
    batch: (op, name, items) => call(`/v1/keys/${name}/${restPath[op]}/batch`, { items: items.map(toRest) }),
    single: (op, name, item) => call(`/v1/keys/${name}/${restPath[op]}`, toRest(item)),
    fspiopBatch: (op, items) => call(`/v1/fspiop/${op}/batch`, { items }),
    fspiopSingle: (op, item) => call(`/v1/fspiop/${op}`, item),
    result: (raw) => (raw !== null && typeof raw === 'object' && 'error' in raw ? { error: raw.error } : { ok: raw }),
    bytes: (value) => Buffer.from(value as string, 'base64'),
  };
}

export function grpcWire(client: TestClients): Wire {
  const settle = (promise: Promise<unknown>): Promise<Outcome> =>
    promise.then(
      (answer) => ({ ok: true, answer }),
      (e: ServiceError) => ({ ok: false, status: e.code, code: e.metadata?.get('hsmbridge-error-code')[0] as string | undefined, message: e.details }),
    );
  return {
    name: 'gRPC',
    status: (code) => statusOf[code]!.grpc,
    batch: (op, name, items) => settle(client.call(`${rpc[op]}Batch`, { name, items })),
    single: (op, name, item) => settle(client.call(rpc[op], { name, ...item })),
    fspiopBatch: (op, items) => settle(client.callFspiop(op === 'sign' ? 'SignBatch' : 'ValidateBatch', { items: items.map(toGrpcFspiop) })),
    fspiopSingle: (op, item) => settle(client.callFspiop(op === 'sign' ? 'Sign' : 'Validate', toGrpcFspiop(item))),
    result: (raw) => (raw.result === 'error' ? { error: raw.error } : { ok: raw.ok }),
    bytes: (value) => value as Buffer,
  };
}

/** The results of a batch that must have succeeded as a whole, as {ok} / {error}. */
export function resultsOf(wire: Wire, outcome: Outcome): Result[] {
  if (!outcome.ok) throw new Error(`${wire.name}: the batch failed as a whole: ${outcome.status} ${outcome.code} ${outcome.message}`);
  return (outcome.answer.results as unknown[]).map((r) => wire.result(r));
}

/**
 * A backend whose every key call fails BACKEND_UNAVAILABLE while `down` is set, as an HSM that went away;
 * and whose next `busySigns` sign calls are refused for load (BACKEND_BUSY, as the PKCS#11 pool does when
 * its queue is full), as an HSM that single requests keep busy.
 */
export function switchableBackend(backend: Backend): { backend: Backend; setDown(down: boolean): void; refuseSigns(calls: number): void; busyRefusals(): number } {
  let down = false;
  let busySigns = 0;
  let refused = 0;
  const alive = new Set(['kind', 'capabilities', 'health', 'gauges', 'close']);
  const wrapped = new Proxy(backend, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      if (alive.has(String(property))) return value.bind(target);
      return (...args: unknown[]) => {
        if (down) return Promise.reject(new HsmBridgeError('BACKEND_UNAVAILABLE', 'the HSM is gone (test)'));
        if (property === 'sign' && busySigns > 0) {
          busySigns--;
          refused++;
          return Promise.reject(new HsmBridgeError('BACKEND_UNAVAILABLE', 'HSM busy (test)', { reason: 'BACKEND_BUSY' }));
        }
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { backend: wrapped, setDown: (d) => (down = d), refuseSigns: (calls) => (busySigns = calls), busyRefusals: () => refused };
}

export interface Served {
  readonly service: KeyService;
  readonly participants: ParticipantRegistry;
  readonly rest: FastifyInstance;
  readonly grpc: RunningGrpcServer;
  readonly client: TestClients;
  readonly wires: readonly [Wire, Wire];
  logText(): string;
  close(): Promise<void>;
}

export interface ServeOptions {
  readonly limits: KeyServiceLimits;
  /** REST body and gRPC message limit. */
  readonly maxRequestBytes: number;
  readonly stages?: PipelineStages;
}

/** REST and gRPC on a KeyService of their own over `backend` (which the caller closes). */
export async function serve(backend: Backend, options: ServeOptions): Promise<Served> {
  let raw = '';
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        raw += chunk.toString();
        done();
      },
    }),
  );
  // No metadata cache: a key disabled by a test is refused at once, and a backend that is down is seen by the first call.
  const service = new KeyService(backend, { limits: options.limits, metadataCacheTtlMs: 0 });
  const participants = await ParticipantRegistry.open({ logger });
  const fspiop = { service: new FspiopService({ keyService: service, registry: participants }), participants };
  const jose = new JoseService(service);
  const payment = createPaymentServices(service, jose, { participants, otpIncomingKeys: [], logger });
  const stages = options.stages ? { stages: options.stages } : {};
  const rest = await buildRestServer({ service, jose, fspiop, payment, logger, maxRequestBytes: options.maxRequestBytes, ...stages });
  const grpc = await startGrpcServer({ service, jose, fspiop, payment, logger, host: '127.0.0.1', port: 0, maxMessageBytes: options.maxRequestBytes, ...stages });
  const client = connect(grpc.port);
  return {
    service,
    participants,
    rest,
    grpc,
    client,
    wires: [restWire(rest), grpcWire(client)],
    logText: () => raw,
    async close() {
      client.close();
      await grpc.close();
      await rest.close();
      await participants.close();
    },
  };
}
