import { describe, expect, it } from 'vitest';
import {
  alignedOptionalBlocks,
  encodeKeyBlockHeader,
  parseKeyBlockHeader,
  type Tr31Header,
} from '../../../src/payment/tr31/header.js';
import { expectHsmError } from '../../helpers/expectError.js';

const expectInvalid = (run: () => unknown, message: RegExp, secrets: string[] = []) => expectHsmError(run, 'INVALID_ARGUMENT', { message, secrets });


/** A block of the right total length: `header` then hex filler (the header parser does not read the payload). */
const blockWith = (header: string, payload = 'AB'.repeat(24)): string => {
  const total = header.length + payload.length;
  return header.slice(0, 1) + String(total).padStart(4, '0') + header.slice(5) + payload;
};

// Headers of published blocks (TR-31:2018 A.7.3.2; an openemv/tr31 decode example with KS, KC and KP blocks).
const A732 = 'B0104B0TX12S0100KS1800604B120F9292800000BB68BE8680A400D9191AD4ECE45B6E6C0D21C4738A52190E248719E24B433627';
const KS_KC_KP =
  'B0128B1TX00N0300KS18FFFF00A0200001E00000KC0C000169E3KP0C00ECAD626F9F1A826814AA066D86C8C18BD0E14033E1EBEC75BEDF586E6E325F3AA8C0E5';

describe('parsing key block headers', () => {
  it('reads every field of A.7.3.2, the KS block kept as is', () => {
    expect(parseKeyBlockHeader(A732)).toEqual({
      header: {
        version: 'B',
        keyUsage: 'B0',
        algorithm: 'T',
        modeOfUse: 'X',
        keyVersionNumber: '12',
        exportability: 'S',
        optionalBlocks: [{ id: 'KS', data: '00604B120F9292800000' }],
      },
      length: 40,
    });
  });

  it('reads three optional blocks in order', () => {
    const { header, length } = parseKeyBlockHeader(KS_KC_KP);
    expect(length).toBe(64);
    expect(header.optionalBlocks).toEqual([
      { id: 'KS', data: 'FFFF00A0200001E00000' },
      { id: 'KC', data: '000169E3' },
      { id: 'KP', data: '00ECAD62' },
    ]);
  });

  it('reads the extended length form (00, size of the length, length)', () => {
    const data = 'Z'.repeat(300);
    // 2 (ID) + 2 ('00') + 2 ('04') + 4 (length) + 300 = 310 = 0x0136; 16 + 310 = 326 is not a multiple of 8: pad with PB.
    const header = `D0000P0AE00E0200HM00040136${data}PB0A000000`;
    const parsed = parseKeyBlockHeader(blockWith(header, 'AB'.repeat(48)));
    expect(parsed.header.optionalBlocks).toEqual([{ id: 'HM', data }, { id: 'PB', data: '000000' }]);
    expect(parsed.length).toBe(header.length);
    expect(header.length % 16).toBe(0);
  });

  it('refuses versions A and C as deprecated, and any other version', () => {
    expectInvalid(() => parseKeyBlockHeader(blockWith('A0000P0TE00E0000')), /versions A and C .*deprecated/);
    expectInvalid(() => parseKeyBlockHeader(blockWith('C0000P0TE00E0000')), /versions A and C .*deprecated/);
    for (const v of ['E', 'b', '0', '1']) expectInvalid(() => parseKeyBlockHeader(blockWith(`${v}0000P0TE00E0000`)), /version is not supported/);
  });

  it('names each bad fixed field', () => {
    const cases: [string, RegExp][] = [
      ['B0000p0TE00E0000', /key usage/],
      ['B0000P TE00E0000', /key usage/],
      ['B0000P0tE00E0000', /algorithm/],
      ['B0000P0T-00E0000', /mode of use/],
      ['B0000P0TE0-E0000', /key version number/],
      ['B0000P0TE00X0000', /exportability/],
      ['B0000P0TE00e0000', /exportability/],
      ['B0000P0TE00E0A00', /number of optional blocks/],
      ['B0000P0TE00E0001', /reserved/],
      ['B0000P0TE00E00 0', /reserved/],
    ];
    for (const [header, message] of cases) expectInvalid(() => parseKeyBlockHeader(blockWith(header)), message);
  });

  it('checks the block length field against the whole block', () => {
    expectInvalid(() => parseKeyBlockHeader(A732.slice(0, -2)), /block length does not match/);
    expectInvalid(() => parseKeyBlockHeader(`${A732}00`), /block length does not match/);
    expectInvalid(() => parseKeyBlockHeader(`B01 4${A732.slice(5)}`), /block length must be 4 decimal digits/);
    expectInvalid(() => parseKeyBlockHeader('B0012P0TE00E'), /shorter than its 16-character header/);
    expectInvalid(() => parseKeyBlockHeader(`B9999P0TE00E0000${'A'.repeat(1_000_000)}`), /longer than 9999 characters/);
  });

  it('refuses anything but printable ASCII, without echoing the block', () => {
    const block = `${A732.slice(0, 50)}\u00e9${A732.slice(51)}`;
    expectInvalid(() => parseKeyBlockHeader(block), /printable ASCII/, [A732.slice(40)]);
    expectInvalid(() => parseKeyBlockHeader(`${A732.slice(0, 50)}\n${A732.slice(51)}`), /printable ASCII/);
    expectInvalid(() => parseKeyBlockHeader(42 as unknown as string), /must be a string/);
  });

  it('names each bad optional block, never echoing its bytes', () => {
    const cases: [string, RegExp][] = [
      ['B0000P0TE00E0100ks1800604B120F9292800000', /optional block 1 ID/],
      ['B0000P0TE00E0100KSx800604B120F9292800000', /optional block 1 length must be 2 hex/],
      ['B0000P0TE00E0100KS0300604B120F9292800000', /shorter than its own ID and length/],
      ['B0000P0TE00E0100KS0000604B120F9292800000', /extended length/],
      ['B0000P0TE00E0100KS00ZZ604B120F9292800000', /extended length/],
      ['B0000P0TE00E0100KS0C00604B12', /multiple of 8 characters/],
      ['D0000P0TE00E0100KS1800604B120F9292800000', /multiple of 16 characters/],
    ];
    for (const [header, message] of cases) expectInvalid(() => parseKeyBlockHeader(blockWith(header)), message, ['604B120F']);
    expectInvalid(() => parseKeyBlockHeader(blockWith('B0000P0TE00E0200KS1800604B120F9292800000', '')), /optional block 2 is truncated/);
    // A length that runs past the whole block.
    expectInvalid(() => parseKeyBlockHeader(blockWith('B0000P0TE00E0100KSFF', '')), /runs past the end/);
  });
});

describe('encoding key block headers', () => {
  const a732: Tr31Header = {
    version: 'B',
    keyUsage: 'B0',
    algorithm: 'T',
    modeOfUse: 'X',
    keyVersionNumber: '12',
    exportability: 'S',
    optionalBlocks: [{ id: 'KS', data: '00604B120F9292800000' }],
  };

  it('writes the A.7.3.2 header byte for byte', () => {
    expect(encodeKeyBlockHeader(a732, 104)).toBe(A732.slice(0, 40));
  });

  it('round-trips through the parser, extended lengths included', () => {
    const long: Tr31Header = { ...a732, version: 'D', optionalBlocks: [{ id: 'HM', data: 'Q'.repeat(300) }] };
    const aligned = { ...long, optionalBlocks: alignedOptionalBlocks(long) };
    const text = encodeKeyBlockHeader(aligned, 9999);
    expect(text.slice(16, 26)).toBe('HM00040136');
    const parsed = parseKeyBlockHeader(blockWith(text, 'AB'.repeat(48)));
    expect(parsed.header).toEqual({ ...aligned, version: 'D' });
    expect(parsed.length).toBe(text.length);
  });

  it('aligns optional blocks with a PB block of at least 4 characters', () => {
    const base: Tr31Header = { ...a732, optionalBlocks: [] };
    expect(alignedOptionalBlocks(base)).toEqual([]);
    expect(alignedOptionalBlocks({ ...base, optionalBlocks: [{ id: 'KS', data: '0000' }] })).toEqual([{ id: 'KS', data: '0000' }]);
    // 4 + 2 = 6 characters: 2 short of 8, too few for a PB block, so it takes 10.
    expect(alignedOptionalBlocks({ ...base, optionalBlocks: [{ id: 'KS', data: '00' }] })).toEqual([
      { id: 'KS', data: '00' },
      { id: 'PB', data: '000000' },
    ]);
    // Version D aligns to 16: 24 characters take a PB block of 8.
    expect(alignedOptionalBlocks({ ...a732, version: 'D' }).at(-1)).toEqual({ id: 'PB', data: '0000' });
  });

  it('refuses bad fields and an unaligned header', () => {
    expectInvalid(() => encodeKeyBlockHeader({ ...a732, version: 'A' as 'B' }, 104), /deprecated/);
    expectInvalid(() => encodeKeyBlockHeader({ ...a732, keyUsage: 'B' }, 104), /key usage/);
    expectInvalid(() => encodeKeyBlockHeader({ ...a732, modeOfUse: 'XX' }, 104), /mode of use/);
    expectInvalid(() => encodeKeyBlockHeader({ ...a732, optionalBlocks: [{ id: 'K', data: '' }] }, 104), /optional block 1 ID/);
    expectInvalid(() => encodeKeyBlockHeader({ ...a732, optionalBlocks: [{ id: 'KS', data: 'a\u0001' }] }, 104), /printable ASCII/);
    expectInvalid(() => encodeKeyBlockHeader({ ...a732, optionalBlocks: [{ id: 'KS', data: '0' }] }, 104), /multiple of 8/);
    expectInvalid(() => encodeKeyBlockHeader(a732, 10000), /16 to 9999/);
  });
});
