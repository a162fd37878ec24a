/**
 * Batches under ordinary concurrent load on a SoftHSM token with the PKCS#11 adapter's default session
 * pool and queue bound (8 sessions, 32 waiting; the other suites raise the bound): eight batches sent
 * together answer with all their results, and their items never meet a full queue, since the items of
 * all batches together stay within KeyService.batchItems (twice the sessions) and wait there rather than
 * in the adapter's queue. (An item that does meet a full queue, say behind single requests, waits and
 * tries again: batch.test.ts.) No timing is asserted.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pkcs11BackendFactory } from '../../adapters/pkcs11/index.js';
import type { Backend } from '../../src/backend/port.js';
import { HsmBridgeError } from '../../src/errors.js';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm.js';
import { serve, type Outcome, type Served } from './batchFixture.js';

const outcomeOf = (o: Outcome) => (o.ok ? 'ok' : `${o.code}: ${o.message}`);

describe('batches under concurrent load (SoftHSM, default session pool and queue bound)', () => {
  let token: SoftHsmToken;
  let backend: Backend;
  let served: Served;
  /** Calls the adapter refused because every session was busy and its queue full. */
  let busyRefusals = 0;

  beforeAll(async () => {
    token = await createSoftHsmToken();
    const { maxQueuedRequests: _raised, ...defaults } = token.backendConfig();
    backend = await pkcs11BackendFactory.create(defaults, { logger: pino({ level: 'silent' }) });
    const counted = new Proxy(backend, {
      get(target, property) {
        const value: unknown = Reflect.get(target, property, target);
        if (property !== 'sign') return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        return (...args: Parameters<Backend['sign']>) =>
          target.sign(...args).catch((e: unknown) => {
            if (e instanceof HsmBridgeError && e.reason === 'BACKEND_BUSY') busyRefusals++;
            throw e;
          });
      },
    });
    served = await serve(counted, { limits: { maxDataBytes: 4096, maxRandomBytes: 256 }, maxRequestBytes: 1024 * 1024 });
    await served.service.createKey({ name: 'load-ec', type: 'EC_P256' });
  });
  afterAll(async () => {
    await served?.close();
    await backend?.close();
    await token?.cleanup();
  });

  const batch = (tag: string) => served.wires[0].batch('sign', 'load-ec', Array.from({ length: 200 }, (_, i) => ({ message: Buffer.from(`${tag} ${i}`) })));

  it('eight batches of 200 sent together each answer with their results, none of their items refused for a full queue', async () => {
    const outcomes = await Promise.all(Array.from({ length: 8 }, (_, i) => batch(`b${i}`)));
    expect(outcomes.map(outcomeOf)).toEqual(Array(8).fill('ok'));
    expect(busyRefusals).toBe(0);
  });
});
