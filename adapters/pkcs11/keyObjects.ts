/**
 * How hsm-bridge keys map to PKCS#11 objects (see README.md, "Object mapping"):
 *
 * - Each key version is one secret key object, or one private/public key pair, with CKA_LABEL = key name
 *   and CKA_ID = "hsmb" || version (uint32 BE) || creation time (uint32 BE, Unix seconds) || 8 random
 *   bytes, shared by the two halves of a pair. The random part makes the objects of one version, made by
 *   one writer, distinguishable from anything another replica generates for the same name and version;
 *   the time tells how old an unlisted object is.
 * - Each key has a metadata object: CKO_DATA, CKA_APPLICATION "hsm-bridge", CKA_LABEL = key name,
 *   CKA_VALUE = JSON {format, revision, type, purpose, state, createdAt, minDecryptionVersion?, versions:
 *   {version: {createdAt, id}}, basedOn, writtenAt, nonce}. It is the commit point: a key exists when its metadata object
 *   does, and a version exists when the metadata lists it (with its CKA_ID) and that key object is present.
 * - SoftHSM (and others) make a data object's CKA_VALUE read-only, so a change writes a new object with
 *   the next revision (basedOn = SHA-256 of the value it changed) and then destroys the older ones but
 *   its base. Readers take the highest revision its writer has kept (pickCurrent) and, between two objects
 *   at the same revision (two replicas wrote at once; see revisions.ts for how one of them withdraws), the
 *   lowest SHA-256 of the value.
 * - A version may have companion objects (paymentKeys.ts: the BDK variant, K1 of a MAC key) under the
 *   same label and CKA_ID = the version's ID || a role byte. They are found, rotated and destroyed with
 *   the version; the metadata lists the roles a version has, and a listed companion that is missing
 *   makes the version unusable (never a silent fallback). Nothing that lists keys sees them.
 * Objects without these markers (other applications' keys and data) are ignored.
 */
import { createHash, randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { parseKeyVersion, type KeyName, type KeyVersion } from '../../src/keys/names.js';
import { HsmBridgeError } from '../../src/errors.js';
import { keyTypes, keyUsagesFor, modesOfUse, paymentAttributesOf, storedMinDecryptionVersion, type KeyPurpose, type KeyState, type KeyType, type KeyUsage, type ModeOfUse } from '../../src/keys/types.js';
import { CKR, ckrOf } from './errors.js';
import { CKM } from './mechanisms.js';
import type { Handle, Pkcs11Api } from './module.js';
import { beingChecked, withTokenLock } from './tokenLock.js';
import { createTokenObject } from './tokenWrites.js';

const A = pkcs11js;
export const APPLICATION = 'hsm-bridge';
const ID_MARKER = Buffer.from('hsmb', 'latin1');
/** Where the creation time starts in a CKA_ID: after the marker and the version. */
const TIME_OFFSET = ID_MARKER.length + 4;
const ID_LENGTH = TIME_OFFSET + 4 + 8;
const METADATA_FORMAT = 2;

/** The companion objects a key version can have, and the byte that marks each one's CKA_ID. */
export type CompanionRole = 'variant' | 'k1';
const COMPANION_BYTE: Record<CompanionRole, number> = { variant: 1, k1: 2 };
const companionRoles = Object.keys(COMPANION_BYTE) as CompanionRole[];

/** The CKA_ID of a version's companion: the version's ID and the role's byte. */
export function companionObjectId(versionId: Buffer, role: CompanionRole): Buffer {
  return Buffer.concat([versionId, Buffer.from([COMPANION_BYTE[role]])]);
}

/** A fresh CKA_ID for the objects of one version: unique to this writer, stamped with the time. */
export function newKeyObjectId(version: KeyVersion, now = Date.now()): Buffer {
  const id = Buffer.alloc(ID_LENGTH);
  ID_MARKER.copy(id);
  id.writeUInt32BE(version, ID_MARKER.length);
  id.writeUInt32BE(Math.floor(now / 1000), TIME_OFFSET);
  randomBytes(8).copy(id, TIME_OFFSET + 4);
  return id;
}

export interface ParsedId {
  readonly version: KeyVersion;
  /** When the ID was made (ms). */
  readonly createdMs: number;
  /** Set on a companion object's ID. */
  readonly companion?: CompanionRole;
  /** The version's CKA_ID (the ID itself, without a companion's role byte), hex. */
  readonly versionId: string;
}

/** What a CKA_ID says, or undefined for an ID that is not hsm-bridge's. */
export function parseObjectId(id: Buffer): ParsedId | undefined {
  if (id.length === ID_LENGTH + 1) {
    const companion = companionRoles.find((r) => COMPANION_BYTE[r] === id[ID_LENGTH]);
    const parsed = companion && parseObjectId(id.subarray(0, ID_LENGTH));
    return parsed && { ...parsed, companion };
  }
  if (id.length !== ID_LENGTH || !id.subarray(0, ID_MARKER.length).equals(ID_MARKER)) return undefined;
  const v = id.readUInt32BE(ID_MARKER.length);
  if (v < 1 || v > 0x7fffffff) return undefined;
  const version = v as KeyVersion;
  return { version, createdMs: id.readUInt32BE(TIME_OFFSET) * 1000, versionId: id.toString('hex') };
}

export interface VersionRecord {
  readonly createdAt: string;
  /** CKA_ID of the version's objects, hex. */
  readonly id: string;
  /** The companion objects the version has (absent: none). */
  readonly companions?: readonly CompanionRole[];
}

export interface MetadataRecord {
  readonly revision: number;
  readonly type: KeyType;
  readonly purpose: KeyPurpose;
  readonly state: KeyState;
  readonly createdAt: string;
  /** May leave the token (TR-31 export); absent in older records: false. */
  readonly exportable?: boolean;
  /** The X9.143 mode of use a TR-31 import carried; absent: unrestricted. */
  readonly modeOfUse?: ModeOfUse;
  /** The X9.143 key usage of a payment key; absent: the purpose's general kind. */
  readonly keyUsage?: KeyUsage;
  /** Versions below it are retired (KeyMetadata.minDecryptionVersion); absent (older records too): none. Kept only above 1. */
  readonly minDecryptionVersion?: KeyVersion;
  /** Version -> creation time and CKA_ID, for every committed version. */
  readonly versions: Readonly<Record<string, VersionRecord>>;
  /** Digest of the revision this one changed; absent for revision 0. */
  readonly basedOn?: string;
  /** When this revision was written (the writer's clock). */
  readonly writtenAt: string;
  /** Makes two writers' values differ even when they write the same change at the same moment. */
  readonly nonce: string;
}

export function encodeMetadata(record: MetadataRecord): Buffer {
  return Buffer.from(JSON.stringify({ format: METADATA_FORMAT, ...record }), 'utf8');
}

const isVersionKey = (v: string) => /^[1-9][0-9]{0,9}$/.test(v);
const isHex = (v: unknown): v is string => typeof v === 'string' && /^(?:[0-9a-f]{2})+$/.test(v);

/** The record in a metadata object's value, or undefined when it is not one hsm-bridge wrote. */
export function decodeMetadata(value: Buffer): MetadataRecord | undefined {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(value.toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || v.format !== METADATA_FORMAT) return undefined;
  const { revision, type, purpose, state, createdAt, versions, exportable, modeOfUse, keyUsage, minDecryptionVersion } = v;
  if (typeof revision !== 'number' || !Number.isInteger(revision) || revision < 0) return undefined;
  if (typeof type !== 'string' || !Object.hasOwn(keyTypes, type)) return undefined;
  if (typeof purpose !== 'string' || !(keyTypes[type as KeyType].purposes as readonly string[]).includes(purpose)) return undefined;
  if (state !== 'enabled' && state !== 'disabled') return undefined;
  if (typeof createdAt !== 'string' || typeof versions !== 'object' || versions === null) return undefined;
  if (exportable !== undefined && typeof exportable !== 'boolean') return undefined;
  if (modeOfUse !== undefined && !(modesOfUse as readonly unknown[]).includes(modeOfUse)) return undefined;
  if (keyUsage !== undefined && !(keyUsagesFor(type as KeyType, purpose as KeyPurpose) as readonly unknown[]).includes(keyUsage)) return undefined;
  if (minDecryptionVersion !== undefined && !(typeof minDecryptionVersion === 'number' && isVersionKey(String(minDecryptionVersion)))) return undefined;
  const common = {
    revision, type: type as KeyType, purpose: purpose as KeyPurpose, state, createdAt,
    ...paymentAttributesOf({ exportable: exportable === true, modeOfUse: modeOfUse as ModeOfUse | undefined, keyUsage: keyUsage as KeyUsage | undefined }),
  } as const;
  const decoded: Record<string, VersionRecord> = {};
  for (const [version, entry] of Object.entries(versions)) {
    if (!isVersionKey(version) || typeof entry !== 'object' || entry === null) return undefined;
    const { createdAt: at, id, companions } = entry as Record<string, unknown>;
    if (typeof at !== 'string' || !isHex(id)) return undefined;
    if (companions === undefined) {
      decoded[version] = { createdAt: at, id };
      continue;
    }
    if (!Array.isArray(companions) || !companions.every((r) => (companionRoles as unknown[]).includes(r))) return undefined;
    decoded[version] = { createdAt: at, id, companions: companions as CompanionRole[] };
  }
  const { basedOn, writtenAt, nonce } = v;
  if ((basedOn !== undefined && !isHex(basedOn)) || typeof writtenAt !== 'string' || typeof nonce !== 'string') return undefined;
  // One above the newest version reads as none retired; the record is hsm-bridge's all the same (refusing
  // it would hide the key, and a create under its name would then destroy its objects as leftovers).
  const retired = storedMinDecryptionVersion(minDecryptionVersion as number | undefined, Object.keys(decoded).map(Number));
  return { ...common, ...retired, versions: decoded, ...(basedOn === undefined ? {} : { basedOn }), writtenAt, nonce };
}

/** Versions a record lists, oldest first. */
export function listedVersions(record: MetadataRecord): KeyVersion[] {
  return Object.keys(record.versions)
    .map((v) => parseKeyVersion(Number(v)))
    .sort((a, b) => a - b);
}

/** A search of the token's objects, never overlapping another thread's search or token write (tokenLock.ts). */
export function findObjects(api: Pkcs11Api, session: Handle, template: pkcs11js.Template): Handle[] {
  return withTokenLock(() => {
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
  });
}

/**
 * One attribute of an object a search found, or undefined when the object is gone by now: another
 * replica destroyed it between the search and the read (a replaced or withdrawn revision, a withdrawn
 * create). Either way it is not there for this reader.
 */
function attributeOfFound(api: Pkcs11Api, session: Handle, handle: Handle, type: number): Buffer | undefined {
  try {
    return api.C_GetAttributeValue(session, handle, [{ type }])[0]?.value;
  } catch (e) {
    if (ckrOf(e) === CKR.OBJECT_HANDLE_INVALID) return undefined;
    throw e;
  }
}

const metadataTemplate = (name?: KeyName): pkcs11js.Template => [
  { type: A.CKA_CLASS, value: A.CKO_DATA },
  { type: A.CKA_APPLICATION, value: APPLICATION },
  ...(name === undefined ? [] : [{ type: A.CKA_LABEL, value: name }]),
];

/** One metadata object of a key. */
export interface MetadataObject {
  readonly handle: Handle;
  readonly record: MetadataRecord;
  /** SHA-256 of the object's value, hex: its identity (basedOn) and the tie-break between equal revisions. */
  readonly digest: string;
}

export interface StoredMetadata {
  /** The record readers use: the newest revision whose writer has kept it (see pickCurrent). */
  readonly current: MetadataObject;
  /** The highest revision (lowest digest between equals), kept or still being checked: what writers build on. */
  readonly latest: MetadataObject;
  /** Every metadata object of the key. */
  readonly objects: readonly MetadataObject[];
  /** Other objects at the latest revision: writers racing, of which all but one will withdraw. */
  readonly siblings: readonly MetadataObject[];
  /** The latest revision may still be withdrawn by its writer (see pickCurrent). */
  readonly unsettled: boolean;
}

/** How many times a read starts again because objects vanished under it before it gives up (BACKEND_UNAVAILABLE). */
const MAX_READS = 8;

/**
 * Reads what a search finds, as of one moment. When a found object has vanished before its read, the
 * search is made again rather than the object skipped: a writer destroys a revision only once its
 * successor is complete and read back, but the search may have met that successor half-made (SoftHSM
 * creates the object, then writes its attributes, so it did not match yet). Skipping the vanished one
 * would leave neither: the false KEY_NOT_FOUND two replicas saw. The next search finds the successor.
 */
function readFound<T>(api: Pkcs11Api, session: Handle, template: pkcs11js.Template, type: number, read: (handle: Handle, value: Buffer) => T | undefined): T[] {
  for (let attempt = 1; attempt <= MAX_READS; attempt++) {
    // The search and its reads under one hold of the token lock: no other thread writes in between.
    const { found, vanished } = withTokenLock(() => {
      const items: T[] = [];
      let gone = false;
      for (const handle of findObjects(api, session, template)) {
        const value = attributeOfFound(api, session, handle, type);
        if (!value) gone = true;
        const item = value && read(handle, value);
        if (item) items.push(item);
      }
      return { found: items, vanished: gone };
    });
    if (!vanished) return found;
  }
  throw new HsmBridgeError('BACKEND_UNAVAILABLE', 'keys are being changed by other replicas faster than they can be read; retry');
}

/** Every hsm-bridge metadata object of the name (values that do not decode are not ours, and ignored). */
export function readMetadataObjects(api: Pkcs11Api, session: Handle, name: KeyName): MetadataObject[] {
  return readFound(api, session, metadataTemplate(name), A.CKA_VALUE, (handle, value) => {
    const record = decodeMetadata(value);
    return record && { handle, record, digest: createHash('sha256').update(value).digest('hex') };
  });
}

const before = (a: MetadataObject, b: MetadataObject) => a.record.revision > b.record.revision || (a.record.revision === b.record.revision && a.digest < b.digest);
const best = (objects: readonly MetadataObject[]) => objects.reduce<MetadataObject | undefined>((b, o) => (!b || before(o, b) ? o : b), undefined);

/**
 * A writer that keeps revision r removes every older object but its base, r - 1 (revisions.ts). So while
 * objects older than r - 1 are still there, or another object is at revision r too, revision r may yet be
 * withdrawn by its writer: readers use r - 1 meanwhile, and never sign with a version that is about to
 * vanish. A revision whose base has no predecessor has no such witness: only its writer's process knows
 * (beingChecked) until its check is done.
 */
export function pickCurrent(objects: readonly MetadataObject[]): StoredMetadata | undefined {
  const latest = best(objects);
  if (!latest) return undefined;
  const r = latest.record.revision;
  const siblings = objects.filter((o) => o !== latest && o.record.revision === r);
  const base = best(objects.filter((o) => o.record.revision === r - 1));
  const unsettled = siblings.length > 0 || beingChecked.has(latest.digest) || objects.some((o) => o.record.revision < r - 1);
  return { current: base && unsettled ? base : latest, latest, objects, siblings, unsettled };
}

export function readMetadata(api: Pkcs11Api, session: Handle, name: KeyName): StoredMetadata | undefined {
  return pickCurrent(readMetadataObjects(api, session, name));
}

/** Names of every key that has a metadata object. */
export function listKeyNames(api: Pkcs11Api, session: Handle): string[] {
  return [...new Set(readFound(api, session, metadataTemplate(), A.CKA_LABEL, (_, label) => label.toString('utf8')))].sort();
}

/** Writes a metadata object (tokenWrites.ts); the caller removes the older ones but its base once it knows it won. */
export function writeMetadata(api: Pkcs11Api, session: Handle, name: KeyName, record: MetadataRecord): MetadataObject {
  const value = encodeMetadata(record);
  const handle = createTokenObject(api, session, [
    { type: A.CKA_CLASS, value: A.CKO_DATA },
    { type: A.CKA_TOKEN, value: true },
    { type: A.CKA_PRIVATE, value: true },
    { type: A.CKA_APPLICATION, value: APPLICATION },
    { type: A.CKA_LABEL, value: name },
    { type: A.CKA_VALUE, value },
  ]);
  return { handle, record, digest: createHash('sha256').update(value).digest('hex') };
}

export interface KeyObject {
  readonly handle: Handle;
  readonly objectClass: number;
  /** The CKA_ID of the version the object belongs to, hex (a companion's own ID adds a role byte). */
  readonly id: string;
  readonly parsed: ParsedId;
}

/** hsm-bridge's key objects (any class, any version) for a name. */
export function findKeyObjects(api: Pkcs11Api, session: Handle, name: KeyName): KeyObject[] {
  return withTokenLock(() => {
    const objects: KeyObject[] = [];
    for (const handle of findObjects(api, session, [{ type: A.CKA_LABEL, value: name }])) {
      // CLASS first: asking a data object (ours, or anyone's) for CKA_ID is CKR_ATTRIBUTE_TYPE_INVALID.
      const objectClass = attributeOfFound(api, session, handle, A.CKA_CLASS)?.readUInt32LE(0);
      if (objectClass !== A.CKO_SECRET_KEY && objectClass !== A.CKO_PRIVATE_KEY && objectClass !== A.CKO_PUBLIC_KEY) continue;
      const id = attributeOfFound(api, session, handle, A.CKA_ID);
      const parsed = id && parseObjectId(id);
      if (parsed) objects.push({ handle, objectClass, id: parsed.versionId, parsed });
    }
    // Companions last: a reader that finds the key object of a version being destroyed then still finds its companions.
    return objects.sort((a, b) => Number(a.parsed.companion !== undefined) - Number(b.parsed.companion !== undefined));
  });
}

/** The handles of one key version: the key that signs/decrypts/MACs and, for a pair, its public half. */
export interface VersionHandles {
  readonly key: Handle;
  readonly publicKey?: Handle;
  /** CKA_ID (hex) the handles were found under. */
  readonly id: string;
  /** The version's companion objects, by role. */
  readonly companions?: Readonly<Partial<Record<CompanionRole, Handle>>>;
  /** The mechanism of the 'k1' companion: CKM_DES_CBC for a CKK_DES key, CKM_DES3_CBC for a CKK_DES2 key K1 K1 (read once, with the handles). */
  readonly k1Mechanism?: number;
}

/**
 * A version's objects, each found by one template (class + label + CKA_ID). Undefined when the key object
 * is gone (an interrupted destroy); an error when the key is there but a companion the metadata lists is not.
 */
export function findVersion(api: Pkcs11Api, session: Handle, name: KeyName, listed: VersionRecord, asymmetric: boolean): VersionHandles | undefined {
  return withTokenLock(() => {
    const { id } = listed;
    const find = (objectClass: number, objectId: Buffer) =>
      findObjects(api, session, [
        { type: A.CKA_CLASS, value: objectClass },
        { type: A.CKA_LABEL, value: name },
        { type: A.CKA_ID, value: objectId },
      ])[0];
    if (!asymmetric) {
      const key = find(A.CKO_SECRET_KEY, Buffer.from(id, 'hex'));
      if (!key) return undefined;
      if (!listed.companions?.length) return { key, id };
      const companions: Partial<Record<CompanionRole, Handle>> = {};
      for (const role of listed.companions) {
        const handle = find(A.CKO_SECRET_KEY, companionObjectId(Buffer.from(id, 'hex'), role));
        if (!handle) throw new HsmBridgeError('INTERNAL', `key ${name}: an object of one of its versions is missing from the HSM`);
        companions[role] = handle;
      }
      const k1 = companions.k1;
      if (!k1) return { key, id, companions };
      const k1Type = api.C_GetAttributeValue(session, k1, [{ type: A.CKA_KEY_TYPE }])[0]?.value;
      return { key, id, companions, k1Mechanism: k1Type && readUlong(k1Type) === A.CKK_DES ? CKM.DES_CBC : CKM.DES3_CBC };
    }
    const key = find(A.CKO_PRIVATE_KEY, Buffer.from(id, 'hex'));
    const publicKey = key && find(A.CKO_PUBLIC_KEY, Buffer.from(id, 'hex'));
    return key && publicKey ? { key, publicKey, id } : undefined;
  });
}

const readUlong = (b: Buffer) => (b.length >= 8 ? Number(b.readBigUInt64LE(0)) : b.readUInt32LE(0));
