/**
 * The keystore file: one JSON document holding every key's metadata in clear and each version's secret
 * material sealed under the master key (see sealing.ts). Reading it opens every record, so a wrong
 * master key or an altered record stops the backend at start rather than at the first request.
 *
 * {
 *   "format": "hsm-bridge-software-keystore", "formatVersion": 1,
 *   "masterKeyCheck": { "iv": b64, "data": b64 },
 *   "keys": [ { "name", "type", "purpose", "state", "createdAt", "exportable"?: true, "modeOfUse"?: "E", "keyUsage"?: "M3",
 *               "minDecryptionVersion"?: 3, "versions": [ { "version", "createdAt", "publicKeySpki"?: b64 DER, "material": { "iv", "data" } } ] } ],
 *   "ceremonies"?: [ { "plan": CeremonyPlan, "planSeal": { "iv", "data" },
 *                      "components": [ { "entry": ComponentEntry, "material": { "iv", "data" } } ] } ]
 * }
 */
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Ajv } from 'ajv';
import type { CeremonyId } from '../../src/ceremonies/record.js';
import { parseKeyName, type KeyName, type KeyVersion } from '../../src/keys/names.js';
import {
  allKeyTypes,
  isAsymmetric,
  isPaymentPurpose,
  keyPurposes,
  keyTypes,
  keyUsages,
  keyUsagesFor,
  modesOfUse,
  paymentAttributesOf,
  parseKeyPurpose,
  type KeyMetadata,
  type KeyPurpose,
  type KeyState,
  type KeyType,
  type KeyUsage,
  type ModeOfUse,
} from '../../src/keys/types.js';
import { exportSecretMaterial, importSecretMaterial, publicKeySpki, type VersionKeys } from './keyMaterial.js';
import { masterKeyCheckPasses, openRecord, sealedSchema, sealRecord, type RecordBinding, type Sealed } from './sealing.js';
import { problemWith, storedCeremonySchema, type StoredCeremony } from './ceremonyRecords.js';

const FORMAT = 'hsm-bridge-software-keystore';
const FORMAT_VERSION = 1;

export interface StoredVersion {
  readonly version: number;
  readonly createdAt: string;
  readonly publicKeySpki?: string;
  readonly material: Sealed;
}

export interface StoredKey {
  readonly name: string;
  readonly type: KeyType;
  readonly purpose: KeyPurpose;
  readonly state: KeyState;
  readonly createdAt: string;
  /** Absent (older keystores, and keys that may not leave) means false. */
  readonly exportable?: boolean;
  /** Absent means whatever the purpose allows. */
  readonly modeOfUse?: ModeOfUse;
  /** The X9.143 key usage; absent (older keystores, and keys created without one) means the purpose's general kind. */
  readonly keyUsage?: KeyUsage;
  /**
   * Versions below it are retired; absent (older keystores, and keys with none retired) means 1. Every
   * version's seal binds it, so an edit of it in the file fails authentication.
   */
  readonly minDecryptionVersion?: number;
  /** Oldest first; trimmed versions are gone, so the first may be above 1. */
  readonly versions: readonly StoredVersion[];
}

export interface KeystoreDocument {
  readonly format: typeof FORMAT;
  readonly formatVersion: typeof FORMAT_VERSION;
  readonly masterKeyCheck: Sealed;
  readonly keys: readonly StoredKey[];
  /** Key ceremonies in progress; absent when there are none (so keystores without any stay as before). */
  readonly ceremonies?: readonly StoredCeremony[];
}

/** A key as the backend holds it: the stored record (rewritten as is) and its versions' live keys. */
export interface KeyEntry {
  readonly stored: StoredKey;
  readonly keys: ReadonlyMap<number, VersionKeys>;
}

const documentSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['format', 'formatVersion', 'masterKeyCheck', 'keys'],
  properties: {
    format: { const: FORMAT },
    formatVersion: { const: FORMAT_VERSION },
    masterKeyCheck: sealedSchema,
    keys: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'type', 'purpose', 'state', 'createdAt', 'versions'],
        properties: {
          name: { type: 'string' },
          type: { enum: allKeyTypes },
          purpose: { enum: keyPurposes },
          state: { enum: ['enabled', 'disabled'] },
          createdAt: { type: 'string' },
          exportable: { type: 'boolean' },
          modeOfUse: { enum: modesOfUse },
          keyUsage: { enum: keyUsages },
          minDecryptionVersion: { type: 'integer', minimum: 2, maximum: 0x7fffffff },
          versions: {
            type: 'array',
            minItems: 1,
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['version', 'createdAt', 'material'],
              properties: {
                version: { type: 'integer', minimum: 1, maximum: 0x7fffffff },
                createdAt: { type: 'string' },
                publicKeySpki: { type: 'string' },
                material: sealedSchema,
              },
            },
          },
        },
      },
    },
    ceremonies: { type: 'array', items: storedCeremonySchema },
  },
};
const validateDocument = new Ajv({ allErrors: false, strict: false }).compile<KeystoreDocument>(documentSchema);

export class KeystoreError extends Error {
  override readonly name = 'KeystoreError';
  constructor(path: string, problem: string) {
    super(`software backend: keystore ${path}: ${problem}`);
  }
}

/** The parsed document, or undefined when there is no keystore yet. */
export async function readKeystore(path: string): Promise<KeystoreDocument | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new KeystoreError(path, `cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new KeystoreError(path, 'is not valid JSON');
  }
  if (!validateDocument(doc)) {
    const e = validateDocument.errors?.[0];
    throw new KeystoreError(path, `is malformed: ${e?.instancePath || '/'} ${e?.message ?? 'is invalid'}`);
  }
  return doc;
}

/** Opens every record of the document; throws KeystoreError on a wrong master key or any altered record. */
export function unsealKeystore(path: string, doc: KeystoreDocument, masterKey: KeyObject): Map<KeyName, KeyEntry> {
  if (!masterKeyCheckPasses(masterKey, doc.masterKeyCheck)) {
    throw new KeystoreError(path, 'the master key does not open this keystore (a different master key, or the file was altered)');
  }
  const entries = new Map<KeyName, KeyEntry>();
  for (const stored of doc.keys) {
    const name = checked(path, () => parseKeyName(stored.name), 'has a key with an invalid name');
    const where = `key ${name}`;
    if (entries.has(name)) throw new KeystoreError(path, `${where} appears twice`);
    if (!isLegacyTdesKey(stored)) checked(path, () => parseKeyPurpose(stored.purpose, stored.type), `${where} has a purpose its type cannot have`);
    if (stored.exportable === true && !mayBeExportable(stored)) throw new KeystoreError(path, `${where} is marked exportable but is not a payment key`);
    if (stored.keyUsage !== undefined && !keyUsagesFor(stored.type, stored.purpose).includes(stored.keyUsage)) {
      throw new KeystoreError(path, `${where} has a key usage its type and purpose cannot have`);
    }
    if ((stored.minDecryptionVersion ?? 1) > stored.versions[stored.versions.length - 1]!.version) {
      throw new KeystoreError(path, `${where} has a minDecryptionVersion above its newest version`);
    }
    const keys = new Map<number, VersionKeys>();
    let previous = 0;
    for (const v of stored.versions) {
      if (v.version <= previous) throw new KeystoreError(path, `${where} has versions out of order`);
      previous = v.version;
      const binding = { ...bindingOf(stored), version: v.version };
      const material = openRecord(masterKey, binding, v.material);
      if (!material) throw new KeystoreError(path, `${where} version ${v.version} fails authentication (altered, or moved from another key)`);
      const live = checked(path, () => importSecretMaterial(stored.type, material), `${where} version ${v.version} does not hold a ${stored.type} key`);
      // The public key is stored in clear for describeKey; it must be the one of the sealed private key.
      const spki = publicKeySpki(live)?.toString('base64');
      if (spki !== v.publicKeySpki) throw new KeystoreError(path, `${where} version ${v.version} has a public key that does not match its private key`);
      keys.set(v.version, live);
    }
    entries.set(name, { stored, keys });
  }
  return entries;
}

/** Checks every ceremony of the document (its plan's seal and components open); throws KeystoreError on any problem. */
export function unsealCeremonies(path: string, doc: KeystoreDocument, masterKey: KeyObject): Map<CeremonyId, StoredCeremony> {
  const ceremonies = new Map<CeremonyId, StoredCeremony>();
  for (const ceremony of doc.ceremonies ?? []) {
    const problem = problemWith(masterKey, ceremony);
    if (problem) throw new KeystoreError(path, `ceremony ${ceremony.plan.id} ${problem}`);
    if (ceremonies.has(ceremony.plan.id)) throw new KeystoreError(path, `ceremony ${ceremony.plan.id} appears twice`);
    ceremonies.set(ceremony.plan.id, ceremony);
  }
  return ceremonies;
}

/**
 * Before the payment purposes, TDES keys had purpose 'encrypt', which no operation ever served. Such a key
 * still opens (its record is bound to that purpose), so the keystore does too; nothing can use it.
 */
function isLegacyTdesKey(stored: StoredKey): boolean {
  return keyTypes[stored.type].family === 'tdes' && stored.purpose === 'encrypt';
}

function checked<T>(path: string, f: () => T, problem: string): T {
  try {
    return f();
  } catch {
    throw new KeystoreError(path, problem);
  }
}

/** Only TDES and AES keys of the payment purposes may leave the backend (in a TR-31 key block). */
export function mayBeExportable(key: Pick<StoredKey, 'type' | 'purpose'>): boolean {
  const family = keyTypes[key.type].family;
  return (family === 'tdes' || family === 'aes') && isPaymentPurpose(key.purpose);
}

type KeyAttributes = Pick<StoredKey, 'name' | 'type' | 'purpose' | 'exportable' | 'modeOfUse' | 'keyUsage' | 'minDecryptionVersion'>;

/** What a sealed record is bound to, besides its version. */
function bindingOf(key: KeyAttributes): Omit<RecordBinding, 'version'> {
  return {
    name: key.name,
    type: key.type,
    purpose: key.purpose,
    ...paymentAttributesOf(key),
    ...(key.minDecryptionVersion !== undefined ? { minDecryptionVersion: key.minDecryptionVersion } : {}),
  };
}

/** Seals a version's material for the key's attributes; the exported secret bytes are zeroed. */
function sealMaterial(masterKey: KeyObject, key: KeyAttributes, version: number, keys: VersionKeys): Sealed {
  const material = exportSecretMaterial(keys);
  try {
    return sealRecord(masterKey, { ...bindingOf(key), version }, material);
  } finally {
    material.fill(0);
  }
}

/** Seals a new version's material into its stored form. */
export function sealVersion(masterKey: KeyObject, key: KeyAttributes, version: number, keys: VersionKeys): StoredVersion {
  const spki = publicKeySpki(keys);
  const material = sealMaterial(masterKey, key, version, keys);
  return { version, createdAt: new Date().toISOString(), ...(spki ? { publicKeySpki: spki.toString('base64') } : {}), material };
}

/** A stored version sealed again, for the key's changed attributes (`key`). */
export function resealVersion(masterKey: KeyObject, key: KeyAttributes, stored: StoredVersion, keys: VersionKeys): StoredVersion {
  return { ...stored, material: sealMaterial(masterKey, key, stored.version, keys) };
}

export function serializeKeystore(masterKeyCheck: Sealed, entries: Iterable<KeyEntry>, ceremonies: Iterable<StoredCeremony>): Buffer {
  const inProgress = [...ceremonies];
  const doc: KeystoreDocument = {
    format: FORMAT,
    formatVersion: FORMAT_VERSION,
    masterKeyCheck,
    keys: [...entries].map((e) => e.stored),
    ...(inProgress.length > 0 ? { ceremonies: inProgress } : {}),
  };
  return Buffer.from(`${JSON.stringify(doc, null, 2)}\n`);
}

export function toMetadata(stored: StoredKey): KeyMetadata {
  const versions = stored.versions.map((v) => ({
    version: v.version as KeyVersion,
    createdAt: v.createdAt,
    ...(v.publicKeySpki !== undefined && isAsymmetric(stored.type) ? { publicKeySpki: Buffer.from(v.publicKeySpki, 'base64') } : {}),
  }));
  return {
    name: stored.name as KeyName,
    type: stored.type,
    purpose: stored.purpose,
    state: stored.state,
    createdAt: stored.createdAt,
    ...paymentAttributesOf(stored),
    primaryVersion: versions[versions.length - 1]!.version,
    ...(stored.minDecryptionVersion !== undefined ? { minDecryptionVersion: stored.minDecryptionVersion as KeyVersion } : {}),
    versions,
  };
}
