/**
 * Key ceremonies: a payment key formed from 2 or 3 clear components, each entered by a different
 * custodian (dual control), as payment HSMs do it (payShield FK/A4).
 *
 * - Each component is checked when it arrives: its length, odd DES parity for TDES, and its KCV, which
 *   the custodian read off the component's form. A mismatch refuses that component and names its number.
 * - The backend stages it as a sensitive object nothing can use (Backend.stageComponent), so that no
 *   component stays in this process between requests, and any replica, or the same one after a restart,
 *   continues the ceremony: its state lives in the backend, like key metadata.
 * - After the last component the components are combined (XOR) and the key is made through the same
 *   import path as a TR-31 import (odd parity, one value never held as two kinds). The backends here cannot
 *   XOR keys inside, so the components and the combined key exist in this process for that one call and
 *   are zeroed after it. The combined key's KCV is checked against expectedKcv when one was given.
 * - A ceremony ends, and its staged components are destroyed, at completion, cancellation, a failed
 *   completion, or expiry (ceremonies.ttlMs after its start; checked on every use and by a sweep).
 */
import { createHash } from 'node:crypto';
import { HsmBridgeError, invalid, type AuditDetails } from '../errors.js';
import type { Backend } from '../backend/port.js';
import type { Caller } from '../api/stages.js';
import { parseKeyName, type KeyName } from '../keys/names.js';
import { keyTypes, parseKeyPurpose, parseKeyType, parseKeyUsage, type KeyMetadata, type KeyType } from '../keys/types.js';
import { hasOddParity, setOddParity } from '../payment/crypto/parity.js';
import { checkBlockOfMaterial, KCV_BYTES } from '../payment/kcv.js';
import type { PaymentKeys } from '../payment/paymentKeys.js';
import {
  MAX_IDENTITIES,
  MAX_IDENTITY_LENGTH,
  newCeremonyId,
  parseCeremonyId,
  sameCustodian,
  type CeremonyId,
  type CeremonyPlan,
  type CeremonyState,
  type ComponentEntry,
} from './record.js';

/** The key types a ceremony can form: the payment world's symmetric keys. */
const ceremonyTypes: readonly KeyType[] = ['TDES_2KEY', 'TDES_3KEY', 'AES_128', 'AES_256'];
const ceremonyPurposes = ['pin', 'bdk', 'kbpk', 'mac'] as const;
const KCV = /^[0-9A-Fa-f]{6}$/;
/**
 * A ceremony whose components are all staged but that is still there this long after the last one was
 * entered was interrupted while its key was being formed (a crash, a lost backend): it counts as expired.
 */
const FORMING_MS = 120_000;

export interface StartCeremonyInput {
  name: unknown;
  type: unknown;
  purpose: unknown;
  keyUsage?: unknown;
  exportable?: unknown;
  components: unknown;
  expectedKcv?: unknown;
}

export interface EnterComponentInput {
  id: unknown;
  /** Hex, as the custodian's form shows it. Zeroed by the pipeline (a secret input). */
  component: Buffer;
  kcv: unknown;
}

/** A ceremony as callers see it: never a component. */
export interface CeremonyView {
  readonly id: string;
  readonly name: string;
  readonly type: string;
  readonly purpose: string;
  readonly keyUsage?: string;
  readonly exportable: boolean;
  readonly components: number;
  readonly received: number;
  readonly expectedKcv?: string;
  readonly startedBy: string;
  readonly startedAt: string;
  readonly expiresAt: string;
  /** Who entered which component, when, with its KCV: not every credential they presented (identities). */
  readonly entries: readonly Omit<ComponentEntry, 'identities'>[];
}

/** What entering a component answers: progress, or the key it completed and its KCV. */
export type EnterResult =
  | { readonly completed: false; readonly ceremony: CeremonyId; readonly number: number; readonly received: number; readonly of: number }
  | { readonly completed: true; readonly ceremony: CeremonyId; readonly number: number; readonly received: number; readonly of: number; readonly key: KeyMetadata; readonly keyCheckValue: string };

export interface CeremonyOptions {
  readonly ttlMs: number;
  readonly now?: () => number;
}

/** Who a caller is, for people to read: the way it proved it and its id. */
export const custodianOf = (caller: Caller): string => `${caller.authenticatedBy}:${caller.id}`;

/**
 * Every credential a caller presented, for dual control (ComponentEntry.identities): the certificate's
 * subject and each of its SANs, the token's issuer and subject (or client). A long one is kept as its
 * SHA-256, so that the comparison stays exact.
 */
export function identitiesOf(caller: Caller): string[] {
  const identities: string[] = [];
  if (caller.certSubject !== undefined) identities.push(`cert-subject:${caller.certSubject}`);
  for (const san of caller.certSans ?? []) identities.push(`cert-san:${san}`);
  const claims = caller.jwtClaims;
  if (claims !== undefined) {
    const subject = [claims.sub, claims.client_id, claims.azp].find((c) => typeof c === 'string') ?? '';
    identities.push(`token:${String(claims.iss ?? '')}|${String(subject)}`);
  }
  if (identities.length === 0) identities.push(custodianOf(caller));
  if (identities.length > MAX_IDENTITIES) {
    throw new HsmBridgeError('DUAL_CONTROL', `a custodian's credentials may carry at most ${MAX_IDENTITIES} names (certificate subject and SANs, token subject)`);
  }
  return identities.map((i) => (i.length <= MAX_IDENTITY_LENGTH ? i : `sha256:${createHash('sha256').update(i).digest('hex')}`));
}

const kcvOf = (family: 'tdes' | 'aes', key: Buffer): string => {
  const block = checkBlockOfMaterial(family, key);
  const kcv = block.subarray(0, KCV_BYTES).toString('hex').toUpperCase();
  block.fill(0);
  return kcv;
};

export class CeremonyService {
  /** Calls on one ceremony run one at a time in this process; the backend orders them across replicas. */
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly now: () => number;
  private sweeper: NodeJS.Timeout | undefined;
  /** Tells the log and the audit trail that a ceremony expired (app.ts sets it once the trail is open). */
  private expiredHook: ((state: CeremonyState) => void) | undefined;

  constructor(
    private readonly backend: Backend,
    private readonly paymentKeys: PaymentKeys,
    private readonly options: CeremonyOptions,
  ) {
    this.now = options.now ?? (() => Date.now());
  }

  /** Ends expired ceremonies every minute (or every ttlMs, when shorter) until close(), telling `expired` of each. */
  startSweeping(expired?: (state: CeremonyState) => void): void {
    this.expiredHook = expired;
    if (!this.backend.capabilities().keyImport.ceremonies || this.sweeper) return;
    this.sweeper = setInterval(() => void this.sweep().catch(() => undefined), Math.min(60_000, this.options.ttlMs));
    this.sweeper.unref();
  }

  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /** Ends every expired ceremony; answers how many. */
  async sweep(): Promise<number> {
    let ended = 0;
    for (const listed of await this.backend.listCeremonies()) {
      if (!this.expired(listed)) continue;
      // Read again in the ceremony's queue: a request may have completed, cancelled or expired it meanwhile.
      const id = listed.plan.id;
      const endedNow = await this.serialized(id, async () => {
        let state: CeremonyState;
        try {
          state = await this.backend.describeCeremony(id);
        } catch (e) {
          if (e instanceof HsmBridgeError && e.code === 'CEREMONY_NOT_FOUND') return false;
          throw e;
        }
        if (!this.expired(state)) return false;
        await this.backend.endCeremony(id);
        this.expiredHook?.(state);
        return true;
      });
      if (endedNow) ended++;
    }
    return ended;
  }

  async start(input: StartCeremonyInput, caller: Caller): Promise<CeremonyView> {
    this.checkSupported();
    this.checkIdentified(caller);
    const name = parseKeyName(input.name);
    const type = parseKeyType(input.type);
    if (!ceremonyTypes.includes(type)) throw new HsmBridgeError('INCOMPATIBLE_KEY', `a ceremony forms ${ceremonyTypes.join(', ')} keys, not ${type}`);
    if (typeof input.purpose !== 'string' || !(ceremonyPurposes as readonly string[]).includes(input.purpose)) {
      throw invalid(`a ceremony forms payment keys: purpose is one of ${ceremonyPurposes.join(', ')}`);
    }
    const purpose = parseKeyPurpose(input.purpose, type);
    const keyUsage = parseKeyUsage(input.keyUsage, type, purpose);
    const exportable = this.paymentKeys.parseExportable(input.exportable, purpose);
    if (input.components !== 2 && input.components !== 3) throw invalid('components must be 2 or 3');
    let expectedKcv: string | undefined;
    if (input.expectedKcv !== undefined && input.expectedKcv !== '') {
      if (typeof input.expectedKcv !== 'string' || !KCV.test(input.expectedKcv)) throw invalid('expectedKcv is 6 hex digits');
      expectedKcv = input.expectedKcv.toUpperCase();
    }
    if (!this.backend.capabilities().keyTypes.includes(type)) throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend cannot hold ${type} keys`);
    await this.checkNameFree(name);
    const started = this.now();
    const plan: CeremonyPlan = {
      id: newCeremonyId(),
      key: { name, type, purpose, ...(keyUsage ? { keyUsage } : {}), ...(exportable ? { exportable } : {}) },
      components: input.components,
      ...(expectedKcv ? { expectedKcv } : {}),
      startedBy: custodianOf(caller),
      startedAt: new Date(started).toISOString(),
      expiresAt: new Date(started + this.options.ttlMs).toISOString(),
    };
    await this.backend.startCeremony(plan);
    return viewOf({ plan, entries: [] });
  }

  /**
   * The name of the key a ceremony forms, for the access policy (an operation's resolveKeys); undefined
   * when there is no such ceremony, which the operation itself then reports.
   */
  async keyNameOf(id: unknown): Promise<string | undefined> {
    if (typeof id !== 'string' || !/^[0-9a-f]{32}$/.test(id)) return undefined;
    try {
      return (await this.backend.describeCeremony(id as CeremonyId)).plan.key.name;
    } catch (e) {
      if (e instanceof HsmBridgeError && e.code === 'CEREMONY_NOT_FOUND') return undefined;
      throw e;
    }
  }

  async describe(id: unknown): Promise<CeremonyView> {
    const ceremony = parseCeremonyId(id);
    return this.serialized(ceremony, async () => viewOf(await this.current(ceremony)));
  }

  async cancel(id: unknown): Promise<void> {
    const ceremony = parseCeremonyId(id);
    await this.serialized(ceremony, async () => {
      await this.backend.describeCeremony(ceremony);
      await this.backend.endCeremony(ceremony);
    });
  }

  /**
   * Checks and stages one component; after the last one, forms the key. The component buffer is the
   * caller's: the pipeline zeroes it (a secret input).
   */
  async enter(input: EnterComponentInput, caller: Caller): Promise<EnterResult> {
    const ceremony = parseCeremonyId(input.id);
    this.checkIdentified(caller);
    return this.serialized(ceremony, async () => {
      const state = await this.current(ceremony);
      const { plan } = state;
      const number = state.entries.length + 1;
      const fail = (code: 'KCV_MISMATCH' | 'INVALID_ARGUMENT' | 'DUAL_CONTROL' | 'CEREMONY_CONFLICT', message: string, details: AuditDetails = {}) =>
        new HsmBridgeError(code, message, { details: { ceremony, component: number, ...details } });
      if (number > plan.components) throw fail('CEREMONY_CONFLICT', `all ${plan.components} components are entered; the key is being formed`);
      const identities = identitiesOf(caller);
      if (state.entries.some((e) => sameCustodian(e, { identities }))) {
        throw fail('DUAL_CONTROL', `dual control: a credential of this caller already entered a component of ceremony ${ceremony}; another custodian enters component ${number}`);
      }
      const { family, bits } = keyTypes[plan.key.type];
      if (family !== 'tdes' && family !== 'aes') throw new HsmBridgeError('INTERNAL', 'a ceremony of a key type without components');
      if (input.component.length !== bits / 8) throw fail('INVALID_ARGUMENT', `component ${number}: a ${plan.key.type} component is ${bits / 4} hex digits`);
      if (family === 'tdes' && !hasOddParity(input.component)) throw fail('INVALID_ARGUMENT', `component ${number} does not have odd parity`);
      if (typeof input.kcv !== 'string' || !KCV.test(input.kcv)) throw fail('INVALID_ARGUMENT', `component ${number}: kcv is 6 hex digits`);
      const kcv = kcvOf(family, input.component);
      if (kcv !== input.kcv.toUpperCase()) throw fail('KCV_MISMATCH', `component ${number}: its KCV does not match the kcv given`, { kcvMatched: false });
      // Two equal components cancel out (an all-zero AES key): each custodian holds a component of their own.
      const twin = state.entries.find((e) => e.kcv === kcv);
      if (twin) throw fail('INVALID_ARGUMENT', `component ${number} has the KCV of component ${twin.number}: each custodian enters a component of their own`, { kcvMatched: true });
      const entry: ComponentEntry = { number, enteredBy: custodianOf(caller), identities, enteredAt: new Date(this.now()).toISOString(), kcv };
      const staged = await this.backend.stageComponent(ceremony, entry, input.component);
      const received = staged.entries.length;
      if (received < plan.components) return { completed: false, ceremony, number, received, of: plan.components };
      // The last component: the ceremony ends here whatever happens, so that no component outlives a failure.
      try {
        const { key, keyCheckValue } = await this.form(staged);
        return { completed: true, ceremony, number, received, of: plan.components, key, keyCheckValue };
      } finally {
        // Not to hide how forming the key ended: a ceremony that could not be ended now is ended by the sweep at expiry.
        await this.backend.endCeremony(ceremony).catch(() => undefined);
      }
    });
  }

  /** XORs the staged components into the key, checks it against expectedKcv, and imports it; zeroes every clear buffer. */
  private async form({ plan }: CeremonyState): Promise<{ key: KeyMetadata; keyCheckValue: string }> {
    const family = keyTypes[plan.key.type].family as 'tdes' | 'aes';
    // Read once more, right before the components: exactly one entry per number, and no custodian twice,
    // whatever another replica staged at the same moment.
    const { entries } = await this.backend.describeCeremony(plan.id);
    const sound = entries.length === plan.components && entries.every((e, i) => e.number === i + 1 && entries.every((f, j) => j <= i || !sameCustodian(e, f)));
    if (!sound) {
      throw new HsmBridgeError('CEREMONY_CONFLICT', `ceremony ${plan.id}: its entries changed while the key was being formed (entries at the same moment on another replica); it is ended: start again`, {
        details: { ceremony: plan.id },
      });
    }
    const parts = await this.backend.stagedComponents(plan.id);
    const key = Buffer.alloc(keyTypes[plan.key.type].bits / 8);
    try {
      if (parts.length !== plan.components || parts.some((p) => p.length !== key.length)) {
        throw new HsmBridgeError('INTERNAL', `ceremony ${plan.id}: the backend answered components that do not fit its plan`);
      }
      for (const part of parts) for (let i = 0; i < key.length; i++) key[i]! ^= part[i]!;
      if (key.every((b) => b === 0)) {
        throw new HsmBridgeError('INCOMPATIBLE_KEY', `the components cancel out (an all-zero key); ceremony ${plan.id} is ended: start again`, { details: { ceremony: plan.id } });
      }
      if (family === 'tdes') setOddParity(key);
      const keyCheckValue = kcvOf(family, key);
      const details = { ceremony: plan.id, component: plan.components };
      if (plan.expectedKcv !== undefined && plan.expectedKcv !== keyCheckValue) {
        throw new HsmBridgeError('KCV_MISMATCH', `the combined key's KCV does not match expectedKcv; ceremony ${plan.id} is ended: start again`, {
          details: { ...details, kcvMatched: true, combinedKcvMatched: false },
        });
      }
      const meta = await this.paymentKeys.importKey({ ...plan.key, exportable: plan.key.exportable === true }, key);
      return { key: meta, keyCheckValue };
    } finally {
      key.fill(0);
      for (const part of parts) part.fill(0);
    }
  }

  /** The ceremony, ended and refused when its time ran out. */
  private async current(id: CeremonyId): Promise<CeremonyState> {
    const state = await this.backend.describeCeremony(id);
    if (!this.expired(state)) return state;
    await this.backend.endCeremony(id);
    this.expiredHook?.(state);
    throw new HsmBridgeError('CEREMONY_EXPIRED', `ceremony ${id} expired at ${state.plan.expiresAt}; its components are destroyed: start again`, {
      details: { ceremony: id, expired: true },
    });
  }

  /** Past its time, or interrupted while its key was being formed (all components in, long ago). */
  private expired({ plan, entries }: CeremonyState): boolean {
    const now = this.now();
    if (Date.parse(plan.expiresAt) <= now) return true;
    const last = entries.at(-1);
    return entries.length >= plan.components && last !== undefined && Date.parse(last.enteredAt) + FORMING_MS <= now;
  }

  private async checkNameFree(name: KeyName): Promise<void> {
    try {
      await this.backend.describeKey(name);
    } catch (e) {
      if (e instanceof HsmBridgeError && e.code === 'KEY_NOT_FOUND') return;
      throw e;
    }
    throw new HsmBridgeError('KEY_ALREADY_EXISTS', `key ${name} already exists`);
  }

  private checkSupported(): void {
    const caps = this.backend.capabilities();
    if (!caps.keyImport.ceremonies || !caps.payment.importKeys) throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend has no key ceremonies`);
  }

  /** Dual control means nothing when every caller is the same anonymous one. */
  private checkIdentified(caller: Caller): void {
    if (caller.authenticatedBy === 'none') {
      throw new HsmBridgeError('DUAL_CONTROL', 'key ceremonies need identified custodians: configure access (mTLS client certificates or bearer tokens) and a policy');
    }
  }

  private serialized<T>(id: string, run: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(id) ?? Promise.resolve();
    const result = previous.then(run, run);
    const tail = result.catch(() => undefined);
    this.queues.set(id, tail);
    void tail.then(() => {
      if (this.queues.get(id) === tail) this.queues.delete(id);
    });
    return result;
  }
}

function viewOf({ plan, entries }: CeremonyState): CeremonyView {
  return {
    id: plan.id,
    name: plan.key.name,
    type: plan.key.type,
    purpose: plan.key.purpose,
    ...(plan.key.keyUsage ? { keyUsage: plan.key.keyUsage } : {}),
    exportable: plan.key.exportable === true,
    components: plan.components,
    received: entries.length,
    ...(plan.expectedKcv ? { expectedKcv: plan.expectedKcv } : {}),
    startedBy: plan.startedBy,
    startedAt: plan.startedAt,
    expiresAt: plan.expiresAt,
    entries: entries.map(({ number, enteredBy, enteredAt, kcv }) => ({ number, enteredBy, enteredAt, kcv })),
  };
}
