import { pino } from 'pino';
import { kmipBackendFactory } from '../../adapters/kmip/index.js';
import { startPyKmip } from '../helpers/pykmip.js';
import { describeBackendConformance } from './backendConformance.js';

describeBackendConformance('kmip (PyKMIP)', async () => {
  const server = await startPyKmip();
  const config = {
    host: server.host, port: server.port, serverName: '127.0.0.1',
    caFile: server.caPath, certFile: server.clientCertPath, keyFile: server.clientKeyPath,
    connectTimeoutMs: 5000, requestTimeoutMs: 20_000, poolSize: 4,
  };
  return {
    open: () => kmipBackendFactory.create(config, { logger: pino({ level: 'silent' }) }),
    cleanup: () => server.stop(),
  };
});
