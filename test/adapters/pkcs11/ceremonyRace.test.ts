/**
 * Two replicas entering a component of one ceremony at the same moment, on SoftHSM: the entry another
 * replica wrote during this one's read-back pause (here written straight into the token, as that replica
 * would) never counts and never goes into a key, whichever of the two withdraws when. This is how one
 * custodian, sending the same component to two replicas at once, could otherwise form a key alone.
 */
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pkcs11BackendFactory } from '../../../adapters/pkcs11/index.js';
import type { Backend } from '../../../src/backend/port.js';
import { newCeremonyId, type CeremonyPlan, type ComponentEntry } from '../../../src/ceremonies/record.js';
import { parseKeyName } from '../../../src/keys/names.js';
import { createSoftHsmToken, type SoftHsmToken } from '../../helpers/softhsm.js';
import { TokenInspector } from './tokenInspector.js';

const A = pkcs11js;

describe('PKCS#11 ceremonies: entries at the same moment', () => {
  let token: SoftHsmToken;
  let backend: Backend;
  let inspector: TokenInspector;

  beforeAll(async () => {
    token = await createSoftHsmToken();
    backend = await pkcs11BackendFactory.create(token.backendConfig(), { logger: pino({ level: 'silent' }) });
    inspector = new TokenInspector(token.library, token.tokenLabel, token.pin);
  });
  afterAll(async () => {
    await backend?.close();
    await token?.cleanup();
  });

  const entry = (number: number, who: string, at: Date): ComponentEntry => ({ number, enteredBy: who, identities: [who], enteredAt: at.toISOString(), kcv: 'ABCDEF' });

  /** What another replica's stageComponent writes: the adapter's object layout, made directly. */
  function writeAsAnotherReplica(plan: CeremonyPlan, e: ComponentEntry): void {
    const id = Buffer.concat([Buffer.from('hsmc'), randomBytes(8), Buffer.from(JSON.stringify(e))]);
    inspector.withSession((api, session) =>
      api.C_CreateObject(session, [
        { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY },
        { type: A.CKA_KEY_TYPE, value: A.CKK_GENERIC_SECRET },
        { type: A.CKA_TOKEN, value: true },
        { type: A.CKA_PRIVATE, value: true },
        { type: A.CKA_LABEL, value: plan.id },
        { type: A.CKA_ID, value: id },
        { type: A.CKA_SENSITIVE, value: true },
        { type: A.CKA_EXTRACTABLE, value: true },
        { type: A.CKA_VALUE, value: randomBytes(16) },
      ]),
    );
  }

  async function newPlan(): Promise<CeremonyPlan> {
    const now = new Date();
    const plan: CeremonyPlan = {
      id: newCeremonyId(),
      key: { name: parseKeyName(`race-${randomBytes(3).toString('hex')}`), type: 'TDES_2KEY', purpose: 'pin' },
      components: 2,
      startedBy: 'token:officer',
      startedAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + 3_600_000).toISOString(),
    };
    await backend.startCeremony(plan);
    return plan;
  }

  it('one custodian sending component 1 to two replicas at once: one entry stands, the ceremony is not complete, one component comes back', async () => {
    const plan = await newPlan();
    const staging = backend.stageComponent(plan.id, entry(1, 'token:mallory', new Date()), randomBytes(16));
    await new Promise((resolve) => setTimeout(resolve, 5)); // within this replica's read-back pause
    writeAsAnotherReplica(plan, entry(1, 'token:mallory', new Date(Date.now() + 1)));
    const state = await staging;
    expect(state.entries.map((e) => e.number)).toEqual([1]);
    expect((await backend.describeCeremony(plan.id)).entries).toHaveLength(1);
    const parts = await backend.stagedComponents(plan.id);
    expect(parts).toHaveLength(1);
    for (const p of parts) p.fill(0);
    await backend.endCeremony(plan.id);
    expect(inspector.objects(plan.id, A.CKO_SECRET_KEY, []).length + inspector.objects(plan.id, A.CKO_DATA, []).length).toBe(0);
  });

  it('the same custodian under another number at the same moment: dual control still holds', async () => {
    const plan = await newPlan();
    const staging = backend.stageComponent(plan.id, entry(1, 'token:mallory', new Date()), randomBytes(16));
    await new Promise((resolve) => setTimeout(resolve, 5));
    writeAsAnotherReplica(plan, entry(2, 'token:mallory', new Date(Date.now() + 1)));
    await staging;
    expect((await backend.describeCeremony(plan.id)).entries.map((e) => e.enteredBy)).toEqual(['token:mallory']);
    await backend.endCeremony(plan.id);
  });

  it('a component staged just after the plan is ended withdraws itself: nothing is left without a plan', async () => {
    const plan = await newPlan();
    const staging = backend.stageComponent(plan.id, entry(1, 'token:alice', new Date()), randomBytes(16));
    await new Promise((resolve) => setTimeout(resolve, 5));
    await backend.endCeremony(plan.id);
    await expect(staging).rejects.toMatchObject({ code: 'CEREMONY_NOT_FOUND' });
    expect(inspector.objects(plan.id, A.CKO_SECRET_KEY, []).length).toBe(0);
  });
});
