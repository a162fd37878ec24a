import { execFileSync } from 'node:child_process';
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ErrorCode } from '../../../src/errors.js';
import { cmacWithKey } from '../../../src/payment/crypto/cmac.js';
import type { Tr31Header } from '../../../src/payment/tr31/header.js';
import {
  deriveKeyBlockKeys,
  keyBlockDerivationInputs,
  openKeyBlock,
  sealKeyBlock,
  type KeyBlockKeys,
} from '../../../src/payment/tr31/keyBlock.js';
import { expectHsmError } from '../../helpers/expectError.js';

const expectError = (run: () => unknown, code: ErrorCode, secrets: string[] = [], message?: RegExp) => expectHsmError(run, code, { secrets, ...(message ? { message } : {}) });

const hex = (b: Buffer): string => b.toString('hex').toUpperCase();
const buf = (h: string): Buffer => Buffer.from(h, 'hex');

// ---- Independent primitives: node:crypto for the ciphers, the OpenSSL command line for CMAC. ----

function opensslCmac(cipher: string, key: Buffer, data: Buffer): Buffer {
  const out = execFileSync('openssl', ['mac', '-cipher', cipher, '-macopt', `hexkey:${hex(key)}`, 'CMAC'], { input: data });
  return buf(out.toString().trim());
}
function tdesCipherName(key: Buffer, mode: 'ecb' | 'cbc'): string {
  return key.length === 16 ? `des-ede-${mode}` : `des-ede3-${mode}`;
}
function independentCmac(version: 'B' | 'D', key: Buffer, data: Buffer): Buffer {
  return opensslCmac(version === 'B' ? (key.length === 16 ? 'DES-EDE-CBC' : 'DES-EDE3-CBC') : `AES-${key.length * 8}-CBC`, key, data);
}
function independentCbc(version: 'B' | 'D', direction: 'encrypt' | 'decrypt', key: Buffer, iv: Buffer, data: Buffer): Buffer {
  const name = version === 'B' ? tdesCipherName(key, 'cbc') : `aes-${key.length * 8}-cbc`;
  const c = direction === 'encrypt' ? createCipheriv(name, key, iv) : createDecipheriv(name, key, iv);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(data), c.final()]);
}
/** TDES KCV: ECB of zeros; AES KCV: CMAC of zeros (first 3 bytes). */
function kcv(algorithm: 'T' | 'A', key: Buffer): string {
  if (algorithm === 'A') return hex(opensslCmac(`AES-${key.length * 8}-CBC`, key, Buffer.alloc(16))).slice(0, 6);
  const c = createCipheriv(tdesCipherName(key, 'ecb'), key, null);
  c.setAutoPadding(false);
  return hex(Buffer.concat([c.update(Buffer.alloc(8)), c.final()])).slice(0, 6);
}

/** Opens a block without the code under test: split, CBC-decrypt with IV = MAC, check the CMAC. */
function independentOpen(block: string, headerLength: number, keys: KeyBlockKeys): { field: Buffer; key: Buffer; padding: Buffer } {
  const version = block[0] as 'B' | 'D';
  const macHex = version === 'B' ? 16 : 32;
  const mac = buf(block.slice(-macHex));
  const field = independentCbc(version, 'decrypt', keys.encryption, mac, buf(block.slice(headerLength, -macHex)));
  expect(hex(independentCmac(version, keys.authentication, Buffer.concat([Buffer.from(block.slice(0, headerLength), 'ascii'), field])))).toBe(hex(mac));
  const length = field.readUInt16BE(0) / 8;
  return { field, key: field.subarray(2, 2 + length), padding: field.subarray(2 + length) };
}

/** The KBPK as the backend would hold it: only its CMAC is reachable. */
function cmacOracle(version: 'B' | 'D', kbpk: Buffer): (input: Buffer) => Promise<Buffer> {
  return async (input) => cmacWithKey(version === 'B' ? 'tdes' : 'aes', kbpk, input);
}
async function keysFor(version: 'B' | 'D', kbpkHex: string): Promise<KeyBlockKeys> {
  const kbpk = buf(kbpkHex);
  return deriveKeyBlockKeys(version, kbpk.length, cmacOracle(version, kbpk));
}


// ---- Published vectors ----

/** KBEK/KBAK derivations published with TR-31:2018 Annex A and ISO 20038:2017 Annex B (and one payShield 10k example). */
const derivations = [
  { name: 'TR-31:2018 A.7.2.2', version: 'B', kbpk: 'DD7515F2BFC17F85CE48F3CA25CB21F6', kbek: '698832F8778A7CFCBC79559DAB07B88A', kbak: 'DD6CEEC1782D8453671BF8358AF9DB47' },
  { name: 'TR-31:2018 A.7.3.2', version: 'B', kbpk: '1D22BF32387C600AD97F9B97A51311AC', kbek: 'BCE8E2AD5D4489FD0EA5236A884DAC58', kbak: '1F9B2BDAF969C7B8B6C933AC7B9C6894' },
  { name: 'payShield 10k, version B', version: 'B', kbpk: 'EFE0853B256B583D868F251CE99EA1D9', kbek: '60C17C9B43020123C16040CCDCBC76F1', kbak: '8A1542BD19E8C081242A143176E745B8' },
  {
    name: 'TR-31:2018 A.7.4',
    version: 'D',
    kbpk: '88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6',
    kbek: '396C9382A6E2E66A088774E1D6E46541F5EAD67D7204F8DD0D7AE8FDA334D3AC',
    kbak: '4EF24317696213840451890756757E573E0673483888F9B7F9B7517827F95022',
  },
  {
    name: 'ISO 20038:2017 B.3',
    version: 'D',
    kbpk: hex(Buffer.from('256-bit AES wrapping (ISO 20038)', 'ascii')),
    kbek: '9C248005FFD5E6DDEF26A55421A8E925368B3E635D14DF9B863984778B9F6678',
    kbak: '97AC0955A4B883CE77CBEA0620E8542C6DF7E9AFB4CF8F115E00D4D67FEA1E06',
  },
] as const;

/** Key blocks with their KBPK and the clear key and KCV their sources publish. */
const blocks = [
  {
    name: 'TR-31:2018 A.7.2.2 (B, P0)',
    kbpk: 'DD7515F2BFC17F85CE48F3CA25CB21F6',
    block: 'B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E',
    headerLength: 16,
    key: '3F419E1CB7079442AA37474C2EFBF8B8',
    kcv: '57C409',
  },
  {
    name: 'TR-31:2018 A.7.3.2 (B, B0 with KS block)',
    kbpk: '1D22BF32387C600AD97F9B97A51311AC',
    block: 'B0104B0TX12S0100KS1800604B120F9292800000BB68BE8680A400D9191AD4ECE45B6E6C0D21C4738A52190E248719E24B433627',
    headerLength: 40,
    key: 'E8BC63E5479455E26577F715D587FE68',
    kcv: '9A4212',
  },
  {
    name: 'payShield 10k (B, K0)',
    kbpk: 'EFE0853B256B583D868F251CE99EA1D9',
    block: 'B0080K0TN00N00001C414014375212C24995E405B5EE052CB92B67F455EA2680F6751088F9F1C228',
    headerLength: 16,
    key: '5DB50B454F8389ADCE573BE50861F2BF',
    kcv: '5C9405',
  },
  {
    name: 'TR-31:2018 A.7.4 (D, P0 AES)',
    kbpk: '88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6',
    block: 'D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34',
    headerLength: 16,
    key: '3F419E1CB7079442AA37474C2EFBF8B8',
    kcv: '08793E',
  },
  {
    name: 'payShield 10k (D, B0 TDES)',
    kbpk: '41'.repeat(32),
    block: 'D0112B0TN00N000037DB9B046B7B0048785690759580ABC3B9842AB4BB7717B49E92528E575785D8123559376A2553B27BE94F054F4E971C',
    headerLength: 16,
    key: '1FA1F7CEC798D91545DA8AE0C7796BD9',
    kcv: 'FF5087',
  },
  {
    name: 'payShield 10k (D, D0 AES-256)',
    kbpk: '41'.repeat(32),
    block:
      'D0144D0AN00N0000127862F945C2DED04530FAF7CDBC8B0BA10C7AA79BD5E0C2C5D6AC173BF588E4B19ACF1357178D50EA0AB193228E13958304FC6149632DFDCADF3A5B3D57E814',
    headerLength: 16,
    key: 'BE19E6A07A760F10EF8E83A226B63AAD141F463FDDD4F47DB244B4023EC3CACC',
    kcv: '0A00E3',
  },
  {
    // ISO 20038 prints a different key in its text; the MAC input it shows (and the block) carry this one.
    name: 'ISO 20038:2017 B.3 (D, M3)',
    kbpk: hex(Buffer.from('256-bit AES wrapping (ISO 20038)', 'ascii')),
    block: 'D0112M3TV16N000018462FA5903B8D2B82FEE26B29713C0BE7ED81601087F12252093D06FC0A012C1CF769AD0E3E9E4877166AB013FC22B4',
    headerLength: 16,
    key: '767361707064642032454552206B6479',
    kcv: undefined,
  },
] as const;

describe('key block key derivation (X9.143 CMAC KDF)', () => {
  it('builds the 8-byte inputs: counter, usage 0000/0001, separator, algorithm, length in bits', () => {
    const b16 = keyBlockDerivationInputs('B', 16);
    expect(b16.encryption.map(hex)).toEqual(['0100000000000080', '0200000000000080']);
    expect(b16.authentication.map(hex)).toEqual(['0100010000000080', '0200010000000080']);
    expect(keyBlockDerivationInputs('B', 24).encryption.map(hex)).toEqual(['01000000000100C0', '02000000000100C0', '03000000000100C0']);
    expect(keyBlockDerivationInputs('D', 16).authentication.map(hex)).toEqual(['0100010000020080']);
    expect(keyBlockDerivationInputs('D', 24).encryption.map(hex)).toEqual(['01000000000300C0', '02000000000300C0']);
    expect(keyBlockDerivationInputs('D', 32).encryption.map(hex)).toEqual(['0100000000040100', '0200000000040100']);
  });

  for (const v of derivations) {
    it(`derives the published KBEK and KBAK: ${v.name}`, async () => {
      const keys = await keysFor(v.version, v.kbpk);
      expect(hex(keys.encryption)).toBe(v.kbek);
      expect(hex(keys.authentication)).toBe(v.kbak);
    });
  }

  it('derives keys as long as the KBPK for every KBPK length, each part a CMAC of one input (checked with OpenSSL)', async () => {
    for (const [version, length] of [['B', 16], ['B', 24], ['D', 16], ['D', 24], ['D', 32]] as const) {
      const kbpk = Buffer.from(Array.from({ length }, (_, i) => (i * 37 + 11) & 0xff));
      const keys = await deriveKeyBlockKeys(version, length, cmacOracle(version, kbpk));
      const inputs = keyBlockDerivationInputs(version, length);
      const expected = (list: Buffer[]): string => hex(Buffer.concat(list.map((i) => independentCmac(version, kbpk, i)))).slice(0, length * 2);
      expect(hex(keys.encryption)).toBe(expected(inputs.encryption));
      expect(hex(keys.authentication)).toBe(expected(inputs.authentication));
      expect(keys.encryption.length).toBe(length);
    }
  });

  it('refuses a KBPK length the version does not have (INCOMPATIBLE_KEY)', () => {
    for (const [version, length] of [['B', 8], ['B', 32], ['D', 8], ['D', 20], ['D', 48]] as const) {
      expectError(() => keyBlockDerivationInputs(version, length), 'INCOMPATIBLE_KEY', [], version === 'B' ? /TDES KBPK/ : /AES KBPK/);
    }
    expectError(() => keyBlockDerivationInputs('C' as 'B', 16), 'INVALID_ARGUMENT', [], /deprecated/);
  });

  it('answers INTERNAL when the backend returns a CMAC of the wrong length', async () => {
    await expect(deriveKeyBlockKeys('D', 16, async () => Buffer.alloc(8))).rejects.toMatchObject({ code: 'INTERNAL' });
  });
});

describe('opening published key blocks', () => {
  for (const v of blocks) {
    it(`unwraps ${v.name}`, async () => {
      const keys = await keysFor(v.block[0] as 'B' | 'D', v.kbpk);
      const { header, key } = openKeyBlock(v.block, keys);
      expect(hex(key)).toBe(v.key);
      expect(header.version).toBe(v.block[0]);
      expect(header.keyUsage).toBe(v.block.slice(5, 7));
      if (v.kcv) expect(kcv(header.algorithm as 'T' | 'A', key)).toBe(v.kcv);
      // The independent opener agrees, and shows the vector's padding.
      expect(hex(independentOpen(v.block, v.headerLength, keys).key)).toBe(v.key);
    });
  }

  it('reads the KS optional block of A.7.3.2 as it is', async () => {
    const v = blocks[1];
    const { header } = openKeyBlock(v.block, await keysFor('B', v.kbpk));
    expect(header).toEqual({
      version: 'B',
      keyUsage: 'B0',
      algorithm: 'T',
      modeOfUse: 'X',
      keyVersionNumber: '12',
      exportability: 'S',
      optionalBlocks: [{ id: 'KS', data: '00604B120F9292800000' }],
    });
  });

  it('refuses the published version A (A.7.2.1) and C (A.7.3.1) blocks before any cryptography', async () => {
    const keys = await keysFor('B', '89E88CF7931444F334BD7547FC3F380C');
    for (const block of [
      'A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701',
      'C0096B0TX12S0100KS1800604B120F9292800000BFB9B689CB567E66FC3FEE5AD5F52161FC6545B9D60989015D02155C',
    ]) {
      expectError(() => openKeyBlock(block, keys), 'INVALID_ARGUMENT', [block.slice(16)], /deprecated/);
    }
  });

  it('refuses the ISO 20038 version E block (B.2) as an unsupported version', async () => {
    const block = 'E0084B0TV16N0000B2AE5E26BBA7F246E84D5EA24167E208A6B66EF2E27E55A52DB52F0AEACB94C57547';
    const keys = await keysFor('D', hex(Buffer.from('256-bit AES wrapping (ISO 20038)', 'ascii')));
    expectError(() => openKeyBlock(block, keys), 'INVALID_ARGUMENT', [block.slice(16)], /expected B \(TDES\) or D \(AES\)/);
  });
});

describe('sealing key blocks', () => {
  const headerOf = (block: string, optionalBlocks: Tr31Header['optionalBlocks'] = []): Tr31Header => ({
    version: block[0] as 'B' | 'D',
    keyUsage: block.slice(5, 7),
    algorithm: block.slice(7, 8),
    modeOfUse: block.slice(8, 9),
    keyVersionNumber: block.slice(9, 11),
    exportability: block[11] as 'E' | 'N' | 'S',
    optionalBlocks,
  });

  it('rebuilds TR-31:2018 A.7.4 byte for byte from its published padding', async () => {
    const v = blocks[3];
    const keys = await keysFor('D', v.kbpk);
    expect(sealKeyBlock(headerOf(v.block), buf(v.key), keys, buf('1C2965473CE206BB855B01533782'))).toBe(v.block);
  });

  it('rebuilds every published B and D block byte for byte from the padding recovered by the independent opener', async () => {
    for (const v of blocks) {
      const keys = await keysFor(v.block[0] as 'B' | 'D', v.kbpk);
      const { padding } = independentOpen(v.block, v.headerLength, keys);
      const header = openKeyBlock(v.block, keys).header;
      expect(sealKeyBlock(header, buf(v.key), keys, Buffer.from(padding)), v.name).toBe(v.block);
    }
  });

  const keyCases = [
    { algorithm: 'T', length: 16 },
    { algorithm: 'T', length: 24 },
    { algorithm: 'A', length: 16 },
    { algorithm: 'A', length: 24 },
    { algorithm: 'A', length: 32 },
  ] as const;
  const kbpkCases = [
    ['B', 16],
    ['B', 24],
    ['D', 16],
    ['D', 24],
    ['D', 32],
  ] as const;

  for (const [version, kbpkLength] of kbpkCases) {
    it(`round-trips every key length under a ${kbpkLength}-byte version ${version} KBPK, padded to the algorithm's longest key`, async () => {
      const kbpk = Buffer.from(Array.from({ length: kbpkLength }, (_, i) => (i * 91 + 7) & 0xff));
      const keys = await deriveKeyBlockKeys(version, kbpkLength, cmacOracle(version, kbpk));
      const size = version === 'B' ? 8 : 16;
      for (const { algorithm, length } of keyCases) {
        const key = Buffer.from(Array.from({ length }, (_, i) => (i * 13 + length) & 0xff));
        const header: Tr31Header = { version, keyUsage: 'P0', algorithm, modeOfUse: 'B', keyVersionNumber: '00', exportability: 'E', optionalBlocks: [] };
        const block = sealKeyBlock(header, key, keys);
        // Field = 2 + longest key of the algorithm (24 for TDES, 32 for AES), whole cipher blocks.
        const field = Math.ceil((2 + (algorithm === 'T' ? 24 : 32)) / size) * size;
        expect(block.length).toBe(16 + 2 * field + 2 * size);
        expect(block.slice(0, 5)).toBe(`${version}${String(block.length).padStart(4, '0')}`);
        expect(hex(independentOpen(block, 16, keys).key)).toBe(hex(key));
        const opened = openKeyBlock(block, keys);
        expect(hex(opened.key)).toBe(hex(key));
        expect(opened.header).toEqual(header);
      }
    });
  }

  it('pads with fresh random bytes: two blocks of one key differ, and only in the encrypted field and MAC', async () => {
    const keys = await keysFor('D', '00112233445566778899AABBCCDDEEFF');
    const header = headerOf('D0000P0AE00E0000');
    const key = buf('3F419E1CB7079442AA37474C2EFBF8B8');
    const a = sealKeyBlock(header, key, keys);
    const b = sealKeyBlock(header, key, keys);
    expect(a.slice(0, 16)).toBe(b.slice(0, 16));
    expect(a).not.toBe(b);
    expect(hex(independentOpen(a, 16, keys).padding)).not.toBe(hex(independentOpen(b, 16, keys).padding));
  });

  it('adds a PB padding block when the optional blocks do not end on a cipher block boundary', async () => {
    const keys = await keysFor('D', '00112233445566778899AABBCCDDEEFF');
    const header = headerOf('D0000B0TX00S0000', [{ id: 'KS', data: '00604B120F9292800000' }]);
    const block = sealKeyBlock(header, buf('E8BC63E5479455E26577F715D587FE68'), keys);
    expect(block.slice(0, 48)).toBe(`D${String(block.length).padStart(4, '0')}B0TX00S0200KS1800604B120F9292800000PB080000`);
    const opened = openKeyBlock(block, keys);
    expect(opened.header.optionalBlocks).toEqual([...header.optionalBlocks, { id: 'PB', data: '0000' }]);
    expect(hex(opened.key)).toBe('E8BC63E5479455E26577F715D587FE68');
  });

  it('refuses a key that does not fit the header algorithm, padding that breaks the block size, and keys of the wrong version', async () => {
    const keysB = await keysFor('B', '00112233445566778899AABBCCDDEEFF');
    const keysD = await keysFor('D', '00112233445566778899AABBCCDDEEFF'.repeat(2));
    const header = headerOf('B0000P0TE00E0000');
    expectError(() => sealKeyBlock(header, Buffer.alloc(8, 1), keysB), 'INVALID_ARGUMENT', [], /key length/);
    expectError(() => sealKeyBlock(header, Buffer.alloc(32, 1), keysB), 'INVALID_ARGUMENT', [], /key length/);
    expectError(() => sealKeyBlock({ ...header, algorithm: 'A' }, Buffer.alloc(20, 1), keysB), 'INVALID_ARGUMENT', [], /key length/);
    expectError(() => sealKeyBlock(header, Buffer.alloc(16, 1), keysB, Buffer.alloc(5)), 'INVALID_ARGUMENT', [], /whole 8-byte blocks/);
    expectError(() => sealKeyBlock(header, Buffer.alloc(16, 1), keysD), 'INCOMPATIBLE_KEY');
    expectError(() => sealKeyBlock({ ...header, version: 'C' as 'B' }, Buffer.alloc(16, 1), keysB), 'INVALID_ARGUMENT', [], /deprecated/);
    expectError(() => sealKeyBlock({ ...header, exportability: 'X' as 'E' }, Buffer.alloc(16, 1), keysB), 'INVALID_ARGUMENT', [], /exportability/);
  });

  it('refuses a block that would be longer than 9999 characters', async () => {
    const keys = await keysFor('D', '00112233445566778899AABBCCDDEEFF');
    const header = headerOf('D0000P0AE00E0000', [{ id: '10', data: 'X'.repeat(9900) }]);
    expectError(() => sealKeyBlock(header, Buffer.alloc(16, 1), keys), 'INVALID_ARGUMENT', [], /9999/);
  });
});

describe('refusing key blocks that do not verify', () => {
  const v = blocks[0];
  const vD = blocks[3];

  /** Replaces one character, keeping the block well formed. */
  const withChar = (block: string, at: number, to: string): string => block.slice(0, at) + to + block.slice(at + 1);
  const flipHex = (c: string): string => (c === '0' ? '1' : '0');

  it('answers DECRYPTION_FAILED, without echoing the block or key, for a changed header, key field or MAC', async () => {
    for (const vector of [v, vD]) {
      const keys = await keysFor(vector.block[0] as 'B' | 'D', vector.kbpk);
      const block = vector.block;
      const tampered = [
        withChar(block, 8, 'D'), // mode of use E -> D
        withChar(block, 11, 'N'), // exportability E -> N
        withChar(block, 9, '1'), // key version number
        withChar(block, 16, flipHex(block[16]!)), // first encrypted byte
        withChar(block, block.length - 40, flipHex(block[block.length - 40]!)), // last encrypted block
        withChar(block, block.length - 1, flipHex(block[block.length - 1]!)), // MAC
      ];
      for (const t of tampered) {
        expectError(() => openKeyBlock(t, keys), 'DECRYPTION_FAILED', [t.slice(16), vector.key], /does not verify under this KBPK/);
      }
    }
  });

  it('answers DECRYPTION_FAILED under another KBPK', async () => {
    const wrong = await keysFor('B', 'EFE0853B256B583D868F251CE99EA1D9');
    expectError(() => openKeyBlock(v.block, wrong), 'DECRYPTION_FAILED', [v.key]);
    const wrongD = await keysFor('D', '41'.repeat(32));
    expectError(() => openKeyBlock(vD.block, wrongD), 'DECRYPTION_FAILED', [vD.key]);
  });

  it('gives the same answer for an authentic block whose key length field is bad (no padding oracle)', async () => {
    const keys = await keysFor('D', vD.kbpk);
    const header = 'D0112P0AE00E0000';
    // Authentic blocks (the MAC is right) with impossible key lengths, built with the independent primitives.
    for (const bits of [0, 7, 0x0100, 0xffff]) {
      const field = Buffer.alloc(32, 0x5a);
      field.writeUInt16BE(bits, 0);
      const mac = independentCmac('D', keys.authentication, Buffer.concat([Buffer.from(header, 'ascii'), field]));
      const block = header + hex(independentCbc('D', 'encrypt', keys.encryption, mac, field)) + hex(mac);
      expectError(() => openKeyBlock(block, keys), 'DECRYPTION_FAILED', [], /^the key block does not verify under this KBPK$/);
    }
  });

  it('answers INVALID_ARGUMENT for malformed payloads, INCOMPATIBLE_KEY for keys of the wrong version', async () => {
    const keys = await keysFor('B', v.kbpk);
    expectError(() => openKeyBlock(v.block.slice(0, 16) + v.block.slice(16).toLowerCase(), keys), 'INVALID_ARGUMENT', [v.block.slice(16)], /upper-case hex/);
    // A key field that is not whole blocks (length field kept consistent).
    const short = `B0072${v.block.slice(5, 16)}${v.block.slice(24)}`;
    expectError(() => openKeyBlock(short, keys), 'INVALID_ARGUMENT', [], /whole 8-byte blocks/);
    const onlyMac = `B0032${v.block.slice(5, 16)}${v.block.slice(-16)}`;
    expectError(() => openKeyBlock(onlyMac, keys), 'INVALID_ARGUMENT');
    const keysD = await keysFor('D', vD.kbpk);
    expectError(() => openKeyBlock(v.block, keysD), 'INCOMPATIBLE_KEY');
    expectError(() => openKeyBlock(vD.block, { encryption: Buffer.alloc(20), authentication: Buffer.alloc(20) }), 'INCOMPATIBLE_KEY');
    expectError(() => openKeyBlock(v.block, { encryption: keys.encryption, authentication: Buffer.alloc(24) }), 'INCOMPATIBLE_KEY');
  });
});
