/**
 * Key ceremonies on the token (src/ceremonies/record.ts), so that every replica sees the same ones:
 *
 * - the plan: CKO_DATA, CKA_APPLICATION "hsm-bridge-ceremony" (never the key metadata's), CKA_LABEL = the
 *   ceremony id, CKA_VALUE = JSON of the plan; written once, never changed;
 * - each staged component: one CKO_SECRET_KEY (CKK_GENERIC_SECRET), CKA_LABEL = the ceremony id, CKA_ID =
 *   "hsmc" || 8 random bytes || JSON of its entry, so that one object is one whole entry. Private and
 *   sensitive, every usage flag false: nothing can use it. Extractable only so that the completion can
 *   wrap it out (stagedComponents) for the core to combine: SoftHSM cannot XOR keys inside.
 *
 * Key objects carry "hsmb" IDs and metadata its own application, so nothing that reads keys sees these.
 */
import { createDecipheriv, randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { sameCustodian, type CeremonyId, type CeremonyPlan, type CeremonyState, type ComponentEntry } from '../../src/ceremonies/record.js';
import { HsmBridgeError } from '../../src/errors.js';
import { CKR, ckrOf } from './errors.js';
import { findObjects } from './keyObjects.js';
import { KWP_IV } from './keyUnwrap.js';
import { CKM } from './mechanisms.js';
import type { Handle, Pkcs11Api } from './module.js';
import { destroyQuietly, READ_BACK_PAUSE_MS } from './revisions.js';
import { sessionSecretKey } from './sessionObjects.js';
import { withTokenLock } from './tokenLock.js';
import { createTokenObject } from './tokenWrites.js';

const A = pkcs11js;
export const CEREMONY_APPLICATION = 'hsm-bridge-ceremony';
const MARKER = Buffer.from('hsmc', 'latin1');
const NONCE_LENGTH = 8;
/** Room for the longest component (32 bytes) wrapped with padding. */
const WRAPPED_ROOM = 64;

const notFound = (id: CeremonyId) => new HsmBridgeError('CEREMONY_NOT_FOUND', `ceremony ${id} not found`);

const planTemplate = (id?: CeremonyId): pkcs11js.Template => [
  { type: A.CKA_CLASS, value: A.CKO_DATA },
  { type: A.CKA_APPLICATION, value: CEREMONY_APPLICATION },
  ...(id === undefined ? [] : [{ type: A.CKA_LABEL, value: id }]),
];

const componentTemplate = (id: CeremonyId): pkcs11js.Template => [
  { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY },
  { type: A.CKA_LABEL, value: id },
];

/** The attributes of each object a search finds; objects gone before their read (a ceremony ending meanwhile) are left out. */
function readAll(api: Pkcs11Api, session: Handle, template: pkcs11js.Template, type: number): { handle: Handle; value: Buffer }[] {
  return withTokenLock(() =>
    findObjects(api, session, template).flatMap((handle) => {
      try {
        const value = api.C_GetAttributeValue(session, handle, [{ type }])[0]?.value;
        return value ? [{ handle, value }] : [];
      } catch (e) {
        if (ckrOf(e) === CKR.OBJECT_HANDLE_INVALID) return [];
        throw e;
      }
    }),
  );
}

function decodePlan(value: Buffer): CeremonyPlan | undefined {
  try {
    const plan = JSON.parse(value.toString('utf8')) as CeremonyPlan;
    return typeof plan === 'object' && plan !== null && typeof plan.id === 'string' ? plan : undefined;
  } catch {
    return undefined;
  }
}

function readPlans(api: Pkcs11Api, session: Handle, id?: CeremonyId): { handle: Handle; plan: CeremonyPlan }[] {
  return readAll(api, session, planTemplate(id), A.CKA_VALUE).flatMap(({ handle, value }) => {
    const plan = decodePlan(value);
    return plan && (id === undefined || plan.id === id) ? [{ handle, plan }] : [];
  });
}

interface Staged {
  readonly handle: Handle;
  readonly entry: ComponentEntry;
  /** The object's random part: orders two entries made at the same moment. */
  readonly nonce: string;
}

function componentId(entry: ComponentEntry): Buffer {
  const { number, enteredBy, identities, enteredAt, kcv } = entry;
  return Buffer.concat([MARKER, randomBytes(NONCE_LENGTH), Buffer.from(JSON.stringify({ number, enteredBy, identities, enteredAt, kcv }), 'utf8')]);
}

function decodeComponentId(handle: Handle, id: Buffer): Staged | undefined {
  if (id.length <= MARKER.length + NONCE_LENGTH || !id.subarray(0, MARKER.length).equals(MARKER)) return undefined;
  try {
    const entry = JSON.parse(id.subarray(MARKER.length + NONCE_LENGTH).toString('utf8')) as ComponentEntry;
    if (typeof entry.number !== 'number' || typeof entry.enteredBy !== 'string') return undefined;
    if (!Array.isArray(entry.identities) || entry.identities.length === 0 || !entry.identities.every((i) => typeof i === 'string')) return undefined;
    return { handle, entry, nonce: id.subarray(MARKER.length, MARKER.length + NONCE_LENGTH).toString('hex') };
  } catch {
    return undefined;
  }
}

/** The staged components of a ceremony, first entered first (entry time, then the random part). */
function readStaged(api: Pkcs11Api, session: Handle, id: CeremonyId): Staged[] {
  return readAll(api, session, componentTemplate(id), A.CKA_ID)
    .flatMap(({ handle, value }) => decodeComponentId(handle, value) ?? [])
    .sort((a, b) => (a.entry.enteredAt < b.entry.enteredAt ? -1 : a.entry.enteredAt > b.entry.enteredAt ? 1 : a.nonce < b.nonce ? -1 : a.nonce > b.nonce ? 1 : 0));
}

/**
 * The entries that stand: in entry order, each that clashes with one standing before it is left out (its
 * writer, another replica, withdraws it). Everything that answers a ceremony's state or components reads
 * through this, so that an entry about to be withdrawn never counts, nor goes into a key.
 */
function survivors(staged: readonly Staged[]): Staged[] {
  const standing: Staged[] = [];
  for (const s of staged) if (!clash(s.entry, standing)) standing.push(s);
  return standing;
}

const stateOf = (plan: CeremonyPlan, staged: readonly Staged[]): CeremonyState => ({
  plan,
  entries: survivors(staged).map((s) => s.entry).sort((a, b) => a.number - b.number),
});

export function startCeremony(api: Pkcs11Api, session: Handle, plan: CeremonyPlan): void {
  createTokenObject(api, session, [
    ...planTemplate(plan.id),
    { type: A.CKA_TOKEN, value: true },
    { type: A.CKA_PRIVATE, value: true },
    { type: A.CKA_MODIFIABLE, value: false },
    { type: A.CKA_VALUE, value: Buffer.from(JSON.stringify(plan), 'utf8') },
  ]);
}

export function describeCeremony(api: Pkcs11Api, session: Handle, id: CeremonyId): CeremonyState {
  const plan = readPlans(api, session, id)[0]?.plan;
  if (!plan) throw notFound(id);
  return stateOf(plan, readStaged(api, session, id));
}

export function listCeremonies(api: Pkcs11Api, session: Handle): CeremonyState[] {
  const seen = new Set<string>();
  return readPlans(api, session).flatMap(({ plan }) => {
    if (seen.has(plan.id)) return [];
    seen.add(plan.id);
    return [stateOf(plan, readStaged(api, session, plan.id))];
  });
}

/** Whether an entry clashes with another: the same number, or the same custodian (dual control). */
function clash(entry: ComponentEntry, others: readonly Staged[]): HsmBridgeError | undefined {
  if (others.some((s) => s.entry.number === entry.number)) return new HsmBridgeError('CEREMONY_CONFLICT', `component ${entry.number} is already entered`);
  if (others.some((s) => sameCustodian(s.entry, entry))) return new HsmBridgeError('DUAL_CONTROL', 'a credential of this custodian already entered a component of this ceremony');
  return undefined;
}

/**
 * Stages one component. The checks and the write run under the token lock (no other thread of this
 * process writes in between); another replica may still write at the same moment, so the object is read
 * back after a pause: of two entries that clash, the one entered first stays and the later writer
 * destroys its own and answers the clash.
 */
export async function stageComponent(api: Pkcs11Api, session: Handle, id: CeremonyId, entry: ComponentEntry, component: Buffer): Promise<CeremonyState> {
  const { handle, plan } = withTokenLock(() => {
    const found = readPlans(api, session, id)[0]?.plan;
    if (!found) throw notFound(id);
    const refused = clash(entry, readStaged(api, session, id));
    if (refused) throw refused;
    const objectId = componentId(entry);
    const made = createTokenObject(api, session, [
      { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY },
      { type: A.CKA_KEY_TYPE, value: A.CKK_GENERIC_SECRET },
      { type: A.CKA_TOKEN, value: true },
      { type: A.CKA_PRIVATE, value: true },
      { type: A.CKA_LABEL, value: id },
      { type: A.CKA_ID, value: objectId },
      { type: A.CKA_SENSITIVE, value: true },
      { type: A.CKA_EXTRACTABLE, value: true },
      { type: A.CKA_MODIFIABLE, value: false },
      ...[A.CKA_ENCRYPT, A.CKA_DECRYPT, A.CKA_SIGN, A.CKA_VERIFY, A.CKA_WRAP, A.CKA_UNWRAP, A.CKA_DERIVE].map((type) => ({ type, value: false })),
      { type: A.CKA_VALUE, value: component },
    ]);
    return { handle: made, plan: found };
  });
  await new Promise((resolve) => setTimeout(resolve, READ_BACK_PAUSE_MS));
  const staged = readStaged(api, session, id);
  const standing = survivors(staged);
  const ours = staged.findIndex((s) => s.handle.equals(handle));
  const refused = !readPlans(api, session, id).length || ours < 0 ? notFound(id) : standing.some((s) => s.handle.equals(handle)) ? undefined : clash(entry, standing.filter((s) => staged.indexOf(s) < ours));
  if (refused) {
    destroyQuietly(api, session, handle);
    throw refused;
  }
  return stateOf(plan, staged);
}

/**
 * The staged components in clear, in number order: each wrapped (RFC 5649) under a session AES key made
 * for this call from this worker's random bytes, and unwrapped here. The key's value and the wrapped
 * bytes are zeroed and its object destroyed; the caller zeroes the components.
 */
export function stagedComponents(api: Pkcs11Api, session: Handle, id: CeremonyId): Buffer[] {
  if (!readPlans(api, session, id).length) throw notFound(id);
  const staged = survivors(readStaged(api, session, id)).sort((a, b) => a.entry.number - b.entry.number);
  const kekValue = randomBytes(32);
  let kek: Handle | undefined;
  const components: Buffer[] = [];
  try {
    kek = api.C_CreateObject(session, [
      ...sessionSecretKey(A.CKK_AES, false),
      ...[A.CKA_ENCRYPT, A.CKA_DECRYPT, A.CKA_SIGN, A.CKA_VERIFY, A.CKA_UNWRAP, A.CKA_DERIVE].map((type) => ({ type, value: false })),
      { type: A.CKA_WRAP, value: true },
      { type: A.CKA_VALUE, value: kekValue },
    ]);
    for (const { handle } of staged) {
      const wrapped = api.C_WrapKey(session, { mechanism: CKM.AES_KEY_WRAP_PAD }, kek, handle, Buffer.alloc(WRAPPED_ROOM));
      const decipher = createDecipheriv('id-aes256-wrap-pad', kekValue, KWP_IV);
      const parts = [decipher.update(wrapped), decipher.final()];
      // Unpooled: a small Buffer.concat lands on Node's shared pool slab, which posting to the main thread copies whole.
      const component = Buffer.alloc(parts[0]!.length + parts[1]!.length);
      parts[0]!.copy(component);
      parts[1]!.copy(component, parts[0]!.length);
      components.push(component);
      for (const p of [...parts, wrapped]) p.fill(0);
    }
    return components;
  } catch (e) {
    for (const c of components) c.fill(0);
    throw e;
  } finally {
    kekValue.fill(0);
    if (kek) {
      try {
        api.C_DestroyObject(session, kek);
      } catch {
        // a session object: it goes with its session anyway
      }
    }
  }
}

/**
 * Destroys the plan and every staged component; nothing to do when they are gone. The plan goes first: a
 * component another replica writes after this search finds no plan at its read-back and withdraws itself
 * (stageComponent), so none is left without a plan, where no sweep would find it.
 */
export function endCeremony(api: Pkcs11Api, session: Handle, id: CeremonyId): void {
  for (const { handle } of readAll(api, session, planTemplate(id), A.CKA_LABEL)) destroyQuietly(api, session, handle);
  for (const { handle } of readStaged(api, session, id)) destroyQuietly(api, session, handle);
}
