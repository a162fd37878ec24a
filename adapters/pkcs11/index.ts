/**
 * The PKCS#11 backend's factory: any HSM with a PKCS#11 module (SoftHSM, Thales Luna, Utimaco,
 * Entrust nShield, AWS CloudHSM, YubiHSM 2 ...). See README.md in this folder.
 */
import type { BackendFactory } from '../../src/backend/factory.js';
import { Pkcs11Backend } from './backend.js';
import { pkcs11ConfigSchema, resolveConfig, type Pkcs11Config } from './config.js';
import { describeToken } from './token.js';

export type { Pkcs11Config } from './config.js';

export const pkcs11BackendFactory: BackendFactory<Pkcs11Config> = {
  kind: 'pkcs11',
  configSchema: pkcs11ConfigSchema,
  async create(config, { logger }) {
    const resolved = resolveConfig(config);
    const log = logger.child({ backend: 'pkcs11' });
    const backend = await Pkcs11Backend.open(resolved, log);
    const caps = backend.capabilities();
    log.info(
      {
        members: resolved.members.map((m) => ({ name: m.name, library: m.library, token: describeToken(m.token), sessions: m.sessionPoolSize })),
        keyTypes: caps.keyTypes, sign: caps.sign, encrypt: caps.encrypt, mac: caps.mac,
      },
      'pkcs11: logged in to the token',
    );
    return backend;
  },
};
