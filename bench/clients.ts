/** The benches' clients of a service in another process: JSON over HTTP/1.1 keep-alive, and grpc-js over one channel. */
import { Agent, request } from 'node:http';
import { credentials, loadPackageDefinition, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { findProtoRoot } from '../src/transports/grpc/protos.js';

/** Every call's bound: a call past it fails the bench rather than hanging it. */
export const CALL_TIMEOUT_MS = 10_000;

export interface HttpAnswer {
  status: number;
  body: any;
}

export interface RestClient {
  call(method: string, path: string, body?: unknown): Promise<HttpAnswer>;
  /** As call(), but an answer other than `status` throws with the body. */
  expect(status: number, method: string, path: string, body?: unknown): Promise<any>;
  close(): void;
}

/** JSON over keep-alive connections to `baseUrl`, `maxSockets` at most, each call bounded by CALL_TIMEOUT_MS. */
export function restClient(baseUrl: string, maxSockets: number): RestClient {
  const base = new URL(baseUrl);
  const agent = new Agent({ keepAlive: true, maxSockets });
  const call = (method: string, path: string, body?: unknown): Promise<HttpAnswer> => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        { agent, host: base.hostname, port: base.port, method, path, headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            try {
              resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
            } catch (e) {
              reject(e);
            }
          });
        },
      );
      req.setTimeout(CALL_TIMEOUT_MS, () => req.destroy(new Error(`${method} ${path}: no answer within ${CALL_TIMEOUT_MS} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  };
  return {
    call,
    async expect(status, method, path, body) {
      const answer = await call(method, path, body);
      if (answer.status !== status) throw new Error(`${method} ${path}: ${answer.status} ${JSON.stringify(answer.body)}`);
      return answer.body;
    },
    close: () => agent.destroy(),
  };
}

export interface GrpcClient {
  call<T = any>(method: string, body: object): Promise<T>;
  close(): void;
}

/**
 * One hsmbridge.v1 service (`file` e.g. 'key_service.proto', `service` e.g. 'KeyService') over one plaintext
 * channel, each call with a CALL_TIMEOUT_MS deadline. Oneofs come back with their case: `{ok, result: 'ok'}`.
 */
export function grpcClient(port: number, file: string, service: string): GrpcClient {
  const definition = loadSync(`hsmbridge/v1/${file}`, { includeDirs: [findProtoRoot()], keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
  const Service = (loadPackageDefinition(definition) as any).hsmbridge.v1[service];
  const client = new Service(`127.0.0.1:${port}`, credentials.createInsecure()) as Client & Record<string, any>;
  return {
    call<T>(method: string, body: object): Promise<T> {
      return new Promise((resolve, reject) => {
        client[method](body, { deadline: Date.now() + CALL_TIMEOUT_MS }, (e: ServiceError | null, r: T) => (e ? reject(e) : resolve(r)));
      });
    },
    close: () => client.close(),
  };
}

export const FLOOR_GRPC = 'floor: gRPC KeyService/GetCapabilities';
export const FLOOR_REST = 'floor: REST GET /health/live';

/** The transport floors, a call over each transport that does no key work: the whole gRPC request pipeline and a capability list; a bare fastify route. */
export function transportFloors(keys: GrpcClient, rest: RestClient): { name: string; call: () => Promise<unknown> }[] {
  return [
    { name: FLOOR_GRPC, call: () => keys.call('GetCapabilities', {}) },
    { name: FLOOR_REST, call: () => rest.expect(200, 'GET', '/health/live') },
  ];
}
