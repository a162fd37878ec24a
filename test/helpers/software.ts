/**
 * A software backend configuration on a fresh temp directory, with its master key in an environment
 * variable of its own, for any suite that needs a real backend without an HSM:
 *   const h = await createSoftwareBackendConfig();
 *   const backend = await softwareBackendFactory.create(h.config, { logger });
 *   ... await backend.close(); await h.cleanup();
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SoftwareConfig } from '../../adapters/software/index.js';

export interface SoftwareBackendHarness {
  readonly config: SoftwareConfig & { readonly keystorePath: string; readonly masterKeyEnv: string };
  readonly dir: string;
  cleanup(): Promise<void>;
}

export async function createSoftwareBackendConfig(): Promise<SoftwareBackendHarness> {
  const dir = await mkdtemp(join(tmpdir(), 'hsmb-software-'));
  const masterKeyEnv = `HSMB_TEST_MASTER_KEY_${randomBytes(6).toString('hex').toUpperCase()}`;
  process.env[masterKeyEnv] = randomBytes(32).toString('base64');
  return {
    config: { keystorePath: join(dir, 'keystore.json'), masterKeyEnv },
    dir,
    async cleanup() {
      delete process.env[masterKeyEnv];
      await rm(dir, { recursive: true, force: true });
    },
  };
}
