/**
 * The payment routes end to end over REST: PIN translation (zone keys, TDES and AES DUKPT), PIN to JWE,
 * TR-31 import and export, the payment key views and MACs, and every refusal. Known keys are planted
 * through KeyService.importKey; every answer is checked with node:crypto or jose, not with our code.
 */
import { generateKeyPairSync } from 'node:crypto';
import { compactDecrypt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  aesKcv,
  decipherFormat4,
  format0,
  neverLogged,
  openBlock,
  paymentTargets,
  pinOfFormat0,
  plantKeys,
  macTdesMaterial,
  zpkTdesMaterial,
  retailMac,
  sealBlock,
  tdesDecrypt,
  tdesEncrypt,
  tdesKcv,
  vectors,
  otpTdesMaterial,
  zpkTdes2Material,
  type PlantedKeys,
} from '../paymentSupport.js';
import { b64, freshName, startRest, unb64, type RestFixture } from './restFixture.js';

describe.each(paymentTargets)('REST payment routes on the $label backend', (target) => {
  let rest: RestFixture;
  let keys: PlantedKeys;
  const pan = '5555555551234567';

  beforeAll(async () => {
    rest = await startRest(target);
    keys = await plantKeys(rest.service);
    rest.otpIncomingKeys.push(keys.otpTdes, keys.bdkTdes);
  });
  afterAll(async () => {
    await rest?.close();
  });

  const translate = (body: unknown) => rest.call('POST', '/v1/pin/translate', body);
  const expectError = (r: { status: number; body: any }, status: number, code: string) => {
    expect({ status: r.status, code: r.body?.error?.code }, JSON.stringify(r.body)).toEqual({ status, code });
  };
  /** A format 0 block for PIN 1234 under the TDES zone key, built with node:crypto. */
  const format0Block = (pin = '1234', card = pan) => tdesEncrypt(zpkTdesMaterial, format0(pin, card)).toString('hex').toUpperCase();
  /** A format 0 block from the PIN pad kept for OTP entry. */
  const otpBlock = (otp = '1234') => tdesEncrypt(otpTdesMaterial, format0(otp, pan)).toString('hex').toUpperCase();

  describe('PIN translation between zone keys', () => {
    it('TDES format 0 -> AES format 4 -> TDES format 0: each block checked with node:crypto, KCVs in the answer', async () => {
      const incoming = format0Block().toLowerCase(); // hex in either case
      const toAes = await translate({
        incoming: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0', pan },
        outgoing: { keyName: keys.zpkAes, format: 'ISO_FORMAT_4' },
        pinBlock: incoming,
      });
      expect(toAes.status, JSON.stringify(toAes.body)).toBe(200);
      expect(toAes.body.pinBlock).toMatch(/^[0-9A-F]{32}$/);
      expect(toAes.body.incoming).toEqual({ keyName: keys.zpkTdes, keyVersion: 1, keyCheckValue: tdesKcv(zpkTdesMaterial) });
      expect(toAes.body.outgoing).toEqual({ keyName: keys.zpkAes, keyVersion: 1, keyCheckValue: aesKcv(vectors.format4.key) });
      const pinField = decipherFormat4(vectors.format4.key, toAes.body.pinBlock, pan);
      expect(pinField.slice(0, 16)).toBe('441234AAAAAAAAAA');

      const back = await translate({
        incoming: { keyName: keys.zpkAes, format: 'ISO_FORMAT_4', pan },
        outgoing: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0', pan },
        pinBlock: toAes.body.pinBlock,
      });
      expect(back.status).toBe(200);
      expect(back.body.pinBlock).toBe(incoming.toUpperCase()); // format 0 has no random fill
      expect(tdesDecrypt(zpkTdesMaterial, Buffer.from(back.body.pinBlock, 'hex'))).toEqual(format0('1234', pan));
    });

    it('the ep2 format 4 vector deciphers to PIN 1234 and comes out as format 0 under another TDES zone key', async () => {
      const r = await translate({
        incoming: { keyName: keys.zpkAes, format: 'ISO_FORMAT_4', pan: vectors.format4.pan },
        outgoing: { keyName: keys.zpkTdes2, keyVersion: 1, format: 'ISO_FORMAT_0' },
        pinBlock: vectors.format4.pinBlock,
      });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body.outgoing.keyCheckValue).toBe(tdesKcv(zpkTdes2Material));
      const clear = tdesDecrypt(zpkTdes2Material, Buffer.from(r.body.pinBlock, 'hex'));
      expect(clear).toEqual(format0('1234', vectors.format4.pan));
    });

    it('format 1 (no PAN) -> format 3 with a PAN given on the outgoing side', async () => {
      const clear1 = Buffer.from('141234' + 'A1B2C3D4E5', 'hex');
      const block = tdesEncrypt(zpkTdesMaterial, clear1).toString('hex');
      const r = await translate({
        incoming: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_1' },
        outgoing: { keyName: keys.zpkTdes2, format: 'ISO_FORMAT_3', pan },
        pinBlock: block,
      });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      const clear3 = tdesDecrypt(zpkTdes2Material, Buffer.from(r.body.pinBlock, 'hex'));
      expect(clear3[0]! >> 4).toBe(3);
      expect(pinOfFormat0(clear3, pan)).toBe('1234');
    });
  });

  describe('PIN translation from DUKPT terminals', () => {
    it('TDES DUKPT (X9.24-1 vector): the terminal block comes out as format 0 under a zone key', async () => {
      const v = vectors.tdesDukpt;
      const r = await translate({
        incoming: { keyName: keys.bdkTdes, format: 'ISO_FORMAT_0', pan: v.pan, dukpt: { ksn: v.ksn } },
        outgoing: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0' },
        pinBlock: v.pinBlock,
      });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body.incoming).toEqual({ keyName: keys.bdkTdes, keyVersion: 1, keyCheckValue: vectors.tdesKcv.kcv }); // the X9.24 BDK's published KCV
      const clear = tdesDecrypt(zpkTdesMaterial, Buffer.from(r.body.pinBlock, 'hex'));
      expect(clear.toString('hex').toUpperCase()).toBe(v.clearBlock);
      expect(pinOfFormat0(clear, v.pan)).toBe('1234');
    });

    it('AES DUKPT (X9.24-3 vector, AES-128 working key): the terminal block comes out as format 4 under a zone key', async () => {
      const v = vectors.aesDukpt;
      const r = await translate({
        incoming: { keyName: keys.bdkAes, format: 'ISO_FORMAT_4', pan: v.pan, dukpt: { ksn: v.ksn.toLowerCase(), workingKey: 'AES_128' } },
        outgoing: { keyName: keys.zpkAes, format: 'ISO_FORMAT_4' },
        pinBlock: v.pinBlock,
      });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body.incoming.keyCheckValue).toBe(aesKcv(v.bdk));
      expect(decipherFormat4(vectors.format4.key, r.body.pinBlock, v.pan).slice(0, 16)).toBe('441234AAAAAAAAAA');
    });

    it('a wrong KSN gives another key: the block does not decode (a 400, not a PIN)', async () => {
      const v = vectors.tdesDukpt;
      const r = await translate({
        incoming: { keyName: keys.bdkTdes, format: 'ISO_FORMAT_0', pan: v.pan, dukpt: { ksn: 'FFFF9876543210E00002' } },
        outgoing: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0' },
        pinBlock: v.pinBlock,
      });
      expect(r.status).toBe(400);
    });
  });

  describe('PIN to JWE', () => {
    it('to a registered participant: the test decrypts the JWE with its private key (jose)', async () => {
      const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const participant = freshName('fsp').slice(0, 32);
      const added = await rest.call('POST', '/v1/fspiop/participants', { id: participant, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }), use: 'enc' });
      expect(added.status, JSON.stringify(added.body)).toBe(201);
      const r = await rest.call('POST', '/v1/pin/to-jwe', {
        incoming: { keyName: keys.otpTdes, format: 'ISO_FORMAT_0', pan },
        pinBlock: otpBlock('4321'),
        recipient: { participant },
        references: { transactionId: 'tx-42', terminal: 'T1' },
      });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body.incoming).toEqual({ keyName: keys.otpTdes, keyVersion: 1, keyCheckValue: tdesKcv(otpTdesMaterial) });
      expect(r.body.kid).toBe(added.body.keyId);
      const { plaintext, protectedHeader } = await compactDecrypt(r.body.jwe, privateKey);
      expect(protectedHeader).toMatchObject({ alg: 'RSA-OAEP-256', enc: 'A256GCM' });
      expect(JSON.parse(Buffer.from(plaintext).toString('utf8'))).toEqual({ otp: '4321', transactionId: 'tx-42', terminal: 'T1' });
    });

    it('to a key of this service: the existing JWE decrypt route opens it', async () => {
      const rsa = freshName('otp-rsa');
      expect((await rest.call('POST', '/v1/keys', { name: rsa, type: 'RSA_2048', purpose: 'encrypt' })).status).toBe(201);
      const r = await rest.call('POST', '/v1/pin/to-jwe', {
        incoming: { keyName: keys.bdkTdes, format: 'ISO_FORMAT_0', pan: vectors.tdesDukpt.pan, dukpt: { ksn: vectors.tdesDukpt.ksn } },
        pinBlock: vectors.tdesDukpt.pinBlock,
        recipient: { key: rsa },
      });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      const opened = await rest.call('POST', '/v1/jwe/decrypt', { jwe: r.body.jwe });
      expect(opened.status).toBe(200);
      expect(opened.body.keyName).toBe(rsa);
      expect(JSON.parse(unb64(opened.body.plaintext).toString('utf8'))).toEqual({ otp: '1234' });
    });

    it('refuses a caller-supplied JWK recipient, an incoming key not configured for the OTP flow, and any translation into the OTP key', async () => {
      const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const base = { incoming: { keyName: keys.otpTdes, format: 'ISO_FORMAT_0', pan }, pinBlock: otpBlock() };
      expectError(await rest.call('POST', '/v1/pin/to-jwe', { ...base, recipient: { jwk: publicKey.export({ format: 'jwk' }) } }), 400, 'INVALID_ARGUMENT');
      const rsa = freshName('otp-rsa2');
      expect((await rest.call('POST', '/v1/keys', { name: rsa, type: 'RSA_2048', purpose: 'encrypt' })).status).toBe(201);
      const notOtp = { incoming: { keyName: keys.zpkTdes2, format: 'ISO_FORMAT_0', pan }, pinBlock: format0Block(), recipient: { key: rsa } };
      expectError(await rest.call('POST', '/v1/pin/to-jwe', notOtp), 400, 'INCOMPATIBLE_KEY');
      // A customer PIN moved under the OTP key would come out of the OTP flow in clear: never translated into it.
      const intoOtp = { incoming: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0', pan }, outgoing: { keyName: keys.otpTdes, format: 'ISO_FORMAT_0' }, pinBlock: format0Block('9876') };
      expectError(await rest.call('POST', '/v1/pin/translate', intoOtp), 400, 'INCOMPATIBLE_KEY');
    });

    it('refuses a bad recipient, too many references, and an unknown participant', async () => {
      const base = { incoming: { keyName: keys.otpTdes, format: 'ISO_FORMAT_0', pan }, pinBlock: otpBlock() };
      expectError(await rest.call('POST', '/v1/pin/to-jwe', { ...base, recipient: {} }), 400, 'INVALID_ARGUMENT');
      expectError(await rest.call('POST', '/v1/pin/to-jwe', { ...base, recipient: { key: 'a', participant: 'b' } }), 400, 'INVALID_ARGUMENT');
      const references = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`r${i}`, 'x']));
      expectError(await rest.call('POST', '/v1/pin/to-jwe', { ...base, recipient: { participant: 'p' }, references }), 400, 'INVALID_ARGUMENT');
      expectError(await rest.call('POST', '/v1/pin/to-jwe', { ...base, recipient: { participant: 'p' }, references: { otp: 'x' } }), 400, 'INVALID_ARGUMENT');
      expectError(await rest.call('POST', '/v1/pin/to-jwe', { ...base, recipient: { participant: 'nobody-here' } }), 404, 'KEY_NOT_FOUND');
    });
  });

  describe('TR-31 key exchange', () => {
    it('imports the published version B block: a TDES PIN key, mode of use E, KCV 57C409', async () => {
      const name = freshName('tr31-b');
      const r = await rest.call('POST', '/v1/keys/import/tr31', { name, keyBlock: vectors.tr31.blockB, kbpk: { keyName: keys.kbpkB } });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      expect(r.body.keyCheckValue).toBe(vectors.tr31.kcvB);
      expect(tdesKcv(vectors.tr31.key)).toBe(vectors.tr31.kcvB);
      expect(r.body.kbpk).toEqual({ keyName: keys.kbpkB, keyVersion: 1, keyCheckValue: tdesKcv(vectors.tr31.kbpkB) });
      expect(r.body.key).toMatchObject({ name, type: 'TDES_2KEY', purpose: 'pin', modeOfUse: 'E', exportable: true, state: 'enabled' });
      expect(r.body.key.versions).toEqual([expect.objectContaining({ version: 1, keyCheckValue: vectors.tr31.kcvB })]);
      const got = await rest.call('GET', `/v1/keys/${name}`);
      expect(got.body).toEqual(r.body.key);
    });

    it('imports the published version D block: the same key as AES-128, its CMAC KCV', async () => {
      const name = freshName('tr31-d');
      const r = await rest.call('POST', '/v1/keys/import/tr31', { name, keyBlock: vectors.tr31.blockD, kbpk: { keyName: keys.kbpkD, keyVersion: 1 } });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      expect(r.body.keyCheckValue).toBe(aesKcv(vectors.tr31.key));
      expect(r.body.key).toMatchObject({ name, type: 'AES_128', purpose: 'pin', modeOfUse: 'E' });
    });

    it('export + re-import: the test opens the block with the KBPK it knows; the KCVs agree', async () => {
      const name = freshName('exp');
      const created = await rest.call('POST', '/v1/keys', { name, type: 'TDES_2KEY', purpose: 'pin', exportable: true });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect(created.body.exportable).toBe(true);
      const kcv = created.body.versions[0].keyCheckValue;
      expect(kcv).toMatch(/^[0-9A-F]{6}$/);

      const exported = await rest.call('POST', `/v1/keys/${name}/export/tr31`, { kbpk: { keyName: keys.kbpkB }, exportability: 'E' });
      expect(exported.status, JSON.stringify(exported.body)).toBe(200);
      expect(exported.body).toMatchObject({ keyName: name, keyVersion: 1, keyCheckValue: kcv, kbpk: { keyName: keys.kbpkB } });
      expect(exported.body.keyBlock.slice(0, 1)).toBe('B');
      const opened = await openBlock(exported.body.keyBlock, vectors.tr31.kbpkB);
      expect(opened.header).toMatchObject({ keyUsage: 'P0', algorithm: 'T', modeOfUse: 'B', exportability: 'E' });
      expect(tdesKcv(opened.key)).toBe(kcv);

      const again = freshName('reimp');
      const imported = await rest.call('POST', '/v1/keys/import/tr31', { name: again, keyBlock: exported.body.keyBlock, kbpk: { keyName: keys.kbpkB } });
      expect(imported.status, JSON.stringify(imported.body)).toBe(201);
      expect(imported.body.keyCheckValue).toBe(kcv);
      expect(imported.body.key).toMatchObject({ purpose: 'pin', modeOfUse: 'B', exportable: true });

      // And under the AES KBPK, version D.
      const d = await rest.call('POST', `/v1/keys/${name}/export/tr31`, { kbpk: { keyName: keys.kbpkD } });
      expect(d.status).toBe(200);
      expect(d.body.keyBlock[0]).toBe('D');
      expect(tdesKcv((await openBlock(d.body.keyBlock, vectors.tr31.kbpkD)).key)).toBe(kcv);
    });

    it('refuses: a non-exportable key, a tampered block, a wrong KBPK, a block under a non-KBPK, a taken name', async () => {
      const plain = freshName('noexp');
      await rest.call('POST', '/v1/keys', { name: plain, type: 'TDES_2KEY', purpose: 'pin' });
      expectError(await rest.call('POST', `/v1/keys/${plain}/export/tr31`, { kbpk: { keyName: keys.kbpkB } }), 400, 'INCOMPATIBLE_KEY');
      const tampered = vectors.tr31.blockB.slice(0, 40) + (vectors.tr31.blockB[40] === '0' ? '1' : '0') + vectors.tr31.blockB.slice(41);
      expectError(await rest.call('POST', '/v1/keys/import/tr31', { name: freshName('t'), keyBlock: tampered, kbpk: { keyName: keys.kbpkB } }), 400, 'DECRYPTION_FAILED');
      expectError(await rest.call('POST', '/v1/keys/import/tr31', { name: freshName('t'), keyBlock: vectors.tr31.blockB, kbpk: { keyName: keys.kbpkD } }), 400, 'INCOMPATIBLE_KEY');
      expectError(await rest.call('POST', '/v1/keys/import/tr31', { name: freshName('t'), keyBlock: vectors.tr31.blockB, kbpk: { keyName: keys.zpkTdes } }), 400, 'INCOMPATIBLE_KEY');
      expectError(await rest.call('POST', '/v1/keys/import/tr31', { name: keys.zpkAes, keyBlock: vectors.tr31.blockB, kbpk: { keyName: keys.kbpkB } }), 409, 'KEY_ALREADY_EXISTS');
      expectError(await rest.call('POST', '/v1/keys/import/tr31', { name: freshName('t'), keyBlock: 'B'.repeat(4097), kbpk: { keyName: keys.kbpkB } }), 400, 'INVALID_ARGUMENT');
      expectError(await rest.call('POST', '/v1/keys/import/tr31', { name: freshName('t'), keyBlock: 'B0080P0TE00E0000\n', kbpk: { keyName: keys.kbpkB } }), 400, 'INVALID_ARGUMENT');
      expectError(await rest.call('POST', `/v1/keys/${plain}/export/tr31`, { kbpk: { keyName: keys.kbpkB }, exportability: 'X' }), 400, 'INVALID_ARGUMENT');
    });

    it('a key imported decrypt-only (mode D) deciphers PIN blocks but refuses to encipher them', async () => {
      const material = '1F23456789ABCDEF0123456789ABCDEF';
      const block = await sealBlock({ version: 'B', keyUsage: 'P0', algorithm: 'T', modeOfUse: 'D', keyVersionNumber: '00', exportability: 'N' }, material, vectors.tr31.kbpkB);
      const name = freshName('mode-d');
      const imported = await rest.call('POST', '/v1/keys/import/tr31', { name, keyBlock: block, kbpk: { keyName: keys.kbpkB } });
      expect(imported.status, JSON.stringify(imported.body)).toBe(201);
      expect(imported.body.key).toMatchObject({ modeOfUse: 'D', exportable: false });
      const pinBlock = tdesEncrypt(material, format0('1234', pan)).toString('hex');
      const ok = await translate({ incoming: { keyName: name, format: 'ISO_FORMAT_0', pan }, outgoing: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0' }, pinBlock });
      expect(ok.status, JSON.stringify(ok.body)).toBe(200);
      expect(ok.body.pinBlock).toBe(format0Block());
      expectError(await translate({ incoming: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0', pan }, outgoing: { keyName: name, format: 'ISO_FORMAT_0' }, pinBlock: format0Block() }), 400, 'INCOMPATIBLE_KEY');
    });
  });

  describe('payment key views and MACs', () => {
    it('create, list, rotate show exportable and each version\'s KCV; non-payment keys have none', async () => {
      const name = freshName('view');
      const created = await rest.call('POST', '/v1/keys', { name, type: 'AES_128', purpose: 'mac', exportable: true });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({ exportable: true, purpose: 'mac' });
      expect(created.body).not.toHaveProperty('modeOfUse');
      const rotated = await rest.call('POST', `/v1/keys/${name}/rotate`);
      expect(rotated.body.versions.map((v: any) => v.keyCheckValue)).toEqual([created.body.versions[0].keyCheckValue, expect.stringMatching(/^[0-9A-F]{6}$/)]);
      const listed = (await rest.call('GET', '/v1/keys')).body.keys.find((k: any) => k.name === name);
      expect(listed).toEqual(rotated.body);
      const gcm = freshName('gcm');
      const data = await rest.call('POST', '/v1/keys', { name: gcm, type: 'AES_256' });
      expect(data.body.exportable).toBe(false);
      expect(data.body.versions[0]).not.toHaveProperty('keyCheckValue');
      expectError(await rest.call('POST', '/v1/keys', { name: freshName('x'), type: 'AES_256', exportable: true }), 400, 'INCOMPATIBLE_KEY');
      expectError(await rest.call('POST', '/v1/keys', { name: freshName('x'), type: 'AES_256', exportable: 'yes' }), 400, 'INVALID_ARGUMENT');
    });

    it('the retail MAC (ISO 9797-1 alg 3) matches node:crypto, carries the KCV, and verifies truncated', async () => {
      const data = Buffer.from('Now is the time for all ');
      const r = await rest.call('POST', `/v1/keys/${keys.macTdes}/mac`, { algorithm: 'ISO9797_ALG3', data: b64(data) });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(unb64(r.body.mac)).toEqual(retailMac(macTdesMaterial, data));
      expect(r.body.keyCheckValue).toBe(tdesKcv(macTdesMaterial));
      const v = await rest.call('POST', `/v1/keys/${keys.macTdes}/mac/verify`, { algorithm: 'ISO9797_ALG3', data: b64(data), mac: b64(unb64(r.body.mac).subarray(0, 4)) });
      expect(v.body).toMatchObject({ valid: true, keyCheckValue: tdesKcv(macTdesMaterial) });
      const bad = Buffer.from(unb64(r.body.mac).subarray(0, 4));
      bad[0]! ^= 1;
      expect((await rest.call('POST', `/v1/keys/${keys.macTdes}/mac/verify`, { algorithm: 'ISO9797_ALG3', data: b64(data), mac: b64(bad) })).body.valid).toBe(false);
      expect((await rest.call('POST', `/v1/keys/${keys.macTdes}/mac/verify`, { algorithm: 'ISO9797_ALG3', data: b64(data), mac: b64(unb64(r.body.mac).subarray(0, 3)) })).body.valid).toBe(false);
    });

    it('a key usage given at creation shows in the Key view and limits the MAC algorithms; one the purpose cannot have is refused', async () => {
      const m3 = await rest.call('POST', '/v1/keys', { name: freshName('m3'), type: 'TDES_2KEY', purpose: 'mac', keyUsage: 'M3' });
      expect(m3.status, JSON.stringify(m3.body)).toBe(201);
      expect(m3.body).toMatchObject({ purpose: 'mac', keyUsage: 'M3' });
      const data = b64('Now is the time for all ');
      expect((await rest.call('POST', `/v1/keys/${m3.body.name}/mac`, { algorithm: 'ISO9797_ALG3', data })).status).toBe(200);
      expectError(await rest.call('POST', `/v1/keys/${m3.body.name}/mac`, { algorithm: 'ISO9797_ALG1', data }), 400, 'INCOMPATIBLE_KEY');
      const plain = await rest.call('POST', '/v1/keys', { name: freshName('m'), type: 'TDES_2KEY', purpose: 'mac' });
      expect(plain.body).not.toHaveProperty('keyUsage');
      expectError(await rest.call('POST', `/v1/keys/${plain.body.name}/mac`, { algorithm: 'ISO9797_ALG3', data }), 400, 'INCOMPATIBLE_KEY');
      expectError(await rest.call('POST', '/v1/keys', { name: freshName('x'), type: 'TDES_2KEY', purpose: 'pin', keyUsage: 'M3' }), 400, 'INCOMPATIBLE_KEY');
      expectError(await rest.call('POST', '/v1/keys', { name: freshName('x'), type: 'TDES_2KEY', purpose: 'pin', keyUsage: 'Z9' }), 400, 'INVALID_ARGUMENT');
    });
  });

  describe('refusals', () => {
    const zone = () => ({ incoming: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0', pan }, outgoing: { keyName: keys.zpkTdes2, format: 'ISO_FORMAT_0' }, pinBlock: format0Block() });

    it.each([
      ['bad hex', (b: any) => ({ ...b, pinBlock: 'G'.repeat(16) })],
      ['a PIN block of the wrong length', (b: any) => ({ ...b, pinBlock: 'A'.repeat(18) })],
      ['a 16-digit block for format 4', (b: any) => ({ ...b, incoming: { keyName: keys.zpkAes, format: 'ISO_FORMAT_4', pan } })],
      ['a PAN with letters', (b: any) => ({ ...b, incoming: { ...b.incoming, pan: '55555555512345AB' } })],
      ['a PAN too short', (b: any) => ({ ...b, incoming: { ...b.incoming, pan: '12345678901' } })],
      ['no PAN for format 0', (b: any) => ({ ...b, incoming: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0' } })],
      ['a PAN-bound block to format 1', (b: any) => ({ ...b, outgoing: { keyName: keys.zpkTdes2, format: 'ISO_FORMAT_1' } })],
      ['another PAN on the way out', (b: any) => ({ ...b, outgoing: { ...b.outgoing, pan: '4111111111111111' } })],
      ['format 2', (b: any) => ({ ...b, outgoing: { keyName: keys.zpkTdes2, format: 'ISO_FORMAT_2' } })],
      ['an unknown format', (b: any) => ({ ...b, incoming: { ...b.incoming, format: 'ISO_FORMAT_9' } })],
      ['a KSN of the wrong length', (b: any) => ({ ...b, incoming: { keyName: keys.bdkTdes, format: 'ISO_FORMAT_0', pan, dukpt: { ksn: 'FFFF9876543210E0001' } } })],
      ['a KSN with counter 0', (b: any) => ({ ...b, incoming: { keyName: keys.bdkTdes, format: 'ISO_FORMAT_0', pan, dukpt: { ksn: 'FFFF9876543210E00000' } } })],
      ['a working key for TDES DUKPT', (b: any) => ({ ...b, incoming: { keyName: keys.bdkTdes, format: 'ISO_FORMAT_0', pan, dukpt: { ksn: vectors.tdesDukpt.ksn, workingKey: 'AES_128' } } })],
      ['an unknown field', (b: any) => ({ ...b, incoming: { ...b.incoming, cvv: '123' } })],
      ['a missing pinBlock', (b: any) => ({ incoming: b.incoming, outgoing: b.outgoing })],
    ])('%s -> 400 INVALID_ARGUMENT', async (_what, change) => {
      expectError(await translate(change(zone())), 400, 'INVALID_ARGUMENT');
    });

    it.each([
      ['a MAC key to translate', () => ({ ...zone(), incoming: { keyName: keys.macTdes, format: 'ISO_FORMAT_0', pan } })],
      ['a BDK without dukpt', () => ({ ...zone(), incoming: { keyName: keys.bdkTdes, format: 'ISO_FORMAT_0', pan } })],
      ['a PIN key as a BDK', () => ({ ...zone(), incoming: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0', pan, dukpt: { ksn: vectors.tdesDukpt.ksn } } })],
      ['a TDES key for format 4', () => ({ ...zone(), outgoing: { keyName: keys.zpkTdes2, format: 'ISO_FORMAT_4' } })],
      ['an AES key for format 0', () => ({ ...zone(), outgoing: { keyName: keys.zpkAes, format: 'ISO_FORMAT_0' } })],
    ])('%s -> 400 INCOMPATIBLE_KEY', async (_what, body) => {
      expectError(await translate(body()), 400, 'INCOMPATIBLE_KEY');
    });

    it('a mode-of-use E key (the TR-31 vector key) as the incoming key -> INCOMPATIBLE_KEY', async () => {
      const name = freshName('mode-e');
      expect((await rest.call('POST', '/v1/keys/import/tr31', { name, keyBlock: vectors.tr31.blockB, kbpk: { keyName: keys.kbpkB } })).status).toBe(201);
      expectError(await translate({ ...zone(), incoming: { keyName: name, format: 'ISO_FORMAT_0', pan } }), 400, 'INCOMPATIBLE_KEY');
    });

    it('an unknown key -> 404 KEY_NOT_FOUND, a missing version -> 404 KEY_VERSION_NOT_FOUND, a disabled key -> 409 KEY_DISABLED', async () => {
      expectError(await translate({ ...zone(), outgoing: { keyName: 'no-such-key', format: 'ISO_FORMAT_0' } }), 404, 'KEY_NOT_FOUND');
      expectError(await translate({ ...zone(), outgoing: { keyName: keys.zpkTdes2, keyVersion: 9, format: 'ISO_FORMAT_0' } }), 404, 'KEY_VERSION_NOT_FOUND');
      expectError(await rest.call('POST', '/v1/keys/no-such-key/export/tr31', { kbpk: { keyName: keys.kbpkB } }), 404, 'KEY_NOT_FOUND');
      const name = freshName('off');
      await rest.service.paymentKeys.importKey({ name, type: 'TDES_2KEY', purpose: 'pin', exportable: false }, Buffer.from(zpkTdes2Material, 'hex'));
      expect((await rest.call('POST', `/v1/keys/${name}/disable`)).status).toBe(200);
      expectError(await translate({ ...zone(), outgoing: { keyName: name, format: 'ISO_FORMAT_0' } }), 409, 'KEY_DISABLED');
    });
  });

  it('never logs a PIN block, PAN or key block, from any of these routes (answered or refused)', async () => {
    await translate({ incoming: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0', pan: vectors.format4.pan }, outgoing: { keyName: 'x', format: 'ISO_FORMAT_1' }, pinBlock: `${vectors.tdesDukpt.pinBlock}!` });
    await rest.send('POST', '/v1/pin/translate', `{"pinBlock":"${vectors.aesDukpt.pinBlock}"`, { 'content-type': 'application/json' });
    const text = rest.logText();
    expect(text).toContain('/v1/pin/translate');
    expect(text).toContain('/v1/keys/import/tr31');
    for (const forbidden of [...neverLogged, pan, format0Block(), format0Block('4321')]) expect(text).not.toContain(forbidden);
    const lines = rest.logs.filter((l) => typeof l.route === 'string' && (l.route.startsWith('/v1/pin/') || l.route.includes('tr31')));
    expect(lines.length).toBeGreaterThan(10);
    for (const line of lines) {
      expect(Object.keys(line).every((k) => ['durationMs', 'hostname', 'keyName', 'level', 'method', 'msg', 'pid', 'reqId', 'route', 'status', 'time'].includes(k))).toBe(true);
    }
  });
});
