/**
 * How hsm-bridge keys map to KMIP managed objects (README.md, "Object mapping"):
 *
 * - Each key version is one Symmetric Key, or a Private Key and Public Key pair, with the KMIP Name
 *   "hsmb/<key>/v<version>" (both halves of a pair carry it) and a Cryptographic Usage Mask from the
 *   key's purpose, so the server itself refuses any other use.
 * - Each key has a head: Secret Data named "hsmb/<key>", in Object Group "hsm-bridge", whose value is the
 *   JSON record below. The Active head is the key: a key exists exactly when it has one. A change
 *   registers the next head (Pre-Active, basedOn = the current head's identifier), revokes the current
 *   head, and activates the next. Revoke succeeds only on an Active object, so of two replicas changing
 *   the same key at once exactly one wins; the other withdraws and starts again from the new head.
 *   A destroy's next head is a tombstone (`destroyed: true`): never activated, it tells readers that
 *   the revoke before it was a destroy, so a successor another writer left behind is not revived.
 */
import { parseKeyVersion, type KeyName, type KeyVersion } from '../../src/keys/names.js';
import { HsmBridgeError } from '../../src/errors.js';
import { keyTypes, storedMinDecryptionVersion, type KeyPurpose, type KeyState, type KeyType } from '../../src/keys/types.js';

export const OBJECT_GROUP = 'hsm-bridge';
const FORMAT = 1;
/** Bounds on a record, checked before it is parsed (a head is whatever the server returns). */
export const MAX_RECORD_BYTES = 64 * 1024;
export const MAX_VERSIONS = 400;

export const headName = (name: KeyName) => `hsmb/${name}`;
export const versionName = (name: KeyName, version: KeyVersion) => `hsmb/${name}/v${version}`;

export interface VersionRecord {
  readonly createdAt: string;
  /** The Symmetric Key, or the Private Key of a pair. */
  readonly uid: string;
  /** The Public Key of a pair. */
  readonly publicUid?: string;
}

export interface HeadRecord {
  readonly name: KeyName;
  readonly type: KeyType;
  readonly purpose: KeyPurpose;
  readonly state: KeyState;
  readonly createdAt: string;
  readonly versions: Readonly<Record<string, VersionRecord>>;
  /**
   * Versions below it are retired (KeyMetadata.minDecryptionVersion). Written only when above 1: a head
   * without it (every head written before it existed) retires nothing.
   */
  readonly minDecryptionVersion?: number;
  /** The head this one replaced; absent on a key's first head. */
  readonly basedOn?: string;
  /** When this head was registered, on the writer's clock: orders heads; ages come from the server's Initial Date. */
  readonly writtenAt: string;
  /** A destroy's tombstone: the key ends with the head this one is based on. Never activated. */
  readonly destroyed?: true;
}

export function encodeRecord(record: HeadRecord): Buffer {
  const encoded = Buffer.from(JSON.stringify({ format: FORMAT, ...record }), 'utf8');
  // Rotation refuses to go past MAX_VERSIONS first; this guards against writing what no reader accepts.
  if (encoded.length > MAX_RECORD_BYTES) throw new HsmBridgeError('INTERNAL', 'a key record outgrew its bound');
  return encoded;
}

const isVersionKey = (v: string) => /^[1-9][0-9]{0,9}$/.test(v);
const isText = (v: unknown, max = 256): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;

/** The record in a head's value, or undefined when it is not one hsm-bridge (or a tool following the mapping) wrote. */
export function decodeRecord(value: Buffer): HeadRecord | undefined {
  if (value.length > MAX_RECORD_BYTES) return undefined;
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(value.toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || v.format !== FORMAT) return undefined;
  const { name, type, purpose, state, createdAt, versions, minDecryptionVersion, basedOn, writtenAt, destroyed } = v;
  if (!isText(name, 64) || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) return undefined;
  if (typeof type !== 'string' || !Object.hasOwn(keyTypes, type)) return undefined;
  if (typeof purpose !== 'string' || !(keyTypes[type as KeyType].purposes as readonly string[]).includes(purpose)) return undefined;
  if (state !== 'enabled' && state !== 'disabled') return undefined;
  if (!isText(createdAt) || !isText(writtenAt) || typeof versions !== 'object' || versions === null) return undefined;
  if (minDecryptionVersion !== undefined && !(typeof minDecryptionVersion === 'number' && isVersionKey(String(minDecryptionVersion)))) return undefined;
  if (basedOn !== undefined && !isText(basedOn)) return undefined;
  if (destroyed !== undefined && (destroyed !== true || basedOn === undefined)) return undefined;
  if (Object.keys(versions).length > MAX_VERSIONS) return undefined;
  const decoded: Record<string, VersionRecord> = {};
  for (const [version, entry] of Object.entries(versions)) {
    if (!isVersionKey(version) || typeof entry !== 'object' || entry === null) return undefined;
    const { createdAt: at, uid, publicUid } = entry as Record<string, unknown>;
    if (!isText(at) || !isText(uid) || (publicUid !== undefined && !isText(publicUid))) return undefined;
    decoded[version] = { createdAt: at, uid, ...(publicUid === undefined ? {} : { publicUid }) };
  }
  return {
    name: name as KeyName, type: type as KeyType, purpose: purpose as KeyPurpose, state, createdAt,
    versions: decoded,
    // One above the newest version reads as none retired; the head is still the key (refusing it would hide it).
    ...storedMinDecryptionVersion(minDecryptionVersion as number | undefined, Object.keys(decoded).map(Number)),
    ...(basedOn === undefined ? {} : { basedOn }),
    writtenAt,
    ...(destroyed ? { destroyed } : {}),
  };
}

/** Versions a record lists, oldest first. */
export function listedVersions(record: HeadRecord): KeyVersion[] {
  return Object.keys(record.versions)
    .map((v) => parseKeyVersion(Number(v)))
    .sort((a, b) => a - b);
}
