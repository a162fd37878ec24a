/**
 * How hsm-bridge keys map to PKCS#11 objects (see README.md, "Object mapping"):
 *
 * - Each key version is one secret key object, or one private/public key pair, with CKA_LABEL = key name
 *   and CKA_ID = "hsmb" || version (uint32 big-endian), shared by the two halves of a pair.
 * - Each key has one metadata object: CKO_DATA, CKA_APPLICATION "hsm-bridge", CKA_LABEL = key name,
 *   CKA_VALUE = JSON {format, revision, type, purpose, state, createdAt, versions: {version: createdAt}}.
 *   It is the commit point: a key exists when its metadata object does, and a version exists when the
 *   metadata lists it and its key object is present. An interrupted create, rotate or destroy therefore
 *   leaves at most unlisted objects, which the next create of that name removes.
 * - SoftHSM (and others) make a data object's CKA_VALUE read-only, so the metadata is changed by
 *   writing a new object with the next revision and destroying the old one; readers take the highest
 *   revision, so a reader never sees no metadata during an update.
 * Objects without these markers (other applications' keys and data) are ignored.
 */
import pkcs11js from 'pkcs11js';
import { parseKeyVersion, type KeyName, type KeyVersion } from '../../src/keys/names.js';
import { keyTypes, type KeyPurpose, type KeyState, type KeyType } from '../../src/keys/types.js';
import type { Handle, Pkcs11Api } from './module.js';

const A = pkcs11js;
export const APPLICATION = 'hsm-bridge';
const ID_MARKER = Buffer.from('hsmb', 'latin1');
const METADATA_FORMAT = 1;

export function keyObjectId(version: KeyVersion): Buffer {
  const id = Buffer.alloc(ID_MARKER.length + 4);
  ID_MARKER.copy(id);
  id.writeUInt32BE(version, ID_MARKER.length);
  return id;
}

/** The version a CKA_ID encodes, or undefined for an ID that is not hsm-bridge's. */
export function versionOfId(id: Buffer): KeyVersion | undefined {
  if (id.length !== ID_MARKER.length + 4 || !id.subarray(0, ID_MARKER.length).equals(ID_MARKER)) return undefined;
  const v = id.readUInt32BE(ID_MARKER.length);
  return v >= 1 && v <= 0x7fffffff ? (v as KeyVersion) : undefined;
}

export interface MetadataRecord {
  readonly revision: number;
  readonly type: KeyType;
  readonly purpose: KeyPurpose;
  readonly state: KeyState;
  readonly createdAt: string;
  /** Version -> creation time, for every committed version. */
  readonly versions: Readonly<Record<string, string>>;
}

export function encodeMetadata(record: MetadataRecord): Buffer {
  return Buffer.from(JSON.stringify({ format: METADATA_FORMAT, ...record }), 'utf8');
}

/** The record in a metadata object's value, or undefined when it is not one hsm-bridge wrote. */
export function decodeMetadata(value: Buffer): MetadataRecord | undefined {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(value.toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || v.format !== METADATA_FORMAT) return undefined;
  const { revision, type, purpose, state, createdAt, versions } = v;
  if (typeof revision !== 'number' || !Number.isInteger(revision) || revision < 0) return undefined;
  if (typeof type !== 'string' || !Object.hasOwn(keyTypes, type)) return undefined;
  if (typeof purpose !== 'string' || !(keyTypes[type as KeyType].purposes as readonly string[]).includes(purpose)) return undefined;
  if (state !== 'enabled' && state !== 'disabled') return undefined;
  if (typeof createdAt !== 'string' || typeof versions !== 'object' || versions === null) return undefined;
  for (const [version, at] of Object.entries(versions)) {
    if (typeof at !== 'string' || !/^[1-9][0-9]{0,9}$/.test(version)) return undefined;
  }
  return { revision, type: type as KeyType, purpose: purpose as KeyPurpose, state, createdAt, versions: versions as Record<string, string> };
}

/** Versions a record lists, oldest first. */
export function listedVersions(record: MetadataRecord): KeyVersion[] {
  return Object.keys(record.versions)
    .map((v) => parseKeyVersion(Number(v)))
    .sort((a, b) => a - b);
}

export function findObjects(api: Pkcs11Api, session: Handle, template: pkcs11js.Template): Handle[] {
  api.C_FindObjectsInit(session, template);
  try {
    const found: Handle[] = [];
    for (;;) {
      const batch = api.C_FindObjects(session, 64);
      found.push(...batch);
      if (batch.length < 64) return found;
    }
  } finally {
    api.C_FindObjectsFinal(session);
  }
}

const metadataTemplate = (name?: KeyName): pkcs11js.Template => [
  { type: A.CKA_CLASS, value: A.CKO_DATA },
  { type: A.CKA_APPLICATION, value: APPLICATION },
  ...(name === undefined ? [] : [{ type: A.CKA_LABEL, value: name }]),
];

export interface StoredMetadata {
  readonly record: MetadataRecord;
  /** Every metadata object of the key, the current one included (more than one only mid-update). */
  readonly handles: readonly Handle[];
}

export function readMetadata(api: Pkcs11Api, session: Handle, name: KeyName): StoredMetadata | undefined {
  const handles = findObjects(api, session, metadataTemplate(name));
  let best: MetadataRecord | undefined;
  for (const h of handles) {
    const value = api.C_GetAttributeValue(session, h, [{ type: A.CKA_VALUE }])[0]?.value;
    const record = value && decodeMetadata(value);
    if (record && (!best || record.revision > best.revision)) best = record;
  }
  return best && { record: best, handles };
}

/** Names of every key that has a metadata object. */
export function listKeyNames(api: Pkcs11Api, session: Handle): string[] {
  const names = new Set<string>();
  for (const h of findObjects(api, session, metadataTemplate())) {
    const label = api.C_GetAttributeValue(session, h, [{ type: A.CKA_LABEL }])[0]?.value;
    if (label) names.add(label.toString('utf8'));
  }
  return [...names].sort();
}

/** Writes a metadata object; the caller destroys the previous ones afterwards. */
export function writeMetadata(api: Pkcs11Api, session: Handle, name: KeyName, record: MetadataRecord): Handle {
  return api.C_CreateObject(session, [
    { type: A.CKA_CLASS, value: A.CKO_DATA },
    { type: A.CKA_TOKEN, value: true },
    { type: A.CKA_PRIVATE, value: true },
    { type: A.CKA_APPLICATION, value: APPLICATION },
    { type: A.CKA_LABEL, value: name },
    { type: A.CKA_VALUE, value: encodeMetadata(record) },
  ]);
}

export interface KeyObject {
  readonly handle: Handle;
  readonly objectClass: number;
  readonly version: KeyVersion;
}

/** hsm-bridge's key objects (any class, any version) for a name. */
export function findKeyObjects(api: Pkcs11Api, session: Handle, name: KeyName): KeyObject[] {
  const objects: KeyObject[] = [];
  for (const handle of findObjects(api, session, [{ type: A.CKA_LABEL, value: name }])) {
    // CLASS first: asking a data object (ours, or anyone's) for CKA_ID is CKR_ATTRIBUTE_TYPE_INVALID.
    const objectClass = api.C_GetAttributeValue(session, handle, [{ type: A.CKA_CLASS }])[0]?.value.readUInt32LE(0);
    if (objectClass !== A.CKO_SECRET_KEY && objectClass !== A.CKO_PRIVATE_KEY && objectClass !== A.CKO_PUBLIC_KEY) continue;
    const id = api.C_GetAttributeValue(session, handle, [{ type: A.CKA_ID }])[0];
    const version = id?.value && versionOfId(id.value);
    if (version !== undefined) objects.push({ handle, objectClass, version });
  }
  return objects;
}

/** The handles of one key version: the key that signs/decrypts/MACs and, for a pair, its public half. */
export interface VersionHandles {
  readonly key: Handle;
  readonly publicKey?: Handle;
}

export function findVersion(api: Pkcs11Api, session: Handle, name: KeyName, version: KeyVersion): VersionHandles | undefined {
  const find = (objectClass: number) =>
    findObjects(api, session, [
      { type: A.CKA_CLASS, value: objectClass },
      { type: A.CKA_LABEL, value: name },
      { type: A.CKA_ID, value: keyObjectId(version) },
    ])[0];
  const key = find(A.CKO_SECRET_KEY) ?? find(A.CKO_PRIVATE_KEY);
  if (!key) return undefined;
  const publicKey = find(A.CKO_PUBLIC_KEY);
  return publicKey ? { key, publicKey } : { key };
}
