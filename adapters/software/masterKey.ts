/**
 * The master key that seals every key in the keystore: from an environment variable if set, otherwise
 * from a file beside the keystore, otherwise generated into that file on the very first start. It is
 * returned as a KeyObject so that no long-lived Buffer holds it.
 */
import { createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';

export const MASTER_KEY_BYTES = 32;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

export interface MasterKeySource {
  readonly env: NodeJS.ProcessEnv;
  readonly envName: string;
  readonly file: string;
  /** A new master key is only generated for a new keystore: one made for an existing keystore could never open it. */
  readonly keystoreExists: boolean;
}

/** Decodes base64 text into a master key KeyObject, zeroing the decoded bytes. `origin` names where it came from. */
function fromBase64(text: string, origin: string): KeyObject {
  const trimmed = text.trim();
  const bytes = BASE64.test(trimmed) ? Buffer.from(trimmed, 'base64') : Buffer.alloc(0);
  try {
    if (bytes.length !== MASTER_KEY_BYTES) {
      throw new Error(`software backend: ${origin} must hold the base64 of exactly ${MASTER_KEY_BYTES} random bytes`);
    }
    return createSecretKey(bytes);
  } finally {
    bytes.fill(0);
  }
}

async function readKeyFile(path: string): Promise<KeyObject | undefined> {
  let info;
  try {
    info = await stat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`software backend: cannot read the master key file ${path}: ${(e as NodeJS.ErrnoException).code}`);
  }
  if (!info.isFile()) throw new Error(`software backend: the master key file ${path} is not a regular file`);
  if ((info.mode & 0o077) !== 0) {
    throw new Error(
      `software backend: the master key file ${path} can be read by other users (mode ${(info.mode & 0o777).toString(8)}); ` +
        `run chmod 600 on it`,
    );
  }
  const content = await readFile(path);
  try {
    return fromBase64(content.toString('latin1'), `the master key file ${path}`);
  } finally {
    content.fill(0);
  }
}

async function generateKeyFile(path: string): Promise<KeyObject> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const bytes = randomBytes(MASTER_KEY_BYTES);
  const text = Buffer.from(`${bytes.toString('base64')}\n`, 'latin1');
  try {
    // O_EXCL: never overwrite a master key another process has just written.
    const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return createSecretKey(bytes);
  } finally {
    bytes.fill(0);
    text.fill(0);
  }
}

export async function loadMasterKey(source: MasterKeySource, logger: Logger): Promise<KeyObject> {
  const fromEnv = source.env[source.envName];
  if (fromEnv !== undefined && fromEnv !== '') {
    logger.info({ masterKeyEnv: source.envName }, 'software backend: master key taken from the environment');
    return fromBase64(fromEnv, `the environment variable ${source.envName}`);
  }
  const fromFile = await readKeyFile(source.file);
  if (fromFile) {
    logger.info({ masterKeyFile: source.file }, 'software backend: master key read from its file');
    return fromFile;
  }
  if (source.keystoreExists) {
    throw new Error(
      `software backend: the keystore exists but its master key was not found: set ${source.envName} or restore ${source.file}`,
    );
  }
  const key = await generateKeyFile(source.file);
  logger.warn({ masterKeyFile: source.file }, 'software backend: generated a new master key; back it up with the keystore');
  return key;
}
