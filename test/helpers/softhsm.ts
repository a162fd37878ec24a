/**
 * A fresh SoftHSM token for a test suite, so that PKCS#11 tests run against a real token:
 *   const token = await createSoftHsmToken();
 *   const backend = await pkcs11BackendFactory.create(token.backendConfig(), { logger });
 *   ... await backend.close(); await token.cleanup();
 *
 * SoftHSM reads SOFTHSM2_CONF once, at C_Initialize, and the variable is process-global: the first call
 * in a process creates a temporary token directory and configuration and points SOFTHSM2_CONF at it;
 * every call then initializes one more token (random label) in that directory. vitest runs each test
 * file in its own process, so files never share tokens. The PIN goes into an environment variable of
 * its own (pinEnv), which the adapter reads as it would in production.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Pkcs11Config } from '../../adapters/pkcs11/index.js';

const run = promisify(execFile);

export const SOFTHSM_LIBRARY = '/usr/lib/softhsm/libsofthsm2.so';
const SOFTHSM_UTIL = 'softhsm2-util';

export interface SoftHsmToken {
  readonly library: string;
  readonly tokenLabel: string;
  readonly pin: string;
  readonly soPin: string;
  /** The softhsm2.conf shared by every token of this process. */
  readonly confPath: string;
  /** The directory holding confPath and the token directory. */
  readonly dir: string;
  /** Name of the environment variable holding the user PIN. */
  readonly pinEnv: string;
  /** A configuration for pkcs11BackendFactory.create (allowRawRsaOaepFallback on, a deep queue); overrides are merged in. */
  backendConfig(overrides?: Partial<Pkcs11Config>): Pkcs11Config;
  /** Deletes the token and the PIN variable (the directory goes when the process exits). */
  cleanup(): Promise<void>;
}

interface SharedStore {
  readonly dir: string;
  readonly confPath: string;
  readonly tokenDir: string;
}

let shared: Promise<SharedStore> | undefined;

async function makeStore(): Promise<SharedStore> {
  if (!existsSync(SOFTHSM_LIBRARY)) {
    throw new Error(`SoftHSM is not installed (${SOFTHSM_LIBRARY} is missing): run \`apt-get install softhsm2\``);
  }
  try {
    await run(SOFTHSM_UTIL, ['--version']);
  } catch {
    throw new Error(`${SOFTHSM_UTIL} was not found: run \`apt-get install softhsm2\``);
  }
  const dir = await mkdtemp(join(tmpdir(), 'hsmb-softhsm-'));
  const tokenDir = join(dir, 'tokens');
  await mkdir(tokenDir);
  const confPath = join(dir, 'softhsm2.conf');
  await writeFile(
    confPath,
    [`directories.tokendir = ${tokenDir}`, 'objectstore.backend = file', 'log.level = ERROR', 'slots.removable = false', ''].join('\n'),
  );
  process.env.SOFTHSM2_CONF = confPath;
  // The directory lives as long as the process: a module initialized here keeps using SOFTHSM2_CONF's path.
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return { dir, confPath, tokenDir };
}

const digits = (n: number) => Array.from(randomBytes(n), (b) => String(b % 10)).join('');

export async function createSoftHsmToken(label?: string): Promise<SoftHsmToken> {
  shared ??= makeStore().catch((e: unknown) => {
    shared = undefined;
    throw e;
  });
  const store = await shared;
  const tokenLabel = label ?? `hsmb-${randomBytes(6).toString('hex')}`;
  const pin = digits(8);
  const soPin = digits(8);
  const env = { ...process.env, SOFTHSM2_CONF: store.confPath };
  try {
    await run(SOFTHSM_UTIL, ['--init-token', '--free', '--label', tokenLabel, '--so-pin', soPin, '--pin', pin], { env });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`softhsm2-util --init-token failed for ${tokenLabel}: ${(err.stderr ?? err.message).trim()}`);
  }
  const pinEnv = `HSMB_TEST_PKCS11_PIN_${randomBytes(6).toString('hex').toUpperCase()}`;
  process.env[pinEnv] = pin;
  let cleaned = false;
  return {
    library: SOFTHSM_LIBRARY,
    tokenLabel,
    pin,
    soPin,
    confPath: store.confPath,
    dir: store.dir,
    pinEnv,
    // SoftHSM does OAEP only with SHA-1: tests keep RSA_OAEP_SHA256 through the (opt-in) raw-RSA fallback.
    // Suites fire bursts of concurrent calls to prove correctness; the default queue bound (4 x pool) is
    // tested where it is the subject (workerPool.test.ts, backend.test.ts).
    backendConfig: (overrides) => ({ library: SOFTHSM_LIBRARY, tokenLabel, pinEnv, allowRawRsaOaepFallback: true, maxQueuedRequests: 1024, ...overrides }),
    async cleanup() {
      if (cleaned) return;
      cleaned = true;
      delete process.env[pinEnv];
      await run(SOFTHSM_UTIL, ['--delete-token', '--token', tokenLabel], { env }).catch(() => undefined);
    },
  };
}
