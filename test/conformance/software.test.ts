import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { softwareBackendFactory } from '../../adapters/software/index.js';
import type { Backend } from '../../src/backend/port.js';
import { newCeremonyId, type CeremonyId, type CeremonyPlan, type ComponentEntry } from '../../src/ceremonies/record.js';
import { parseKeyName } from '../../src/keys/names.js';
import { setOddParity } from '../../src/payment/crypto/parity.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../helpers/software.js';
import { describeBackendConformance } from './backendConformance.js';
import { describeKeyImportConformance } from './keyImportConformance.js';

const target = async () => {
  const h = await createSoftwareBackendConfig();
  return {
    open: () => softwareBackendFactory.create(h.config, { logger: pino({ level: 'silent' }) }),
    cleanup: () => h.cleanup(),
  };
};

describeBackendConformance('software', target);
describeKeyImportConformance('software', target);

interface KeystoreWithCeremonies {
  ceremonies: Array<{ components: Array<{ entry: { number: number }; material: unknown }> }>;
}

const planFor = (id: CeremonyId): CeremonyPlan => ({
  id,
  key: { name: parseKeyName('zpk-ceremony'), type: 'TDES_3KEY', purpose: 'pin' },
  components: 3,
  startedBy: 'token:starter',
  startedAt: new Date().toISOString(),
  expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
});

describe('software backend: ceremonies in the keystore file', () => {
  let h: SoftwareBackendHarness;
  const open: Backend[] = [];
  const start = async () => {
    const b = await softwareBackendFactory.create(h.config, { logger: pino({ level: 'silent' }) });
    open.push(b);
    return b;
  };
  beforeEach(async () => {
    h = await createSoftwareBackendConfig();
  });
  afterEach(async () => {
    for (const b of open.splice(0)) await b.close();
    await h.cleanup();
  });

  it('a half-done ceremony survives a restart; its components are nowhere in the file in clear', async () => {
    const plan = planFor(newCeremonyId());
    const entries: ComponentEntry[] = [1, 2].map((number) => ({ number, enteredBy: `token:custodian-${number}`, enteredAt: new Date().toISOString(), kcv: 'A1B2C3' }));
    const parts = [setOddParity(randomBytes(24)), setOddParity(randomBytes(24))];
    const b1 = await start();
    await b1.startCeremony(plan);
    await b1.stageComponent(plan.id, entries[0]!, parts[0]!);
    await b1.stageComponent(plan.id, entries[1]!, parts[1]!);
    await b1.close();

    const file = readFileSync(h.config.keystorePath);
    for (const part of parts) {
      for (const encoded of [part.toString('hex'), part.toString('hex').toUpperCase(), part.toString('base64'), part.toString('base64url')]) {
        expect(file.includes(encoded)).toBe(false);
      }
      expect(file.includes(part)).toBe(false);
    }

    const b2 = await start();
    expect(await b2.describeCeremony(plan.id)).toEqual({ plan, entries });
    expect(await b2.stagedComponents(plan.id)).toEqual(parts);
    // and it goes on where it stopped
    await expect(b2.stageComponent(plan.id, { ...entries[0]!, number: 3 }, setOddParity(randomBytes(24)))).rejects.toMatchObject({ code: 'DUAL_CONTROL' });
    await b2.endCeremony(plan.id);
    await b2.close();
    expect(JSON.parse(readFileSync(h.config.keystorePath, 'utf8'))).not.toHaveProperty('ceremonies');
  });

  it('a plan the file could not hold again is refused (INVALID_ARGUMENT), and stores only its own fields', async () => {
    const b = await start();
    await expect(b.startCeremony({ ...planFor(newCeremonyId()), id: 'not-an-id' as CeremonyId })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(b.startCeremony({ ...planFor(newCeremonyId()), components: 4 as 3 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const plan = planFor(newCeremonyId());
    await b.startCeremony({ ...plan, note: 'not a plan field' } as CeremonyPlan);
    await expect(b.startCeremony(plan)).rejects.toMatchObject({ code: 'CEREMONY_CONFLICT' });
    expect(await b.listCeremonies()).toEqual([{ plan, entries: [] }]);
    expect((await b.describeCeremony(plan.id)).plan).not.toHaveProperty('note');
    await b.close();
    expect(await (await start()).listCeremonies()).toEqual([{ plan, entries: [] }]);
  });

  it('a component moved to another number or ceremony stops the start', async () => {
    const b1 = await start();
    const plans = [newCeremonyId(), newCeremonyId()].map((id) => ({ ...planFor(id) }));
    for (const plan of plans) {
      await b1.startCeremony(plan);
      await b1.stageComponent(plan.id, { number: 1, enteredBy: 'token:alice', enteredAt: new Date().toISOString(), kcv: 'A1B2C3' }, randomBytes(16));
    }
    await b1.close();
    const original = readFileSync(h.config.keystorePath, 'utf8');
    const edits: Array<(doc: KeystoreWithCeremonies) => void> = [
      (doc) => void (doc.ceremonies[0]!.components[0]!.entry.number = 2),
      (doc) => void (doc.ceremonies[0]!.components[0]!.material = doc.ceremonies[1]!.components[0]!.material),
    ];
    for (const edit of edits) {
      const doc = JSON.parse(original) as KeystoreWithCeremonies;
      edit(doc);
      writeFileSync(h.config.keystorePath, JSON.stringify(doc));
      await expect(start()).rejects.toThrow(/ceremony [0-9a-f]{32} component \d fails authentication/);
    }
  });

  it('an import wrapping key serves no operation but importWrappedKey', async () => {
    const b = await start();
    const meta = await b.createKey({ name: parseKeyName('import-wrapping'), type: 'RSA_3072', purpose: 'wrap' });
    const ref = { name: meta.name, version: meta.primaryVersion, type: meta.type };
    await expect(b.decrypt(ref, 'RSA_OAEP_SHA256', { data: Buffer.alloc(384) })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    await expect(b.sign(ref, 'RS256', { kind: 'message', data: Buffer.from('m') })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    expect((await b.rotateKey(meta.name)).primaryVersion).toBe(2);
  });
});
