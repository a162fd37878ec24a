/**
 * Key ceremonies in the keystore file: each plan with its staged components, every component sealed
 * under the master key (sealing.ts) next to its entry. Only sealed components are ever held in memory;
 * one is opened for the one call that needs it (stagedComponents) and at start, to check it.
 */
import type { KeyObject } from 'node:crypto';
import { Ajv } from 'ajv';
import { parseCeremonyId, type CeremonyPlan, type CeremonyState, type ComponentEntry } from '../../src/ceremonies/record.js';
import { HsmBridgeError, invalid } from '../../src/errors.js';
import { parseKeyName } from '../../src/keys/names.js';
import { allKeyTypes, keyPurposes, keyUsages, modesOfUse } from '../../src/keys/types.js';
import { openComponent, sealComponent, sealedSchema, type Sealed } from './sealing.js';

export interface StoredComponent {
  readonly entry: ComponentEntry;
  readonly material: Sealed;
}

export interface StoredCeremony {
  readonly plan: CeremonyPlan;
  /** In number order. */
  readonly components: readonly StoredComponent[];
}

export const storedCeremonySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['plan', 'components'],
  properties: {
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
          entry: {
            type: 'object',
            additionalProperties: false,
            required: ['number', 'enteredBy', 'enteredAt', 'kcv'],
            properties: {
              number: { type: 'integer' },
              enteredBy: { type: 'string' },
              enteredAt: { type: 'string' },
              kcv: { type: 'string' },
            },
          },
          material: sealedSchema,
        },
      },
    },
  },
};

const validateCeremony = new Ajv({ allErrors: false, strict: false }).compile<StoredCeremony>(storedCeremonySchema);

/**
 * A new ceremony as it is stored: the plan's own fields only, checked as the keystore's reader will check
 * them, so that what is written always opens again (an unknown field would stop the next start).
 */
export function newCeremony(plan: CeremonyPlan): StoredCeremony {
  const { id, key, components, expectedKcv, startedBy, startedAt, expiresAt } = plan;
  const ceremony: StoredCeremony = {
    plan: {
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
    },
    components: [],
  };
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
  // A number outside the plan would leave a keystore that no longer opens (see problemWith).
  if (!Number.isInteger(entry.number) || entry.number < 1 || entry.number > plan.components) {
    throw invalid(`a component number is 1 to ${plan.components}`);
  }
  if (components.some((c) => c.entry.number === entry.number)) {
    throw new HsmBridgeError('CEREMONY_CONFLICT', `component ${entry.number} of this ceremony is already entered`);
  }
  if (components.some((c) => c.entry.enteredBy === entry.enteredBy)) {
    throw new HsmBridgeError('DUAL_CONTROL', 'this identity already entered a component of this ceremony');
  }
  const { number, enteredBy, enteredAt, kcv } = entry;
  const stored: StoredComponent = { entry: { number, enteredBy, enteredAt, kcv }, material: sealComponent(masterKey, plan.id, number, component) };
  return { plan, components: [...components, stored].sort((a, b) => a.entry.number - b.entry.number) };
}

/** The clear components in number order; the caller zeroes them. */
export function openComponents(masterKey: KeyObject, ceremony: StoredCeremony): Buffer[] {
  const opened: Buffer[] = [];
  for (const { entry, material } of ceremony.components) {
    const clear = openComponent(masterKey, ceremony.plan.id, entry.number, material);
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
  let previous = 0;
  for (const { entry, material } of components) {
    if (entry.number <= previous || entry.number > plan.components) return 'has component numbers out of order or beyond its plan';
    previous = entry.number;
    if (components.filter((c) => c.entry.enteredBy === entry.enteredBy).length > 1) return 'has two components entered by one identity';
    const clear = openComponent(masterKey, plan.id, entry.number, material);
    if (!clear) return `component ${entry.number} fails authentication (altered, or moved from another ceremony)`;
    clear.fill(0);
  }
  return undefined;
}
