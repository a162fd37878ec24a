/**
 * Enable racing destroy on the software backend, through the core as the service runs it: the core's
 * "must be disabled" check runs before the backend's queue of changes, so the backend checks again
 * inside it. The two must never both succeed.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { softwareBackendFactory } from '../../../adapters/software/index.js';
import type { Backend } from '../../../src/backend/port.js';
import { HsmBridgeError } from '../../../src/errors.js';
import { parseKeyName } from '../../../src/keys/names.js';
import { KeyService } from '../../../src/operations/keyService.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../../helpers/software.js';

const logger = pino({ level: 'silent' });
let harness: SoftwareBackendHarness;
let backend: Backend;

beforeAll(async () => {
  harness = await createSoftwareBackendConfig();
  backend = await softwareBackendFactory.create(harness.config, { logger });
});
afterAll(async () => {
  await backend?.close();
  await harness?.cleanup();
});

describe('software backend: enable racing destroy', () => {
  it('the backend itself refuses to destroy an enabled key', async () => {
    const name = parseKeyName('enabled-key');
    await backend.createKey({ name, type: 'AES_128', purpose: 'encrypt' });
    await expect(backend.destroyKey(name)).rejects.toMatchObject({ code: 'KEY_NOT_DISABLED' });
    expect((await backend.describeKey(name)).state).toBe('enabled');
  });

  it('never both succeed', async () => {
    const service = new KeyService(backend, { limits: { maxDataBytes: 1024, maxRandomBytes: 64 }, metadataCacheTtlMs: 1000 });
    for (let i = 0; i < 25; i++) {
      const name = parseKeyName(`race-${i}`);
      await backend.createKey({ name, type: 'AES_128', purpose: 'encrypt' });
      await backend.setKeyState(name, 'disabled');
      // destroy's check in the core, then enable, then destroy in the backend: the window of the race
      const destroying = service.destroyKey(name);
      const [enable, destroy] = await Promise.allSettled([
        i % 2 === 0 ? service.enableKey(name) : new Promise((r) => setTimeout(r, i % 3)).then(() => service.enableKey(name)),
        destroying,
      ]);
      expect(enable.status === 'fulfilled' && destroy.status === 'fulfilled', `iteration ${i}`).toBe(false);
      for (const r of [enable, destroy]) {
        if (r.status === 'rejected') expect(['KEY_NOT_FOUND', 'KEY_NOT_DISABLED']).toContain((r.reason as HsmBridgeError).code);
      }
      if (destroy.status === 'fulfilled') await expect(backend.describeKey(name)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
      else expect((await backend.describeKey(name)).state).toBe('enabled');
    }
  });
});
