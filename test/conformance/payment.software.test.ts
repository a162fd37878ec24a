import { vitestHost } from '../helpers/vitestHost.js';
import { pino } from 'pino';
import { softwareBackendFactory } from '../../adapters/software/index.js';
import { createSoftwareBackendConfig } from '../helpers/software.js';
import { describePaymentConformance } from '../../src/conformance/suites/payment.js';

describePaymentConformance(vitestHost, 'software', async () => {
  const h = await createSoftwareBackendConfig();
  return {
    open: () => softwareBackendFactory.create(h.config, { logger: pino({ level: 'silent' }) }),
    cleanup: () => h.cleanup(),
  };
});
