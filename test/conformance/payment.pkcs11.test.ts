import { vitestHost } from '../helpers/vitestHost.js';
import { pino } from 'pino';
import { pkcs11BackendFactory } from '../../adapters/pkcs11/index.js';
import { createSoftHsmToken } from '../helpers/softhsm.js';
import { describePaymentConformance } from '../../src/conformance/suites/payment.js';

describePaymentConformance(vitestHost, 'pkcs11 (SoftHSM)', async () => {
  const token = await createSoftHsmToken();
  return {
    open: () => pkcs11BackendFactory.create(token.backendConfig(), { logger: pino({ level: 'silent' }) }),
    cleanup: () => token.cleanup(),
  };
});
