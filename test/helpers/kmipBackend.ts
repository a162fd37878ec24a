/**
 * The KMIP backend on a PyKMIP server of its own, for the end-to-end suites that run on every backend:
 *   const kmip = await openKmipBackend(logger);
 *   ... kmip.backend ... await kmip.backend.close(); await kmip.cleanup();  // cleanup stops the server
 * One server per test file, not per test: PyKMIP takes a second or two to start and serialises every
 * request server-wide, so a suite shares one (keys have fresh names, so tests do not collide).
 */
import type { Logger } from 'pino';
import type { KmipConfig } from '../../adapters/kmip/config.js';
import type { Backend } from '../../src/backend/port.js';
import { startPyKmip, type PyKmipServer } from './pykmip.js';

/** The backend.kmip configuration section that reaches this server with the harness's client certificate. */
export function kmipConfigFor(server: PyKmipServer): KmipConfig {
  return {
    host: server.host,
    port: server.port,
    serverName: '127.0.0.1',
    caFile: server.caPath,
    certFile: server.clientCertPath,
    keyFile: server.clientKeyPath,
    connectTimeoutMs: 5000,
    // PyKMIP serialises requests server-wide: a burst of concurrent calls queues behind RSA key generation.
    requestTimeoutMs: 20_000,
    poolSize: 4,
  };
}

export interface OpenedKmipBackend {
  readonly backend: Backend;
  readonly server: PyKmipServer;
  /** Stops the server and removes its directory; close the backend first. */
  cleanup(): Promise<void>;
}

export async function openKmipBackend(logger: Logger): Promise<OpenedKmipBackend> {
  const { kmipBackendFactory } = await import('../../adapters/kmip/index.js');
  const server = await startPyKmip();
  try {
    const backend = await kmipBackendFactory.create(kmipConfigFor(server), { logger });
    return { backend, server, cleanup: () => server.stop() };
  } catch (e) {
    await server.stop();
    throw e;
  }
}
