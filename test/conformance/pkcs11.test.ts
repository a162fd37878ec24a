import { pino } from 'pino';
import { pkcs11BackendFactory } from '../../adapters/pkcs11/index.js';
import { createSoftHsmToken } from '../helpers/softhsm.js';
import { describeBackendConformance, type ConformanceTarget } from './backendConformance.js';
import { describeDataProtectionConformance } from './dataProtectionConformance.js';
import { describeKeyImportConformance } from './keyImportConformance.js';

const softHsm = async (): Promise<ConformanceTarget> => {
  const token = await createSoftHsmToken();
  return {
    open: () => pkcs11BackendFactory.create(token.backendConfig(), { logger: pino({ level: 'silent' }) }),
    cleanup: () => token.cleanup(),
  };
};

describeBackendConformance('pkcs11 (SoftHSM)', softHsm);
describeKeyImportConformance('pkcs11 (SoftHSM)', softHsm);
describeDataProtectionConformance('pkcs11 (SoftHSM)', softHsm);
