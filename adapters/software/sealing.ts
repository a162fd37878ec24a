/**
 * Sealing key material under the master key: AES-256-GCM, a fresh 12-byte IV per record, and AAD that
 * binds the record to its key name, version, type, purpose and (when set) its payment attributes (exportable,
 * mode of use, key usage) and its minDecryptionVersion, so that
 * a sealed record copied into another key (or another version) fails authentication instead of silently
 * becoming that key, and an edit that makes a key exportable, lifts its mode of use, changes its key
 * usage (an M1 MAC key into an M3 one) or brings retired versions back into use does too. A key
 * ceremony's plan and its components' entries are bound the same way (planAad, componentAad).
 */
import { createCipheriv, createDecipheriv, randomBytes, type KeyObject } from 'node:crypto';
import type { CeremonyPlan, ComponentEntry } from '../../src/ceremonies/record.js';
import type { KeyPurpose, KeyType, KeyUsage, ModeOfUse } from '../../src/keys/types.js';

const IV_LENGTH = 12;
const TAG_LENGTH = 16;

/** A sealed value as stored: base64 of the IV and of ciphertext || tag. */
export interface Sealed {
  readonly iv: string;
  readonly data: string;
}

/** A Sealed value's JSON schema, for the keystore file's. */
export const sealedSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['iv', 'data'],
  properties: { iv: { type: 'string' }, data: { type: 'string' } },
};

export interface RecordBinding {
  readonly name: string;
  readonly version: number;
  readonly type: KeyType;
  readonly purpose: KeyPurpose;
  readonly exportable?: boolean;
  readonly modeOfUse?: ModeOfUse;
  readonly keyUsage?: KeyUsage;
  /** Above 1, or absent: a key with none retired keeps the older forms. */
  readonly minDecryptionVersion?: number;
}

/**
 * JSON of a fixed-order array: unambiguous, since no field can smuggle a separator into another. A key
 * without the newer attributes keeps the older form (v1: no payment attributes; v2: no key usage; v3: no
 * retired versions), so keystores written before they existed still open.
 */
function recordAad(b: RecordBinding): Buffer {
  const payment = [b.exportable === true, b.modeOfUse ?? null];
  const fields: unknown[] =
    b.minDecryptionVersion !== undefined
      ? ['hsm-bridge software keystore record v4', b.name, b.version, b.type, b.purpose, ...payment, b.keyUsage ?? null, b.minDecryptionVersion]
      : b.keyUsage !== undefined
      ? ['hsm-bridge software keystore record v3', b.name, b.version, b.type, b.purpose, ...payment, b.keyUsage]
      : b.exportable === true || b.modeOfUse !== undefined
        ? ['hsm-bridge software keystore record v2', b.name, b.version, b.type, b.purpose, ...payment]
        : ['hsm-bridge software keystore record v1', b.name, b.version, b.type, b.purpose];
  return Buffer.from(JSON.stringify(fields));
}
/**
 * Canonical JSON: object keys sorted at every depth (undefined members left out, as JSON.stringify does),
 * so one value has one encoding whatever order its fields were written in. Used for ceremony records,
 * which have optional fields and may gain new ones: every field the file holds is bound, with no list to
 * keep up to date.
 */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const members = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`);
    return `{${members.join(',')}}`;
  }
  return JSON.stringify(value);
}
/**
 * A ceremony's plan is sealed on its own (an empty message: the tag alone), so that the plan cannot be
 * edited in the file before its first component is entered (which would then seal the edited plan).
 */
const planAad = (plan: CeremonyPlan): Buffer => Buffer.from(canonicalJson(['hsm-bridge software keystore ceremony plan v1', plan]));
/**
 * A staged component is bound to its whole plan and its own entry: a component copied into another
 * ceremony or renumbered does not open, and neither does one whose plan (exportable, expected KCV,
 * expiry...) or entry (custodian, identities, KCV) was edited in the file.
 */
const componentAad = (plan: CeremonyPlan, entry: ComponentEntry): Buffer =>
  Buffer.from(canonicalJson(['hsm-bridge software keystore ceremony component v2', plan, entry]));
/** The master key check seals nothing under its own AAD: its tag alone tells whether the master key is the right one. */
const CHECK_AAD = Buffer.from('hsm-bridge software keystore master key check v1');

function seal(masterKey: KeyObject, aad: Buffer, plaintext: Buffer): Sealed {
  const iv = randomBytes(IV_LENGTH);
  const cipher = createCipheriv('aes-256-gcm', masterKey, iv, { authTagLength: TAG_LENGTH });
  cipher.setAAD(aad);
  const data = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return { iv: iv.toString('base64'), data: data.toString('base64') };
}

/** The plaintext, or undefined when the master key is wrong or the record or its binding was altered. */
function open(masterKey: KeyObject, aad: Buffer, sealed: Sealed): Buffer | undefined {
  const iv = Buffer.from(sealed.iv, 'base64');
  const data = Buffer.from(sealed.data, 'base64');
  if (iv.length !== IV_LENGTH || data.length < TAG_LENGTH) return undefined;
  const decipher = createDecipheriv('aes-256-gcm', masterKey, iv, { authTagLength: TAG_LENGTH });
  decipher.setAAD(aad);
  decipher.setAuthTag(data.subarray(data.length - TAG_LENGTH));
  const plaintext = decipher.update(data.subarray(0, data.length - TAG_LENGTH));
  try {
    decipher.final();
    return plaintext;
  } catch {
    plaintext.fill(0);
    return undefined;
  }
}

export const sealRecord = (masterKey: KeyObject, binding: RecordBinding, material: Buffer): Sealed =>
  seal(masterKey, recordAad(binding), material);

export const openRecord = (masterKey: KeyObject, binding: RecordBinding, sealed: Sealed): Buffer | undefined =>
  open(masterKey, recordAad(binding), sealed);

export const sealPlan = (masterKey: KeyObject, plan: CeremonyPlan): Sealed => seal(masterKey, planAad(plan), Buffer.alloc(0));

export const planSealPasses = (masterKey: KeyObject, plan: CeremonyPlan, sealed: Sealed): boolean => open(masterKey, planAad(plan), sealed) !== undefined;

export const sealComponent = (masterKey: KeyObject, plan: CeremonyPlan, entry: ComponentEntry, component: Buffer): Sealed =>
  seal(masterKey, componentAad(plan, entry), component);

export const openComponent = (masterKey: KeyObject, plan: CeremonyPlan, entry: ComponentEntry, sealed: Sealed): Buffer | undefined =>
  open(masterKey, componentAad(plan, entry), sealed);

export const makeMasterKeyCheck = (masterKey: KeyObject): Sealed => seal(masterKey, CHECK_AAD, Buffer.alloc(0));

export const masterKeyCheckPasses = (masterKey: KeyObject, check: Sealed): boolean => open(masterKey, CHECK_AAD, check) !== undefined;
