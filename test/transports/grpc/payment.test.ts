/**
 * hsmbridge.v1.PaymentService end to end over a real gRPC server and client: the same vectors and
 * independent checks as the REST suite (../paymentSupport.ts), the payment fields of KeyService (Key
 * views, CreateKey exportable, MAC KCVs), and the status and hsmbridge-error-code of each refusal.
 */
import { generateKeyPairSync } from 'node:crypto';
import { status } from '@grpc/grpc-js';
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
  tdesDecrypt,
  tdesEncrypt,
  tdesKcv,
  vectors,
  otpTdesMaterial,
  zpkTdes2Material,
  type PlantedKeys,
} from '../paymentSupport.js';
import { freshName } from '../rest/restFixture.js';
import { expectGrpcError } from './grpcClient.js';
import { startGrpc, type GrpcFixture } from './issue3Fixture.js';

describe.each(paymentTargets)('gRPC PaymentService on the $label backend', (target) => {
  let grpc: GrpcFixture;
  let keys: PlantedKeys;
  const pan = '5555555551234567';
  const format0Block = (pin = '1234') => tdesEncrypt(zpkTdesMaterial, format0(pin, pan)).toString('hex').toUpperCase();
  /** A format 0 block from the PIN pad kept for OTP entry. */
  const otpBlock = (otp = '1234') => tdesEncrypt(otpTdesMaterial, format0(otp, pan)).toString('hex').toUpperCase();

  beforeAll(async () => {
    grpc = await startGrpc(target);
    keys = await plantKeys(grpc.service);
    grpc.otpIncomingKeys.push(keys.otpTdes, keys.bdkTdes);
  });
  afterAll(async () => {
    await grpc?.close();
  });

  const pay = (method: string, request: Record<string, unknown>) => grpc.client.callPayment(method, request);
  const zone = () => ({
    incoming: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0', pan },
    outgoing: { keyName: keys.zpkTdes2, format: 'ISO_FORMAT_0' },
    pinBlock: format0Block(),
  });

  it('TranslatePin: TDES format 0 -> AES format 4 -> TDES format 0, checked with node:crypto', async () => {
    const toAes = await pay('TranslatePin', { ...zone(), outgoing: { keyName: keys.zpkAes, format: 'ISO_FORMAT_4' } });
    expect(toAes.incoming).toEqual({ keyName: keys.zpkTdes, keyVersion: 1, keyCheckValue: tdesKcv(zpkTdesMaterial) });
    expect(toAes.outgoing).toEqual({ keyName: keys.zpkAes, keyVersion: 1, keyCheckValue: aesKcv(vectors.format4.key) });
    expect(decipherFormat4(vectors.format4.key, toAes.pinBlock, pan).slice(0, 16)).toBe('441234AAAAAAAAAA');
    const back = await pay('TranslatePin', {
      incoming: { keyName: keys.zpkAes, format: 'ISO_FORMAT_4', pan },
      outgoing: { keyName: keys.zpkTdes2, keyVersion: 1, format: 'ISO_FORMAT_0' },
      pinBlock: toAes.pinBlock.toLowerCase(),
    });
    expect(back.outgoing.keyCheckValue).toBe(tdesKcv(zpkTdes2Material));
    expect(tdesDecrypt(zpkTdes2Material, Buffer.from(back.pinBlock, 'hex'))).toEqual(format0('1234', pan));
  });

  it('TranslatePin from TDES and AES DUKPT terminals (published vectors)', async () => {
    const t = vectors.tdesDukpt;
    const fromTdes = await pay('TranslatePin', {
      incoming: { keyName: keys.bdkTdes, format: 'ISO_FORMAT_0', pan: t.pan, dukpt: { ksn: t.ksn } },
      outgoing: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0' },
      pinBlock: t.pinBlock,
    });
    expect(tdesDecrypt(zpkTdesMaterial, Buffer.from(fromTdes.pinBlock, 'hex')).toString('hex').toUpperCase()).toBe(t.clearBlock);
    expect(fromTdes.incoming.keyCheckValue).toBe(vectors.tdesKcv.kcv);

    const a = vectors.aesDukpt;
    const fromAes = await pay('TranslatePin', {
      incoming: { keyName: keys.bdkAes, format: 'ISO_FORMAT_4', pan: a.pan, dukpt: { ksn: a.ksn, workingKey: 'AES_128' } },
      outgoing: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0' },
      pinBlock: a.pinBlock,
    });
    expect(pinOfFormat0(tdesDecrypt(zpkTdesMaterial, Buffer.from(fromAes.pinBlock, 'hex')), a.pan)).toBe('1234');
  });

  it('PinToJwe to a participant (decrypted by the test with jose) and to a backend key (DecryptJwe)', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const participant = freshName('fsp').slice(0, 32);
    const added = await grpc.client.callFspiop('AddParticipantKey', { id: participant, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }), use: 'enc' });
    const r = await pay('PinToJwe', {
      incoming: { keyName: keys.otpTdes, format: 'ISO_FORMAT_0', pan },
      pinBlock: otpBlock('987654'),
      participant: { participant },
      references: { transactionId: 'tx-7' },
    });
    expect(r.kid).toBe(added.keyId);
    expect(r.incoming.keyCheckValue).toBe(tdesKcv(otpTdesMaterial));
    const { plaintext } = await compactDecrypt(r.jwe, privateKey);
    expect(JSON.parse(Buffer.from(plaintext).toString('utf8'))).toEqual({ otp: '987654', transactionId: 'tx-7' });

    const rsa = freshName('otp-rsa');
    await grpc.client.call('CreateKey', { name: rsa, type: 'RSA_2048', purpose: 'encrypt' });
    const toKey = await pay('PinToJwe', {
      incoming: { keyName: keys.bdkTdes, format: 'ISO_FORMAT_0', pan: vectors.tdesDukpt.pan, dukpt: { ksn: vectors.tdesDukpt.ksn } },
      pinBlock: vectors.tdesDukpt.pinBlock,
      key: { keyName: rsa },
    });
    const opened = await grpc.client.callJose('DecryptJwe', { jwe: toKey.jwe });
    expect(JSON.parse(Buffer.from(opened.plaintext).toString('utf8'))).toEqual({ otp: '1234' });

    // No PIN is translated into the OTP key; a PIN key not configured for the OTP flow is refused.
    await expectGrpcError(
      pay('TranslatePin', { incoming: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0', pan }, outgoing: { keyName: keys.otpTdes, format: 'ISO_FORMAT_0' }, pinBlock: format0Block() }),
      status.INVALID_ARGUMENT,
      'INCOMPATIBLE_KEY',
    );
    await expectGrpcError(
      pay('PinToJwe', { incoming: { keyName: keys.zpkTdes2, format: 'ISO_FORMAT_0', pan }, pinBlock: format0Block(), key: { keyName: rsa } }),
      status.INVALID_ARGUMENT,
      'INCOMPATIBLE_KEY',
    );
  });

  it('ImportTr31: the published B and D blocks, with their KCVs and the Key view', async () => {
    const b = await pay('ImportTr31', { name: freshName('b'), keyBlock: vectors.tr31.blockB, kbpk: { keyName: keys.kbpkB } });
    expect(b.keyCheckValue).toBe(vectors.tr31.kcvB);
    expect(b.kbpk).toEqual({ keyName: keys.kbpkB, keyVersion: 1, keyCheckValue: tdesKcv(vectors.tr31.kbpkB) });
    expect(b.key).toMatchObject({ type: 'TDES_2KEY', purpose: 'pin', modeOfUse: 'E', exportable: true });
    expect(b.key.versions[0].keyCheckValue).toBe(vectors.tr31.kcvB);
    expect(await grpc.client.call('GetKey', { name: b.key.name })).toEqual(b.key);
    const d = await pay('ImportTr31', { name: freshName('d'), keyBlock: vectors.tr31.blockD, kbpk: { keyName: keys.kbpkD, keyVersion: 1 } });
    expect(d.keyCheckValue).toBe(aesKcv(vectors.tr31.key));
    expect(d.key).toMatchObject({ type: 'AES_128', modeOfUse: 'E' });
  });

  it('CreateKey exportable + ExportTr31 + re-import: the test opens the block; the KCVs agree', async () => {
    const name = freshName('exp');
    const created = await grpc.client.call('CreateKey', { name, type: 'AES_128', purpose: 'pin', exportable: true });
    expect(created.exportable).toBe(true);
    const kcv = created.versions[0].keyCheckValue;
    expect(kcv).toMatch(/^[0-9A-F]{6}$/);
    const exported = await pay('ExportTr31', { name, kbpk: { keyName: keys.kbpkD } });
    expect(exported).toMatchObject({ keyName: name, keyVersion: 1, keyCheckValue: kcv, kbpk: { keyName: keys.kbpkD } });
    const opened = await openBlock(exported.keyBlock, vectors.tr31.kbpkD);
    expect(opened.header).toMatchObject({ version: 'D', keyUsage: 'P0', algorithm: 'A', exportability: 'N' });
    expect(aesKcv(opened.key)).toBe(kcv);
    const again = await pay('ImportTr31', { name: freshName('re'), keyBlock: exported.keyBlock, kbpk: { keyName: keys.kbpkD } });
    expect(again.keyCheckValue).toBe(kcv);
    expect(again.key.exportable).toBe(false);
    await expectGrpcError(pay('ExportTr31', { name: again.key.name, kbpk: { keyName: keys.kbpkD } }), status.INVALID_ARGUMENT, 'INCOMPATIBLE_KEY');
  });

  it('GenerateMac / VerifyMac with a payment MAC key: node:crypto agrees, the KCV comes back, truncated MACs verify', async () => {
    const data = Buffer.from('Now is the time for all ');
    const r = await grpc.client.call('GenerateMac', { name: keys.macTdes, algorithm: 'ISO9797_ALG3', data });
    expect(r.mac).toEqual(retailMac(macTdesMaterial, data));
    expect(r.keyCheckValue).toBe(tdesKcv(macTdesMaterial));
    const v = await grpc.client.call('VerifyMac', { name: keys.macTdes, algorithm: 'ISO9797_ALG3', data, mac: r.mac.subarray(0, 4) });
    expect(v).toMatchObject({ valid: true, keyCheckValue: tdesKcv(macTdesMaterial) });
    const hmac = freshName('hmac');
    await grpc.client.call('CreateKey', { name: hmac, type: 'HMAC_256' });
    const h = await grpc.client.call('GenerateMac', { name: hmac, data });
    expect(h.keyCheckValue).toBeUndefined();
    expect((await grpc.client.call('GetKey', { name: hmac })).versions[0].keyCheckValue).toBeUndefined();
  });

  describe('refusals: status and code', () => {
    const invalid = (request: Record<string, unknown>, method = 'TranslatePin') =>
      expectGrpcError(pay(method, request), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    const incompatible = (request: Record<string, unknown>) => expectGrpcError(pay('TranslatePin', request), status.INVALID_ARGUMENT, 'INCOMPATIBLE_KEY');

    it('bad input is INVALID_ARGUMENT, never echoing the input', async () => {
      const bad = await invalid({ ...zone(), pinBlock: 'Z1' + vectors.tdesDukpt.pinBlock.slice(2) });
      expect(bad.details).toBe('pin_block must be a PIN block: 16 or 32 hex digits');
      await invalid({ ...zone(), pinBlock: 'A'.repeat(18) });
      const panError = await invalid({ ...zone(), incoming: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0', pan: '5555x55551234567' } });
      expect(panError.details).not.toContain('5555');
      await invalid({ ...zone(), outgoing: { keyName: keys.zpkTdes2, format: 'ISO_FORMAT_1' } });
      await invalid({ ...zone(), outgoing: { keyName: keys.zpkTdes2, format: 'ISO_FORMAT_2' } });
      await invalid({ ...zone(), incoming: { keyName: keys.bdkTdes, format: 'ISO_FORMAT_0', pan, dukpt: { ksn: 'FFFF9876543210E0000' } } });
      await invalid({ outgoing: zone().outgoing, pinBlock: format0Block() });
      await invalid({ incoming: zone().incoming, pinBlock: format0Block(), references: { otp: 'x' }, participant: { participant: 'p' } }, 'PinToJwe');
      await invalid({ incoming: zone().incoming, pinBlock: format0Block() }, 'PinToJwe');
      await invalid({ name: freshName('t'), keyBlock: 'B'.repeat(4097), kbpk: { keyName: keys.kbpkB } }, 'ImportTr31');
      await invalid({ name: freshName('t'), keyBlock: vectors.tr31.blockB }, 'ImportTr31');
      await invalid({ name: keys.zpkTdes, kbpk: { keyName: keys.kbpkB }, exportability: 'Q' }, 'ExportTr31');
    });

    it('wrong key kinds and modes of use are INCOMPATIBLE_KEY', async () => {
      await incompatible({ ...zone(), incoming: { keyName: keys.macTdes, format: 'ISO_FORMAT_0', pan } });
      await incompatible({ ...zone(), outgoing: { keyName: keys.zpkAes, format: 'ISO_FORMAT_0' } });
      const modeE = await pay('ImportTr31', { name: freshName('e'), keyBlock: vectors.tr31.blockB, kbpk: { keyName: keys.kbpkB } });
      await incompatible({ ...zone(), incoming: { keyName: modeE.key.name, format: 'ISO_FORMAT_0', pan } });
      await expectGrpcError(pay('ImportTr31', { name: freshName('t'), keyBlock: vectors.tr31.blockB, kbpk: { keyName: keys.kbpkD } }), status.INVALID_ARGUMENT, 'INCOMPATIBLE_KEY');
    });

    it('unknown keys are NOT_FOUND, disabled keys FAILED_PRECONDITION, a taken name ALREADY_EXISTS', async () => {
      await expectGrpcError(pay('TranslatePin', { ...zone(), outgoing: { keyName: 'no-such-key', format: 'ISO_FORMAT_0' } }), status.NOT_FOUND, 'KEY_NOT_FOUND');
      await expectGrpcError(pay('ExportTr31', { name: 'no-such-key', kbpk: { keyName: keys.kbpkB } }), status.NOT_FOUND, 'KEY_NOT_FOUND');
      await expectGrpcError(
        pay('PinToJwe', { incoming: zone().incoming, pinBlock: format0Block(), participant: { participant: 'nobody' } }),
        status.NOT_FOUND,
        'KEY_NOT_FOUND',
      );
      const name = freshName('off');
      await grpc.service.paymentKeys.importKey({ name, type: 'TDES_2KEY', purpose: 'pin', exportable: false }, Buffer.from(zpkTdes2Material, 'hex'));
      await grpc.client.call('DisableKey', { name });
      await expectGrpcError(pay('TranslatePin', { ...zone(), outgoing: { keyName: name, format: 'ISO_FORMAT_0' } }), status.FAILED_PRECONDITION, 'KEY_DISABLED');
      await expectGrpcError(pay('ImportTr31', { name: keys.zpkAes, keyBlock: vectors.tr31.blockB, kbpk: { keyName: keys.kbpkB } }), status.ALREADY_EXISTS, 'KEY_ALREADY_EXISTS');
    });
  });

  it('reports PaymentService SERVING, and never logs a PIN block, PAN or key block', async () => {
    expect(await grpc.health('hsmbridge.v1.PaymentService')).toEqual({ status: 'SERVING' });
    const text = grpc.logText();
    expect(text).toContain('hsmbridge.v1.PaymentService/TranslatePin');
    for (const forbidden of [...neverLogged, pan, format0Block(), format0Block('987654')]) expect(text).not.toContain(forbidden);
    const translateLines = grpc.logs().filter((l) => l.method === 'hsmbridge.v1.PaymentService/TranslatePin');
    expect(translateLines.length).toBeGreaterThan(5);
    expect(translateLines.some((l) => l.keyName === keys.zpkTdes)).toBe(true);
  });
});
