/**
 * A real grpc-js client for the end-to-end tests, built from the same .proto files a caller would use,
 * with promise-returning calls and a helper that checks a failure's status and hsmbridge-error-code.
 */
import { credentials, loadPackageDefinition, Metadata, type Client, type ServiceError, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { expect } from 'vitest';
import { findProtoRoot } from '../../../src/transports/grpc/protos.js';

type Callback = (error: ServiceError | null, response: unknown) => void;
type UnaryMethod = (request: unknown, metadata: Metadata, options: { deadline: number }, callback: Callback) => void;

export interface TestClients {
  /** Calls a KeyService rpc by its proto name ('Sign', 'GetKey', ...). */
  call<T = Record<string, any>>(method: string, request?: Record<string, unknown>): Promise<T>;
  /** Calls a JoseService rpc ('SignJws', ...). */
  callJose<T = Record<string, any>>(method: string, request?: Record<string, unknown>): Promise<T>;
  /** Calls an FspiopService rpc ('Sign', 'Validate', ...). */
  callFspiop<T = Record<string, any>>(method: string, request?: Record<string, unknown>): Promise<T>;
  /** Calls a PaymentService rpc ('TranslatePin', ...), with this metadata if given. */
  callPayment<T = Record<string, any>>(method: string, request?: Record<string, unknown>, metadata?: Metadata): Promise<T>;
  health: Client & Record<string, any>;
  keyService: Client & Record<string, any>;
  close(): void;
}

function unary<T>(client: Client & Record<string, any>, method: string, request: Record<string, unknown>, metadata = new Metadata()): Promise<T> {
  const fn = client[method] as UnaryMethod | undefined;
  if (!fn) throw new Error(`no rpc ${method}`);
  return new Promise<T>((resolve, reject) => {
    fn.call(client, request, metadata, { deadline: Date.now() + 30_000 }, (error, response) =>
      error ? reject(error) : resolve(response as T),
    );
  });
}

export function connect(port: number): TestClients {
  const definition = loadSync(['hsmbridge/v1/key_service.proto', 'hsmbridge/v1/jose_service.proto', 'hsmbridge/v1/fspiop_service.proto', 'hsmbridge/v1/payment_service.proto', 'grpc/health/v1/health.proto'], {
    includeDirs: [findProtoRoot()],
    keepCase: false,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const grpc = loadPackageDefinition(definition) as any;
  const address = `127.0.0.1:${port}`;
  // The client's own receive limit stays at its default; the server's limits are what the tests probe.
  const KeyServiceClient = grpc.hsmbridge.v1.KeyService as ServiceClientConstructor;
  const HealthClient = grpc.grpc.health.v1.Health as ServiceClientConstructor;
  const keyService = new KeyServiceClient(address, credentials.createInsecure()) as Client & Record<string, any>;
  const health = new HealthClient(address, credentials.createInsecure()) as Client & Record<string, any>;
  const jose = new (grpc.hsmbridge.v1.JoseService as ServiceClientConstructor)(address, credentials.createInsecure()) as Client & Record<string, any>;
  const fspiop = new (grpc.hsmbridge.v1.FspiopService as ServiceClientConstructor)(address, credentials.createInsecure()) as Client & Record<string, any>;
  const payment = new (grpc.hsmbridge.v1.PaymentService as ServiceClientConstructor)(address, credentials.createInsecure()) as Client & Record<string, any>;
  return {
    keyService,
    health,
    call: <T>(method: string, request: Record<string, unknown> = {}) => unary<T>(keyService, method, request),
    callJose: <T>(method: string, request: Record<string, unknown> = {}) => unary<T>(jose, method, request),
    callFspiop: <T>(method: string, request: Record<string, unknown> = {}) => unary<T>(fspiop, method, request),
    callPayment: <T>(method: string, request: Record<string, unknown> = {}, metadata?: Metadata) => unary<T>(payment, method, request, metadata),
    close() {
      keyService.close();
      health.close();
      jose.close();
      fspiop.close();
      payment.close();
    },
  };
}

/** Expects the call to fail with this gRPC status and this hsm-bridge error code in the trailers. */
export async function expectGrpcError(promise: Promise<unknown>, status: number, code: string): Promise<ServiceError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e as ServiceError,
  );
  expect(error, `expected the call to fail with ${code}`).toBeDefined();
  expect({ status: error!.code, code: error!.metadata?.get('hsmbridge-error-code')[0] }).toEqual({ status, code });
  return error!;
}
