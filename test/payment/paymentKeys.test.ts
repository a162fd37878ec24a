/**
 * PaymentKeys runs a backend primitive only on a key it resolved, and only for the use it resolved the
 * key for: a PIN key resolved to encipher cannot decipher (an ECB oracle on the PIN key), a BDK not
 * resolved to derive cannot derive, and an object shaped like a resolved key but built elsewhere is
 * refused. On the software backend, a real one.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { softwareBackendFactory } from '../../adapters/software/index.js';
import type { Backend } from '../../src/backend/port.js';
import { KeyService } from '../../src/operations/keyService.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../helpers/software.js';

describe('PaymentKeys: a primitive only for the use its key was resolved for', () => {
  let harness: SoftwareBackendHarness;
  let backend: Backend;
  let service: KeyService;

  beforeAll(async () => {
    harness = await createSoftwareBackendConfig();
    backend = await softwareBackendFactory.create(harness.config, { logger: pino({ level: 'silent' }) });
    service = new KeyService(backend, { limits: { maxDataBytes: 4096, maxRandomBytes: 256 }, metadataCacheTtlMs: 1000 });
    await service.createKey({ name: 'zpk', type: 'TDES_2KEY', purpose: 'pin' });
    await service.createKey({ name: 'bdk', type: 'TDES_2KEY', purpose: 'bdk' });
  });
  afterAll(async () => {
    await backend?.close();
    await harness?.cleanup();
  });

  it('enciphers with a key resolved to encrypt, and refuses to decipher with it', async () => {
    const keys = service.paymentKeys;
    const encrypting = await keys.resolve('zpk', 'pin', 'encrypt');
    const block = await keys.encryptBlocks(encrypting, Buffer.alloc(8, 0x11));
    expect(block).toHaveLength(8);
    await expect(keys.decryptBlocks(encrypting, block)).rejects.toMatchObject({ code: 'INTERNAL' });
    const decrypting = await keys.resolve('zpk', 'pin', 'decrypt');
    expect(await keys.decryptBlocks(decrypting, block)).toEqual(Buffer.alloc(8, 0x11));
    await expect(keys.encryptBlocks(decrypting, block)).rejects.toMatchObject({ code: 'INTERNAL' });
  });

  it('refuses a look-alike of a resolved key, and a BDK not resolved to derive', async () => {
    const keys = service.paymentKeys;
    const resolved = await keys.resolve('zpk', 'pin', 'decrypt');
    const copy = { ...resolved };
    await expect(keys.decryptBlocks(copy, Buffer.alloc(8))).rejects.toMatchObject({ code: 'INTERNAL' });
    const bdkToDecrypt = await keys.resolve('bdk', 'bdk', 'decrypt');
    await expect(keys.deriveDukptKey(bdkToDecrypt, { scheme: 'tdes', ksn: Buffer.from('FFFF9876543210E00001', 'hex') } as never)).rejects.toMatchObject({ code: 'INTERNAL' });
    await expect(keys.cmac(resolved, Buffer.alloc(8))).rejects.toMatchObject({ code: 'INTERNAL' });
  });
});
