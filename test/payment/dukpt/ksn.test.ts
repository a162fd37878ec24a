import { describe, expect, it } from 'vitest';
import { aesKsnCounter, checkAesKsn, checkTdesKsn, tdesKsnCounter } from '../../../src/payment/dukpt/ksn.js';
import { expectHsmError } from '../../helpers/expectError.js';

const expectInvalid = (run: () => unknown, message: RegExp) => expectHsmError(run, 'INVALID_ARGUMENT', { message });

const h = (s: string): Buffer => Buffer.from(s, 'hex');


describe('TDES KSN (X9.24-1: 10 bytes, 21-bit counter, at most 10 one bits)', () => {
  it('reads the 21 rightmost bits as the counter, not the device ID bits above them', () => {
    expect(tdesKsnCounter(h('FFFF9876543210E00001'))).toBe(1);
    expect(tdesKsnCounter(h('FFFF9876543210EFF800'))).toBe(0x0ff800);
    expect(tdesKsnCounter(h('FFFF9876543210F00000'))).toBe(0x100000);
    expect(tdesKsnCounter(h('FFFF9876543210FFFFFF'))).toBe(0x1fffff);
  });

  it('accepts the published counters and the largest valid one', () => {
    for (const ksn of ['FFFF9876543210E00001', 'FFFF9876543210E00015', 'FFFF9876543210EFF800', 'FFFF9876543210F00000', 'FFFF9876543210FFF800']) {
      expect(() => checkTdesKsn(h(ksn))).not.toThrow();
    }
  });

  it('refuses a zero counter, more than 10 one bits and wrong lengths', () => {
    expectInvalid(() => checkTdesKsn(h('FFFF9876543210E00000')), /must not be 0/);
    expectInvalid(() => checkTdesKsn(h('FFFF9876543210E007FF')), /more than 10 one bits/); // 11 ones
    expectInvalid(() => checkTdesKsn(h('FFFF9876543210EFFFFF')), /more than 10 one bits/); // 0x0FFFFF: 20 ones
    expectInvalid(() => checkTdesKsn(h('FFFF9876543210FFFC00')), /more than 10 one bits/); // 0x1FFC00: 11 ones
    expectInvalid(() => checkTdesKsn(h('FFFF9876543210E000')), /10 bytes/);
    expectInvalid(() => checkTdesKsn(h('FFFF9876543210E0000100')), /10 bytes/);
    expectInvalid(() => checkTdesKsn(Buffer.alloc(0)), /10 bytes/);
    expectInvalid(() => checkTdesKsn('FFFF9876543210E00001' as unknown as Buffer), /10 bytes/);
  });
});

describe('AES KSN (X9.24-3: 12 bytes, 32-bit counter, at most 16 one bits)', () => {
  it('reads the last 4 bytes as the counter', () => {
    expect(aesKsnCounter(h('123456789012345600000001'))).toBe(1);
    expect(aesKsnCounter(h('1234567890123456FFFF0000'))).toBe(0xffff0000);
  });

  it('accepts the published counters, including the last one a device uses', () => {
    for (const ksn of ['123456789012345600000001', '12345678901234560001FFFE', '123456789012345600020000', '1234567890123456FFFF0000']) {
      expect(() => checkAesKsn(h(ksn))).not.toThrow();
    }
  });

  it('refuses a zero counter, more than 16 one bits and wrong lengths', () => {
    expectInvalid(() => checkAesKsn(h('123456789012345600000000')), /must not be 0/);
    // 0x1FFFF has 17 one bits: the X9.24-3 supplement lists a key for it, but no device ever uses that counter.
    expectInvalid(() => checkAesKsn(h('12345678901234560001FFFF')), /more than 16 one bits/);
    expectInvalid(() => checkAesKsn(h('1234567890123456FFFFFFFF')), /more than 16 one bits/);
    expectInvalid(() => checkAesKsn(h('FFFF9876543210E00001')), /12 bytes/);
    expectInvalid(() => checkAesKsn(h('12345678901234560000000100')), /12 bytes/);
  });
});
