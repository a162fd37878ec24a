/**
 * FSPIOP Encryption v1.1: each encrypted field is one JWE (RFC 7516) made and opened by the JWE engine of
 * src/jose, so the header rules (no "zip", no "crit") and the cryptography are the ones every JWE gets.
 * We encrypt with RSA-OAEP-256 and A256GCM; we decrypt RSA-OAEP-256 with A128GCM, A192GCM or A256GCM
 * (the spec's §3.2 step 9), and accept a 96- or 128-bit IV (the spec's example uses 128 bits).
 * Each encrypted field's value in the body becomes BASE64URL(ciphertext); the `FSPIOP-Encryption`
 * header lists, per field, its dot path and the other JWE parts:
 *
 *   {"encryptedFields":[{"fieldName","encryptedKey","protectedHeader","initializationVector","authenticationTag"}]}
 *
 * (the form of the spec's worked example, which we emit; the spec's tables nest the list as
 * {"encryptedFields":{"encryptedField":[...]}}, which we also accept). AAD is the ASCII of the
 * protectedHeader string, as in JWE. A string field encrypts its UTF-8 text; an object or array field its
 * canonical JSON, restored as JSON on decryption (a decrypted text starting with '{' or '[' that parses is
 * taken as JSON). Numbers, booleans and null are refused: decryption could not tell them from strings.
 */
import type { KeyObject } from 'node:crypto';
import { excerpt, HsmBridgeError, invalid } from '../errors.js';
import { checkJsonDepth } from '../json/depth.js';
import { decode } from '../jose/base64url.js';
import { publicKeyRecipient } from '../jose/joseService.js';
import { decryptJweWith, encryptJweWith, parseJwe, type FlattenedJwe, type JweDecryptionKey } from '../jose/jwe.js';
import { jweContentEncryptions, jweKeyManagements, type JweAlg, type JweEnc } from '../jose/registry.js';
import type { KeyVersion } from '../keys/names.js';
import { isRetired, keyTypes, type KeyMetadata } from '../keys/types.js';
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

/** The one key management FSPIOP uses, both ways. */
const ALG = 'RSA-OAEP-256' satisfies JweAlg;
const PRODUCED_ENC = 'A256GCM' satisfies JweEnc;
const ACCEPTED_ENCS: readonly JweEnc[] = ['A128GCM', 'A192GCM', 'A256GCM'];
const ACCEPTED_IV_BYTES = [12, 16];
const MAX_FIELDS = 64;

export async function encryptFields(body: Record<string, unknown>, fields: readonly string[], recipient: KeyObject): Promise<EncryptedFields> {
  if (fields.length === 0 || fields.length > MAX_FIELDS) throw invalid(`encrypt from 1 to ${MAX_FIELDS} fields`);
  if (new Set(fields).size !== fields.length) throw invalid('a field is listed twice for encryption');
  const copy = structuredClone(body);
  const key = publicKeyRecipient(ALG, recipient);
  const entries: EncryptedFieldEntry[] = [];
  for (const fieldName of fields) {
    const { parent, member } = locate(copy, fieldName);
    const value = parent[member];
    let plaintext: Buffer;
    if (typeof value === 'string') plaintext = Buffer.from(value, 'utf8');
    else if (typeof value === 'object' && value !== null) plaintext = Buffer.from(canonicalJson(value), 'utf8');
    else throw invalid(`field ${excerpt(fieldName)} must be a string, object or array to be encrypted`);
    try {
      const jwe = (await encryptJweWith({ alg: ALG, enc: PRODUCED_ENC, plaintext, serialization: 'json' }, key)) as FlattenedJwe;
      parent[member] = jwe.ciphertext;
      entries.push({
        fieldName,
        encryptedKey: jwe.encrypted_key!,
        protectedHeader: jwe.protected,
        initializationVector: jwe.iv,
        authenticationTag: jwe.tag,
      });
    } finally {
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

/** Our key that decrypts FSPIOP fields: an enabled RSA key of purpose encrypt, from the metadata cache (a switch decrypts on every validation and must not ask the HSM each time). */
export async function fieldDecryptionKey(keyService: KeyService, keyName: string): Promise<KeyMetadata> {
  const { meta } = await keyService.usableKeyVersion(keyName, 'encrypt');
  if (!meta.type.startsWith('RSA_')) {
    throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${meta.name} must be an RSA key with purpose encrypt to decrypt FSPIOP fields`);
  }
  return meta;
}

/**
 * Decrypts the listed fields of a parsed body in place. The content keys are unwrapped inside the
 * backend with our RSA key (`keyName`, purpose encrypt): its primary version, then the one before it
 * unless retired, since a sender may still use the public key it had before our last rotation. Fails as
 * a whole if any field fails.
 */
export async function decryptFields(body: Record<string, unknown>, header: string, keyService: KeyService, keyName: string): Promise<Record<string, unknown>> {
  const entries = parseEncryptionHeader(header);
  const meta = await fieldDecryptionKey(keyService, keyName);
  const primary = meta.versions.findIndex((v) => v.version === meta.primaryVersion);
  const previous = primary > 0 ? meta.versions[primary - 1]!.version : undefined;
  const versions = [meta.primaryVersion, ...(previous !== undefined && !isRetired(meta, previous) ? [previous] : [])];
  const modulusBytes = keyTypes[meta.type].bits / 8;
  const failed: string[] = [];
  for (const entry of entries) {
    try {
      const { parent, member } = locate(body, entry.fieldName);
      const jwe = parseJwe(
        { protected: entry.protectedHeader, encrypted_key: entry.encryptedKey, iv: entry.initializationVector, ciphertext: parent[member], tag: entry.authenticationTag },
        { ivLengths: ACCEPTED_IV_BYTES },
      );
      const recipient = jwe.recipients[0]!;
      if (recipient.alg !== ALG || !ACCEPTED_ENCS.includes(jwe.enc)) throw new FieldDecryptionError([entry.fieldName], 'unsupported alg/enc');
      // An RSA ciphertext is exactly as long as the modulus: anything else is refused without asking the backend.
      if (recipient.encryptedKey.length !== modulusBytes) throw new FieldDecryptionError([entry.fieldName], 'encryptedKey has the wrong length');
      const plaintext = await decryptJweWith(jwe, recipient, ourRsaKey(keyService, keyName, versions, jweContentEncryptions[jwe.enc].keyLength));
      parent[member] = fieldValue(plaintext);
    } catch (e) {
      if (e instanceof HsmBridgeError && !FIELD_FAILURES.includes(e.code)) throw e;
      failed.push(entry.fieldName);
    }
  }
  if (failed.length > 0) throw new FieldDecryptionError(failed, `field decryption failed for ${failed.map((f) => excerpt(f)).join(', ')}`);
  return body;
}

/** A version did not unwrap the content key; one that another replica retired or trimmed since the list was made did not either. */
const NOT_THIS_VERSION: readonly string[] = ['DECRYPTION_FAILED', 'INVALID_ARGUMENT', 'KEY_VERSION_RETIRED', 'KEY_VERSION_NOT_FOUND'];

/** What a field that does not decrypt raises: malformed or unsupported parts, a wrong key, tampering. Other errors are about our key. */
const FIELD_FAILURES: readonly string[] = ['DECRYPTION_FAILED', 'INVALID_ARGUMENT', 'UNSUPPORTED_ALGORITHM'];

/**
 * Our RSA key as the JWE engine's recipient: the content key as the first version that unwraps it to a
 * key of the right length. When none does, the engine goes on with a random key (RFC 7516 §11.5), so the
 * field fails on its GCM tag like a tampered field and the caller cannot tell which step failed.
 */
function ourRsaKey(keyService: KeyService, name: string, versions: readonly KeyVersion[], keyLength: number): JweDecryptionKey {
  return {
    async decryptCek(_alg, encryptedKey) {
      for (const keyVersion of versions) {
        try {
          const { plaintext } = await keyService.decrypt({ name, ciphertext: encryptedKey, keyVersion, algorithm: jweKeyManagements[ALG].backendAlgorithm });
          if (plaintext.length === keyLength) return plaintext;
          plaintext.fill(0);
        } catch (e) {
          if (!(e instanceof HsmBridgeError) || !NOT_THIS_VERSION.includes(e.code)) throw e;
        }
      }
      throw new HsmBridgeError('DECRYPTION_FAILED', 'no version of the key unwraps the content key');
    },
  };
}

/** The decrypted field: JSON for an object or array, else the text. The plaintext is zeroed. */
function fieldValue(plaintext: Buffer): unknown {
  try {
    const text = plaintext.toString('utf8');
    if (text.startsWith('{') || text.startsWith('[')) {
      let value: unknown;
      try {
        value = JSON.parse(text) as unknown;
      } catch {
        return text; // not JSON after all: a string that happens to start with a bracket
      }
      // It goes back to the caller inside the body: refused (the field fails) when nested too deeply to write out.
      checkJsonDepth('the decrypted field', value);
      return value;
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
    throw invalid(`field ${excerpt(path)} is not in the body`);
  }
  return { parent: node as Record<string, unknown>, member };
}
