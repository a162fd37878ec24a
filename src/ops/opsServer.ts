/**
 * The operations listener (config `ops`): GET /metrics (Prometheus text), /health/live and /health/ready,
 * on plain HTTP on its own address, never on the API listeners. It serves nothing else and reads no body.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { BackendHealth } from '../backend/port.js';
import type { Metrics } from '../metrics/metrics.js';

export const METRICS_PATH = '/metrics';

export interface OpsServerOptions {
  readonly host: string;
  readonly port: number;
  readonly metrics: Pick<Metrics, 'exposition'>;
  /** The backend's health, as /health/ready on the REST listener reports it. */
  readonly health: () => Promise<BackendHealth>;
  readonly logger: Logger;
}

export interface RunningOpsServer {
  /** e.g. http://127.0.0.1:9464 */
  readonly url: string;
  close(): Promise<void>;
}

function json(response: ServerResponse, status: number, body: object): void {
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body));
}

export async function startOpsServer(opts: OpsServerOptions): Promise<RunningOpsServer> {
  const logger = opts.logger.child({ listener: 'ops' });
  const ready = async (response: ServerResponse) => {
    let health: BackendHealth;
    try {
      health = await opts.health();
    } catch (e) {
      logger.warn({ err: e }, 'backend health check failed');
      health = { ready: false, detail: 'backend health check failed' };
    }
    if (health.ready) json(response, 200, { status: 'ready' });
    else json(response, 503, { status: 'unavailable', detail: health.detail ?? 'backend is not ready' });
  };
  const routes: Record<string, (response: ServerResponse) => Promise<void> | void> = {
    [METRICS_PATH]: async (response) => {
      const { contentType, text } = await opts.metrics.exposition();
      response.writeHead(200, { 'content-type': contentType }).end(text);
    },
    '/health/live': (response) => json(response, 200, { status: 'ok' }),
    '/health/ready': ready,
  };
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const path = (request.url ?? '').split('?')[0]!;
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
    if (!route) return json(response, 404, { error: { code: 'NOT_FOUND', message: 'no such route' } });
    if (request.method !== 'GET') return json(response.setHeader('allow', 'GET'), 405, { error: { code: 'INVALID_ARGUMENT', message: 'only GET is served here' } });
    Promise.resolve()
      .then(() => route(response))
      .catch((e: unknown) => {
        logger.error({ err: e, path }, 'ops request failed');
        if (!response.headersSent) json(response, 500, { error: { code: 'INTERNAL', message: 'internal error' } });
        else response.destroy();
      });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`;
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
