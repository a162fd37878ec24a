/**
 * CeremonyService's own rules on the software backend, with a clock the test moves: a ceremony
 * interrupted after its last component (all staged, no key) counts as expired once forming it would have
 * ended; the sweep ends only what expired, once, even while requests end the same ceremony.
 */
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { softwareBackendFactory } from '../../adapters/software/index.js';
import type { Backend } from '../../src/backend/port.js';
import { CeremonyService, identitiesOf } from '../../src/ceremonies/ceremonyService.js';
import type { CeremonyState } from '../../src/ceremonies/record.js';
import { KeyService } from '../../src/operations/keyService.js';
import { nodeKcv } from '../../src/conformance/reference/nodeBlockCiphers.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../helpers/software.js';

const officer = { authenticatedBy: 'certificate', id: 'officer', certSubject: 'CN=officer', certSans: [] } as const;
const custodian = (cn: string) => ({ authenticatedBy: 'certificate', id: cn, certSubject: `CN=${cn}`, certSans: [] }) as const;

describe('CeremonyService', () => {
  let harness: SoftwareBackendHarness;
  let backend: Backend;
  let keys: KeyService;
  let now = Date.now();
  const expired: CeremonyState[] = [];
  let ceremonies: CeremonyService;

  beforeAll(async () => {
    harness = await createSoftwareBackendConfig();
    backend = await softwareBackendFactory.create(harness.config, { logger: pino({ level: 'silent' }) });
    keys = new KeyService(backend, { limits: { maxDataBytes: 4096, maxRandomBytes: 64 }, metadataCacheTtlMs: 0 });
    ceremonies = new CeremonyService(backend, keys.paymentKeys, { ttlMs: 600_000, now: () => now });
    ceremonies.startSweeping((state) => expired.push(state));
  });
  afterAll(async () => {
    ceremonies?.close();
    await backend?.close();
    await harness?.cleanup();
  });

  it('ends a ceremony interrupted after its last component, two minutes on, and not before', async () => {
    const plan = await ceremonies.start({ name: 'interrupted', type: 'AES_128', purpose: 'kbpk', components: 2 }, officer);
    // As if the process died between staging the last component and forming the key.
    for (const [number, who] of [[1, 'a'], [2, 'b']] as const) {
      const part = randomBytes(16);
      const caller = custodian(who);
      await backend.stageComponent(plan.id as never, { number, enteredBy: `certificate:${who}`, identities: identitiesOf(caller), enteredAt: new Date(now).toISOString(), kcv: nodeKcv('aes', part) }, part);
    }
    now += 60_000;
    await expect(ceremonies.enter({ id: plan.id, component: randomBytes(16), kcv: '000000' }, custodian('c'))).rejects.toMatchObject({ code: 'CEREMONY_CONFLICT' });
    now += 61_000;
    await expect(ceremonies.describe(plan.id)).rejects.toMatchObject({ code: 'CEREMONY_EXPIRED' });
    expect(expired.map((s) => s.plan.id)).toEqual([plan.id]);
    await expect(backend.describeCeremony(plan.id as never)).rejects.toMatchObject({ code: 'CEREMONY_NOT_FOUND' });
    await expect(keys.getKey('interrupted')).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
  });

  it('sweeps what expired once, whoever else ends it at the same moment, and leaves the rest', async () => {
    expired.length = 0;
    const old = await ceremonies.start({ name: 'old', type: 'AES_128', purpose: 'kbpk', components: 2 }, officer);
    now += 1;
    const young = await ceremonies.start({ name: 'young', type: 'AES_128', purpose: 'kbpk', components: 2 }, officer);
    now = Date.parse(old.expiresAt);
    const [swept, described] = await Promise.allSettled([ceremonies.sweep(), ceremonies.describe(old.id)]);
    expect(described).toMatchObject({ status: 'rejected', reason: { code: 'CEREMONY_EXPIRED' } });
    expect(swept).toMatchObject({ status: 'fulfilled', value: 0 });
    expect(expired.map((s) => s.plan.id)).toEqual([old.id]);
    expect((await ceremonies.describe(young.id)).received).toBe(0);
    now += 1;
    expect(await ceremonies.sweep()).toBe(1);
    expect(expired.map((s) => s.plan.id)).toEqual([old.id, young.id]);
  });
});
