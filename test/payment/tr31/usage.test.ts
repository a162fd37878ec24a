import { describe, expect, it } from 'vitest';
import { HsmBridgeError } from '../../../src/errors.js';
import { allKeyTypes, keyTypeInfo, type KeyPurpose, type KeyType, type KeyUsage, type ModeOfUse } from '../../../src/keys/types.js';
import { cmacWithKey } from '../../../src/payment/crypto/cmac.js';
import type { Tr31Header } from '../../../src/payment/tr31/header.js';
import { deriveKeyBlockKeys, openKeyBlock, sealKeyBlock } from '../../../src/payment/tr31/keyBlock.js';
import { assertKbpkProtects, headerForKey, keyFromHeader } from '../../../src/payment/tr31/usage.js';

function caught(run: () => unknown): HsmBridgeError {
  try {
    run();
  } catch (e) {
    expect(e).toBeInstanceOf(HsmBridgeError);
    return e as HsmBridgeError;
  }
  throw new Error('expected an HsmBridgeError');
}

const header = (fields: Partial<Tr31Header>): Tr31Header => ({
  version: 'D',
  keyUsage: 'P0',
  algorithm: 'A',
  modeOfUse: 'B',
  keyVersionNumber: '00',
  exportability: 'E',
  optionalBlocks: [],
  ...fields,
});

/**
 * The X9.143 combinations hsm-bridge accepts, written out from the standard's usage table (independent
 * of the code's table): usage -> purpose, modes of use, algorithms with the key lengths each allows.
 */
const accepted: Record<string, { purpose: KeyPurpose; modes: string; lengths: Record<string, number[]> }> = {
  P0: { purpose: 'pin', modes: 'EDB', lengths: { T: [16, 24], A: [16, 32] } },
  B0: { purpose: 'bdk', modes: 'X', lengths: { T: [16, 24], A: [16, 32] } },
  K0: { purpose: 'kbpk', modes: 'EDB', lengths: { T: [16, 24], A: [16, 32] } },
  K1: { purpose: 'kbpk', modes: 'EDB', lengths: { T: [16, 24], A: [16, 32] } },
  M0: { purpose: 'mac', modes: 'CGV', lengths: { T: [16, 24] } },
  M1: { purpose: 'mac', modes: 'CGV', lengths: { T: [16, 24] } },
  M3: { purpose: 'mac', modes: 'CGV', lengths: { T: [16] } },
  M6: { purpose: 'mac', modes: 'CGV', lengths: { T: [16, 24], A: [16, 32] } },
};
const typeOf = (algorithm: string, length: number): KeyType =>
  algorithm === 'T' ? (length === 16 ? 'TDES_2KEY' : 'TDES_3KEY') : length === 16 ? 'AES_128' : 'AES_256';

describe('keyFromHeader', () => {
  it('accepts exactly the supported usage, algorithm, mode and length combinations, naming the field it refuses', () => {
    const usages = [...Object.keys(accepted), 'D0', 'P1', 'B1', 'K2', 'V2', 'C0', 'E0', 'M2', 'M7', '00'];
    let acceptedCount = 0;
    for (const keyUsage of usages) {
      for (const modeOfUse of 'BEDCGVXNST') {
        for (const algorithm of 'TADRHE') {
          for (const length of algorithm === 'T' ? [16, 24] : algorithm === 'A' ? [16, 32] : [16]) {
            const h = header({ keyUsage, modeOfUse, algorithm });
            const rule = accepted[keyUsage];
            const label = `${keyUsage} ${algorithm} ${modeOfUse} ${length}`;
            if (!rule) {
              expect(caught(() => keyFromHeader(h, length)).message, label).toMatch(/key usage .* not supported/);
            } else if (!rule.lengths[algorithm]) {
              expect(caught(() => keyFromHeader(h, length)).message, label).toMatch(/algorithm .* not allowed/);
            } else if (!rule.modes.includes(modeOfUse)) {
              expect(caught(() => keyFromHeader(h, length)).message, label).toMatch(/mode of use .* not allowed/);
            } else if (!rule.lengths[algorithm]!.includes(length)) {
              const e = caught(() => keyFromHeader(h, length));
              expect(e.code, label).toBe('INCOMPATIBLE_KEY');
              expect(e.message).toMatch(/needs a key of 16 bytes/);
            } else {
              acceptedCount++;
              expect(keyFromHeader(h, length), label).toEqual({
                type: typeOf(algorithm, length),
                purpose: rule.purpose,
                keyUsage,
                modeOfUse,
                exportable: true,
              });
            }
          }
        }
      }
    }
    // P0, K0, K1: 3 modes x 4 types; B0: 4; M0, M1: 3 x 2; M3: 3; M6: 3 x 4.
    expect(acceptedCount).toBe(3 * 12 + 4 + 12 + 3 + 12);
  });

  it('refuses with INCOMPATIBLE_KEY, naming the field, never anything else', () => {
    for (const h of [header({ keyUsage: 'D0' }), header({ algorithm: 'R' }), header({ modeOfUse: 'X' })]) {
      expect(caught(() => keyFromHeader(h, 16)).code).toBe('INCOMPATIBLE_KEY');
    }
  });

  it('maps exportability E to exportable, N and S to not exportable', () => {
    expect(keyFromHeader(header({ exportability: 'E' }), 16).exportable).toBe(true);
    expect(keyFromHeader(header({ exportability: 'N' }), 16).exportable).toBe(false);
    expect(keyFromHeader(header({ exportability: 'S' }), 16).exportable).toBe(false);
  });

  it('refuses key lengths the algorithm does not have; AES-192 as unsupported by hsm-bridge', () => {
    for (const length of [8, 15, 32, 0]) {
      const e = caught(() => keyFromHeader(header({ algorithm: 'T' }), length));
      expect([e.code, e.message]).toEqual(['INCOMPATIBLE_KEY', 'key block: a TDES key (algorithm T) must be 16 or 24 bytes']);
    }
    for (const length of [8, 20, 48]) expect(caught(() => keyFromHeader(header({}), length)).code).toBe('INCOMPATIBLE_KEY');
    const e = caught(() => keyFromHeader(header({}), 24));
    expect(e.code).toBe('UNSUPPORTED_BY_BACKEND');
    expect(e.message).toMatch(/AES-192/);
  });

  it('refuses an AES key in a version B (TDES) block', () => {
    expect(caught(() => keyFromHeader(header({ version: 'B' }), 16)).message).toMatch(/version B/);
    expect(keyFromHeader(header({ version: 'B', algorithm: 'T' }), 24).type).toBe('TDES_3KEY');
  });
});

describe('headerForKey', () => {
  it('writes the usage, algorithm and widest mode of each payment purpose', () => {
    const cases: [KeyType, KeyPurpose, string, string, string][] = [
      ['TDES_2KEY', 'pin', 'P0', 'T', 'B'],
      ['AES_256', 'pin', 'P0', 'A', 'B'],
      ['TDES_3KEY', 'bdk', 'B0', 'T', 'X'],
      ['AES_128', 'bdk', 'B0', 'A', 'X'],
      ['TDES_2KEY', 'kbpk', 'K1', 'T', 'B'],
      ['AES_256', 'kbpk', 'K1', 'A', 'B'],
      ['TDES_2KEY', 'mac', 'M1', 'T', 'C'],
      ['AES_128', 'mac', 'M6', 'A', 'C'],
    ];
    for (const [type, purpose, keyUsage, algorithm, modeOfUse] of cases) {
      expect(headerForKey({ type, purpose, exportable: true }, 'D', 'N')).toEqual({
        version: 'D',
        keyUsage,
        algorithm,
        modeOfUse,
        keyVersionNumber: '00',
        exportability: 'N',
        optionalBlocks: [],
      });
    }
  });

  it("writes the key's own stored usage (an imported M3 stays M3, K0 and K1 stay what they are)", () => {
    const cases: [KeyType, KeyPurpose, KeyUsage][] = [
      ['TDES_2KEY', 'mac', 'M3'],
      ['TDES_2KEY', 'mac', 'M0'],
      ['TDES_3KEY', 'mac', 'M6'],
      ['AES_128', 'mac', 'M6'],
      ['TDES_2KEY', 'kbpk', 'K0'],
      ['AES_256', 'kbpk', 'K1'],
    ];
    for (const [type, purpose, keyUsage] of cases) {
      expect(headerForKey({ type, purpose, keyUsage, exportable: true }, 'D', 'N').keyUsage, `${type} ${keyUsage}`).toBe(keyUsage);
    }
    // A stored usage that does not fit the key (a damaged record) is refused, never written.
    for (const [type, purpose, keyUsage] of [['TDES_3KEY', 'mac', 'M3'], ['AES_128', 'mac', 'M1'], ['TDES_2KEY', 'pin', 'K0']] as [KeyType, KeyPurpose, KeyUsage][]) {
      expect(caught(() => headerForKey({ type, purpose, keyUsage, exportable: true }, 'D', 'N')).code, keyUsage).toBe('INCOMPATIBLE_KEY');
    }
  });

  it("keeps the key's own mode of use, and refuses one its usage does not allow", () => {
    expect(headerForKey({ type: 'TDES_2KEY', purpose: 'pin', modeOfUse: 'E', exportable: true }, 'B', 'E').modeOfUse).toBe('E');
    expect(headerForKey({ type: 'AES_128', purpose: 'mac', modeOfUse: 'V', exportable: true }, 'D', 'S').modeOfUse).toBe('V');
    const e = caught(() => headerForKey({ type: 'TDES_2KEY', purpose: 'pin', modeOfUse: 'X', exportable: true }, 'B', 'E'));
    expect([e.code, e.message]).toEqual(['INCOMPATIBLE_KEY', "the key's mode of use X is not allowed for key usage P0"]);
  });

  it('refuses keys that are not exportable, not payment keys, or AES keys in version B', () => {
    expect(caught(() => headerForKey({ type: 'TDES_2KEY', purpose: 'pin' }, 'B', 'E')).message).toMatch(/not exportable/);
    expect(caught(() => headerForKey({ type: 'TDES_2KEY', purpose: 'pin', exportable: false }, 'B', 'E')).code).toBe('INCOMPATIBLE_KEY');
    for (const [type, purpose] of [
      ['AES_128', 'encrypt'],
      ['AES_256', 'wrap'],
      ['RSA_2048', 'sign'],
      ['EC_P256', 'agree'],
      ['HMAC_256', 'mac'],
    ] as [KeyType, KeyPurpose][]) {
      expect(caught(() => headerForKey({ type, purpose, exportable: true }, 'D', 'E')).code).toBe('INCOMPATIBLE_KEY');
    }
    expect(caught(() => headerForKey({ type: 'AES_128', purpose: 'pin', exportable: true }, 'B', 'E')).message).toMatch(/version B/);
    expect(caught(() => headerForKey({ type: 'AES_128', purpose: 'pin', exportable: true }, 'C' as 'B', 'E')).code).toBe('INVALID_ARGUMENT');
    expect(caught(() => headerForKey({ type: 'AES_128', purpose: 'pin', exportable: true }, 'D', 'X' as 'E')).code).toBe('INVALID_ARGUMENT');
  });

  it('round-trips every exportable payment key through a sealed version D block back to the same key and metadata', async () => {
    const kbpk = Buffer.from('88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6', 'hex');
    const keys = await deriveKeyBlockKeys('D', 32, async (input) => cmacWithKey('aes', kbpk, input));
    let count = 0;
    for (const type of allKeyTypes) {
      const info = keyTypeInfo(type);
      if (info.family !== 'tdes' && info.family !== 'aes') continue;
      for (const purpose of ['pin', 'bdk', 'kbpk', 'mac'] as KeyPurpose[]) {
        if (!info.purposes.includes(purpose)) continue;
        const key = Buffer.alloc(info.bits / 8, 0x3c);
        const block = sealKeyBlock(headerForKey({ type, purpose, exportable: true }, 'D', 'E'), key, keys);
        const opened = openKeyBlock(block, keys);
        expect(opened.key.equals(key)).toBe(true);
        const widest: Record<string, ModeOfUse> = { pin: 'B', bdk: 'X', kbpk: 'B', mac: 'C' };
        const keyUsage = { pin: 'P0', bdk: 'B0', kbpk: 'K1', mac: info.family === 'tdes' ? 'M1' : 'M6' }[purpose as 'pin'];
        expect(keyFromHeader(opened.header, opened.key.length)).toEqual({ type, purpose, keyUsage, modeOfUse: widest[purpose], exportable: true });
        count++;
      }
    }
    expect(count).toBe(16);
  });
});

describe('assertKbpkProtects', () => {
  it('lets a KBPK protect keys no stronger than itself', () => {
    const order: KeyType[] = ['TDES_2KEY', 'TDES_3KEY', 'AES_128', 'AES_256'];
    for (const [i, kbpk] of order.entries()) {
      for (const [j, key] of order.entries()) {
        if (j <= i) expect(() => assertKbpkProtects(kbpk, key)).not.toThrow();
        else expect(caught(() => assertKbpkProtects(kbpk, key)).message).toMatch(/weaker/);
      }
    }
    expect(caught(() => assertKbpkProtects('HMAC_256', 'AES_128')).code).toBe('INCOMPATIBLE_KEY');
  });
});
