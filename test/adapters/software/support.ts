/**
 * Test support for the software backend suites: open a backend on a harness, capture its log, and read
 * a key's secret material straight out of the keystore file with node:crypto alone (independently of
 * the adapter's own sealing code), so that outputs can be checked against the real key.
 */
import { createDecipheriv, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pino, type Logger } from 'pino';
import { softwareBackendFactory, type SoftwareConfig } from '../../../adapters/software/index.js';
import type { Backend, KeyRef } from '../../../src/backend/port.js';
import { parseKeyName, type KeyVersion } from '../../../src/keys/names.js';
import { keyTypes, type KeyPurpose, type KeyType } from '../../../src/keys/types.js';
import type { SoftwareBackendHarness } from '../../helpers/software.js';

export interface CapturedLog {
  readonly logger: Logger;
  readonly lines: string[];
  text(): string;
}

export function captureLog(): CapturedLog {
  const lines: string[] = [];
  const logger = pino({ level: 'trace' }, { write: (line: string) => void lines.push(line) });
  return { logger, lines, text: () => lines.join('') };
}

export const silent = pino({ level: 'silent' });

export function openBackend(h: SoftwareBackendHarness, overrides: Partial<SoftwareConfig> = {}, logger: Logger = silent): Promise<Backend> {
  return softwareBackendFactory.create({ ...h.config, ...overrides }, { logger });
}

export async function createKey(backend: Backend, name: string, type: KeyType, purpose?: KeyPurpose): Promise<KeyRef> {
  const meta = await backend.createKey({ name: parseKeyName(name), type, purpose: purpose ?? keyTypes[type].purposes[0]! });
  return { name: meta.name, version: meta.primaryVersion, type };
}

export const refOf = (name: string, version: number, type: KeyType): KeyRef => ({ name: parseKeyName(name), version: version as KeyVersion, type });

export async function publicKeyOf(backend: Backend, ref: KeyRef): Promise<KeyObject> {
  const meta = await backend.describeKey(ref.name);
  const spki = meta.versions.find((v) => v.version === ref.version)?.publicKeySpki;
  if (!spki) throw new Error(`no public key for ${ref.name} v${ref.version}`);
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

interface FileVersion { version: number; material: { iv: string; data: string }; publicKeySpki?: string }
interface FileKey { name: string; type: KeyType; purpose: KeyPurpose; exportable?: boolean; modeOfUse?: string; keyUsage?: string; minDecryptionVersion?: number; versions: FileVersion[] }
export interface KeystoreJson { format: string; formatVersion: number; masterKeyCheck: { iv: string; data: string }; keys: FileKey[] }

export const readKeystoreJson = (path: string): KeystoreJson => JSON.parse(readFileSync(path, 'utf8')) as KeystoreJson;

/**
 * The documented record format, decrypted with node:crypto: AES-256-GCM, AAD = JSON [label v1, name, version,
 * type, purpose], or [label v2, name, version, type, purpose, exportable, modeOfUse or null] when either is set,
 * or [label v3, ..., modeOfUse or null, keyUsage] when the key has a key usage, or [label v4, ..., modeOfUse or null,
 * keyUsage or null, minDecryptionVersion] when the key has retired versions.
 */
export function unsealWithNode(path: string, masterKeyBase64: string, name: string, version: number): Buffer {
  const key = readKeystoreJson(path).keys.find((k) => k.name === name);
  const v = key?.versions.find((x) => x.version === version);
  if (!key || !v) throw new Error(`no record for ${name} v${version}`);
  const data = Buffer.from(v.material.data, 'base64');
  const decipher = createDecipheriv('aes-256-gcm', Buffer.from(masterKeyBase64, 'base64'), Buffer.from(v.material.iv, 'base64'));
  const aad =
    key.minDecryptionVersion !== undefined
      ? ['hsm-bridge software keystore record v4', name, version, key.type, key.purpose, key.exportable === true, key.modeOfUse ?? null, key.keyUsage ?? null, key.minDecryptionVersion]
      : key.keyUsage !== undefined
      ? ['hsm-bridge software keystore record v3', name, version, key.type, key.purpose, key.exportable === true, key.modeOfUse ?? null, key.keyUsage]
      : key.exportable === true || key.modeOfUse !== undefined
        ? ['hsm-bridge software keystore record v2', name, version, key.type, key.purpose, key.exportable === true, key.modeOfUse ?? null]
        : ['hsm-bridge software keystore record v1', name, version, key.type, key.purpose];
  decipher.setAAD(Buffer.from(JSON.stringify(aad)));
  decipher.setAuthTag(data.subarray(data.length - 16));
  return Buffer.concat([decipher.update(data.subarray(0, data.length - 16)), decipher.final()]);
}

export function privateKeyWithNode(path: string, masterKeyBase64: string, name: string, version: number): KeyObject {
  return createPrivateKey({ key: unsealWithNode(path, masterKeyBase64, name, version), format: 'der', type: 'pkcs8' });
}
