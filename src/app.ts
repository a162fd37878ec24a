/**
 * The composition root: builds the backend from configuration, the core service on top of it, and the
 * REST and gRPC transports on top of that. Used by main.ts and by the end-to-end tests.
 */
import type { Logger } from 'pino';
import type { Backend } from './backend/port.js';
import { createBackend } from './backends.js';
import type { ServiceConfig } from './config/schema.js';
import { KeyService } from './operations/keyService.js';
import { startGrpcServer } from './transports/grpc/server.js';
import { buildRestServer } from './transports/rest/server.js';

export interface RunningApp {
  readonly service: KeyService;
  /** e.g. http://127.0.0.1:8080; undefined when REST is off. */
  readonly restUrl?: string;
  /** The bound gRPC port; undefined when gRPC is off. */
  readonly grpcPort?: number;
  close(): Promise<void>;
}

export async function startApp(config: ServiceConfig, logger: Logger, backend?: Backend): Promise<RunningApp> {
  const theBackend = backend ?? (await createBackend(config, { logger }));
  const service = new KeyService(theBackend, {
    limits: config.limits,
    metadataCacheTtlMs: config.keys.metadataCacheTtlMs,
  });
  const closers: Array<() => Promise<void>> = [() => theBackend.close()];
  const close = async () => {
    for (const c of closers.splice(0).reverse()) await c().catch((e: unknown) => logger.error({ err: e }, 'error while closing'));
  };
  try {
    let restUrl: string | undefined;
    let grpcPort: number | undefined;
    if (config.rest.enabled) {
      const rest = await buildRestServer({ service, logger, maxRequestBytes: config.limits.maxRequestBytes });
      closers.push(() => rest.close());
      await rest.listen({ host: config.rest.host, port: config.rest.port });
      const address = rest.server.address();
      const port = typeof address === 'object' && address ? address.port : config.rest.port;
      restUrl = `http://${config.rest.host.includes(':') ? `[${config.rest.host}]` : config.rest.host}:${port}`;
      logger.info({ url: restUrl }, 'REST listening');
    }
    if (config.grpc.enabled) {
      const grpc = await startGrpcServer({
        service,
        logger,
        host: config.grpc.host,
        port: config.grpc.port,
        maxMessageBytes: config.limits.maxRequestBytes,
      });
      closers.push(() => grpc.close());
      grpcPort = grpc.port;
      logger.info({ host: config.grpc.host, port: grpcPort }, 'gRPC listening');
    }
    return { service, restUrl, grpcPort, close };
  } catch (e) {
    await close();
    throw e;
  }
}
