/**
 * FSPIOP Encryption v1.1: per-field JWE, RSA-OAEP-256 for the content key and A256GCM for the field.
 * Each encrypted field's value in the body becomes BASE64URL(ciphertext); the `FSPIOP-Encryption`
 * header lists, per field, its dot path and the JWE parts:
 *
 *   {"encryptedFields":[{"fieldName","encryptedKey","protectedHeader","initializationVector","authenticationTag"}]}
 *
 * (the form of the spec's worked example, which we emit; the spec's tables nest the list as
 * {"encryptedFields":{"encryptedField":[...]}}, which we also accept). AAD is the ASCII of the
 * protectedHeader string, as in JWE. A string field encrypts its UTF-8 text; an object or array field its
 * canonical JSON, restored as JSON on decryption (a decrypted text starting with '{' or '[' that parses is
 * taken as JSON). Numbers, booleans and null are refused: decryption could not tell them from strings.
 */
import { constants, createCipheriv, createDecipheriv, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { HsmBridgeError, invalid } from '../errors.js';
import { decode, encode } from '../jose/base64url.js';
import type { KeyVersion } from '../keys/names.js';
import { keyTypes } from '../keys/types.js';
import type { KeyService } from '../operations/keyService.js';
import { canonicalJson } from './canonicalJson.js';

export interface EncryptedFieldEntry {
  readonly fieldName: string;
  readonly encryptedKey: string;
  readonly protectedHeader: string;
  readonly initializationVector: string;
  readonly authenticationTag: string;
}

export interface EncryptedFields {
  /** The body with each field's value replaced by its base64url ciphertext (a copy; the input is left alone). */
  readonly body: Record<string, unknown>;
  /** The FSPIOP-Encryption header value, exactly as it goes into the JWS protected header. */
  readonly header: string;
}

/** Raised when one or more fields cannot be decrypted; names the fields, never their content. */
export class FieldDecryptionError extends Error {
  override readonly name = 'FieldDecryptionError';
  constructor(readonly fields: readonly string[], reason: string) {
    super(reason);
  }
}

const PROTECTED_HEADER = encode(JSON.stringify({ alg: 'RSA-OAEP-256', enc: 'A256GCM' }));
const CEK_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** The spec's example uses a 128-bit IV; GCM takes it (GHASH-derived counter), so we accept both. */
const ACCEPTED_IV_BYTES = [12, 16];
const MAX_FIELDS = 64;

export function encryptFields(body: Record<string, unknown>, fields: readonly string[], recipient: KeyObject): EncryptedFields {
  if (fields.length === 0 || fields.length > MAX_FIELDS) throw invalid(`encrypt from 1 to ${MAX_FIELDS} fields`);
  if (new Set(fields).size !== fields.length) throw invalid('a field is listed twice for encryption');
  const copy = structuredClone(body);
  const entries: EncryptedFieldEntry[] = [];
  for (const fieldName of fields) {
    const { parent, member } = locate(copy, fieldName);
    const value = parent[member];
    let plaintext: Buffer;
    if (typeof value === 'string') plaintext = Buffer.from(value, 'utf8');
    else if (typeof value === 'object' && value !== null) plaintext = Buffer.from(canonicalJson(value), 'utf8');
    else throw invalid(`field ${fieldName} must be a string, object or array to be encrypted`);
    const cek = randomBytes(CEK_BYTES);
    const iv = randomBytes(IV_BYTES);
    try {
      const cipher = createCipheriv('aes-256-gcm', cek, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(Buffer.from(PROTECTED_HEADER, 'ascii'));
      const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      const encryptedKey = publicEncrypt({ key: recipient, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, cek);
      parent[member] = encode(ciphertext);
      entries.push({
        fieldName,
        encryptedKey: encode(encryptedKey),
        protectedHeader: PROTECTED_HEADER,
        initializationVector: encode(iv),
        authenticationTag: encode(cipher.getAuthTag()),
      });
    } finally {
      cek.fill(0);
      plaintext.fill(0);
    }
  }
  return { body: copy, header: JSON.stringify({ encryptedFields: entries }) };
}

/** Parses an FSPIOP-Encryption header in either of the spec's shapes. Throws FieldDecryptionError. */
export function parseEncryptionHeader(header: string): EncryptedFieldEntry[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(header);
  } catch {
    throw new FieldDecryptionError([], 'FSPIOP-Encryption is not JSON');
  }
  let list = (parsed as { encryptedFields?: unknown } | null)?.encryptedFields;
  if (list !== null && typeof list === 'object' && !Array.isArray(list)) list = (list as { encryptedField?: unknown }).encryptedField;
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_FIELDS) {
    throw new FieldDecryptionError([], 'FSPIOP-Encryption must hold encryptedFields: a list of 1 to 64 entries');
  }
  return list.map((entry: unknown, i) => {
    const e = (entry ?? {}) as Record<string, unknown>;
    const parts = ['encryptedKey', 'protectedHeader', 'initializationVector', 'authenticationTag'] as const;
    if (typeof e.fieldName !== 'string' || e.fieldName === '' || !parts.every((p) => decodesToBytes(e[p]))) {
      throw new FieldDecryptionError([], `FSPIOP-Encryption entry ${i} needs fieldName and base64url encryptedKey, protectedHeader, initializationVector, authenticationTag`);
    }
    return e as unknown as EncryptedFieldEntry;
  });
}

/**
 * Decrypts the listed fields of a parsed body in place. The content keys are unwrapped inside the
 * backend with our RSA key (`keyName`, purpose encrypt): its primary version, then the one before it,
 * since a sender may still use the public key it had before our last rotation. Fails as a whole if any
 * field fails.
 */
export async function decryptFields(body: Record<string, unknown>, header: string, keyService: KeyService, keyName: string): Promise<Record<string, unknown>> {
  const entries = parseEncryptionHeader(header);
  // From the metadata cache: a switch decrypts on every validation and must not ask the HSM each time.
  const { meta } = await keyService.usableKeyVersion(keyName, 'encrypt');
  if (!meta.type.startsWith('RSA_')) {
    throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${meta.name} must be an RSA key with purpose encrypt to decrypt FSPIOP fields`);
  }
  const primary = meta.versions.findIndex((v) => v.version === meta.primaryVersion);
  const versions = [meta.primaryVersion, ...(primary > 0 ? [meta.versions[primary - 1]!.version] : [])];
  const modulusBytes = keyTypes[meta.type].bits / 8;
  const failed: string[] = [];
  for (const entry of entries) {
    let cek: Buffer | undefined;
    try {
      const { parent, member } = locate(body, entry.fieldName);
      const ciphertext = decode(parent[member], `field ${entry.fieldName}`);
      const encryptedKey = decode(entry.encryptedKey, 'encryptedKey');
      // An RSA ciphertext is exactly as long as the modulus: anything else is refused without asking the backend.
      if (encryptedKey.length !== modulusBytes) throw new FieldDecryptionError([entry.fieldName], 'encryptedKey has the wrong length');
      const unwrapped = await unwrapKey(keyService, keyName, versions, encryptedKey);
      cek = unwrapped.cek;
      const value = openField(entry, cek, ciphertext);
      if (!unwrapped.ok) throw new FieldDecryptionError([entry.fieldName], 'authentication failed');
      parent[member] = value;
    } catch (e) {
      if (e instanceof HsmBridgeError && e.code !== 'DECRYPTION_FAILED' && e.code !== 'INVALID_ARGUMENT') throw e;
      failed.push(entry.fieldName);
    } finally {
      cek?.fill(0);
    }
  }
  if (failed.length > 0) throw new FieldDecryptionError(failed, `field decryption failed for ${failed.join(', ')}`);
  return body;
}

/**
 * The content key, or a random one when no version unwraps it (RFC 7516 §11.5): the field then fails on
 * its GCM tag like a tampered field, in about the same time, and the caller cannot tell which step failed.
 */
async function unwrapKey(keyService: KeyService, name: string, versions: readonly KeyVersion[], encryptedKey: Buffer): Promise<{ cek: Buffer; ok: boolean }> {
  for (const keyVersion of versions) {
    try {
      const { plaintext } = await keyService.decrypt({ name, ciphertext: encryptedKey, keyVersion, algorithm: 'RSA_OAEP_SHA256' });
      if (plaintext.length === CEK_BYTES) return { cek: plaintext, ok: true };
      plaintext.fill(0);
    } catch (e) {
      if (!(e instanceof HsmBridgeError) || (e.code !== 'DECRYPTION_FAILED' && e.code !== 'INVALID_ARGUMENT')) throw e;
    }
  }
  return { cek: randomBytes(CEK_BYTES), ok: false };
}

function openField(entry: EncryptedFieldEntry, cek: Buffer, ciphertext: Buffer): unknown {
  let header: unknown;
  try {
    header = JSON.parse(decode(entry.protectedHeader, 'protectedHeader').toString('utf8'));
  } catch {
    throw new FieldDecryptionError([entry.fieldName], 'protectedHeader is not JSON');
  }
  const { alg, enc } = (header ?? {}) as { alg?: unknown; enc?: unknown };
  if (alg !== 'RSA-OAEP-256' || enc !== 'A256GCM') throw new FieldDecryptionError([entry.fieldName], 'unsupported alg/enc');
  const iv = decode(entry.initializationVector, 'initializationVector');
  const tag = decode(entry.authenticationTag, 'authenticationTag');
  if (!ACCEPTED_IV_BYTES.includes(iv.length) || tag.length !== TAG_BYTES) throw new FieldDecryptionError([entry.fieldName], 'bad IV or tag length');
  let plaintext: Buffer;
  try {
    const decipher = createDecipheriv('aes-256-gcm', cek, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(entry.protectedHeader, 'ascii'));
    decipher.setAuthTag(tag);
    plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    throw new FieldDecryptionError([entry.fieldName], 'authentication failed');
  }
  try {
    const text = plaintext.toString('utf8');
    if (text.startsWith('{') || text.startsWith('[')) {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        // Not JSON after all: a string that happens to start with a bracket.
      }
    }
    return text;
  } finally {
    plaintext.fill(0);
  }
}

/** A non-empty, canonically encoded base64url string. */
function decodesToBytes(value: unknown): boolean {
  try {
    return decode(value, 'part').length > 0;
  } catch {
    return false;
  }
}

/** Resolves a dot path ("payee.partyIdInfo.partyIdentifier"; array items by index) to its parent and member. */
function locate(root: Record<string, unknown>, path: string): { parent: Record<string, unknown>; member: string } {
  const parts = path.split('.');
  let node: unknown = root;
  for (let i = 0; i < parts.length - 1; i++) {
    node = typeof node === 'object' && node !== null && Object.hasOwn(node, parts[i]!) ? (node as Record<string, unknown>)[parts[i]!] : undefined;
  }
  const member = parts[parts.length - 1]!;
  // '__proto__' is refused: assigning it would replace the object's prototype instead of a member.
  if (typeof node !== 'object' || node === null || !Object.hasOwn(node, member) || parts.some((p) => p === '' || p === '__proto__')) {
    throw invalid(`field ${path} is not in the body`);
  }
  return { parent: node as Record<string, unknown>, member };
}
