import { vitestHost } from '../helpers/vitestHost.js';
import { pino } from 'pino';
import { pkcs11BackendFactory } from '../../adapters/pkcs11/index.js';
import { createSoftHsmToken } from '../helpers/softhsm.js';
import type { ConformanceTarget } from '../../src/conformance/host.js';
import { describeBackendConformance } from '../../src/conformance/suites/backend.js';
import { describeDataProtectionConformance } from '../../src/conformance/suites/dataProtection.js';
import { describeKeyImportConformance } from '../../src/conformance/suites/keyImport.js';

const softHsm = async (): Promise<ConformanceTarget> => {
  const token = await createSoftHsmToken();
  return {
    open: () => pkcs11BackendFactory.create(token.backendConfig(), { logger: pino({ level: 'silent' }) }),
    cleanup: () => token.cleanup(),
  };
};

describeBackendConformance(vitestHost, 'pkcs11 (SoftHSM)', softHsm);
describeKeyImportConformance(vitestHost, 'pkcs11 (SoftHSM)', softHsm);
describeDataProtectionConformance(vitestHost, 'pkcs11 (SoftHSM)', softHsm);
