/**
 * The payment services (PIN translation, DUKPT, the OTP flow, TR-31, payment MACs) through the core's
 * public methods, on a real backend: the same suite runs on the software backend and on SoftHSM. Every
 * outgoing block, MAC and key block is checked with an independent computation in this file (node:crypto
 * ECB, the published vectors), never only with the service's own inverse.
 *
 * Known keys are planted with KeyService.importKey (the path a TR-31 import takes), since a created key's
 * value is unknowable by design.
 */
import { createCipheriv, generateKeyPairSync, randomBytes } from 'node:crypto';
import { compactDecrypt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backend/port.js';
import { JoseService } from '../../src/jose/joseService.js';
import type { KeyPurpose, KeyType, KeyUsage, ModeOfUse } from '../../src/keys/types.js';
import { KeyService } from '../../src/operations/keyService.js';
import { createPaymentServices, type PaymentServices } from '../../src/payment/index.js';
import { decodePinBlock, encodePinBlock } from '../../src/payment/pin/pinBlock.js';
import { format4PanField } from '../../src/payment/pin/pan.js';
import { cmacWithKey } from '../../src/payment/crypto/cmac.js';
import type { Tr31OptionalBlock } from '../../src/payment/tr31/header.js';
import { deriveKeyBlockKeys, openKeyBlock, sealKeyBlock } from '../../src/payment/tr31/keyBlock.js';
import { ParticipantRegistry } from '../../src/fspiop/participants.js';
import { pino } from 'pino';
import { CLEAR_PIN_BLOCK, KSN_PREFIX, initialSequence, rolloverSequence } from './dukpt/tdesVectors.js';
import { nodeCmacOfZeros, nodeEcb, nodeKcv } from '../../src/conformance/reference/nodeBlockCiphers.js';

export interface PaymentTarget {
  open(): Promise<Backend>;
  cleanup(): Promise<void>;
}

const hex = (s: string) => Buffer.from(s, 'hex');
const limits = { maxDataBytes: 64 * 1024, maxRandomBytes: 1024 };

/** Independent ECB with node:crypto (src/conformance/reference/nodeBlockCiphers.ts). */
const ecb = (direction: 'encrypt' | 'decrypt', key: Buffer, data: Buffer, family: 'tdes' | 'aes') => nodeEcb(family, direction, key, data);

const xor = (a: Buffer, b: Buffer) => Buffer.from(a.map((x, i) => x ^ b[i]!));

/** Format 4 with node:crypto: C = E(E(PIN field) XOR PAN field); and back. */
function format4Encrypt(key: Buffer, pinField: Buffer, pan: string): Buffer {
  return ecb('encrypt', key, xor(ecb('encrypt', key, pinField, 'aes'), format4PanField(pan)), 'aes');
}
function format4DecryptPin(key: Buffer, block: Buffer, pan: string): string {
  const field = ecb('decrypt', key, xor(ecb('decrypt', key, block, 'aes'), format4PanField(pan)), 'aes');
  const n = field[0]! & 0x0f;
  expect(field[0]! >> 4).toBe(4);
  return field.subarray(1).toString('hex').slice(0, n);
}
const aesKcv = (key: Buffer): string => nodeKcv('aes', key);
const tdesKcv = (key: Buffer): string => nodeKcv('tdes', key);

function format4PinField(pin: string): Buffer {
  return Buffer.concat([hex(`4${pin.length.toString(16)}${pin}`.padEnd(16, 'A')), randomBytes(8)]);
}

// Known keys (field notes §5 vectors, and fresh random ones the test keeps).
const ZPK_TDES = Buffer.from('0B2C3D4E5F6A7B8C8C7B6A5F4E3D2C0B', 'hex');
const ZPK_TDES_2 = Buffer.from('A1B2C3D4E5F60718293A4B5C6D7E8F91', 'hex');
/** The PIN pad key kept for OTP entry (payment.otpIncomingKeys): never a zone key. */
const OTP_TDES = Buffer.from('6E1F2A3B4C5D7E8F9A0B1C2D3E4F5A6B', 'hex');
const ZPK_AES = hex('C1D0F8FB4958670DBA40AB1F3752EF0D'); // ep2 format 4 vector key
const ZPK_AES_2 = hex('00112233445566778899AABBCCDDEEFF');
const BDK_TDES = hex('0123456789ABCDEFFEDCBA9876543210');
const BDK_AES = hex('FEDCBA9876543210F1F1F1F1F1F1F1F1');
const KBPK_B = hex('DD7515F2BFC17F85CE48F3CA25CB21F6');
const KBPK_D = hex('88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6');
/** MAC keys of their own: one key value is never held as two kinds (a PIN key and a MAC key, M1 and M3). */
const MAC_TDES_1 = hex('7A1C3E5B6D4F2A0E9B8C7D6E5F4A3B2C');
const MAC_TDES_3 = hex('5D2E8F1A3B4C6D7E0F1E2D3C4B5A6978');

/** Sets DES odd parity (what importKey stores); DES ignores these bits, so encryption is unchanged. */
function withParity(key: Buffer): Buffer {
  return Buffer.from(key.map((b) => { const h = b & 0xfe; let n = 0; for (let x = h; x; x >>= 1) n += x & 1; return h | (n % 2 === 0 ? 1 : 0); }));
}

export function describePaymentServices(label: string, makeTarget: () => Promise<PaymentTarget>): void {
  describe(`payment services: ${label}`, () => {
    let target: PaymentTarget;
    let backend: Backend;
    let keys: KeyService;
    let jose: JoseService;
    let payment: PaymentServices;
    let participants: ParticipantRegistry;
    const run = Date.now().toString(36);
    const n = (stem: string) => `pay-${stem}-${run}`;
    const plant = (stem: string, type: KeyType, purpose: KeyPurpose, material: Buffer, extra: { exportable?: boolean; keyUsage?: KeyUsage } = {}) =>
      keys.paymentKeys.importKey({ name: n(stem), type, purpose, exportable: extra.exportable ?? false, ...(extra.keyUsage ? { keyUsage: extra.keyUsage } : {}) }, Buffer.from(material));
    /** A TR-31 block of a known key under a known KBPK (this project's sealing; the published vectors check it). */
    const seal = async (
      kbpk: Buffer,
      fields: { keyUsage: string; algorithm: 'T' | 'A'; modeOfUse: ModeOfUse; exportability?: 'E' | 'N' | 'S'; optionalBlocks?: Tr31OptionalBlock[] },
      key: Buffer,
    ) => {
      const version = kbpk.length === 16 ? 'B' : 'D';
      const blockKeys = await deriveKeyBlockKeys(version, kbpk.length, async (input) => cmacWithKey(version === 'B' ? 'tdes' : 'aes', kbpk, input));
      const header = { version, keyVersionNumber: '00', exportability: 'N', optionalBlocks: [], ...fields } as const;
      return sealKeyBlock(header, key, blockKeys);
    };
    const openUnder = async (kbpk: Buffer, block: string) => {
      const version = block[0] as 'B' | 'D';
      return openKeyBlock(block, await deriveKeyBlockKeys(version, kbpk.length, async (input) => cmacWithKey(version === 'B' ? 'tdes' : 'aes', kbpk, input)));
    };

    beforeAll(async () => {
      target = await makeTarget();
      backend = await target.open();
      keys = new KeyService(backend, { limits, metadataCacheTtlMs: 1000 });
      jose = new JoseService(keys);
      participants = await ParticipantRegistry.open({ logger: pino({ level: 'silent' }), participants: [], rescanIntervalMs: 0 });
      payment = createPaymentServices(keys, jose, { participants, otpIncomingKeys: [n('otp-t'), n('bdk-t')] });
      await plant('zpk-t', 'TDES_2KEY', 'pin', ZPK_TDES);
      await plant('zpk-t2', 'TDES_2KEY', 'pin', ZPK_TDES_2);
      await plant('otp-t', 'TDES_2KEY', 'pin', OTP_TDES);
      await plant('zpk-a', 'AES_128', 'pin', ZPK_AES);
      await plant('zpk-a2', 'AES_128', 'pin', ZPK_AES_2);
      await plant('bdk-t', 'TDES_2KEY', 'bdk', BDK_TDES);
      await plant('bdk-a', 'AES_128', 'bdk', BDK_AES);
      await plant('kbpk-b', 'TDES_2KEY', 'kbpk', KBPK_B);
      await plant('kbpk-d', 'AES_256', 'kbpk', KBPK_D);
      await plant('mac-t1', 'TDES_2KEY', 'mac', MAC_TDES_1, { keyUsage: 'M1' });
      await plant('mac-t3', 'TDES_2KEY', 'mac', MAC_TDES_3, { keyUsage: 'M3' });
    }, 60_000);
    afterAll(async () => {
      await participants?.close();
      await backend?.close();
      await target?.cleanup();
    });

    describe('key check values', () => {
      it('TDES: ECB of zeros (X9.24 BDK -> 08D7B4); AES: CMAC of zeros, computed independently', async () => {
        expect(await keys.keyCheckValue(await keys.getKey(n('bdk-t')))).toBe('08D7B4');
        expect(await keys.keyCheckValue(await keys.getKey(n('zpk-a')))).toBe(aesKcv(ZPK_AES));
      });
    });

    describe('PIN translation', () => {
      it('format 4 vector (ep2): the AES block deciphers to 1234 and leaves as format 0 under a TDES key', async () => {
        const pan = '432198765432109870';
        const r = await payment.pins.translate({
          incoming: { keyName: n('zpk-a'), format: 'ISO_FORMAT_4', pan },
          outgoing: { keyName: n('zpk-t'), format: 'ISO_FORMAT_0' },
          pinBlock: hex('CC17F65586BFD0953010226C4FC5B3CA'),
        });
        const clear = ecb('decrypt', ZPK_TDES, r.pinBlock, 'tdes');
        expect(decodePinBlock(clear, { format: 0, pan }).toString()).toBe('1234');
        expect(r.incoming).toMatchObject({ keyName: n('zpk-a'), keyVersion: 1 });
        expect(r.outgoing.keyCheckValue).toBe(tdesKcv(ZPK_TDES));
      });

      it('TDES DUKPT vector (X9.24-1): KSN FFFF9876543210E00001 block 1B9C1845EB993A7A -> format 0 041274EDCBA9876F', async () => {
        const r = await payment.pins.translate({
          incoming: { keyName: n('bdk-t'), format: 'ISO_FORMAT_0', pan: '4012345678909', dukpt: { ksn: hex('FFFF9876543210E00001') } },
          outgoing: { keyName: n('zpk-t'), format: 'ISO_FORMAT_0' },
          pinBlock: hex('1B9C1845EB993A7A'),
        });
        expect(ecb('decrypt', ZPK_TDES, r.pinBlock, 'tdes').toString('hex').toUpperCase()).toBe('041274EDCBA9876F');
        expect(r.incoming.keyCheckValue).toBe('08D7B4');
      });

      for (const [what, sequence] of [['the first 21 KSNs (X9.24-1 A.4.2)', initialSequence], ['the counter rollover past 2^20 (A.4.3)', rolloverSequence]] as const) {
        it(`TDES DUKPT over ${what}: each published block translates to the same clear format 0 block`, async () => {
          for (const [suffix, , block] of sequence) {
            const r = await payment.pins.translate({
              incoming: { keyName: n('bdk-t'), format: 'ISO_FORMAT_0', pan: '4012345678909', dukpt: { ksn: hex(KSN_PREFIX + suffix) } },
              outgoing: { keyName: n('zpk-t'), format: 'ISO_FORMAT_0' },
              pinBlock: hex(block),
            });
            expect(ecb('decrypt', ZPK_TDES, r.pinBlock, 'tdes').equals(CLEAR_PIN_BLOCK), suffix).toBe(true);
          }
        });
      }

      it('AES DUKPT vector (X9.24-3): counter 1, AES-128 working key, format 4 block -> PIN 1234', async () => {
        const pan = '4111111111111111';
        const r = await payment.pins.translate({
          incoming: { keyName: n('bdk-a'), format: 'ISO_FORMAT_4', pan, dukpt: { ksn: hex('123456789012345600000001'), workingKey: 'AES_128' } },
          outgoing: { keyName: n('zpk-a2'), format: 'ISO_FORMAT_4' },
          pinBlock: hex('A912150391AB65A67E52883D81CE2D15'),
        });
        expect(format4DecryptPin(ZPK_AES_2, r.pinBlock, pan)).toBe('1234');
      });

      const formats = ['ISO_FORMAT_0', 'ISO_FORMAT_1', 'ISO_FORMAT_3', 'ISO_FORMAT_4'] as const;
      const keyFor = (f: string) => (f === 'ISO_FORMAT_4' ? { name: n('zpk-a'), key: ZPK_AES, out: n('zpk-a2'), outKey: ZPK_AES_2 } : { name: n('zpk-t'), key: ZPK_TDES, out: n('zpk-t2'), outKey: ZPK_TDES_2 });
      const number = (f: string) => Number(f.slice(-1)) as 0 | 1 | 3 | 4;
      const encipher = (f: string, pin: string, pan: string) => {
        const { key } = keyFor(f);
        if (f === 'ISO_FORMAT_4') return format4Encrypt(key, format4PinField(pin), pan);
        const k = number(f);
        return ecb('encrypt', key, encodePinBlock(Buffer.from(pin), k === 1 ? { format: 1 } : { format: k as 0 | 3, pan }), 'tdes');
      };
      const decipher = (f: string, block: Buffer, pan: string) => {
        const { outKey } = keyFor(f);
        if (f === 'ISO_FORMAT_4') return format4DecryptPin(outKey, block, pan);
        const k = number(f);
        return decodePinBlock(ecb('decrypt', outKey, block, 'tdes'), k === 1 ? { format: 1 } : { format: k as 0 | 3, pan }).toString();
      };
      for (const from of formats) {
        for (const to of formats) {
          const allowed = !(from !== 'ISO_FORMAT_1' && to === 'ISO_FORMAT_1');
          it(`${from} -> ${to}: ${allowed ? 'translated, checked with node:crypto' : 'refused (a PAN-bound PIN never loses its PAN)'}`, async () => {
            for (const [pin, pan] of [['1234', '5555555551234567'], ['987654321098', '401234567890'], ['5678', '12345678']] as const) {
              const pinBlock = encipher(from, pin, pan);
              const request = {
                incoming: { keyName: keyFor(from).name, format: from, ...(from === 'ISO_FORMAT_1' ? {} : { pan }) },
                outgoing: { keyName: keyFor(to).out, format: to, ...(to === 'ISO_FORMAT_1' ? {} : { pan }) },
                pinBlock,
              };
              if (!allowed) {
                await expect(payment.pins.translate(request)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
                continue;
              }
              const r = await payment.pins.translate(request);
              expect(r.pinBlock.length).toBe(to === 'ISO_FORMAT_4' ? 16 : 8);
              expect(decipher(to, r.pinBlock, pan)).toBe(pin);
            }
          });
        }
      }

      it('refuses what the rules forbid, with clear errors that never echo the block or PAN', async () => {
        const pan = '5555555551234567';
        const block = encipher('ISO_FORMAT_0', '1234', pan);
        const base = { incoming: { keyName: n('zpk-t'), format: 'ISO_FORMAT_0', pan }, outgoing: { keyName: n('zpk-t2'), format: 'ISO_FORMAT_3' }, pinBlock: block };
        const cases: Array<[string, object, string]> = [
          ['format 2', { ...base, outgoing: { ...base.outgoing, format: 'ISO_FORMAT_2' } }, 'INVALID_ARGUMENT'],
          ['unknown format', { ...base, outgoing: { ...base.outgoing, format: 'ISO_FORMAT_9' } }, 'INVALID_ARGUMENT'],
          ['missing PAN', { ...base, incoming: { keyName: n('zpk-t'), format: 'ISO_FORMAT_0' } }, 'INVALID_ARGUMENT'],
          ['PAN change', { ...base, outgoing: { ...base.outgoing, pan: '4111111111111111' } }, 'INVALID_ARGUMENT'],
          ['bad PAN', { ...base, incoming: { ...base.incoming, pan: '12345' } }, 'INVALID_ARGUMENT'],
          ['short block', { ...base, pinBlock: block.subarray(0, 7) }, 'INVALID_ARGUMENT'],
          ['format 4 with a TDES key', { ...base, outgoing: { keyName: n('zpk-t2'), format: 'ISO_FORMAT_4' } }, 'INCOMPATIBLE_KEY'],
          ['a MAC key as PIN key', { ...base, outgoing: { ...base.outgoing, keyName: n('mac-t1') } }, 'INCOMPATIBLE_KEY'],
          ['a BDK without dukpt', { ...base, incoming: { ...base.incoming, keyName: n('bdk-t') } }, 'INCOMPATIBLE_KEY'],
          ['a PIN key with dukpt', { ...base, incoming: { ...base.incoming, dukpt: { ksn: hex('FFFF9876543210E00001') } } }, 'INCOMPATIBLE_KEY'],
          ['unknown key', { ...base, outgoing: { ...base.outgoing, keyName: n('nope') } }, 'KEY_NOT_FOUND'],
          ['the wrong key (garbage block)', { ...base, incoming: { ...base.incoming, keyName: n('zpk-t2') } }, 'INVALID_ARGUMENT'],
        ];
        for (const [what, request, code] of cases) {
          const error = await payment.pins.translate(request as never).then(() => undefined, (e: unknown) => e as { code: string; message: string });
          expect(error, what).toMatchObject({ code });
          expect(error!.message).not.toContain(pan);
          expect(error!.message.toUpperCase()).not.toContain(block.toString('hex').toUpperCase());
        }
      });

      it('refuses DUKPT KSNs that break X9.24 rules', async () => {
        const base = { outgoing: { keyName: n('zpk-t'), format: 'ISO_FORMAT_0' }, pinBlock: hex('1B9C1845EB993A7A') };
        for (const ksn of ['FFFF9876543210E00000', 'FFFF9876543210FFFFFF', 'FFFF9876543210E000', 'FFFF9876543210E0000100']) {
          await expect(
            payment.pins.translate({ ...base, incoming: { keyName: n('bdk-t'), format: 'ISO_FORMAT_0', pan: '4012345678909', dukpt: { ksn: hex(ksn) } } }),
            ksn,
          ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        }
      });
    });

    describe('OTP to JWE', () => {
      it('a DUKPT PIN block becomes a JWE for a participant key; the payload has the OTP and the references', async () => {
        const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
        await participants.addKey('switch', publicKey.export({ format: 'pem', type: 'spki' }).toString(), 'enc');
        const r = await payment.otp.toJwe({
          incoming: { keyName: n('bdk-t'), format: 'ISO_FORMAT_0', pan: '4012345678909', dukpt: { ksn: hex('FFFF9876543210E00001') } },
          pinBlock: hex('1B9C1845EB993A7A'),
          recipient: { participant: 'switch' },
          references: { transactionRequestId: 'b51ec534-ee48-4575-b6a9-ead2955b8069', terminalId: 'ATM0042' },
        });
        const { plaintext, protectedHeader } = await compactDecrypt(r.jwe, privateKey);
        expect(protectedHeader).toMatchObject({ alg: 'RSA-OAEP-256', enc: 'A256GCM' });
        expect(JSON.parse(Buffer.from(plaintext).toString())).toEqual({ otp: '1234', transactionRequestId: 'b51ec534-ee48-4575-b6a9-ead2955b8069', terminalId: 'ATM0042' });
        expect(r.incoming.keyCheckValue).toBe('08D7B4');
      });

      it('to a backend EC key with ECDH-ES; refuses bad references, a caller-supplied JWK, and a key not configured for OTPs', async () => {
        const agree = n('otp-ec');
        await keys.createKey({ name: agree, type: 'EC_P256', purpose: 'agree' });
        const pan = '5555555551234567';
        const pinBlock = ecb('encrypt', OTP_TDES, encodePinBlock(Buffer.from('567890'), { format: 3, pan }), 'tdes');
        const incoming = { keyName: n('otp-t'), format: 'ISO_FORMAT_3', pan };
        const r = await payment.otp.toJwe({ incoming, pinBlock, recipient: { key: agree } });
        const opened = await jose.decryptJwe({ jwe: r.jwe });
        expect(opened.alg).toBe('ECDH-ES');
        expect(JSON.parse(opened.plaintext.toString())).toEqual({ otp: '567890' });
        for (const references of [{ otp: 'x' }, { 'bad name': 'x' }, { a: 1 }, []]) {
          await expect(payment.otp.toJwe({ incoming, pinBlock, recipient: { key: agree }, references })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        }
        const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
        const jwk = { jwk: publicKey.export({ format: 'jwk' }) } as never;
        await expect(payment.otp.toJwe({ incoming, pinBlock, recipient: jwk })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        const other = ecb('encrypt', ZPK_TDES_2, encodePinBlock(Buffer.from('567890'), { format: 3, pan }), 'tdes');
        await expect(payment.otp.toJwe({ incoming: { ...incoming, keyName: n('zpk-t2') }, pinBlock: other, recipient: { key: agree } })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
      });

      it('no PIN is translated into an OTP key (it would come out of the OTP flow in clear)', async () => {
        const pan = '5555555551234567';
        const customer = ecb('encrypt', ZPK_TDES_2, encodePinBlock(Buffer.from('9876'), { format: 0, pan }), 'tdes');
        await expect(
          payment.pins.translate({ incoming: { keyName: n('zpk-t2'), format: 'ISO_FORMAT_0', pan }, outgoing: { keyName: n('otp-t'), format: 'ISO_FORMAT_0' }, pinBlock: customer }),
        ).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
      });

      it('an entry name:KCV pins the OTP key to one value: another value under that name is refused', async () => {
        const agree = n('otp-ec2');
        await keys.createKey({ name: agree, type: 'EC_P256', purpose: 'agree' });
        const pan = '5555555551234567';
        const pinBlock = ecb('encrypt', OTP_TDES, encodePinBlock(Buffer.from('2468'), { format: 0, pan }), 'tdes');
        const request = { incoming: { keyName: n('otp-t'), format: 'ISO_FORMAT_0', pan }, pinBlock, recipient: { key: agree } };
        const kcv = tdesKcv(OTP_TDES);
        const pinned = createPaymentServices(keys, jose, { otpIncomingKeys: [`${n('otp-t')}:${kcv.toLowerCase()}`] });
        expect(JSON.parse((await jose.decryptJwe({ jwe: (await pinned.otp.toJwe(request)).jwe })).plaintext.toString())).toEqual({ otp: '2468' });
        const wrong = createPaymentServices(keys, jose, { otpIncomingKeys: [`${n('otp-t')}:000000`] });
        await expect(wrong.otp.toJwe(request)).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
      });
    });

    describe('TR-31', () => {
      it('imports the TR-31:2018 A.7.2.2 version B block: KCV 57C409, a PIN key for encryption only', async () => {
        const r = await payment.keyExchange.importTr31({
          name: n('tr31-b'),
          keyBlock: 'B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E',
          kbpk: { keyName: n('kbpk-b') },
        });
        expect(r.keyCheckValue).toBe('57C409');
        expect(r.key).toMatchObject({ type: 'TDES_2KEY', purpose: 'pin', modeOfUse: 'E' });
        expect(r.kbpk.keyName).toBe(n('kbpk-b'));
        // Mode of use E: it may encipher (outgoing) but never decipher (incoming).
        const pan = '5555555551234567';
        const block = ecb('encrypt', ZPK_TDES, encodePinBlock(Buffer.from('1234'), { format: 0, pan }), 'tdes');
        await payment.pins.translate({ incoming: { keyName: n('zpk-t'), format: 'ISO_FORMAT_0', pan }, outgoing: { keyName: n('tr31-b'), format: 'ISO_FORMAT_0' }, pinBlock: block });
        await expect(
          payment.pins.translate({ incoming: { keyName: n('tr31-b'), format: 'ISO_FORMAT_0', pan }, outgoing: { keyName: n('zpk-t'), format: 'ISO_FORMAT_0' }, pinBlock: block }),
        ).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
      });

      it('imports the A.7.4 version D block under an AES-256 KBPK: an AES-128 PIN key of the same bytes (KCV by CMAC)', async () => {
        const r = await payment.keyExchange.importTr31({
          name: n('tr31-d'),
          keyBlock: 'D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34',
          kbpk: { keyName: n('kbpk-d') },
        });
        expect(r.keyCheckValue).toBe(aesKcv(hex('3F419E1CB7079442AA37474C2EFBF8B8')));
        expect(r.key).toMatchObject({ type: 'AES_128', purpose: 'pin', modeOfUse: 'E' });
      });

      it('refuses a tampered block, the wrong KBPK kind, and a name that is taken', async () => {
        const good = 'B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E';
        const tampered = `${good.slice(0, -1)}${good.endsWith('E') ? 'F' : 'E'}`;
        await expect(payment.keyExchange.importTr31({ name: n('t1'), keyBlock: tampered, kbpk: { keyName: n('kbpk-b') } })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
        await expect(payment.keyExchange.importTr31({ name: n('t2'), keyBlock: good, kbpk: { keyName: n('kbpk-d') } })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        await expect(payment.keyExchange.importTr31({ name: n('t3'), keyBlock: good, kbpk: { keyName: n('zpk-t') } })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        await expect(payment.keyExchange.importTr31({ name: n('zpk-t'), keyBlock: good, kbpk: { keyName: n('kbpk-b') } })).rejects.toMatchObject({ code: 'KEY_ALREADY_EXISTS' });
        await expect(keys.getKey(n('t1'))).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
      });

      it('exports an exportable key and imports it back elsewhere with the same KCV; refuses the rest', async () => {
        for (const [kbpk, type] of [['kbpk-b', 'TDES_2KEY'], ['kbpk-d', 'AES_128'], ['kbpk-d', 'TDES_2KEY']] as const) {
          const name = n(`exp-${kbpk}-${type}`);
          const created = await keys.createKey({ name, type, purpose: 'pin', exportable: true });
          expect(created.exportable).toBe(true);
          const out = await payment.keyExchange.exportTr31({ name, kbpk: { keyName: n(kbpk) } });
          expect(out.keyBlock[0]).toBe(kbpk === 'kbpk-b' ? 'B' : 'D');
          expect(out.keyBlock.slice(5, 7)).toBe('P0');
          const back = await payment.keyExchange.importTr31({ name: `${name}-copy`, keyBlock: out.keyBlock, kbpk: { keyName: n(kbpk) } });
          expect(back.keyCheckValue).toBe(out.keyCheckValue);
          expect(back.key.exportable ?? false).toBe(false); // exportability N by default
        }
        await expect(payment.keyExchange.exportTr31({ name: n('zpk-t'), kbpk: { keyName: n('kbpk-b') } })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        const aes = n('exp-aes-under-tdes');
        await keys.createKey({ name: aes, type: 'AES_128', purpose: 'pin', exportable: true });
        await expect(payment.keyExchange.exportTr31({ name: aes, kbpk: { keyName: n('kbpk-b') } })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        await expect(keys.createKey({ name: n('exp-sign'), type: 'EC_P256', exportable: true })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
      });
    });

    describe('payment MACs', () => {
      it('ISO 9797-1 alg 1 and alg 3 (padding 1 and 2) and TDES-CMAC match node:crypto; truncated verify', async () => {
        const data = Buffer.from('4E6F77206973207468652074696D6520666F7220616C6C20', 'hex'); // "Now is the time for all "
        const pad = (d: Buffer, method: 1 | 2) => {
          const extra = method === 2 ? Buffer.from([0x80]) : Buffer.alloc(0);
          const m = Buffer.concat([d, extra]);
          const len = Math.max(8, Math.ceil(m.length / 8) * 8);
          return Buffer.concat([m, Buffer.alloc(len - m.length)]);
        };
        const cbcMac = (key: Buffer, d: Buffer) => {
          const c = createCipheriv(key.length === 8 ? 'des-ede3-cbc' : 'des-ede-cbc', key.length === 8 ? Buffer.concat([key, key, key]) : key, Buffer.alloc(8));
          c.setAutoPadding(false);
          const out = Buffer.concat([c.update(d), c.final()]);
          return out.subarray(-8);
        };
        const k1 = MAC_TDES_3.subarray(0, 8);
        const k2 = MAC_TDES_3.subarray(8, 16);
        const retail = (d: Buffer) => {
          const h = cbcMac(k1, d);
          return ecb('encrypt', Buffer.concat([k1, k1, k1]), ecb('decrypt', Buffer.concat([k2, k2, k2]), h, 'tdes'), 'tdes');
        };
        // Algorithm 1 with the M1 key, algorithm 3 (the retail MAC) with the M3 key: each key only its own.
        const expected: Array<[string, string, Buffer]> = [
          ['mac-t1', 'ISO9797_ALG1', cbcMac(MAC_TDES_1, pad(data, 1))],
          ['mac-t1', 'ISO9797_ALG1_PAD2', cbcMac(MAC_TDES_1, pad(data, 2))],
          ['mac-t3', 'ISO9797_ALG3', retail(pad(data, 1))],
          ['mac-t3', 'ISO9797_ALG3_PAD2', retail(pad(data, 2))],
        ];
        for (const [stem, algorithm, mac] of expected) {
          const name = n(stem);
          if (!backend.capabilities().mac.includes(algorithm as never)) {
            await expect(keys.mac({ name, algorithm, data })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
            continue;
          }
          const r = await keys.mac({ name, algorithm, data });
          expect(r.mac.toString('hex'), algorithm).toBe(mac.toString('hex'));
          expect(r.keyCheckValue).toBe(tdesKcv(stem === 'mac-t1' ? MAC_TDES_1 : MAC_TDES_3));
          expect((await keys.verifyMac({ name, algorithm, data, mac })).valid).toBe(true);
          expect((await keys.verifyMac({ name, algorithm, data, mac: mac.subarray(0, 4) })).valid).toBe(true);
          expect((await keys.verifyMac({ name, algorithm, data, mac: mac.subarray(0, 3) })).valid).toBe(false);
          const wrong = Buffer.from(mac);
          wrong[0] = wrong[0]! ^ 1;
          expect((await keys.verifyMac({ name, algorithm, data, mac: wrong })).valid).toBe(false);
        }
        // The default algorithm is the usage's own.
        expect((await keys.mac({ name: n('mac-t3'), data })).algorithm).toBe('ISO9797_ALG3');
        expect((await keys.mac({ name: n('mac-t1'), data })).algorithm).toBe('ISO9797_ALG1');
        await expect(keys.mac({ name: n('zpk-t'), algorithm: 'ISO9797_ALG1', data })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
      });
    });

    describe('key usage (X9.143) is part of the key', () => {
      const data = Buffer.from('0102030405060708090A0B0C0D0E0F1011', 'hex');

      it('an imported M3 key (retail MAC, verify only) refuses ISO9797_ALG1, verifies the retail MAC, and is exported as M3', async () => {
        const material = hex('1F2E3D4C5B6A79880F1E2D3C4B5A6987');
        const block = await seal(KBPK_B, { keyUsage: 'M3', algorithm: 'T', modeOfUse: 'V', exportability: 'E' }, material);
        const r = await payment.keyExchange.importTr31({ name: n('m3-in'), keyBlock: block, kbpk: { keyName: n('kbpk-b') } });
        expect(r.key).toMatchObject({ type: 'TDES_2KEY', purpose: 'mac', keyUsage: 'M3', modeOfUse: 'V', exportable: true });
        expect((await keys.getKey(n('m3-in'))).keyUsage).toBe('M3');
        const alg1 = await keys.verifyMac({ name: n('m3-in'), algorithm: 'ISO9797_ALG1', data, mac: Buffer.alloc(8) }).then(() => undefined, (e: unknown) => e as { code: string; message: string });
        expect(alg1).toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        expect(alg1!.message).toMatch(/M3/);
        if (backend.capabilities().mac.includes('ISO9797_ALG3')) {
          // Independent retail MAC: single-DES CBC under K1, then decrypt K2, encrypt K1 (node:crypto des-ede with equal halves).
          const k1 = material.subarray(0, 8);
          const k2 = material.subarray(8);
          const padded = Buffer.concat([data, Buffer.alloc(8 - (data.length % 8))]);
          let h: Buffer = Buffer.alloc(8);
          for (let i = 0; i < padded.length; i += 8) h = ecb('encrypt', Buffer.concat([k1, k1]), xor(h, padded.subarray(i, i + 8)), 'tdes');
          const mac = ecb('encrypt', Buffer.concat([k1, k1]), ecb('decrypt', Buffer.concat([k2, k2]), h, 'tdes'), 'tdes');
          expect((await keys.verifyMac({ name: n('m3-in'), algorithm: 'ISO9797_ALG3', data, mac })).valid).toBe(true);
          // Mode V: it never generates.
          await expect(keys.mac({ name: n('m3-in'), algorithm: 'ISO9797_ALG3', data })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        }
        const out = await payment.keyExchange.exportTr31({ name: n('m3-in'), kbpk: { keyName: n('kbpk-b') } });
        expect(out.keyBlock.slice(5, 9)).toBe('M3TV');
        const opened = await openUnder(KBPK_B, out.keyBlock);
        expect(opened.key.equals(withParity(material))).toBe(true);
      });

      it('a K1 KBPK stays K1 and a K0 one stays K0 (and still protects TR-31 blocks), through import and export', async () => {
        for (const [usage, material] of [['K1', hex('2C3D4E5F60718293A4B5C6D7E8F90A1B')], ['K0', hex('3D4E5F60718293A4B5C6D7E8F90A1B2C')]] as const) {
          const name = n(`kbpk-in-${usage}`);
          const block = await seal(KBPK_B, { keyUsage: usage, algorithm: 'T', modeOfUse: 'B', exportability: 'E' }, material);
          const r = await payment.keyExchange.importTr31({ name, keyBlock: block, kbpk: { keyName: n('kbpk-b') } });
          expect(r.key).toMatchObject({ purpose: 'kbpk', keyUsage: usage });
          const out = await payment.keyExchange.exportTr31({ name, kbpk: { keyName: n('kbpk-b') } });
          expect(out.keyBlock.slice(5, 7), usage).toBe(usage);
          // It protects a block in turn: a PIN key sealed under it imports with the right KCV.
          const pinKey = hex(usage === 'K1' ? '4E5F60718293A4B5C6D7E8F90A1B2C3D' : '5F60718293A4B5C6D7E8F90A1B2C3D4E');
          const inner = await seal(withParity(material), { keyUsage: 'P0', algorithm: 'T', modeOfUse: 'B' }, pinKey);
          const imported = await payment.keyExchange.importTr31({ name: n(`pin-under-${usage}`), keyBlock: inner, kbpk: { keyName: name } });
          expect(imported.keyCheckValue).toBe(tdesKcv(pinKey));
        }
      });

      it('a created key without a usage exports as its purpose general kind: P0, B0, K1, M1 (TDES) and M6 (AES)', async () => {
        const cases: Array<[KeyType, KeyPurpose, string]> = [
          ['TDES_2KEY', 'pin', 'P0'],
          ['TDES_2KEY', 'bdk', 'B0'],
          ['TDES_2KEY', 'kbpk', 'K1'],
          ['TDES_2KEY', 'mac', 'M1'],
          ['AES_128', 'mac', 'M6'],
        ];
        for (const [type, purpose, usage] of cases) {
          const name = n(`default-${type}-${purpose}`);
          const created = await keys.createKey({ name, type, purpose, exportable: true });
          expect(created.keyUsage).toBeUndefined();
          const out = await payment.keyExchange.exportTr31({ name, kbpk: { keyName: n('kbpk-d') } });
          expect(out.keyBlock.slice(5, 7), `${type} ${purpose}`).toBe(usage);
        }
      });

      it('createKey takes a usage that fits the purpose and type, and each MAC usage computes only its algorithms', async () => {
        const m3 = await keys.createKey({ name: n('new-m3'), type: 'TDES_2KEY', purpose: 'mac', keyUsage: 'M3' });
        expect(m3.keyUsage).toBe('M3');
        expect((await keys.getKey(n('new-m3'))).keyUsage).toBe('M3');
        if (backend.capabilities().mac.includes('ISO9797_ALG3')) {
          const r = await keys.mac({ name: n('new-m3'), data });
          expect(r.algorithm).toBe('ISO9797_ALG3');
          expect((await keys.verifyMac({ name: n('new-m3'), algorithm: 'ISO9797_ALG3', data, mac: r.mac })).valid).toBe(true);
        }
        for (const algorithm of ['ISO9797_ALG1', 'ISO9797_ALG1_PAD2', 'TDES_CMAC']) {
          await expect(keys.mac({ name: n('new-m3'), algorithm, data }), algorithm).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        }
        // No usage: every MAC of the family but the retail MAC.
        const general = n('new-mac');
        await keys.createKey({ name: general, type: 'TDES_2KEY', purpose: 'mac' });
        for (const algorithm of ['ISO9797_ALG3', 'ISO9797_ALG3_PAD2']) {
          const e = await keys.mac({ name: general, algorithm, data }).then(() => undefined, (x: unknown) => x as { code: string; message: string });
          expect(e, algorithm).toMatchObject({ code: 'INCOMPATIBLE_KEY' });
          expect(e!.message).toMatch(/M3/);
        }
        expect((await keys.mac({ name: general, algorithm: 'ISO9797_ALG1', data })).mac).toHaveLength(8);
        // M6 with TDES: CMAC only.
        await keys.createKey({ name: n('new-m6'), type: 'TDES_3KEY', purpose: 'mac', keyUsage: 'M6' });
        expect((await keys.mac({ name: n('new-m6'), data })).algorithm).toBe('TDES_CMAC');
        await expect(keys.mac({ name: n('new-m6'), algorithm: 'ISO9797_ALG1', data })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        // Usages that do not fit, and values that are not usages.
        const refused: Array<[object, string]> = [
          [{ type: 'TDES_3KEY', purpose: 'mac', keyUsage: 'M3' }, 'INCOMPATIBLE_KEY'],
          [{ type: 'AES_128', purpose: 'mac', keyUsage: 'M1' }, 'INCOMPATIBLE_KEY'],
          [{ type: 'TDES_2KEY', purpose: 'mac', keyUsage: 'P0' }, 'INCOMPATIBLE_KEY'],
          [{ type: 'TDES_2KEY', purpose: 'pin', keyUsage: 'K0' }, 'INCOMPATIBLE_KEY'],
          [{ type: 'AES_128', purpose: 'encrypt', keyUsage: 'P0' }, 'INCOMPATIBLE_KEY'],
          [{ type: 'TDES_2KEY', purpose: 'kbpk', keyUsage: 'K9' }, 'INVALID_ARGUMENT'],
          [{ type: 'TDES_2KEY', purpose: 'kbpk', keyUsage: 1 }, 'INVALID_ARGUMENT'],
        ];
        for (const [input, code] of refused) {
          await expect(keys.createKey({ name: n('bad-usage'), ...input } as never), JSON.stringify(input)).rejects.toMatchObject({ code });
        }
        await expect(keys.getKey(n('bad-usage'))).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
        expect((await keys.createKey({ name: n('new-k0'), type: 'AES_256', purpose: 'kbpk', keyUsage: 'K0' })).keyUsage).toBe('K0');
      });
    });

    describe('one key value is one kind of key', () => {
      it('refuses to import a value held as another purpose, usage or mode of use, without naming the key; allows another copy of the same kind', async () => {
        const refusedAs = async (stem: string, type: KeyType, purpose: KeyPurpose, material: Buffer, keyUsage?: KeyUsage) => {
          const e = await plant(stem, type, purpose, material, keyUsage ? { keyUsage } : {}).then(() => undefined, (x: unknown) => x as { code: string; message: string });
          expect(e, stem).toMatchObject({ code: 'INCOMPATIBLE_KEY' });
          await expect(keys.getKey(n(stem))).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
          return e!.message;
        };
        // The PIN key's value as a MAC key: ISO9797_ALG1 over one block would be TDES-ECB under the PIN key.
        expect(await refusedAs('dup-mac', 'TDES_2KEY', 'mac', ZPK_TDES, 'M1')).not.toContain(n('zpk-t'));
        // The same value as a 3-key TDES key (K1 K2 K1 is the same key), as a BDK, as a KBPK.
        await refusedAs('dup-3key', 'TDES_3KEY', 'mac', Buffer.concat([ZPK_TDES, ZPK_TDES.subarray(0, 8)]));
        await refusedAs('dup-bdk', 'TDES_2KEY', 'bdk', ZPK_TDES);
        await refusedAs('dup-kbpk-a', 'AES_256', 'pin', KBPK_D);
        // An M1 MAC key's value as M3 (the retail MAC's single-DES chain), or as a MAC key of no usage.
        expect(await refusedAs('dup-m3', 'TDES_2KEY', 'mac', MAC_TDES_1, 'M3')).toMatch(/already held by a key of another kind/);
        await refusedAs('dup-m-any', 'TDES_2KEY', 'mac', MAC_TDES_1);
        // The same kind again is no new power: allowed, with the same KCV.
        const copy = await plant('zpk-t-copy', 'TDES_2KEY', 'pin', ZPK_TDES);
        expect(await keys.keyCheckValue(copy)).toBe(tdesKcv(ZPK_TDES));
        // A TR-31 block of that value with another usage is refused too, whatever its KCV method.
        const block = await seal(KBPK_B, { keyUsage: 'M6', algorithm: 'T', modeOfUse: 'C' }, ZPK_TDES);
        await expect(payment.keyExchange.importTr31({ name: n('dup-tr31'), keyBlock: block, kbpk: { keyName: n('kbpk-b') } })).rejects.toMatchObject({
          code: 'INCOMPATIBLE_KEY',
          message: expect.stringMatching(/already held by a key of another kind/),
        });
        // A key of another value is never taken for it (whole check blocks, not 3-byte KCVs).
        expect((await plant('fresh-mac', 'TDES_2KEY', 'mac', hex('0E1F2A3B4C5D6E7F8091A2B3C4D5E6F7'), { keyUsage: 'M1' })).keyUsage).toBe('M1');
      });
    });

    describe('TR-31 check value blocks (KC, KP)', () => {
      const material = hex('6B7C8D9EAFB0C1D2E3F405162738495A');
      const kcvHex = (b: Buffer, bytes: number) => b.subarray(0, bytes).toString('hex').toUpperCase();
      let count = 0;
      const importWith = (optionalBlocks: Tr31OptionalBlock[], kbpk: 'b' | 'd' = 'b', key = material) =>
        seal(kbpk === 'b' ? KBPK_B : KBPK_D, { keyUsage: 'P0', algorithm: 'T', modeOfUse: 'B', optionalBlocks }, key).then((keyBlock) =>
          payment.keyExchange.importTr31({ name: n(`kc-${++count}`), keyBlock, kbpk: { keyName: n(`kbpk-${kbpk}`) } }),
        );

      it('accepts KC and KP that match, by either method, under both block versions', async () => {
        const legacy = ecb('encrypt', material, Buffer.alloc(8), 'tdes');
        const kbpkLegacy = ecb('encrypt', KBPK_B, Buffer.alloc(8), 'tdes');
        const kbpkCmac = nodeCmacOfZeros('tdes', KBPK_B);
        const r = await importWith([{ id: 'KC', data: `00${kcvHex(legacy, 3)}` }, { id: 'KP', data: `00${kcvHex(kbpkLegacy, 3)}` }]);
        expect(r.keyCheckValue).toBe(kcvHex(legacy, 3));
        // Each version of the key block protects another key value: the same value twice would be one key.
        const second = hex('7C8D9EAFB0C1D2E3F405162738495A6B');
        await importWith([{ id: 'KC', data: `01${kcvHex(nodeCmacOfZeros('tdes', second), 5)}` }, { id: 'KP', data: `01${kcvHex(kbpkCmac, 5)}` }], 'b', second);
        const third = hex('8D9EAFB0C1D2E3F405162738495A6B7C');
        await importWith([{ id: 'KC', data: `01${kcvHex(nodeCmacOfZeros('tdes', third), 8)}` }, { id: 'KP', data: `01${kcvHex(nodeCmacOfZeros('aes', KBPK_D), 5)}` }], 'd', third);
      });

      it('refuses a KC or KP that does not match, or is malformed, with INVALID_ARGUMENT, and imports nothing', async () => {
        const other = hex('9EAFB0C1D2E3F405162738495A6B7C8D');
        const otherKcv = kcvHex(ecb('encrypt', other, Buffer.alloc(8), 'tdes'), 3);
        const cases: Array<[Tr31OptionalBlock[], 'b' | 'd', RegExp]> = [
          [[{ id: 'KC', data: `00${otherKcv}` }], 'b', /KC does not match the key/],
          [[{ id: 'KC', data: `01${kcvHex(nodeCmacOfZeros('tdes', other), 5)}` }], 'b', /KC does not match/],
          [[{ id: 'KP', data: `00${otherKcv}` }], 'b', /KP does not match the KBPK/],
          [[{ id: 'KP', data: `01${kcvHex(nodeCmacOfZeros('tdes', KBPK_B), 5)}` }], 'd', /KP does not match/],
          [[{ id: 'KP', data: `00${kcvHex(ecb('encrypt', KBPK_D, Buffer.alloc(16), 'aes'), 3)}` }], 'd', /legacy check value/],
          [[{ id: 'KC', data: '02A1B2C3' }], 'b', /KCV method/],
          [[{ id: 'KC', data: '00a1b2c3' }], 'b', /KCV method/],
          [[{ id: 'KC', data: '00A1B' }], 'b', /KCV method/],
          [[{ id: 'KC', data: '00A1' }], 'b', /2 to 8 bytes/],
          [[{ id: 'KC', data: `00${otherKcv}` }, { id: 'KC', data: `00${otherKcv}` }], 'b', /more than once/],
        ];
        for (const [blocks, kbpk, message] of cases) {
          const before = count;
          const e = await importWith(blocks, kbpk).then(() => undefined, (x: unknown) => x as { code: string; message: string });
          expect(e, JSON.stringify(blocks)).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(message) });
          await expect(keys.getKey(n(`kc-${before + 1}`))).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
        }
      });
    });
  });
}
