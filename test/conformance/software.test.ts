import { vitestHost } from '../helpers/vitestHost.js';
import { createSecretKey, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { softwareBackendFactory } from '../../adapters/software/index.js';
import { sealComponent } from '../../adapters/software/sealing.js';
import type { Backend } from '../../src/backend/port.js';
import { MAX_IDENTITIES, MAX_IDENTITY_LENGTH, newCeremonyId, type CeremonyId, type CeremonyPlan, type ComponentEntry } from '../../src/ceremonies/record.js';
import { parseKeyName } from '../../src/keys/names.js';
import { setOddParity } from '../../src/payment/crypto/parity.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../helpers/software.js';
import { describeBackendConformance } from '../../src/conformance/suites/backend.js';
import { describeDataProtectionConformance } from '../../src/conformance/suites/dataProtection.js';
import { describeKeyImportConformance } from '../../src/conformance/suites/keyImport.js';

const target = async () => {
  const h = await createSoftwareBackendConfig();
  return {
    open: () => softwareBackendFactory.create(h.config, { logger: pino({ level: 'silent' }) }),
    cleanup: () => h.cleanup(),
  };
};

describeBackendConformance(vitestHost, 'software', target);
describeKeyImportConformance(vitestHost, 'software', target);
describeDataProtectionConformance(vitestHost, 'software', target);

type Writable<T> = { -readonly [K in keyof T]: T[K] };
interface KeystoreWithCeremonies {
  ceremonies: Array<{
    plan: Omit<Writable<CeremonyPlan>, 'key'> & { key: Writable<CeremonyPlan['key']> };
    planSeal: unknown;
    components: Array<{ entry: Writable<ComponentEntry> & { identities: string[] }; material: unknown }>;
  }>;
}

const planFor = (id: CeremonyId): CeremonyPlan => ({
  id,
  key: { name: parseKeyName('zpk-ceremony'), type: 'TDES_3KEY', purpose: 'pin' },
  components: 3,
  startedBy: 'token:starter',
  startedAt: new Date().toISOString(),
  expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
});
const entryOf = (number: number, enteredBy: string, identities = [enteredBy]): ComponentEntry => ({
  number,
  enteredBy,
  identities,
  enteredAt: new Date().toISOString(),
  kcv: 'A1B2C3',
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
    const entries: ComponentEntry[] = [1, 2].map((number) => ({ number, enteredBy: `token:custodian-${number}`, identities: [`token:custodian-${number}`], enteredAt: new Date().toISOString(), kcv: 'A1B2C3' }));
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
      await b1.stageComponent(plan.id, entryOf(1, 'token:alice'), randomBytes(16));
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

  it('an edit of a plan or an entry in the file stops the start, with components entered or none', async () => {
    const b1 = await start();
    const [bare, begun, other] = [newCeremonyId(), newCeremonyId(), newCeremonyId()].map(planFor);
    for (const plan of [bare!, begun!, other!]) await b1.startCeremony(plan);
    await b1.stageComponent(begun!.id, entryOf(1, 'certificate:alice', ['certificate:alice', 'san:alice']), setOddParity(randomBytes(24)));
    await b1.close();
    const original = readFileSync(h.config.keystorePath, 'utf8');
    const planEdits: Array<(c: KeystoreWithCeremonies['ceremonies'][number], doc: KeystoreWithCeremonies) => void> = [
      (c) => void (c.plan.key.exportable = true),
      (c) => void (c.plan.expectedKcv = 'FFFFFF'),
      (c) => void (c.plan.expiresAt = new Date(Date.now() + 365 * 86_400_000).toISOString()),
      (c) => void (c.plan.components = 2),
      (c, doc) => void (c.planSeal = doc.ceremonies[2]!.planSeal),
    ];
    const entryEdits: Array<(entry: KeystoreWithCeremonies['ceremonies'][number]['components'][number]['entry']) => void> = [
      (e) => void (e.enteredBy = 'token:mallory'),
      (e) => void (e.identities = ['token:mallory']),
      (e) => void e.identities.pop(),
      (e) => void (e.kcv = 'FFFFFF'),
    ];
    const refusedWith = async (edit: (doc: KeystoreWithCeremonies) => void, problem: RegExp) => {
      const doc = JSON.parse(original) as KeystoreWithCeremonies;
      edit(doc);
      writeFileSync(h.config.keystorePath, JSON.stringify(doc));
      await expect(start()).rejects.toThrow(problem);
    };
    for (const index of [0, 1]) {
      for (const edit of planEdits) {
        await refusedWith((doc) => edit(doc.ceremonies[index]!, doc), /ceremony [0-9a-f]{32} has a plan that fails authentication/);
      }
    }
    for (const edit of entryEdits) {
      await refusedWith((doc) => edit(doc.ceremonies[1]!.components[0]!.entry), /ceremony [0-9a-f]{32} component 1 fails authentication/);
    }
    writeFileSync(h.config.keystorePath, original);
    expect((await (await start()).describeCeremony(begun!.id)).entries).toHaveLength(1);
  });

  it('identities: 1 to MAX_IDENTITIES non-empty strings of at most MAX_IDENTITY_LENGTH, or INVALID_ARGUMENT; the reader checks them too', async () => {
    const b = await start();
    const plan = planFor(newCeremonyId());
    await b.startCeremony(plan);
    const refused: unknown[] = [[], [''], Array.from({ length: MAX_IDENTITIES + 1 }, (_, i) => `token:${i}`), ['x'.repeat(MAX_IDENTITY_LENGTH + 1)], [42], 'token:alice', undefined];
    for (const identities of refused) {
      await expect(b.stageComponent(plan.id, { ...entryOf(1, 'token:alice'), identities: identities as string[] }, setOddParity(randomBytes(24)))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    const most = Array.from({ length: MAX_IDENTITIES }, (_, i) => `token:${i}`.padEnd(MAX_IDENTITY_LENGTH, 'x'));
    await b.stageComponent(plan.id, { ...entryOf(1, 'token:alice'), identities: most }, setOddParity(randomBytes(24)));
    expect((await b.describeCeremony(plan.id)).entries.map((e) => e.identities)).toEqual([most]);
    await b.close();

    const doc = JSON.parse(readFileSync(h.config.keystorePath, 'utf8')) as KeystoreWithCeremonies;
    doc.ceremonies[0]!.components[0]!.entry = { ...doc.ceremonies[0]!.components[0]!.entry, identities: [] };
    writeFileSync(h.config.keystorePath, JSON.stringify(doc));
    await expect(start()).rejects.toThrow(/is malformed: \/ceremonies\/0\/components\/0\/entry\/identities/);
  });

  it('two entries sharing an identity stop the start, even sealed under the master key', async () => {
    const b1 = await start();
    const plan = planFor(newCeremonyId());
    await b1.startCeremony(plan);
    await b1.stageComponent(plan.id, entryOf(1, 'token:alice', ['token:alice', 'san:alice']), setOddParity(randomBytes(24)));
    await b1.stageComponent(plan.id, entryOf(2, 'token:bob'), setOddParity(randomBytes(24)));
    await b1.close();
    // Only the holder of the master key can write such a file: the reader checks dual control all the same.
    const doc = JSON.parse(readFileSync(h.config.keystorePath, 'utf8')) as KeystoreWithCeremonies;
    const ceremony = doc.ceremonies[0]!;
    const entry = { ...ceremony.components[1]!.entry, identities: ['token:bob', 'san:alice'] };
    const masterKey = createSecretKey(Buffer.from(process.env[h.config.masterKeyEnv]!, 'base64'));
    ceremony.components[1] = { entry, material: sealComponent(masterKey, ceremony.plan, entry, setOddParity(randomBytes(24))) };
    writeFileSync(h.config.keystorePath, JSON.stringify(doc));
    await expect(start()).rejects.toThrow(/ceremony [0-9a-f]{32} has two components entered by one identity/);
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
