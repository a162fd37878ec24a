/**
 * The gRPC transport: hsmbridge.v1.KeyService, JoseService, FspiopService and PaymentService (when given) and
 * grpc.health.v1.Health on one grpc-js server.
 * Plaintext HTTP/2, or TLS (optionally mutual) when given TLS material (../tls.ts).
 */
import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { KeyService } from '../../operations/keyService.js';
import { fspiopServiceHandlers } from './fspiopHandlers.js';
import { keyServiceHandlers, secretResponseFields } from './handlers.js';
import { createHealthService } from './health.js';
import { joseSecretResponseFields, joseServiceHandlers } from './joseHandlers.js';
import { paymentServiceHandlers } from './paymentHandlers.js';
import { FSPIOP_SERVICE_NAME, JOSE_SERVICE_NAME, PAYMENT_SERVICE_NAME, loadServices } from './protos.js';
import type { ExtraServices } from '../services.js';
import { grpcServerCredentials, type TlsMaterial } from '../tls.js';

export interface GrpcServerOptions extends ExtraServices {
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
  const services = await loadServices({ keyService: secretResponseFields, jose: joseSecretResponseFields });
  const server = new Server({
    'grpc.max_receive_message_length': opts.maxMessageBytes,
    'grpc.max_send_message_length': opts.maxMessageBytes,
  });
  const health = createHealthService(opts.service, logger, {
    pollMs: opts.healthPollMs ?? 5000,
    timeoutMs: HEALTH_TIMEOUT_MS,
    services: [
      ...(opts.jose ? [JOSE_SERVICE_NAME] : []),
      ...(opts.fspiop ? [FSPIOP_SERVICE_NAME] : []),
      ...(opts.payment ? [PAYMENT_SERVICE_NAME] : []),
    ],
  });
  server.addService(services.keyService, keyServiceHandlers(opts.service, logger));
  if (opts.jose) server.addService(services.jose, joseServiceHandlers(opts.jose, logger));
  if (opts.fspiop) server.addService(services.fspiop, fspiopServiceHandlers(opts.fspiop, logger));
  if (opts.payment) server.addService(services.payment, paymentServiceHandlers(opts.payment, opts.service, logger));
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
