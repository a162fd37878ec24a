import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  aesDukptPinKeySteps,
  deriveAesDukptPinKey,
  type AesDukptBdkType,
  type AesDukptWorkingKey,
} from '../../../src/payment/dukpt/aesDukpt.js';
import { expectHsmError } from '../../helpers/expectError.js';

const expectInvalid = (run: () => unknown, message: RegExp) => expectHsmError(run, 'INVALID_ARGUMENT', { message });

const h = (s: string): Buffer => Buffer.from(s, 'hex');
const hex = (b: Buffer): string => b.toString('hex').toUpperCase();

function aesEcb(key: Buffer, data: Buffer): Buffer {
  const c = createCipheriv(`aes-${key.length * 8}-ecb`, key, null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(data), c.final()]);
}

/** Runs the steps the way the PKCS#11 adapter does (ECB-encrypt-data, keep the leftmost bytes), on node:crypto. */
function runSteps(bdk: Buffer, bdkType: AesDukptBdkType, ksn: Buffer, workingKey: AesDukptWorkingKey): Buffer[] {
  const keys: Buffer[] = [];
  let key = bdk;
  for (const step of aesDukptPinKeySteps(bdkType, ksn, workingKey)) {
    key = aesEcb(key, step.data).subarray(0, step.bytes);
    keys.push(key);
  }
  return keys;
}

// ---- ANSI X9.24-3:2017 Annex B and its supplement "X9.24-3-2017 Test Vectors" (ASC X9, 2018-01-29,
// https://x9.org/standards/x9-24-part-3-test-vectors/). BDKs, initial key ID and initial keys as printed
// there; FIELD-NOTES section 5 for counter 1. ----
const BDK_128 = h('FEDCBA9876543210F1F1F1F1F1F1F1F1');
const BDK_256 = h('FEDCBA9876543210F1F1F1F1F1F1F1F1FEDCBA9876543210F1F1F1F1F1F1F1F1');
const IK_ID = '1234567890123456';
const ksn = (counter: number): Buffer => {
  const out = Buffer.alloc(12);
  h(IK_ID).copy(out);
  out.writeUInt32BE(counter, 8);
  return out;
};

/**
 * AES-128 PIN encryption keys from the AES-128 BDK for counters 1..21. Counters 1-5 and 8 as printed in
 * the X9 supplement (reproduced in paysec-dukpt's tests and a YAML digest of the supplement); the full run
 * 1..21 from the fixture of the Forage Android SDK (joinforage/forage-android-sdk, DukptFixtures.kt
 * WorkingKeys), which agrees with the supplement wherever both print a counter.
 */
const aes128PinKeys = [
  'AF8CB133A78F8DC2D1359F18527593FB', 'D30BDC73EC9714B000BEC66BDB7B6D09', '7D69F01F3B45449F62C7816ECE723268',
  '91A0588318EC2673214271F70137896E', '35A43BC9EFEB09C756204B57E3FB7D4D', '02DCC6CD1201A3A2CA7099559C862123',
  '6ECF912F3B18CA11A7A27BB60705FD09', '4D9DF3FBEE3448FC3E676D04320A90F5', 'B4273D0F8804829572AFF61FA2BC417F',
  'BA7CF1ABF6B4A23A16A07CDE63F3514C', 'FBB09B064691293A3FFBA322F2C55014', '6743311B691A3065561BB075EB39DA2D',
  '0BAC7E46F72C543F06C7144080E2AD4B', '3453AA079FF413D9FF51E6055F03B664', '4A22D5A8B6B6C06292EAAC6A1353C369',
  'A09C63853B707708DEAB907BA778C191', '0C30F0D8D070B90FF25D83B6E23BC1A4', '50233141FE61DDAA8C444DF112EACE8E',
  '155FA01A41971C9A185E125F2D99586C', 'FD8ECD02676402DD573468D66C64F898', '5ECC93425A8BB6615F3857D3163F33A2',
];

/**
 * Far counters, AES-128 BDK: [counter, intermediate derivation key, AES-128 PIN key]. Derivation keys from
 * openemv/dukpt test/dukpt_aes128_test.c (supplement pages 5-6); PIN keys from paysec-dukpt's Annex B
 * tests (0x1FFFE, 0x20000) and the CEX library's DUKPTTest.cpp KATs (0xFFFE4000, 0xFFFE8000, 0xFFFF0000).
 */
const aes128Far: [number, string, string][] = [
  [0x0001fffe, 'E21E8C8D347F8561A2BE752DAA85A111', 'DDF7E08A84B5478C498D007C743BF762'],
  [0x00020000, 'F7AE9025468A25D37B7249CFFED224C8', 'AB828BE7B58C7EC5D5ED0D5D320A0C9D'],
  [0xfffe4000, '396C2C7CA1EA701C03B86B7D41F0C562', '6239A27F572DEDB17BCA1AC413EF9FE9'],
  [0xfffe8000, '0387625F189B58AE03EF0E8CCA41105E', 'F10C1404137A80718FCCE8BD90FF9F67'],
  [0xffff0000, 'F6BA59389BD14A9855BE9727E7C52E3C', '27EFAC1D158632588F4AC69E45C247C4'],
];

/** Intermediate derivation keys for counters 1..8, AES-128 BDK (openemv/dukpt, supplement page 2). */
const aes128DerivationKeys = [
  '4F21B565BAD9835E112B6465635EAE44', '2F34D68DE10F68D38091A73B9E7C437C', '031504E530365CF81264238540518318',
  '0EEFC7ADA628BA68878DA9165A8A1887', 'C2A7AC328A5DA2D6002D62465BFC028B', 'D30F7D9351DA58448A2F5E92B4EE3B7D',
  'A8253CEED9AC042C54F75D35C8352278', '718EE6CF0B27E53D5F7AF99C4D8146A2',
];

/** AES-256 BDK, AES-256 PIN keys (CEX DUKPTTest.cpp KATs; counter 1 also in paysec-dukpt) and derivation keys (openemv). */
const aes256: [number, string, string][] = [
  [1, '54AC2B32B145EA4A554CB8BC44B17467063A799856B1CCC2A138D36E8DBF78B3', '8C1AB7BEE973829E30242E0BBBDD4946D540C98FC1B5BDCF94790001A23FD502'],
  [2, '5DD5A0253842BBBE1D7C0DA27021412C6F1FAB53FB928DEAE56DA06090A9DE97', '3583D6CD02FC38822CC71A8D7678E04F4A8556335E6CC66863D3DADC5AEE2C62'],
  [3, '8EEEF7C464AE415BB1D73FAED21993CD669F7999092A579EC6DD3CC680C65171', '96A1AB5D37CB7CF81DDE64F66C46E0389B833E7AD5F4E44C791F04FAFDA6DA0E'],
  [0xfffe4000, 'FF20E1BB575539ACCB44E3111BE8757F83AE8549A2DD71B441A4A424F7FFD4B1', 'F388FF9FB1D66E8812BC67CA5B85CE5554063E09A2440EC1AF4EB433CCFBAF35'],
  [0xfffe8000, '630535C9C53E1EC6524016930B56F6728909C45403536B419AEBCB25B7351C07', 'FAC4E05A67AB1522505CF0E94E5977B99D0E5B116D76ABB6B8A64F0D785FF6DF'],
  [0xffff0000, '6D6DB7AAAE8B3EA90E57A39E4BBA71E173B21B446B30A78D64BFC6A8806C55EE', '88B82556AEF4A681E0687F443A4C4F305AF9203B114470DFC77C7F08BC43F9DA'],
];

describe('AES DUKPT PIN keys, X9.24-3:2017 test vectors', () => {
  it('field notes: counter 1, AES-128 BDK -> AF8CB133A78F8DC2D1359F18527593FB; initial key 1273671EA26AC29AFA4D1084127652A1', () => {
    expect(hex(deriveAesDukptPinKey('AES_128', BDK_128, ksn(1), 'AES_128'))).toBe('AF8CB133A78F8DC2D1359F18527593FB');
    expect(hex(runSteps(BDK_128, 'AES_128', ksn(1), 'AES_128')[0]!)).toBe('1273671EA26AC29AFA4D1084127652A1');
  });

  it('AES-256 BDK initial key CE9CE0C1...0949550F', () => {
    expect(hex(runSteps(BDK_256, 'AES_256', ksn(1), 'AES_256')[0]!)).toBe('CE9CE0C101D1138F97FB6CAD4DF045A7083D4EAE2D35A31789D01CCF0949550F');
  });

  describe('AES-128 working keys from the AES-128 BDK, counters 1..21', () => {
    aes128PinKeys.forEach((expected, i) => {
      it(`counter ${i + 1}`, () => {
        expect(hex(deriveAesDukptPinKey('AES_128', BDK_128, ksn(i + 1), 'AES_128'))).toBe(expected);
      });
    });
  });

  it('intermediate derivation keys for counters 1..8 (the key before the working-key step)', () => {
    aes128DerivationKeys.forEach((expected, i) => {
      const keys = runSteps(BDK_128, 'AES_128', ksn(i + 1), 'AES_128');
      expect(hex(keys[keys.length - 2]!), `counter ${i + 1}`).toBe(expected);
    });
  });

  it.each(aes128Far)('AES-128 BDK, counter %i: derivation key and PIN key', (counter, derivationKey, pinKey) => {
    const keys = runSteps(BDK_128, 'AES_128', ksn(counter), 'AES_128');
    expect(hex(keys[keys.length - 2]!)).toBe(derivationKey);
    expect(hex(deriveAesDukptPinKey('AES_128', BDK_128, ksn(counter), 'AES_128'))).toBe(pinKey);
  });

  it('counter 8675309 (0x845FED, the supplement\'s mid-range sample; value as reproduced in a public Rust DUKPT test)', () => {
    expect(hex(deriveAesDukptPinKey('AES_128', BDK_128, ksn(8675309), 'AES_128'))).toBe('D1DDA386AA4A556AF0119FDCB5D132C6');
  });

  it('0x20001 derivation key (openemv/dukpt, supplement page 5)', () => {
    const keys = runSteps(BDK_128, 'AES_128', ksn(0x20001), 'AES_128');
    expect(hex(keys[keys.length - 2]!)).toBe('692C8EA4013645135B36497131DF9D2C');
  });

  it.each(aes256)('AES-256 BDK, counter %i: derivation key and AES-256 PIN key', (counter, derivationKey, pinKey) => {
    const keys = runSteps(BDK_256, 'AES_256', ksn(counter), 'AES_256');
    expect(hex(keys[keys.length - 2]!)).toBe(derivationKey);
    expect(hex(deriveAesDukptPinKey('AES_256', BDK_256, ksn(counter), 'AES_256'))).toBe(pinKey);
  });

  it('AES-128 working key from the AES-256 BDK, counter 1 (X9 supplement, via paysec-dukpt tests)', () => {
    expect(hex(deriveAesDukptPinKey('AES_256', BDK_256, ksn(1), 'AES_128'))).toBe('09C9C432966811D6B2C3336BAC1B1202');
  });

  it('TDES working keys from the AES-128 BDK, counter 1 (X9 supplement 2TDEA and 3TDEA suites)', () => {
    expect(hex(deriveAesDukptPinKey('AES_128', BDK_128, ksn(1), 'TDES_2KEY'))).toBe('630C706D9546E47D4449313F61C4D4AB');
    expect(hex(deriveAesDukptPinKey('AES_128', BDK_128, ksn(1), 'TDES_3KEY'))).toBe('EA8B3F37EB9B15831167EF2977FD8762D9B5913F35766F6A');
  });

  it('format 4 PIN blocks under the derived keys (X9 supplement: PIN 1234, PAN 4111111111111111)', () => {
    // C = AES(K, AES(K, PIN field) XOR PAN field), with the supplement's clear fields.
    const pinField = h('441234AAAAAAAAAA2F69ADDE2E9E7ACE');
    const panField = h('44111111111111111000000000000000');
    const encipher = (key: Buffer) => hex(aesEcb(key, Buffer.from(aesEcb(key, pinField).map((v, i) => v ^ panField[i]!))));
    expect(encipher(deriveAesDukptPinKey('AES_128', BDK_128, ksn(1), 'AES_128'))).toBe('A912150391AB65A67E52883D81CE2D15');
    expect(encipher(deriveAesDukptPinKey('AES_128', BDK_128, ksn(2), 'AES_128'))).toBe('52A00503BD34BA1383F6A7EE9FE2547F');
  });
});

describe('aesDukptPinKeySteps', () => {
  it('derivation data as published (X9.24-3 6.3.2; CEX DUKPTTest.cpp; the length field is present)', () => {
    const steps = aesDukptPinKeySteps('AES_128', ksn(1), 'AES_128');
    expect(steps.map((s) => hex(s.data))).toEqual([
      '01018001000200801234567890123456', // initial key: full initial key ID
      '01018000000200809012345600000001', // intermediate key for counter bit 0
      '01011000000200809012345600000001', // PIN encryption working key
    ]);
    expect(steps.map((s) => s.bytes)).toEqual([16, 16, 16]);
    expect(hex(aesDukptPinKeySteps('AES_128', ksn(0xffff0000), 'AES_128').at(-1)!.data)).toBe('010110000002008090123456FFFF0000');
    // AES-256: two blocks with block counters 1 and 2; CEX prints the data as left after the second block.
    const last = aesDukptPinKeySteps('AES_256', ksn(1), 'AES_256').at(-1)!;
    expect(hex(last.data)).toBe('01011000000401009012345600000001' + '01021000000401009012345600000001');
    expect(last.bytes).toBe(32);
  });

  it('one step for the initial key, one per counter bit set, one for the working key', () => {
    for (const counter of [1, 2, 3, 0x15, 0x1fffe, 0xfffe4000, 0xffff0000]) {
      let ones = 0;
      for (let v = counter; v !== 0; v &= v - 1) ones++;
      expect(aesDukptPinKeySteps('AES_256', ksn(counter), 'AES_192')).toHaveLength(ones + 2);
    }
  });

  it('AES-192 and TDES working keys: algorithm, length and block layout', () => {
    const expected: [AesDukptWorkingKey, string, number][] = [
      ['TDES_2KEY', '00000080', 16],
      ['TDES_3KEY', '000100C0', 24],
      ['AES_128', '00020080', 16],
      ['AES_192', '000300C0', 24],
      ['AES_256', '00040100', 32],
    ];
    for (const [type, algorithmAndLength, bytes] of expected) {
      const last = aesDukptPinKeySteps('AES_256', ksn(5), type).at(-1)!;
      expect(last.bytes, type).toBe(bytes);
      const blocks = Math.ceil(bytes / 16);
      expect(last.data.length).toBe(blocks * 16);
      for (let b = 0; b < blocks; b++) {
        expect(hex(last.data.subarray(b * 16, b * 16 + 16)), type).toBe(`01${(b + 1).toString(16).padStart(2, '0')}1000${algorithmAndLength}9012345600000005`);
      }
    }
  });

  it('run through node:crypto ECB, give the same key as deriveAesDukptPinKey (what the HSM adapter relies on)', () => {
    const cases: [AesDukptBdkType, Buffer, AesDukptWorkingKey][] = [
      ['AES_128', BDK_128, 'AES_128'], ['AES_128', BDK_128, 'TDES_2KEY'], ['AES_128', BDK_128, 'TDES_3KEY'],
      ['AES_256', BDK_256, 'AES_128'], ['AES_256', BDK_256, 'AES_192'], ['AES_256', BDK_256, 'AES_256'],
      ['AES_256', BDK_256, 'TDES_2KEY'], ['AES_256', BDK_256, 'TDES_3KEY'],
    ];
    for (const [bdkType, bdk, workingKey] of cases) {
      for (const counter of [1, 7, 21, 0x20000, 8675309, 0xfffe4000, 0xffff0000]) {
        const viaSteps = runSteps(bdk, bdkType, ksn(counter), workingKey).at(-1)!;
        expect(hex(deriveAesDukptPinKey(bdkType, bdk, ksn(counter), workingKey)), `${bdkType} ${workingKey} ${counter}`).toBe(hex(viaSteps));
      }
    }
  });

  it('leaves the BDK buffer untouched', () => {
    const bdk = Buffer.from(BDK_256);
    deriveAesDukptPinKey('AES_256', bdk, ksn(0xfffe8000), 'AES_256');
    expect(bdk.equals(BDK_256)).toBe(true);
  });
});

describe('AES DUKPT refusals', () => {

  it('a working key stronger than the BDK', () => {
    expectInvalid(() => deriveAesDukptPinKey('AES_128', BDK_128, ksn(1), 'AES_192'), /cannot derive/);
    expectInvalid(() => deriveAesDukptPinKey('AES_128', BDK_128, ksn(1), 'AES_256'), /cannot derive/);
    expectInvalid(() => aesDukptPinKeySteps('AES_128', ksn(1), 'AES_256'), /cannot derive/);
  });

  it('invalid counters and KSN lengths', () => {
    expectInvalid(() => deriveAesDukptPinKey('AES_128', BDK_128, ksn(0), 'AES_128'), /must not be 0/);
    expectInvalid(() => deriveAesDukptPinKey('AES_128', BDK_128, ksn(0x1ffff), 'AES_128'), /16 one bits/);
    expectInvalid(() => deriveAesDukptPinKey('AES_128', BDK_128, ksn(0xffffffff), 'AES_128'), /16 one bits/);
    expectInvalid(() => aesDukptPinKeySteps('AES_256', ksn(0x1ffff), 'AES_256'), /16 one bits/);
    expectInvalid(() => deriveAesDukptPinKey('AES_128', BDK_128, h('FFFF9876543210E00001'), 'AES_128'), /12 bytes/);
  });

  it('a BDK whose length does not match its type is a programming error', () => {
    expect(() => deriveAesDukptPinKey('AES_256', BDK_128, ksn(1), 'AES_128')).toThrow(RangeError);
    expect(() => deriveAesDukptPinKey('AES_128', BDK_256, ksn(1), 'AES_128')).toThrow(RangeError);
  });
});
