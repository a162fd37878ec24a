/**
 * What the REST and gRPC payment tests share: the published vectors (FIELD-NOTES section 5), the known
 * keys they plant in the backend through KeyService.importKey (the one way in for clear material: every
 * other key comes over the wire), and an independent check of every answer with node:crypto (TDES and
 * AES ECB, ISO 9564 PIN blocks, KCVs), never with the service's own code.
 */
import type { KeyType, KeyPurpose, KeyUsage, ModeOfUse } from '../../src/keys/types.js';
import type { KeyService } from '../../src/operations/keyService.js';
import { cmacWithKey } from '../../src/payment/crypto/cmac.js';
import { deriveKeyBlockKeys, openKeyBlock, sealKeyBlock } from '../../src/payment/tr31/keyBlock.js';
import type { Tr31Header } from '../../src/payment/tr31/header.js';
import { freshName, restTargets, type RestTarget } from './rest/restFixture.js';
import { nodeEcb, nodeKcv } from '../../src/conformance/reference/nodeBlockCiphers.js';

/**
 * The backends the payment e2e tests run on: the software backend and SoftHSM through PKCS#11. The
 * tests are backend-neutral (known keys are planted through KeyService.importKey); a new adapter joins
 * by adding its target to restTargets.
 */
export const paymentTargets: readonly RestTarget[] = restTargets;

const hex = (text: string): Buffer => Buffer.from(text, 'hex');

export const vectors = {
  /** X9.24-1:2009 TDES DUKPT: BDK, KSN, and a format 0 block from that terminal. */
  tdesDukpt: {
    bdk: '0123456789ABCDEFFEDCBA9876543210',
    ksn: 'FFFF9876543210E00001',
    pinBlock: '1B9C1845EB993A7A',
    pan: '4012345678909',
    clearBlock: '041274EDCBA9876F',
  },
  /** X9.24-3:2017 AES DUKPT, AES-128 BDK, counter 1, format 4. */
  aesDukpt: {
    bdk: 'FEDCBA9876543210F1F1F1F1F1F1F1F1',
    ksn: '123456789012345600000001',
    pinBlock: 'A912150391AB65A67E52883D81CE2D15',
    pan: '4111111111111111',
  },
  /** ep2 8.4: a format 4 block under an AES key. */
  format4: {
    key: 'C1D0F8FB4958670DBA40AB1F3752EF0D',
    pinBlock: 'CC17F65586BFD0953010226C4FC5B3CA',
    pan: '432198765432109870',
    clearPinField: '441234AAAAAAAAAA146C6601F4A8035C',
  },
  /** A TDES key with a published KCV. */
  tdesKcv: { key: '0123456789ABCDEFFEDCBA9876543210', kcv: '08D7B4' },
  /** TR-31:2018 A.7.2.2 (version B) and A.7.4 (version D): both carry the same key. */
  tr31: {
    kbpkB: 'DD7515F2BFC17F85CE48F3CA25CB21F6',
    blockB: 'B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E',
    kbpkD: '88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6',
    blockD: 'D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34',
    key: '3F419E1CB7079442AA37474C2EFBF8B8',
    kcvB: '57C409',
  },
} as const;

// --- independent crypto (node:crypto only) ------------------------------------------------------------

export const tdesEncrypt = (key: string, data: Buffer): Buffer => nodeEcb('tdes', 'encrypt', hex(key), data);
export const tdesDecrypt = (key: string, data: Buffer): Buffer => nodeEcb('tdes', 'decrypt', hex(key), data);
export const aesEncrypt = (key: string, data: Buffer): Buffer => nodeEcb('aes', 'encrypt', hex(key), data);
export const aesDecrypt = (key: string, data: Buffer): Buffer => nodeEcb('aes', 'decrypt', hex(key), data);

/** TDES KCV: the first 3 bytes of ECB(key, 8 zero bytes). */
export const tdesKcv = (key: string): string => nodeKcv('tdes', hex(key));
/** AES KCV: the first 3 bytes of CMAC(key, 16 zero bytes). */
export const aesKcv = (key: string): string => nodeKcv('aes', hex(key));

/** ISO 9564-1 format 0, clear: 0 N PIN F..F XOR 0000 + the 12 rightmost PAN digits without the check digit. */
export function format0(pin: string, pan: string): Buffer {
  const pinField = hex(`0${pin.length}${pin}`.padEnd(16, 'F'));
  const panField = hex(`0000${pan.slice(-13, -1)}`);
  return Buffer.from(pinField.map((b, i) => b ^ panField[i]!));
}

/** The format 4 PAN field: M (PAN length - 12), the PAN left-padded to 12 digits, zero fill. */
function format4PanField(pan: string): Buffer {
  return hex(`${pan.length - 12}${pan.padStart(12, '0')}`.padEnd(32, '0'));
}

/** ISO 9564-1 format 4, deciphered: the clear PIN field (4 N PIN A..A + 16 random nibbles). */
export function decipherFormat4(key: string, block: string, pan: string): string {
  const intermediate = aesDecrypt(key, hex(block));
  const panField = format4PanField(pan);
  return aesDecrypt(key, Buffer.from(intermediate.map((b, i) => b ^ panField[i]!))).toString('hex').toUpperCase();
}

/** The PIN a clear format 0 block holds, given its PAN. */
export function pinOfFormat0(clear: Buffer, pan: string): string {
  const panField = hex(`0000${pan.slice(-13, -1)}`);
  const pinField = Buffer.from(clear.map((b, i) => b ^ panField[i]!)).toString('hex').toUpperCase();
  const n = Number.parseInt(pinField[1]!, 16);
  return pinField.slice(2, 2 + n);
}

/** ISO 9797-1 MAC algorithm 3 (retail MAC), padding method 1, with single DES as TDES-EDE with K1=K2. */
export function retailMac(key: string, data: Buffer): Buffer {
  const k1 = key.slice(0, 16);
  const k2 = key.slice(16, 32);
  const padded = Buffer.concat([data, Buffer.alloc(data.length === 0 ? 8 : (8 - (data.length % 8)) % 8)]);
  let h: Buffer = Buffer.alloc(8);
  for (let i = 0; i < padded.length; i += 8) {
    h = tdesEncrypt(k1 + k1, Buffer.from(padded.subarray(i, i + 8).map((b, j) => b ^ h[j]!)));
  }
  return tdesEncrypt(k1 + k1, tdesDecrypt(k2 + k2, h));
}

// --- TR-31 blocks the tests build or open under a KBPK they know --------------------------------------------
// These use the project's key block code (there is no TR-31 in node:crypto); the published vectors check it.

async function blockKeys(version: 'B' | 'D', kbpk: string) {
  const key = hex(kbpk);
  return deriveKeyBlockKeys(version, key.length, async (input) => cmacWithKey(version === 'B' ? 'tdes' : 'aes', key, input));
}

export async function sealBlock(header: Omit<Tr31Header, 'optionalBlocks'>, key: string, kbpk: string): Promise<string> {
  return sealKeyBlock({ ...header, optionalBlocks: [] }, hex(key), await blockKeys(header.version, kbpk));
}

export async function openBlock(block: string, kbpk: string): Promise<{ header: Tr31Header; key: string }> {
  const opened = openKeyBlock(block, await blockKeys(block[0] as 'B' | 'D', kbpk));
  return { header: opened.header, key: opened.key.toString('hex').toUpperCase() };
}

// --- the keys a suite plants ------------------------------------------------------------------------------------

export interface PlantedKeys {
  /** TDES_2KEY PIN key (zone key) with the published KCV 08D7B4. */
  zpkTdes: string;
  /** AES_128 PIN key: the ep2 format 4 key. */
  zpkAes: string;
  /** A second TDES PIN key, for translations between two TDES zones. */
  zpkTdes2: string;
  /** The TDES PIN key kept for OTP entry. */
  otpTdes: string;
  bdkTdes: string;
  bdkAes: string;
  kbpkB: string;
  kbpkD: string;
  /** TDES_2KEY MAC key of usage M3 (the retail MAC), of its own value (macTdesMaterial). */
  macTdes: string;
}

/** The TDES zone PIN keys' values (the published 08D7B4 key is the X9.24 BDK, so it cannot be a PIN key too). */
export const zpkTdesMaterial = '3B5E6A1F0D2C4B7A8C9D0E1F2A3B4C5D';
export const zpkTdes2Material = '89ABCDEF0123456776543210FEDCBA98';
/** The PIN key kept for OTP entry (payment.otpIncomingKeys): never a zone key, never a translation target. */
export const otpTdesMaterial = '6E1F2A3B4C5D7E8F9A0B1C2D3E4F5A6B';
/** The MAC key's value: never a PIN key's (one value held as a PIN key and a MAC key would make the MAC a TDES-ECB oracle under the PIN key). */
export const macTdesMaterial = '5D2E8F1A3B4C6D7E0F1E2D3C4B5A6978';

/** Imports the known keys under fresh names; everything else the tests do goes over the wire. */
export async function plantKeys(service: KeyService): Promise<PlantedKeys> {
  const plant = async (
    stem: string,
    type: KeyType,
    purpose: KeyPurpose,
    material: string,
    extra: { exportable?: boolean; modeOfUse?: ModeOfUse; keyUsage?: KeyUsage } = {},
  ) => {
    const name = freshName(stem);
    await service.paymentKeys.importKey({ name, type, purpose, exportable: extra.exportable ?? false, ...extra }, hex(material));
    return name;
  };
  return {
    zpkTdes: await plant('zpk-t', 'TDES_2KEY', 'pin', zpkTdesMaterial),
    zpkAes: await plant('zpk-a', 'AES_128', 'pin', vectors.format4.key),
    zpkTdes2: await plant('zpk-t2', 'TDES_2KEY', 'pin', zpkTdes2Material),
    otpTdes: await plant('otp-t', 'TDES_2KEY', 'pin', otpTdesMaterial),
    bdkTdes: await plant('bdk-t', 'TDES_2KEY', 'bdk', vectors.tdesDukpt.bdk),
    bdkAes: await plant('bdk-a', 'AES_128', 'bdk', vectors.aesDukpt.bdk),
    kbpkB: await plant('kbpk-b', 'TDES_2KEY', 'kbpk', vectors.tr31.kbpkB),
    kbpkD: await plant('kbpk-d', 'AES_256', 'kbpk', vectors.tr31.kbpkD),
    macTdes: await plant('mac-t', 'TDES_2KEY', 'mac', macTdesMaterial, { keyUsage: 'M3' }),
  };
}

/** Strings that must never appear in a log line: every PIN block, PAN and key block the suites send. */
export const neverLogged = [
  vectors.tdesDukpt.pinBlock,
  vectors.tdesDukpt.pan,
  vectors.aesDukpt.pinBlock,
  vectors.aesDukpt.pan,
  vectors.format4.pinBlock,
  vectors.format4.pan,
  vectors.tr31.blockB,
  vectors.tr31.blockD,
  // Parts of the key blocks, in case a message quoted a slice of one.
  vectors.tr31.blockB.slice(16, 48),
  vectors.tr31.blockD.slice(16, 48),
];
