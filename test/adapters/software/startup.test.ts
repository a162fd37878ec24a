/**
 * Starting the software backend: the production guard, the warning it logs, where the master key
 * comes from (environment, file, or generated on first start), and that no secret reaches the log.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { softwareBackendFactory, softwareConfigSchema } from '../../../adapters/software/index.js';
import type { Backend } from '../../../src/backend/port.js';
import { ConfigError, validateSection } from '../../../src/config/load.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../../helpers/software.js';
import { captureLog, createKey, openBackend, unsealWithNode } from './support.js';

let h: SoftwareBackendHarness;
const open: Backend[] = [];
const start = async (...args: Parameters<typeof openBackend> extends [unknown, ...infer R] ? R : never) => {
  const b = await openBackend(h, ...args);
  open.push(b);
  return b;
};
const nodeEnv = process.env.NODE_ENV;

beforeEach(async () => {
  h = await createSoftwareBackendConfig();
});
afterEach(async () => {
  process.env.NODE_ENV = nodeEnv;
  for (const b of open.splice(0)) await b.close();
  await h.cleanup();
});

describe('production guard and warning', () => {
  it('refuses NODE_ENV=production, saying how to allow it, and touches nothing', async () => {
    process.env.NODE_ENV = 'production';
    await expect(start()).rejects.toThrow(/refusing to start with NODE_ENV=production.*allowInProduction: true/s);
    await expect(start({ allowInProduction: false })).rejects.toThrow(/NODE_ENV=production/);
    expect(() => statSync(h.config.keystorePath)).toThrow();
    const b = await start({ allowInProduction: true });
    expect(await b.health()).toEqual({ ready: true });
  });

  it('logs a warning that keys are in process memory and this backend is for trying hsm-bridge out', async () => {
    const log = captureLog();
    await start({}, log.logger);
    const warnings = log.lines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level === 40);
    expect(warnings.some((w) => /software backend/.test(w.msg) && /process memory/.test(w.msg) && /trying hsm-bridge out/.test(w.msg))).toBe(true);
  });
});

describe('master key', () => {
  it('from the environment: must be the base64 of exactly 32 bytes, and the error never shows the value', async () => {
    const env = h.config.masterKeyEnv;
    for (const bad of [randomBytes(31).toString('base64'), randomBytes(33).toString('base64'), 'not base64 at all!', randomBytes(32).toString('hex')]) {
      process.env[env] = bad;
      const e = (await start().catch((x: Error) => x)) as Error;
      expect(e.message).toMatch(new RegExp(`environment variable ${env} must hold the base64 of exactly 32 random bytes`));
      expect(e.message).not.toContain(bad);
    }
    process.env[env] = randomBytes(32).toString('base64').replace(/=+$/, ''); // padding is optional
    await start();
  });

  it('without the variable: generated into a 0600 file on first start, then read back from it', async () => {
    const config = { masterKeyEnv: 'HSMB_TEST_NOT_SET' };
    const log = captureLog();
    const b1 = await start(config, log.logger);
    const file = `${h.config.keystorePath}.master-key`;
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8').trim();
    expect(Buffer.from(text, 'base64')).toHaveLength(32);
    const key = await createKey(b1, 'k', 'HMAC_256');
    const mac = await b1.mac(key, 'HMAC_SHA256', Buffer.from('d'));
    // the generated key is the one that seals the keystore (checked with node:crypto alone)
    expect(unsealWithNode(h.config.keystorePath, text, 'k', 1)).toHaveLength(32);
    await b1.close();

    const b2 = await start(config, log.logger);
    expect(await b2.mac(key, 'HMAC_SHA256', Buffer.from('d'))).toEqual(mac);
    expect(readFileSync(file, 'utf8').trim()).toBe(text);
    // secrets never reach the log
    expect(log.text()).not.toContain(text);
    expect(log.text()).not.toContain(Buffer.from(text, 'base64').toString('hex'));
    expect(log.text()).not.toContain(process.env[h.config.masterKeyEnv]!);
  });

  it('a master key file other users can read is refused, with the fix', async () => {
    const file = join(h.dir, 'custom.key');
    writeFileSync(file, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    const config = { masterKeyEnv: 'HSMB_TEST_NOT_SET', masterKeyFile: file };
    for (const mode of [0o644, 0o640, 0o604]) {
      chmodSync(file, mode);
      await expect(start(config)).rejects.toThrow(new RegExp(`master key file ${file} can be read by other users \\(mode ${mode.toString(8)}\\); run chmod 600`));
    }
    chmodSync(file, 0o600);
    await start(config);
    expect(() => statSync(`${h.config.keystorePath}.master-key`)).toThrow(); // the configured file was used
  });

  it('a master key file that does not hold 32 base64 bytes is refused', async () => {
    const file = join(h.dir, 'bad.key');
    writeFileSync(file, 'too short\n', { mode: 0o600 });
    await expect(start({ masterKeyEnv: 'HSMB_TEST_NOT_SET', masterKeyFile: file })).rejects.toThrow(/master key file .* must hold the base64 of exactly 32 random bytes/);
  });

  it('the variable wins over the file', async () => {
    const file = join(h.dir, 'other.key');
    writeFileSync(file, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    const b = await start({ masterKeyFile: file });
    await createKey(b, 'k', 'AES_128');
    expect(unsealWithNode(h.config.keystorePath, process.env[h.config.masterKeyEnv]!, 'k', 1)).toHaveLength(16);
  });
});

describe('configuration schema', () => {
  it('fills the documented defaults and names unknown or bad fields', () => {
    const filled = validateSection<Record<string, unknown>>(softwareConfigSchema, {}, '/backend/software');
    expect(filled).toEqual({ keystorePath: './data/keystore.json', masterKeyEnv: 'HSMB_MASTER_KEY', allowInProduction: false });
    expect(() => validateSection(softwareConfigSchema, { keystore: 'x' }, '/backend/software')).toThrow(/\/backend\/software\/keystore is not a known field/);
    expect(() => validateSection(softwareConfigSchema, { masterKeyEnv: 'A-B' }, '/backend/software')).toThrow(ConfigError);
    expect(() => validateSection(softwareConfigSchema, { allowInProduction: 'yes' }, '/backend/software')).toThrow(/allowInProduction must be boolean/);
    expect(softwareBackendFactory.kind).toBe('software');
  });
});
