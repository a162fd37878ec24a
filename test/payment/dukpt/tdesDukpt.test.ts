import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  deriveTdesDukptPinKey,
  TDES_BDK_VARIANT,
  tdesDukptPinKeyFromIpek,
  tdesInitialKeyInput,
} from '../../../src/payment/dukpt/tdesDukpt.js';

const h = (s: string): Buffer => Buffer.from(s, 'hex');
const hex = (b: Buffer): string => b.toString('hex').toUpperCase();

function ecbEncrypt(cipher: string, key: Buffer, block: Buffer): Buffer {
  const c = createCipheriv(cipher, key, null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(block), c.final()]);
}
const tdesEncrypt = (key: Buffer, block: Buffer) => ecbEncrypt(key.length === 16 ? 'des-ede-ecb' : 'des-ede3-ecb', key, block);
const xor = (a: Buffer, b: Buffer) => Buffer.from(a.map((v, i) => v ^ b[i]!));
const PIN_VARIANT = h('00000000000000FF00000000000000FF');

import { BDK, CLEAR_PIN_BLOCK, IPEK, KSN_PREFIX, initialSequence, rolloverSequence } from './tdesVectors.js';
import { expectHsmError } from '../../helpers/expectError.js';

/** The message never carries key material. */
const expectError = (run: () => unknown, code: 'INVALID_ARGUMENT' | 'INCOMPATIBLE_KEY') => expectHsmError(run, code, { secrets: ['0123456789ABCDEF'] });

// ---- A second, straightforward implementation for counters without published keys: the recursive
// definition (the key for a counter is one non-reversible step from the key for that counter with its
// lowest set bit cleared), on node:crypto single DES (des-ede3 with K K K). ----
function refDes(key: Buffer, block: Buffer): Buffer {
  return ecbEncrypt('des-ede3-ecb', Buffer.concat([key, key, key]), block);
}

const TDES_BDK_VARIANT_REF = h('C0C0C0C000000000C0C0C0C000000000');
function refNonReversible(key: Buffer, register: Buffer): Buffer {
  const half = (k: Buffer) => xor(refDes(k.subarray(0, 8), xor(register, k.subarray(8, 16))), k.subarray(8, 16));
  return Buffer.concat([half(xor(key, TDES_BDK_VARIANT_REF)), half(key)]);
}
function refFutureKey(ipek: Buffer, ksn: Buffer, counter: number): Buffer {
  if (counter === 0) return ipek;
  const parent = refFutureKey(ipek, ksn, counter & (counter - 1));
  const register = Buffer.from(ksn.subarray(2, 10));
  register.writeUIntBE((register.readUIntBE(5, 3) & 0xe00000) | counter, 5, 3);
  return refNonReversible(parent, register);
}
const ksnWithCounter = (counter: number) => {
  const ksn = h(`${KSN_PREFIX}E00000`);
  ksn.writeUIntBE(ksn.readUIntBE(7, 3) | counter, 7, 3);
  return ksn;
};

describe('TDES DUKPT initial key', () => {
  it('the BDK variant is C0C0C0C000000000C0C0C0C000000000', () => {
    expect(hex(TDES_BDK_VARIANT)).toBe('C0C0C0C000000000C0C0C0C000000000');
  });

  it('initial key input is the left 8 KSN bytes with the counter cleared; with the BDK it gives the published IPEK', () => {
    const input = tdesInitialKeyInput(h(`${KSN_PREFIX}E00001`));
    expect(hex(input)).toBe('FFFF9876543210E0');
    expect(hex(tdesInitialKeyInput(h(`${KSN_PREFIX}FFF800`)))).toBe('FFFF9876543210E0');
    const ipek = Buffer.concat([tdesEncrypt(BDK, input), tdesEncrypt(xor(BDK, TDES_BDK_VARIANT), input)]);
    expect(hex(ipek)).toBe(IPEK);
  });
});

describe('TDES DUKPT PIN keys, X9.24-1:2009 A.4', () => {
  it('field notes: KSN FFFF9876543210E00001 -> PIN key 042666B49184CF5C68DE9628D0397B36, PIN block 1B9C1845EB993A7A', () => {
    const key = deriveTdesDukptPinKey(BDK, h('FFFF9876543210E00001'));
    expect(hex(key)).toBe('042666B49184CF5C68DE9628D0397B36');
    expect(hex(tdesEncrypt(key, CLEAR_PIN_BLOCK))).toBe('1B9C1845EB993A7A');
  });

  for (const [name, sequence] of [['first 21 KSNs (A.4.2)', initialSequence], ['counter rollover (A.4.3)', rolloverSequence]] as const) {
    describe(name, () => {
      for (const [suffix, currentKey, pinBlock] of sequence) {
        it(`KSN ${KSN_PREFIX}${suffix}`, () => {
          const ksn = h(KSN_PREFIX + suffix);
          const fromBdk = deriveTdesDukptPinKey(BDK, ksn);
          const fromIpek = tdesDukptPinKeyFromIpek(h(IPEK), ksn);
          expect(hex(fromBdk)).toBe(hex(xor(h(currentKey), PIN_VARIANT)));
          expect(hex(fromIpek)).toBe(hex(fromBdk));
          // The published encrypted PIN block, under the derived key, by node:crypto.
          expect(hex(tdesEncrypt(fromBdk, CLEAR_PIN_BLOCK))).toBe(pinBlock);
        });
      }
    });
  }

  it('agrees with a recursive node:crypto implementation around 2^20 and at the largest valid counters', () => {
    const ipek = h(IPEK);
    const counters = [0x0ffc00, 0x0ff801, 0x100000, 0x100001, 0x100003, 0x17fc00, 0x1ff800, 0x1ff400, 0x055555, 0x0aaaaa];
    for (const counter of counters) {
      const ksn = ksnWithCounter(counter);
      const expected = xor(refFutureKey(ipek, ksn, counter), PIN_VARIANT);
      expect(hex(tdesDukptPinKeyFromIpek(ipek, ksn)), `counter ${counter.toString(16)}`).toBe(hex(expected));
    }
  });

  it('the recursive reference reproduces the published table (so the comparison above means something)', () => {
    const [suffix, currentKey] = rolloverSequence[rolloverSequence.length - 2]!;
    const ksn = h(KSN_PREFIX + suffix);
    expect(hex(refFutureKey(h(IPEK), ksn, 0x0ffc00))).toBe(currentKey);
  });

  it('leaves the BDK and IPEK buffers it was given untouched', () => {
    const bdk = Buffer.from(BDK);
    const ipek = h(IPEK);
    deriveTdesDukptPinKey(bdk, h(`${KSN_PREFIX}E00007`));
    tdesDukptPinKeyFromIpek(ipek, h(`${KSN_PREFIX}E00007`));
    expect(bdk.equals(BDK)).toBe(true);
    expect(hex(ipek)).toBe(IPEK);
  });
});

describe('TDES DUKPT refusals', () => {

  it('refuses invalid counters and KSN lengths before deriving anything', () => {
    for (const ksn of [`${KSN_PREFIX}E00000`, `${KSN_PREFIX}E007FF`, `${KSN_PREFIX}FFFC00`, `${KSN_PREFIX}EFFFFF`, 'FFFF9876543210E000', `${KSN_PREFIX}E0000100`]) {
      expectError(() => deriveTdesDukptPinKey(BDK, h(ksn)), 'INVALID_ARGUMENT');
      expectError(() => tdesDukptPinKeyFromIpek(h(IPEK), h(ksn)), 'INVALID_ARGUMENT');
    }
    expectError(() => tdesInitialKeyInput(h('FFFF9876543210E000')), 'INVALID_ARGUMENT');
  });

  it('refuses a BDK or initial key that is not double-length', () => {
    expectError(() => deriveTdesDukptPinKey(Buffer.concat([BDK, BDK.subarray(0, 8)]), h(`${KSN_PREFIX}E00001`)), 'INCOMPATIBLE_KEY');
    expectError(() => tdesDukptPinKeyFromIpek(h(IPEK).subarray(0, 8), h(`${KSN_PREFIX}E00001`)), 'INCOMPATIBLE_KEY');
  });
});
