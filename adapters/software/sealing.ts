/**
 * Sealing key material under the master key: AES-256-GCM, a fresh 12-byte IV per record, and AAD that
 * binds the record to its key name, version, type, purpose and (when set) its payment attributes (exportable,
 * mode of use, key usage), so that
 * a sealed record copied into another key (or another version) fails authentication instead of silently
 * becoming that key, and an edit that makes a key exportable, lifts its mode of use or changes its key
 * usage (an M1 MAC key into an M3 one) does too.
 */
import { createCipheriv, createDecipheriv, randomBytes, type KeyObject } from 'node:crypto';
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
}

/**
 * JSON of a fixed-order array: unambiguous, since no field can smuggle a separator into another. A key
 * without the newer attributes keeps the older form (v1: no payment attributes; v2: no key usage), so
 * keystores written before they existed still open.
 */
function recordAad(b: RecordBinding): Buffer {
  const payment = [b.exportable === true, b.modeOfUse ?? null];
  const fields: unknown[] =
    b.keyUsage !== undefined
      ? ['hsm-bridge software keystore record v3', b.name, b.version, b.type, b.purpose, ...payment, b.keyUsage]
      : b.exportable === true || b.modeOfUse !== undefined
        ? ['hsm-bridge software keystore record v2', b.name, b.version, b.type, b.purpose, ...payment]
        : ['hsm-bridge software keystore record v1', b.name, b.version, b.type, b.purpose];
  return Buffer.from(JSON.stringify(fields));
}
/**
 * A key ceremony's staged component is bound to its ceremony and number, so that a component copied into
 * another ceremony (or renumbered) does not open.
 */
const componentAad = (ceremony: string, number: number): Buffer =>
  Buffer.from(JSON.stringify(['hsm-bridge software keystore ceremony component v1', ceremony, number]));
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

export const sealComponent = (masterKey: KeyObject, ceremony: string, number: number, component: Buffer): Sealed =>
  seal(masterKey, componentAad(ceremony, number), component);

export const openComponent = (masterKey: KeyObject, ceremony: string, number: number, sealed: Sealed): Buffer | undefined =>
  open(masterKey, componentAad(ceremony, number), sealed);

export const makeMasterKeyCheck = (masterKey: KeyObject): Sealed => seal(masterKey, CHECK_AAD, Buffer.alloc(0));

export const masterKeyCheckPasses = (masterKey: KeyObject, check: Sealed): boolean => open(masterKey, CHECK_AAD, check) !== undefined;
