/** The backends the benches measure: the software backend and SoftHSM through PKCS#11, each on fresh storage. */
import type { Logger } from 'pino';
import { pkcs11BackendFactory } from '../adapters/pkcs11/index.js';
import { softwareBackendFactory } from '../adapters/software/index.js';
import type { Backend } from '../src/backend/port.js';
import { createSoftHsmToken } from '../test/helpers/softhsm.js';
import { createSoftwareBackendConfig } from '../test/helpers/software.js';

export interface BenchBackend {
  readonly label: string;
  readonly backend: Backend;
  close(): Promise<void>;
}

export async function openBenchBackends(logger: Logger): Promise<BenchBackend[]> {
  const soft = await createSoftwareBackendConfig();
  const software = await softwareBackendFactory.create(soft.config, { logger });
  const token = await createSoftHsmToken();
  const hsm = await pkcs11BackendFactory.create(token.backendConfig(), { logger });
  return [
    { label: 'software', backend: software, close: async () => { await software.close(); await soft.cleanup(); } },
    { label: 'SoftHSM', backend: hsm, close: async () => { await hsm.close(); await token.cleanup(); } },
  ];
}
