/**
 * A key ceremony as the backend stores it: the plan (which key the components will form, how many, who
 * started it, until when) and one entry per component entered. The components themselves are staged by
 * the backend as sensitive objects that nothing can use (Backend.stageComponent); these records hold
 * only what custodians may see: names, numbers, identities, times and KCVs.
 */
import { randomBytes } from 'node:crypto';
import { invalid } from '../errors.js';
import type { NewKey } from '../backend/port.js';

declare const ceremonyIdBrand: unique symbol;
/** A ceremony's id: 32 lower-case hex digits (16 random bytes), checked once at the edge. */
export type CeremonyId = string & { readonly [ceremonyIdBrand]: true };

const CEREMONY_ID = /^[0-9a-f]{32}$/;

export function newCeremonyId(): CeremonyId {
  return randomBytes(16).toString('hex') as CeremonyId;
}

export function parseCeremonyId(value: unknown): CeremonyId {
  if (typeof value !== 'string' || !CEREMONY_ID.test(value)) throw invalid('a ceremony id is 32 lower-case hex digits');
  return value as CeremonyId;
}

/** What a ceremony will make and under which rules; written once, when it starts. */
export interface CeremonyPlan {
  readonly id: CeremonyId;
  /** The key the components form: version 1 of a new key (name, type, purpose, keyUsage, exportable). */
  readonly key: NewKey;
  /** How many components form the key. */
  readonly components: 2 | 3;
  /** The combined key's KCV (6 hex digits, upper case) that the key must have, when the starter gave one. */
  readonly expectedKcv?: string;
  /** The identity that started it ("certificate:CN", "token:sub", "none:anonymous"). */
  readonly startedBy: string;
  readonly startedAt: string;
  readonly expiresAt: string;
}

/** One component entered: never its value. */
export interface ComponentEntry {
  /** 1 to plan.components, in the order entered. */
  readonly number: number;
  /** Who entered it, for people to read: how the caller authenticated and its id ("certificate:CN"). */
  readonly enteredBy: string;
  /**
   * Every credential the custodian presented (identitiesOf): the certificate's subject and each of its
   * SANs, the token's issuer and subject. Dual control: no identity may enter a component when one of
   * these is already among an earlier entry's (sameCustodian), so that one person cannot count twice by
   * adding a token to a certificate or by holding two certificates with one SAN.
   */
  readonly identities: readonly string[];
  readonly enteredAt: string;
  /** The component's KCV, as the custodian gave it and the core checked it. */
  readonly kcv: string;
}

export interface CeremonyState {
  readonly plan: CeremonyPlan;
  /** In number order. */
  readonly entries: readonly ComponentEntry[];
}

/** Whether two entries share a credential: the same custodian, whatever else either presented. */
export function sameCustodian(a: Pick<ComponentEntry, 'identities'>, b: Pick<ComponentEntry, 'identities'>): boolean {
  return a.identities.some((identity) => b.identities.includes(identity));
}

/** The longest identity list an entry may carry, and the longest identity: bounds on what a backend stores. */
export const MAX_IDENTITIES = 16;
export const MAX_IDENTITY_LENGTH = 512;
