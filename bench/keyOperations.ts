/**
 * The key operations keys.bench.ts measures, and how each is called on the service: over gRPC or REST,
 * one per call or as a batch of n items. Every caller answers the outputs of its inputs in order (call i
 * of a batch of n works on inputs i*n .. i*n+n-1); a batch item that ended with an error throws, as does
 * any answer but 200 / OK.
 */
import { randomBytes } from 'node:crypto';
import type { GrpcClient, RestClient } from './clients.js';
import type { RawKind } from './rawPkcs11.js';

/** Signed and MACed: 256 bytes, the size of a typical JWS signing input or API message. */
export const messages = Array.from({ length: 64 }, () => randomBytes(256));
/** Encrypted: 1 KiB each. */
export const plaintexts = Array.from({ length: 64 }, () => randomBytes(1024));
export const message = (i: number) => messages[i % messages.length]!;
export const plaintext = (i: number) => plaintexts[i % plaintexts.length]!;

export interface KeyOperation {
  /** Names the rows, e.g. 'ES256 sign (P-256)'. */
  readonly label: string;
  /** The raw pkcs11js baseline's operation on the same key. */
  readonly kind: RawKind;
  /** The key the bench creates, by POST /v1/keys. */
  readonly key: { readonly name: string; readonly type: string; readonly purpose: string };
  readonly grpc: { readonly rpc: string; readonly batchRpc: string; request(i: number): object; output(answer: any): Buffer };
  /** `path` follows /v1/keys/{name}/; a batch goes to `${path}/batch`. */
  readonly rest: { readonly path: string; body(i: number): object; output(answer: any): Buffer };
}

const sign = (algorithm: 'RS256' | 'ES256', label: string, type: string): KeyOperation => ({
  label,
  kind: algorithm,
  key: { name: `bench-${algorithm.toLowerCase()}`, type, purpose: 'sign' },
  grpc: { rpc: 'Sign', batchRpc: 'SignBatch', request: (i) => ({ algorithm, message: message(i) }), output: (a) => a.signature },
  rest: { path: 'sign', body: (i) => ({ algorithm, message: message(i).toString('base64') }), output: (a) => Buffer.from(a.signature, 'base64') },
});

export const keyOperations: readonly KeyOperation[] = [
  sign('RS256', 'RS256 sign (RSA-2048)', 'RSA_2048'),
  sign('ES256', 'ES256 sign (P-256)', 'EC_P256'),
  {
    label: 'AES-256-GCM encrypt 1 KiB',
    kind: 'AES_GCM',
    key: { name: 'bench-aes256', type: 'AES_256', purpose: 'encrypt' },
    grpc: { rpc: 'Encrypt', batchRpc: 'EncryptBatch', request: (i) => ({ plaintext: plaintext(i) }), output: (a) => a.ciphertext },
    rest: { path: 'encrypt', body: (i) => ({ plaintext: plaintext(i).toString('base64') }), output: (a) => Buffer.from(a.ciphertext, 'base64') },
  },
  {
    label: 'HMAC-SHA-256 of 256 B',
    kind: 'HMAC_SHA256',
    key: { name: 'bench-hmac256', type: 'HMAC_256', purpose: 'mac' },
    grpc: { rpc: 'GenerateMac', batchRpc: 'GenerateMacBatch', request: (i) => ({ data: message(i) }), output: (a) => a.mac },
    rest: { path: 'mac', body: (i) => ({ data: message(i).toString('base64') }), output: (a) => Buffer.from(a.mac, 'base64') },
  },
];

export type Transport = 'gRPC' | 'REST';

export interface KeyCall {
  /** The row's name. */
  readonly name: string;
  readonly transport: Transport;
  /** Items per call: 1 for the single operation. */
  readonly batch: number;
  /** Call i; the outputs of inputs i*batch .. i*batch+batch-1. */
  call(i: number): Promise<Buffer[]>;
}

/** The row of `op` over `transport`, `batch` items a call. */
export function keyCallName(op: KeyOperation, transport: Transport, batch: number): string {
  if (transport === 'gRPC') return `${op.label}: gRPC ${batch === 1 ? op.grpc.rpc : `${op.grpc.batchRpc} of ${batch}`}`;
  return `${op.label}: REST /${op.rest.path}${batch === 1 ? '' : `/batch of ${batch}`}`;
}

/** `op` over `transport`, `batch` items a call (1: the single rpc or route, else its batch form). */
export function keyCall(op: KeyOperation, transport: Transport, batch: number, clients: { grpc: GrpcClient; rest: RestClient }): KeyCall {
  const name = op.key.name;
  const row = { name: keyCallName(op, transport, batch), transport, batch };
  const inputs = (i: number) => Array.from({ length: batch }, (_, j) => i * batch + j);
  if (transport === 'gRPC') {
    const { rpc, batchRpc, request, output } = op.grpc;
    return batch === 1
      ? { ...row, call: async (i) => [output(await clients.grpc.call(rpc, { name, ...request(i) }))] }
      : {
          ...row,
          call: async (i) => {
            const answer = await clients.grpc.call<{ results: any[] }>(batchRpc, { name, items: inputs(i).map(request) });
            return batchOutputs(`${batchRpc} ${name}`, batch, answer.results, grpcItemError, (r) => output(r.ok));
          },
        };
  }
  const { path, body, output } = op.rest;
  const url = `/v1/keys/${name}/${path}`;
  return batch === 1
    ? { ...row, call: async (i) => [output(await clients.rest.expect(200, 'POST', url, body(i)))] }
    : {
        ...row,
        call: async (i) => {
          const answer = await clients.rest.expect(200, 'POST', `${url}/batch`, { items: inputs(i).map(body) });
          return batchOutputs(`POST ${url}/batch`, batch, answer.results, restItemError, output);
        },
      };
}

export interface ItemError {
  readonly code: string;
  readonly message: string;
}
/** A gRPC per-item oneof, `{<ok>, result: '<ok>'}` or `{error, result: 'error'}`: its error, if any. */
export const grpcOneofError = (ok: string) => (r: any): ItemError | undefined => (r.result === ok ? undefined : (r.error ?? { code: '?', message: `no result: ${JSON.stringify(r)}` }));
/** A gRPC batch result is the oneof `{ok, result: 'ok'}` or `{error, result: 'error'}`. */
export const grpcItemError = grpcOneofError('ok');
/** A REST batch result is the single answer or `{error}`. */
export const restItemError = (r: any): ItemError | undefined => r.error;

/** A batch's outputs, in order; throws at the first item error, or a count other than `batch`. */
export function batchOutputs<T>(what: string, batch: number, results: unknown[] | undefined, itemError: (r: any) => ItemError | undefined, output: (r: any) => T): T[] {
  if (results?.length !== batch) throw new Error(`${what}: ${results?.length} results for ${batch} items`);
  return results.map((r, j) => {
    const error = itemError(r);
    if (error) throw new Error(`${what}: item ${j} failed: ${error.code} ${error.message}`);
    return output(r);
  });
}
