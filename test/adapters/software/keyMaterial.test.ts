import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { exportSecretMaterial, generateKeys, importKeyMaterial, importSecretMaterial } from '../../../adapters/software/keyMaterial.js';
import { hasOddParity, setOddParity } from '../../../src/payment/crypto/parity.js';
import { allKeyTypes } from '../../../src/keys/types.js';

const ones = (b: number) => b.toString(2).split('').filter((c) => c === '1').length;

describe('DES parity', () => {
  it('sets odd parity on every possible byte, changing only the lowest bit', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const fixed = setOddParity(Buffer.from(all));
    for (let i = 0; i < 256; i++) {
      expect(ones(fixed[i]!) % 2).toBe(1);
      expect(fixed[i]! & 0xfe).toBe(i & 0xfe);
    }
    expect(hasOddParity(fixed)).toBe(true);
    // a published odd-parity TDES key (X9.24 test BDK) passes; the same key with one bit off fails
    const bdk = Buffer.from('0123456789ABCDEFFEDCBA9876543210', 'hex');
    expect(hasOddParity(bdk)).toBe(true);
    expect(setOddParity(Buffer.from(bdk))).toEqual(bdk);
    bdk[3]! ^= 0x01;
    expect(hasOddParity(bdk)).toBe(false);
  });
});

describe('key material', () => {
  for (const type of allKeyTypes) {
    it(`${type}: exports, re-imports to the same key, and zeroes the imported bytes`, async () => {
      const keys = await generateKeys(type);
      const material = exportSecretMaterial(keys);
      const copy = Buffer.from(material);
      const back = importSecretMaterial(type, material);
      expect(material.every((b) => b === 0)).toBe(true);
      expect(exportSecretMaterial(back)).toEqual(copy); // the KeyObject kept its own copy
      expect(back.kind).toBe(keys.kind);
    });
  }

  it('refuses material that is not a key of the recorded type', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'der', type: 'pkcs8' });
    expect(() => importSecretMaterial('RSA_2048', Buffer.from(ec))).toThrow(/not a RSA_2048 key/);
    expect(() => importSecretMaterial('EC_P384', Buffer.from(ec))).toThrow(/not a EC_P384 key/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'der', type: 'pkcs8' });
    expect(() => importSecretMaterial('RSA_3072', rsa)).toThrow(/not a RSA_3072 key/);
    expect(() => importSecretMaterial('AES_256', randomBytes(16))).toThrow(/32 bytes/);
    expect(() => importSecretMaterial('TDES_2KEY', setOddParity(randomBytes(24)))).toThrow(/16 bytes/);
    const badParity = setOddParity(randomBytes(16));
    badParity[0]! ^= 1;
    expect(() => importSecretMaterial('TDES_2KEY', badParity)).toThrow(/parity/);
    expect(() => importSecretMaterial('ED25519', Buffer.from('not der'))).toThrow();
  });
});

describe('material from outside (wrapped import)', () => {
  it('a PKCS#8 key whose public part is another key\'s is refused (INVALID_ARGUMENT): the pair must sign and verify', () => {
    const a = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
    const b = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
    const mixed = createPrivateKey({ key: { ...a, x: b.x, y: b.y }, format: 'jwk' }).export({ format: 'der', type: 'pkcs8' });
    expect(() => importKeyMaterial('EC_P256', mixed)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    const whole = createPrivateKey({ key: a, format: 'jwk' }).export({ format: 'der', type: 'pkcs8' });
    expect(importKeyMaterial('EC_P256', whole).kind).toBe('pair');
  });

  it('TDES material gets odd parity; the caller\'s buffer is left as it was', () => {
    const material = Buffer.alloc(16, 0x02);
    material[8] = 0x04;
    const keys = importKeyMaterial('TDES_2KEY', material);
    expect(material.subarray(0, 8)).toEqual(Buffer.alloc(8, 0x02));
    expect(hasOddParity(exportSecretMaterial(keys))).toBe(true);
  });
});
