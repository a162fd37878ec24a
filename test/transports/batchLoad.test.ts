/**
 * Batches under ordinary concurrent load on a SoftHSM token with the PKCS#11 adapter's default session
 * pool and queue bound (8 sessions, 32 waiting; the other suites raise the bound): batches sent together,
 * and a batch among single requests, answer with their results. A batch keeps 2 x pool-size items in
 * flight, so a few of them fill the queue that bounds waiting requests; a full queue is load, not an HSM
 * that went away, and must not fail a whole batch (with all the work it did). No timing is asserted.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pkcs11BackendFactory } from '../../adapters/pkcs11/index.js';
import type { Backend } from '../../src/backend/port.js';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm.js';
import { serve, type Outcome, type Served } from './batchFixture.js';

const outcomeOf = (o: Outcome) => (o.ok ? 'ok' : `${o.code}: ${o.message}`);

describe('batches under concurrent load (SoftHSM, default session pool and queue bound)', () => {
  let token: SoftHsmToken;
  let backend: Backend;
  let served: Served;

  beforeAll(async () => {
    token = await createSoftHsmToken();
    const { maxQueuedRequests: _raised, ...defaults } = token.backendConfig();
    backend = await pkcs11BackendFactory.create(defaults, { logger: pino({ level: 'silent' }) });
    served = await serve(backend, { limits: { maxDataBytes: 4096, maxRandomBytes: 256 }, maxRequestBytes: 1024 * 1024 });
    await served.service.createKey({ name: 'load-ec', type: 'EC_P256' });
  });
  afterAll(async () => {
    await served?.close();
    await backend?.close();
    await token?.cleanup();
  });

  const batch = (tag: string) => served.wires[0].batch('sign', 'load-ec', Array.from({ length: 200 }, (_, i) => ({ message: Buffer.from(`${tag} ${i}`) })));

  // Whether a queue overflows depends on timing; what must hold either way is that a batch answers with its results.
  it('eight batches of 200 sent together each answer with their results', async () => {
    const outcomes = await Promise.all(Array.from({ length: 8 }, (_, i) => batch(`b${i}`)));
    expect(outcomes.map(outcomeOf)).toEqual(Array(8).fill('ok'));
  });

  it('a batch among 40 single requests answers with its results (a single request may be shed, as without batches)', async () => {
    const singles = Array.from({ length: 40 }, (_, i) => served.wires[0].single('sign', 'load-ec', { message: Buffer.from(`single ${i}`) }));
    const [theBatch] = await Promise.all([batch('among'), ...singles]);
    expect(outcomeOf(theBatch!)).toBe('ok');
  });
});
