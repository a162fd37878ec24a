/**
 * Start-up failures, each clear and none showing the PIN. In a file of its own: PKCS#11 login is per
 * process and token, so a token another backend of this process is logged in to never checks a PIN,
 * and SoftHSM only sees tokens that existed when the module was initialized.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pkcs11BackendFactory, type Pkcs11Config } from '../../../adapters/pkcs11/index.js';
import { createSoftHsmToken, type SoftHsmToken } from '../../helpers/softhsm.js';

const logger = pino({ level: 'silent' });
let token: SoftHsmToken;
const attempt = (config: Partial<Pkcs11Config>) => pkcs11BackendFactory.create(token.backendConfig(config), { logger });

beforeAll(async () => {
  token = await createSoftHsmToken();
});
afterAll(() => token?.cleanup());

describe('pkcs11 backend start-up', () => {
  it('a wrong PIN is a clear BACKEND_UNAVAILABLE that does not contain the PIN', async () => {
    process.env.HSMB_TEST_WRONG_PIN = '987654321';
    try {
      const error = (await attempt({ pinEnv: 'HSMB_TEST_WRONG_PIN' }).catch((e: unknown) => e)) as Error & { code: string };
      expect(error).toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringContaining('the user PIN is incorrect') });
      expect(`${error.message} ${String(error.cause ?? '')} ${error.stack}`).not.toContain('987654321');
    } finally {
      delete process.env.HSMB_TEST_WRONG_PIN;
    }
  });

  it('a missing PIN variable, token or library is named', async () => {
    await expect(attempt({ pinEnv: 'HSMB_NO_SUCH_PIN_VARIABLE' })).rejects.toMatchObject({
      code: 'BACKEND_UNAVAILABLE',
      message: expect.stringContaining('HSMB_NO_SUCH_PIN_VARIABLE is not set'),
    });
    await expect(attempt({ tokenLabel: 'no-such-token' })).rejects.toMatchObject({
      code: 'BACKEND_UNAVAILABLE',
      message: expect.stringContaining('no token labelled "no-such-token"'),
    });
    await expect(attempt({ library: '/nonexistent/libpkcs11.so' })).rejects.toMatchObject({
      code: 'BACKEND_UNAVAILABLE',
      message: expect.stringContaining('/nonexistent/libpkcs11.so'),
    });
    await expect(attempt({ slot: 1, tokenLabel: token.tokenLabel })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('reads the PIN from a file, and then works', async () => {
    const pinFile = join(token.dir, 'user.pin');
    await writeFile(pinFile, `${token.pin}\n`, { mode: 0o600 });
    const backend = await pkcs11BackendFactory.create({ library: token.library, tokenLabel: token.tokenLabel, pinFile }, { logger });
    try {
      expect(await backend.health()).toEqual({ ready: true });
      expect(await backend.randomBytes(16)).toHaveLength(16);
    } finally {
      await backend.close();
    }
  });
});
