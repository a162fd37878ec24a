/**
 * AES-GCM and HMAC-SHA256 of the PKCS#11 backend checked with node:crypto. Keys generated in the token
 * cannot be read, so the test imports a key of known value (with pkcs11js directly) under hsm-bridge's
 * label, CKA_ID and metadata object, exactly as the adapter writes them, and the backend uses it as its
 * own: node:crypto decrypts our ciphertexts, we decrypt node's, and node's HMAC equals ours.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { pino } from 'pino';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pkcs11BackendFactory } from '../../../adapters/pkcs11/index.js';
import type { Backend, KeyRef } from '../../../src/backend/port.js';
import { parseKeyName, type KeyName, type KeyVersion } from '../../../src/keys/names.js';
import type { KeyType } from '../../../src/keys/types.js';
import { createSoftHsmToken, type SoftHsmToken } from '../../helpers/softhsm.js';
import { TokenInspector } from './tokenInspector.js';

const logger = pino({ level: 'silent' });
const A = pkcs11js;
let token: SoftHsmToken;
let backend: Backend;
let inspector: TokenInspector;

beforeAll(async () => {
  token = await createSoftHsmToken();
  backend = await pkcs11BackendFactory.create(token.backendConfig(), { logger });
  inspector = new TokenInspector(token.library, token.tokenLabel, token.pin);
});
afterAll(async () => {
  await backend?.close();
  await token?.cleanup();
});

/** Imports `value` as version 1 of key `name`, as the adapter lays keys out. */
function importKey(name: KeyName, type: KeyType, value: Buffer): KeyRef {
  const mac = type === 'HMAC_256';
  inspector.importKnownKey(name, type, mac ? 'mac' : 'encrypt', [[
    { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY },
    { type: A.CKA_KEY_TYPE, value: mac ? A.CKK_GENERIC_SECRET : A.CKK_AES },
    { type: A.CKA_SENSITIVE, value: true },
    { type: A.CKA_VALUE, value },
    { type: mac ? A.CKA_SIGN : A.CKA_ENCRYPT, value: true },
    { type: mac ? A.CKA_VERIFY : A.CKA_DECRYPT, value: true },
  ]]);
  return { name, type, version: 1 as KeyVersion };
}

describe('PKCS#11 symmetric outputs against node:crypto, with a key of known value', () => {
  for (const [type, cipher] of [['AES_128', 'aes-128-gcm'], ['AES_256', 'aes-256-gcm']] as const) {
    it(`AES_GCM with ${type}: node:crypto decrypts ours, we decrypt node's`, async () => {
      const value = randomBytes(type === 'AES_128' ? 16 : 32);
      const key = importKey(parseKeyName(`known-${type.toLowerCase()}`), type, value);
      expect((await backend.describeKey(key.name)).versions.map((v) => v.version)).toEqual([1]);
      const aad = Buffer.from('transfer:42');
      for (const plaintext of [Buffer.from('4111111111111111'), Buffer.alloc(0), randomBytes(1000)]) {
        const ours = await backend.encrypt(key, 'AES_GCM', plaintext, aad);
        const d = createDecipheriv(cipher, value, ours.iv!);
        d.setAAD(aad);
        d.setAuthTag(ours.data.subarray(-16));
        expect(Buffer.concat([d.update(ours.data.subarray(0, -16)), d.final()])).toEqual(plaintext);

        const iv = randomBytes(12);
        const c = createCipheriv(cipher, value, iv);
        c.setAAD(aad);
        const nodes = Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
        expect(await backend.decrypt(key, 'AES_GCM', { iv, data: nodes }, aad)).toEqual(plaintext);
        await expect(backend.decrypt(key, 'AES_GCM', { iv, data: nodes }, Buffer.from('transfer:43'))).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
      }
    });
  }

  it('HMAC_SHA256: ours equals node:crypto createHmac, and node\'s verifies', async () => {
    const value = randomBytes(32);
    const key = importKey(parseKeyName('known-hmac'), 'HMAC_256', value);
    for (const data of [Buffer.from('0200|4111111111111111|000000010000'), Buffer.alloc(0), randomBytes(5000)]) {
      const expected = createHmac('sha256', value).update(data).digest();
      expect(await backend.mac(key, 'HMAC_SHA256', data)).toEqual(expected);
      expect(await backend.verifyMac(key, 'HMAC_SHA256', data, expected)).toBe(true);
      expect(await backend.verifyMac(key, 'HMAC_SHA256', data, createHmac('sha256', randomBytes(32)).update(data).digest())).toBe(false);
    }
  });
});
