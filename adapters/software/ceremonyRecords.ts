/**
 * Key ceremonies in the keystore file: each plan with its seal and its staged components, every component
 * sealed under the master key (sealing.ts) next to its entry. The plan's seal and each component's AAD
 * bind the plan and entries, which are in clear, so that an edit of the file (an exportable key, a later
 * expiry, a renamed custodian) stops the start. Only sealed components are ever held in memory; one is
 * opened for the one call that needs it (stagedComponents) and at start, to check it.
 */
import type { KeyObject } from 'node:crypto';
import { Ajv } from 'ajv';
import {
  MAX_IDENTITIES,
  MAX_IDENTITY_LENGTH,
  parseCeremonyId,
  sameCustodian,
  type CeremonyPlan,
  type CeremonyState,
  type ComponentEntry,
} from '../../src/ceremonies/record.js';
import { HsmBridgeError, invalid } from '../../src/errors.js';
import { parseKeyName } from '../../src/keys/names.js';
import { allKeyTypes, keyPurposes, keyUsages, modesOfUse } from '../../src/keys/types.js';
import { openComponent, planSealPasses, sealComponent, sealedSchema, sealPlan, type Sealed } from './sealing.js';

export interface StoredComponent {
  readonly entry: ComponentEntry;
  readonly material: Sealed;
}

export interface StoredCeremony {
  readonly plan: CeremonyPlan;
  /** A tag over the plan (sealing.ts): the plan cannot be edited before its first component binds it too. */
  readonly planSeal: Sealed;
  /** In number order. */
  readonly components: readonly StoredComponent[];
}

const entrySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['number', 'enteredBy', 'identities', 'enteredAt', 'kcv'],
  properties: {
    number: { type: 'integer' },
    enteredBy: { type: 'string' },
    identities: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_IDENTITIES,
      items: { type: 'string', minLength: 1, maxLength: MAX_IDENTITY_LENGTH },
    },
    enteredAt: { type: 'string' },
    kcv: { type: 'string' },
  },
};

export const storedCeremonySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['plan', 'planSeal', 'components'],
  properties: {
    planSeal: sealedSchema,
    plan: {
      type: 'object',
      additionalProperties: false,
      required: ['id', 'key', 'components', 'startedBy', 'startedAt', 'expiresAt'],
      properties: {
        id: { type: 'string' },
        key: {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'type', 'purpose'],
          properties: {
            name: { type: 'string' },
            type: { enum: allKeyTypes },
            purpose: { enum: keyPurposes },
            exportable: { type: 'boolean' },
            modeOfUse: { enum: modesOfUse },
            keyUsage: { enum: keyUsages },
          },
        },
        components: { enum: [2, 3] },
        expectedKcv: { type: 'string' },
        startedBy: { type: 'string' },
        startedAt: { type: 'string' },
        expiresAt: { type: 'string' },
      },
    },
    components: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['entry', 'material'],
        properties: {
          entry: entrySchema,
          material: sealedSchema,
        },
      },
    },
  },
};

const ajv = new Ajv({ allErrors: false, strict: false });
const validateCeremony = ajv.compile<StoredCeremony>(storedCeremonySchema);
const validateEntry = ajv.compile<ComponentEntry>(entrySchema);

/**
 * A new ceremony as it is stored: the plan's own fields only, checked as the keystore's reader will check
 * them, so that what is written always opens again (an unknown field would stop the next start).
 */
export function newCeremony(masterKey: KeyObject, plan: CeremonyPlan): StoredCeremony {
  const { id, key, components, expectedKcv, startedBy, startedAt, expiresAt } = plan;
  const stored: CeremonyPlan = {
    id,
    key: {
      name: key.name,
      type: key.type,
      purpose: key.purpose,
      ...(key.exportable !== undefined ? { exportable: key.exportable } : {}),
      ...(key.modeOfUse !== undefined ? { modeOfUse: key.modeOfUse } : {}),
      ...(key.keyUsage !== undefined ? { keyUsage: key.keyUsage } : {}),
    },
    components,
    ...(expectedKcv !== undefined ? { expectedKcv } : {}),
    startedBy,
    startedAt,
    expiresAt,
  };
  const ceremony: StoredCeremony = { plan: stored, planSeal: sealPlan(masterKey, stored), components: [] };
  if (!validateCeremony(ceremony) || !hasValidNames(ceremony.plan)) throw invalid('the ceremony plan is malformed');
  return ceremony;
}

export function stateOf(ceremony: StoredCeremony): CeremonyState {
  return { plan: ceremony.plan, entries: ceremony.components.map((c) => c.entry) };
}

/**
 * The ceremony with one more component, sealed; `component` is left as it is (the core zeroes it).
 * The checks run in the backend's queue of changes, so two entries cannot both pass them.
 */
export function withComponent(masterKey: KeyObject, ceremony: StoredCeremony, entry: ComponentEntry, component: Buffer): StoredCeremony {
  const { plan, components } = ceremony;
  if (!planSealPasses(masterKey, plan, ceremony.planSeal)) throw new HsmBridgeError('INTERNAL', 'the ceremony plan fails authentication');
  const { number, enteredBy, identities, enteredAt, kcv } = entry;
  // Checked as the keystore's reader checks it, so that what is written always opens again (see problemWith).
  if (!validateEntry({ number, enteredBy, identities, enteredAt, kcv })) {
    throw invalid(`the entry is malformed (a custodian has 1 to ${MAX_IDENTITIES} identities of 1 to ${MAX_IDENTITY_LENGTH} characters)`);
  }
  if (number < 1 || number > plan.components) throw invalid(`a component number is 1 to ${plan.components}`);
  if (components.some((c) => c.entry.number === number)) {
    throw new HsmBridgeError('CEREMONY_CONFLICT', `component ${number} of this ceremony is already entered`);
  }
  const stored: ComponentEntry = { number, enteredBy, identities: [...identities], enteredAt, kcv };
  if (components.some((c) => sameCustodian(c.entry, stored))) {
    throw new HsmBridgeError('DUAL_CONTROL', 'this custodian already entered a component of this ceremony');
  }
  const sealed: StoredComponent = { entry: stored, material: sealComponent(masterKey, plan, stored, component) };
  return { ...ceremony, components: [...components, sealed].sort((a, b) => a.entry.number - b.entry.number) };
}

/** The clear components in number order; the caller zeroes them. */
export function openComponents(masterKey: KeyObject, ceremony: StoredCeremony): Buffer[] {
  const opened: Buffer[] = [];
  for (const { entry, material } of ceremony.components) {
    const clear = openComponent(masterKey, ceremony.plan, entry, material);
    if (!clear) {
      for (const b of opened) b.fill(0);
      throw new HsmBridgeError('INTERNAL', 'a staged component fails authentication');
    }
    opened.push(clear);
  }
  return opened;
}

function hasValidNames(plan: CeremonyPlan): boolean {
  try {
    parseCeremonyId(plan.id);
    parseKeyName(plan.key.name);
    return true;
  } catch {
    return false;
  }
}

/** What is wrong with a ceremony read from the file, or undefined; every component is opened and zeroed. */
export function problemWith(masterKey: KeyObject, ceremony: StoredCeremony): string | undefined {
  const { plan, components } = ceremony;
  if (!hasValidNames(plan)) return 'has an invalid id or key name';
  if (!planSealPasses(masterKey, plan, ceremony.planSeal)) return 'has a plan that fails authentication (altered)';
  let previous = 0;
  for (const [i, { entry, material }] of components.entries()) {
    if (entry.number <= previous || entry.number > plan.components) return 'has component numbers out of order or beyond its plan';
    previous = entry.number;
    const clear = openComponent(masterKey, plan, entry, material);
    if (!clear) return `component ${entry.number} fails authentication (altered, or moved from another ceremony)`;
    clear.fill(0);
    if (components.slice(0, i).some((c) => sameCustodian(c.entry, entry))) return 'has two components entered by one identity';
  }
  return undefined;
}
