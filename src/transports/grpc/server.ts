/**
 * The gRPC transport: hsmbridge.v1.KeyService and grpc.health.v1.Health on one grpc-js server.
 * Plaintext HTTP/2, or TLS (optionally mutual) when given TLS material (../tls.ts).
 */
import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { KeyService } from '../../operations/keyService.js';
import { keyServiceHandlers, secretResponseFields } from './handlers.js';
import { createHealthService } from './health.js';
import { loadServices } from './protos.js';
import { grpcServerCredentials, type TlsMaterial } from '../tls.js';

export interface GrpcServerOptions {
  readonly service: KeyService;
  readonly logger: Logger;
  readonly host: string;
  /** 0 picks a free port; the bound one is returned. */
  readonly port: number;
  /** Largest request or response message; a larger request is refused with RESOURCE_EXHAUSTED. */
  readonly maxMessageBytes: number;
  /** How often health Watch streams re-check the backend; default 5 s. */
  readonly healthPollMs?: number;
  /** Serve TLS (and with requireClientCert, mutual TLS) instead of plaintext; see loadTlsMaterial. */
  readonly tls?: TlsMaterial;
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
  const services = await loadServices(secretResponseFields);
  const server = new Server({
    'grpc.max_receive_message_length': opts.maxMessageBytes,
    'grpc.max_send_message_length': opts.maxMessageBytes,
  });
  const health = createHealthService(opts.service, logger, {
    pollMs: opts.healthPollMs ?? 5000,
    timeoutMs: HEALTH_TIMEOUT_MS,
  });
  server.addService(services.keyService, keyServiceHandlers(opts.service, logger));
  server.addService(services.health, health.handlers);

  const credentials = opts.tls ? grpcServerCredentials(opts.tls) : ServerCredentials.createInsecure();
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
