/**
 * The KMIP backend's factory: any key manager that speaks KMIP 1.2 to 1.4 over mutual TLS (PyKMIP,
 * and the commercial KMIP servers whose Revoke is a compare-and-swap: see the README). See README.md in this folder.
 */
import type { BackendFactory } from '../../src/backend/factory.js';
import { KmipBackend } from './backend.js';
import { KmipClient } from './client.js';
import { kmipConfigSchema, resolveConfig, type KmipConfig } from './config.js';

export type { KmipConfig } from './config.js';

export const kmipBackendFactory: BackendFactory<KmipConfig> = {
  kind: 'kmip',
  configSchema: kmipConfigSchema,
  async create(config, { logger }) {
    const options = await resolveConfig(config);
    const log = logger.child({ backend: 'kmip' });
    let client: KmipClient;
    try {
      client = await KmipClient.open(options, log);
    } finally {
      options.key.fill(0); // the client keeps a TLS context built from it, not the key itself
    }
    try {
      const backend = await KmipBackend.open(client, log);
      const caps = backend.capabilities();
      log.info(
        { server: `${options.host}:${options.port}`, version: `${client.version.major}.${client.version.minor}`, keyTypes: caps.keyTypes, sign: caps.sign, encrypt: caps.encrypt, mac: caps.mac },
        'kmip: connected to the key manager',
      );
      return backend;
    } catch (e) {
      await client.close();
      throw e;
    }
  },
};
