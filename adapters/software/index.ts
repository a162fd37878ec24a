/**
 * The software backend's factory: the embedded default, so that hsm-bridge runs on a machine with no
 * HSM. Never for production: it refuses NODE_ENV=production unless allowInProduction is set.
 */
import { resolve } from 'node:path';
import type { BackendFactory } from '../../src/backend/factory.js';
import { openSoftwareBackend } from './backend.js';

export interface SoftwareConfig {
  /** The keystore file; relative paths are taken from the working directory. Default ./data/keystore.json. */
  readonly keystorePath?: string;
  /** The environment variable that may hold the master key (base64 of 32 bytes). Default HSMB_MASTER_KEY. */
  readonly masterKeyEnv?: string;
  /** Where the master key is read from, or generated into, when that variable is not set. Default keystorePath + '.master-key'. */
  readonly masterKeyFile?: string;
  /** Lets the backend start with NODE_ENV=production. Default false. */
  readonly allowInProduction?: boolean;
}

const DEFAULT_KEYSTORE = './data/keystore.json';
const DEFAULT_MASTER_KEY_ENV = 'HSMB_MASTER_KEY';

export const softwareConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    keystorePath: { type: 'string', minLength: 1, default: DEFAULT_KEYSTORE },
    masterKeyEnv: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$', default: DEFAULT_MASTER_KEY_ENV },
    masterKeyFile: { type: 'string', minLength: 1 },
    allowInProduction: { type: 'boolean', default: false },
  },
} as const;

export const softwareBackendFactory: BackendFactory<SoftwareConfig> = {
  kind: 'software',
  configSchema: softwareConfigSchema,
  async create(config, { logger }) {
    const env = process.env;
    if (env.NODE_ENV === 'production' && config.allowInProduction !== true) {
      throw new Error(
        'software backend: refusing to start with NODE_ENV=production: it holds keys in process memory and is for trying hsm-bridge out. ' +
          'Use an HSM backend (backend.type: pkcs11), or set backend.software.allowInProduction: true ' +
          '(HSMB_BACKEND__SOFTWARE__ALLOW_IN_PRODUCTION=true) if you accept that',
      );
    }
    const keystorePath = resolve(config.keystorePath ?? DEFAULT_KEYSTORE);
    logger.warn(
      { keystorePath },
      'software backend: keys are held in process memory (sealed at rest under a master key on this machine); ' +
        'it is for trying hsm-bridge out, not for production: use an HSM backend for real keys',
    );
    return openSoftwareBackend(
      {
        keystorePath,
        masterKeyEnv: config.masterKeyEnv ?? DEFAULT_MASTER_KEY_ENV,
        masterKeyFile: resolve(config.masterKeyFile ?? `${keystorePath}.master-key`),
        env,
      },
      logger,
    );
  },
};
