/**
 * The gRPC transport: the rpcs of the declared operations (src/api) in hsmbridge.v1.KeyService,
 * JoseService, FspiopService and PaymentService (those whose services are given), and
 * grpc.health.v1.Health, on one grpc-js server; with server reflection (grpc.reflection.v1 and v1alpha)
 * describing them, so that grpcurl, Postman or Kreya need no .proto files.
 * Plaintext HTTP/2, or TLS (optionally mutual) when given TLS material (../tls.ts).
 */
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import type { Logger } from 'pino';
import { grpcServices, Pipeline, servedOperations, type GrpcServiceName, type Operation, type PipelineStages, type Services } from '../../api/index.js';
import type { KeyService } from '../../operations/keyService.js';
import { operationCall } from './calls.js';
import { createHealthService } from './health.js';
import { HEALTH_SERVICE_NAME, loadProtos, serviceDefinitions, type ServiceSecrets } from './protos.js';
import { grpcServerCredentials, type TlsMaterial } from '../tls.js';
import { grpcReloadingCredentials, ReloadingTls } from '../tlsReload.js';

export interface GrpcServerOptions extends Omit<Services, 'keys'> {
  readonly service: KeyService;
  readonly logger: Logger;
  readonly host: string;
  /** 0 picks a free port; the bound one is returned. */
  readonly port: number;
  /** Largest request or response message; a larger request is refused with RESOURCE_EXHAUSTED. */
  readonly maxMessageBytes: number;
  /** How often health Watch streams re-check the backend; default 5 s. */
  readonly healthPollMs?: number;
  /** Serve TLS (and with requireClientCert, mutual TLS) instead of plaintext; see loadTlsMaterial. ReloadingTls: new files apply without a restart. */
  readonly tls?: TlsMaterial | ReloadingTls;
  /** Identity, policy, audit and metrics (src/api/stages.ts); default: open, recording nothing. */
  readonly stages?: PipelineStages;
}

export interface RunningGrpcServer {
  readonly port: number;
  /** Stops accepting calls, lets running ones finish, and cancels what is left after a few seconds. */
  close(): Promise<void>;
}

const SHUTDOWN_GRACE_MS = 5000;
const HEALTH_TIMEOUT_MS = 3000;

export async function startGrpcServer(opts: GrpcServerOptions): Promise<RunningGrpcServer> {
  const logger = opts.logger.child({ transport: 'grpc' });
  const served = servedOperations({ ...opts, keys: opts.service });
  const pipeline = new Pipeline(served.services, opts.stages);
  const byService = new Map<GrpcServiceName, Operation[]>();
  for (const op of served.operations) byService.set(op.grpc.service, [...(byService.get(op.grpc.service) ?? []), op]);
  const protos = await loadProtos();
  const definitions = serviceDefinitions(protos, secretResponseFields(served.operations));
  const servedServices = [...byService.keys()].map((name) => grpcServices[name]);
  const server = new Server({
    'grpc.max_receive_message_length': opts.maxMessageBytes,
    'grpc.max_send_message_length': opts.maxMessageBytes,
  });
  const health = createHealthService(opts.service, logger, {
    pollMs: opts.healthPollMs ?? 5000,
    timeoutMs: HEALTH_TIMEOUT_MS,
    services: servedServices,
  });
  for (const [name, ops] of byService) {
    server.addService(definitions[name], Object.fromEntries(ops.map((op) => [op.grpc.method, operationCall(op, pipeline, logger)])));
  }
  server.addService(definitions.Health, health.handlers);
  // The schema only, as /openapi.json: open to any caller the TLS layer admits, like health.
  new ReflectionService(protos, { services: [...servedServices, HEALTH_SERVICE_NAME] }).addToServer(server);

  const credentials =
    opts.tls instanceof ReloadingTls ? grpcReloadingCredentials(opts.tls) : opts.tls ? grpcServerCredentials(opts.tls) : ServerCredentials.createInsecure();
  const address = opts.host.includes(':') ? `[${opts.host}]:${opts.port}` : `${opts.host}:${opts.port}`;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, credentials, (error, bound) => (error ? reject(error) : resolve(bound)));
  });

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= new Promise<void>((resolve) => {
      health.close();
      const force = setTimeout(() => {
        logger.warn({ graceMs: SHUTDOWN_GRACE_MS }, 'gRPC calls still running after the grace period; cancelling them');
        server.forceShutdown();
        resolve();
      }, SHUTDOWN_GRACE_MS);
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    return closing;
  };
  return { port, close };
}

/** Per service and rpc, the answer fields holding secrets, zeroed once serialized (protos.ts). */
export function secretResponseFields(ops: readonly Operation[]): ServiceSecrets {
  const secrets: Partial<Record<GrpcServiceName, Record<string, readonly string[]>>> = {};
  for (const op of ops) {
    if (op.secrets?.output) (secrets[op.grpc.service] ??= {})[op.grpc.method] = op.secrets.output;
  }
  return secrets;
}
