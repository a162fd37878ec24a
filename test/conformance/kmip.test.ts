import { vitestHost } from '../helpers/vitestHost.js';
import { pino } from 'pino';
import { afterAll } from 'vitest';
import { kmipBackendFactory } from '../../adapters/kmip/index.js';
import { kmipConfigFor } from '../helpers/kmipBackend.js';
import { startPyKmip, type PyKmipServer } from '../helpers/pykmip.js';
import { describeBackendConformance } from '../../src/conformance/suites/backend.js';
import { describeDataProtectionConformance } from '../../src/conformance/suites/dataProtection.js';

// One PyKMIP server for both suites (it takes seconds to start); keys have fresh names, so they do not
// collide. It stops after the last suite, not in a suite's cleanup.
let server: Promise<PyKmipServer> | undefined;
afterAll(async () => {
  if (server) await (await server).stop();
});

const target = async () => {
  const running = await (server ??= startPyKmip());
  return {
    open: () => kmipBackendFactory.create(kmipConfigFor(running), { logger: pino({ level: 'silent' }) }),
    cleanup: async () => undefined,
  };
};

describeBackendConformance(vitestHost, 'kmip (PyKMIP)', target);
describeDataProtectionConformance(vitestHost, 'kmip (PyKMIP)', target);
