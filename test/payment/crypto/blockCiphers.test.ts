import { describe, expect, it } from 'vitest';
import { cbc, desEcb, ecb, xorInPlace } from '../../../src/payment/crypto/blockCiphers.js';
import { cmacWithKey } from '../../../src/payment/crypto/cmac.js';

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const hex = (b: Buffer): string => b.toString('hex').toUpperCase();

describe('key check values', () => {
  it('TDES KCV: first 3 bytes of ECB of 8 zero bytes (0123456789ABCDEFFEDCBA9876543210 -> 08D7B4)', () => {
    // The KCV of the ANSI X9.24-1 test BDK, as printed by HSM vendors (FIELD-NOTES section 5).
    expect(hex(ecb('tdes', 'encrypt', h('0123456789ABCDEFFEDCBA9876543210'), Buffer.alloc(8)).subarray(0, 3))).toBe('08D7B4');
  });

  it('TDES KCV of the TR-31:2018 A.7.2.2 wrapped key (3F419E1CB7079442AA37474C2EFBF8B8 -> 57C409)', () => {
    expect(hex(ecb('tdes', 'encrypt', h('3F419E1CB7079442AA37474C2EFBF8B8'), Buffer.alloc(8)).subarray(0, 3))).toBe('57C409');
  });

  it('AES KCV is CMAC-based: CMAC of the zero block, which differs from ECB of the zero block', () => {
    // No clear-key AES KCV published with its key was found; this pins the construction (X9.24-1:2017 A.3,
    // AWS Payment Cryptography KeyCheckValueAlgorithm=CMAC) against the ECB one: they must differ.
    const key = h('2b7e151628aed2a6abf7158809cf4f3c');
    const cmacKcv = cmacWithKey('aes', key, Buffer.alloc(16)).subarray(0, 3);
    const ecbKcv = ecb('aes', 'encrypt', key, Buffer.alloc(16)).subarray(0, 3);
    expect(cmacKcv.equals(ecbKcv)).toBe(false);
  });
});

describe('block operations', () => {
  it('single DES: FIPS 81 / X9.9 sample, DES(0123456789ABCDEF, "Now is t") = 3FA40E8A984D4815', () => {
    expect(hex(desEcb('encrypt', h('0123456789ABCDEF'), Buffer.from('Now is t', 'ascii')))).toBe('3FA40E8A984D4815');
    expect(desEcb('decrypt', h('0123456789ABCDEF'), h('3FA40E8A984D4815')).toString('ascii')).toBe('Now is t');
  });

  it('AES-128: FIPS-197 Appendix C.1', () => {
    const key = h('000102030405060708090a0b0c0d0e0f');
    expect(ecb('aes', 'encrypt', key, h('00112233445566778899aabbccddeeff')).toString('hex')).toBe('69c4e0d86a7b0430d8cdb78070b4c55a');
  });

  it('CBC: NIST SP 800-38A F.2.1 (AES-128 CBC, two blocks)', () => {
    const out = cbc('aes', 'encrypt', h('2b7e151628aed2a6abf7158809cf4f3c'), h('000102030405060708090a0b0c0d0e0f'),
      h('6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51'));
    expect(out.toString('hex')).toBe('7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2');
  });

  it('refuses partial blocks and wrong key or IV lengths', () => {
    expect(() => ecb('tdes', 'encrypt', Buffer.alloc(16), Buffer.alloc(7))).toThrow(RangeError);
    expect(() => ecb('aes', 'encrypt', Buffer.alloc(16), Buffer.alloc(8))).toThrow(RangeError);
    expect(() => ecb('tdes', 'encrypt', Buffer.alloc(8), Buffer.alloc(8))).toThrow(RangeError);
    expect(() => ecb('aes', 'encrypt', Buffer.alloc(20), Buffer.alloc(16))).toThrow(RangeError);
    expect(() => cbc('aes', 'encrypt', Buffer.alloc(16), Buffer.alloc(8), Buffer.alloc(16))).toThrow(RangeError);
    expect(() => desEcb('encrypt', Buffer.alloc(16), Buffer.alloc(8))).toThrow(RangeError);
    expect(() => xorInPlace(Buffer.alloc(2), Buffer.alloc(3))).toThrow(RangeError);
  });
});
