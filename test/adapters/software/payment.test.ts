/**
 * The software backend's payment side, beyond the shared conformance suite: how it stores the payment
 * attributes (exportable, mode of use) and binds them to the sealed record, that keystores written before
 * them still open, the parity form of imported TDES keys, and the backend's own limits on what each kind
 * of key may do (it does not rely on the core for those).
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TransientKeys } from '../../../adapters/software/transientKeys.js';
import type { Backend, KeyRef, NewKey } from '../../../src/backend/port.js';
import { HsmBridgeError } from '../../../src/errors.js';
import { parseKeyName, type KeyVersion } from '../../../src/keys/names.js';
import type { KeyPurpose, KeyType, KeyUsage, ModeOfUse } from '../../../src/keys/types.js';
import { hasOddParity } from '../../../src/payment/crypto/parity.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../../helpers/software.js';
import { openBackend, readKeystoreJson, unsealWithNode, type KeystoreJson } from './support.js';
import { nodeEcb } from '../../../src/conformance/reference/nodeBlockCiphers.js';

let h: SoftwareBackendHarness;
const open: Backend[] = [];
const start = async () => {
  const b = await openBackend(h);
  open.push(b);
  return b;
};
const path = () => h.config.keystorePath;
const masterKey = () => process.env[h.config.masterKeyEnv]!;
const hex = (s: string) => Buffer.from(s, 'hex');

beforeEach(async () => {
  h = await createSoftwareBackendConfig();
});
afterEach(async () => {
  for (const b of open.splice(0)) await b.close();
  await h.cleanup();
});

const newKey = (name: string, type: KeyType, purpose: KeyPurpose, extra: { exportable?: boolean; modeOfUse?: ModeOfUse; keyUsage?: KeyUsage } = {}): NewKey => ({
  name: parseKeyName(name),
  type,
  purpose,
  ...extra,
});
const ref = (name: string, type: KeyType): KeyRef => ({ name: parseKeyName(name), version: 1 as KeyVersion, type });
const tdesEcb = (key: Buffer, data: Buffer) => nodeEcb('tdes', 'encrypt', key, data);

describe('payment attributes in the keystore', () => {
  it('stores exportable and mode of use in clear, binds them to the sealed record, and keeps them across reopen', async () => {
    const b = await start();
    await b.importKey!(newKey('zpk', 'TDES_2KEY', 'pin', { exportable: true, modeOfUse: 'B' }), hex('0123456789ABCDEFFEDCBA9876543210'));
    await b.createKey(newKey('mak', 'AES_128', 'mac', { modeOfUse: 'G' }));
    await b.createKey(newKey('plain', 'AES_256', 'pin'));
    const file = readKeystoreJson(path());
    expect(file.keys.find((k) => k.name === 'zpk')).toMatchObject({ exportable: true, modeOfUse: 'B' });
    expect(file.keys.find((k) => k.name === 'plain')).not.toHaveProperty('exportable');
    expect(file.keys.find((k) => k.name === 'plain')).not.toHaveProperty('modeOfUse');
    // the documented AAD forms, checked with node:crypto alone
    expect(unsealWithNode(path(), masterKey(), 'zpk', 1)).toEqual(hex('0123456789ABCDEFFEDCBA9876543210'));
    expect(unsealWithNode(path(), masterKey(), 'mak', 1)).toHaveLength(16);
    expect(unsealWithNode(path(), masterKey(), 'plain', 1)).toHaveLength(32);
    await b.close();

    const again = await start();
    expect(await again.describeKey(parseKeyName('zpk'))).toMatchObject({ type: 'TDES_2KEY', purpose: 'pin', exportable: true, modeOfUse: 'B' });
    expect(await again.describeKey(parseKeyName('mak'))).toMatchObject({ modeOfUse: 'G' });
    const plain = await again.describeKey(parseKeyName('plain'));
    expect(plain.exportable).toBeUndefined();
    expect(plain.modeOfUse).toBeUndefined();
    // a rotation keeps the attributes, and its record is bound to them too
    const rotated = await again.rotateKey(parseKeyName('zpk'));
    expect(rotated).toMatchObject({ exportable: true, modeOfUse: 'B', primaryVersion: 2 });
    expect(unsealWithNode(path(), masterKey(), 'zpk', 2)).toHaveLength(16);
  });

  it('an edit that makes a key exportable, or changes or drops its mode of use, stops the start', async () => {
    const b = await start();
    await b.createKey(newKey('fixed', 'TDES_2KEY', 'pin'));
    await b.createKey(newKey('moded', 'AES_128', 'pin', { modeOfUse: 'E', exportable: true }));
    await b.createKey(newKey('ec', 'EC_P256', 'sign'));
    await b.close();
    const original = JSON.stringify(readKeystoreJson(path()));
    const attempts: Array<[string, (d: KeystoreJson) => void, RegExp]> = [
      ['make a key exportable', (d) => { d.keys[0]!.exportable = true; }, /key fixed version 1 fails authentication/],
      ['give a key a mode of use', (d) => { d.keys[0]!.modeOfUse = 'B'; }, /key fixed version 1 fails authentication/],
      ['widen a mode of use', (d) => { d.keys[1]!.modeOfUse = 'B'; }, /key moded version 1 fails authentication/],
      ['drop a mode of use', (d) => { delete d.keys[1]!.modeOfUse; }, /key moded version 1 fails authentication/],
      ['drop exportable', (d) => { delete d.keys[1]!.exportable; }, /key moded version 1 fails authentication/],
      ['an exportable key pair', (d) => { d.keys[2]!.exportable = true; }, /key ec is marked exportable but is not a payment key/],
      ['an unknown mode of use', (d) => { d.keys[1]!.modeOfUse = 'Z'; }, /malformed/],
    ];
    for (const [what, edit, expected] of attempts) {
      const doc = JSON.parse(original) as KeystoreJson;
      edit(doc);
      writeFileSync(path(), JSON.stringify(doc));
      await expect(start(), what).rejects.toThrow(expected);
    }
    writeFileSync(path(), original);
    expect((await (await start()).describeKey(parseKeyName('moded'))).modeOfUse).toBe('E');
  });

  it('stores the key usage in clear, binds it to the sealed record (v3 AAD), keeps it across reopen and rotation; an edit of it stops the start', async () => {
    const b = await start();
    await b.importKey!(newKey('m3', 'TDES_2KEY', 'mac', { keyUsage: 'M3', modeOfUse: 'V' }), hex('5D2E8F1A3B4C6D7E0F1E2D3C4B5A6978'));
    await b.createKey(newKey('k0', 'AES_256', 'kbpk', { keyUsage: 'K0' }));
    await b.createKey(newKey('m1', 'TDES_2KEY', 'mac', { keyUsage: 'M1' }));
    const file = readKeystoreJson(path());
    expect(file.keys.find((k) => k.name === 'm3')).toMatchObject({ keyUsage: 'M3', modeOfUse: 'V' });
    expect(unsealWithNode(path(), masterKey(), 'm3', 1)).toHaveLength(16);
    expect(unsealWithNode(path(), masterKey(), 'k0', 1)).toHaveLength(32);
    expect((await b.rotateKey(parseKeyName('k0'))).keyUsage).toBe('K0');
    expect(unsealWithNode(path(), masterKey(), 'k0', 2)).toHaveLength(32);
    await b.close();
    const again = await start();
    expect((await again.describeKey(parseKeyName('m3'))).keyUsage).toBe('M3');
    expect((await again.listKeys()).map((k) => [k.name, k.keyUsage])).toEqual([['m3', 'M3'], ['k0', 'K0'], ['m1', 'M1']]);
    // The backend holds a MAC key to its usage as well as the core does.
    const expectIncompatible = (p: Promise<unknown>, what: string) => expect(p, what).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    await expectIncompatible(again.mac(ref('m1', 'TDES_2KEY'), 'ISO9797_ALG3', Buffer.alloc(8)), 'the retail MAC with an M1 key');
    await expectIncompatible(again.verifyMac(ref('m3', 'TDES_2KEY'), 'ISO9797_ALG1', Buffer.alloc(8), Buffer.alloc(8)), 'algorithm 1 with an M3 key');
    await again.close();
    const original = JSON.stringify(readKeystoreJson(path()));
    const attempts: Array<[string, (d: KeystoreJson) => void, RegExp]> = [
      ['turn M1 into M3', (d) => { d.keys[2]!.keyUsage = 'M3'; }, /key m1 version 1 fails authentication/],
      ['drop a usage', (d) => { delete d.keys[0]!.keyUsage; }, /key m3 version 1 fails authentication/],
      ['K0 into K1', (d) => { d.keys[1]!.keyUsage = 'K1'; }, /key k0 version 1 fails authentication/],
      ['a usage the key cannot have', (d) => { d.keys[1]!.keyUsage = 'M3'; }, /key k0 has a key usage its type and purpose cannot have/],
      ['an unknown usage', (d) => { d.keys[1]!.keyUsage = 'Z9'; }, /malformed/],
    ];
    for (const [what, edit, expected] of attempts) {
      const doc = JSON.parse(original) as KeystoreJson;
      edit(doc);
      writeFileSync(path(), JSON.stringify(doc));
      await expect(start(), what).rejects.toThrow(expected);
    }
  });

  it('opens a keystore written before the payment attributes and purposes, TDES encrypt keys included', async () => {
    // Written with node:crypto alone in the v1 format: no attribute fields, v1 record AAD.
    const mk = Buffer.from(masterKey(), 'base64');
    const seal = (aad: unknown, plaintext: Buffer) => {
      const iv = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', mk, iv);
      c.setAAD(Buffer.from(typeof aad === 'string' ? aad : JSON.stringify(aad)));
      return { iv: iv.toString('base64'), data: Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]).toString('base64') };
    };
    const record = (name: string, type: KeyType, purpose: string, material: Buffer) => ({
      name, type, purpose, state: 'enabled', createdAt: '2025-01-01T00:00:00.000Z',
      versions: [{ version: 1, createdAt: '2025-01-01T00:00:00.000Z', material: seal(['hsm-bridge software keystore record v1', name, 1, type, purpose], material) }],
    });
    const aes = randomBytes(32);
    writeFileSync(path(), JSON.stringify({
      format: 'hsm-bridge-software-keystore',
      formatVersion: 1,
      masterKeyCheck: seal('hsm-bridge software keystore master key check v1', Buffer.alloc(0)),
      keys: [record('old-aes', 'AES_256', 'encrypt', aes), record('old-tdes', 'TDES_2KEY', 'encrypt', hex('0123456789ABCDEFFEDCBA9876543210'))],
    }));
    const b = await start();
    const meta = await b.describeKey(parseKeyName('old-aes'));
    expect(meta).toMatchObject({ type: 'AES_256', purpose: 'encrypt' });
    expect(meta.exportable).toBeUndefined();
    expect(meta.modeOfUse).toBeUndefined();
    const sealed = await b.encrypt(ref('old-aes', 'AES_256'), 'AES_GCM', Buffer.from('still works'));
    expect(await b.decrypt(ref('old-aes', 'AES_256'), 'AES_GCM', sealed)).toEqual(Buffer.from('still works'));
    // the legacy TDES key is kept (so the next write keeps it too) but serves nothing
    expect(await b.describeKey(parseKeyName('old-tdes'))).toMatchObject({ type: 'TDES_2KEY', purpose: 'encrypt' });
    await expect(b.encryptBlocks!(ref('old-tdes', 'TDES_2KEY'), Buffer.alloc(8))).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    await b.createKey(newKey('new', 'AES_128', 'pin'));
    expect(readKeystoreJson(path()).keys.map((k) => k.name)).toEqual(['old-aes', 'old-tdes', 'new']);
  });
});

describe('importKey', () => {
  it('gives TDES material odd parity (DES ignores those bits), leaves the caller its buffer, and keeps the key itself', async () => {
    const b = await start();
    const even = hex('3F419E1CB7079442AA37474C2EFBF8B8'); // TR-31 A.7.2.2's key, parity as published
    expect(hasOddParity(even)).toBe(false);
    const given = Buffer.from(even);
    await b.importKey!(newKey('tpk', 'TDES_2KEY', 'pin', { exportable: true }), given);
    expect(given).toEqual(even); // neither zeroed nor changed: the core owns it
    const stored = unsealWithNode(path(), masterKey(), 'tpk', 1);
    expect(hasOddParity(stored)).toBe(true);
    for (let i = 0; i < 16; i++) expect(stored[i]! & 0xfe).toBe(even[i]! & 0xfe);
    // the same DES key: same KCV (57C409), same encryption as node:crypto with the published bytes
    const kcv = await b.encryptBlocks!(ref('tpk', 'TDES_2KEY'), Buffer.alloc(8));
    expect(kcv.subarray(0, 3).toString('hex').toUpperCase()).toBe('57C409');
    expect(kcv).toEqual(tdesEcb(even, Buffer.alloc(8)));
    expect(await b.exportKey!(ref('tpk', 'TDES_2KEY'))).toEqual(stored);
    await b.close();
    await start(); // the keystore's own parity check accepts what importKey stored
  });

  it('refuses wrong lengths, key types it cannot import, names in use, and exportable non-payment keys', async () => {
    const b = await start();
    const cases: Array<[NewKey, number, string]> = [
      [newKey('a', 'TDES_2KEY', 'pin'), 24, 'INVALID_ARGUMENT'],
      [newKey('b', 'TDES_3KEY', 'pin'), 16, 'INVALID_ARGUMENT'],
      [newKey('c', 'AES_256', 'bdk'), 16, 'INVALID_ARGUMENT'],
      [newKey('d', 'AES_128', 'kbpk'), 15, 'INVALID_ARGUMENT'],
      [newKey('e', 'HMAC_256', 'mac'), 32, 'INCOMPATIBLE_KEY'],
      [newKey('f', 'EC_P256', 'sign'), 32, 'INCOMPATIBLE_KEY'],
      [newKey('g', 'AES_128', 'encrypt', { exportable: true }), 16, 'INCOMPATIBLE_KEY'],
    ];
    for (const [key, length, code] of cases) {
      await expect(b.importKey!(key, randomBytes(length)), `${key.type} ${length}`).rejects.toMatchObject({ code });
    }
    await b.importKey!(newKey('taken', 'AES_128', 'pin'), randomBytes(16));
    await expect(b.importKey!(newKey('taken', 'AES_128', 'pin'), randomBytes(16))).rejects.toMatchObject({ code: 'KEY_ALREADY_EXISTS' });
    expect((await b.listKeys()).map((k) => k.name)).toEqual(['taken']);
  });

  it('createKey refuses exportable on anything but a TDES or AES payment key', async () => {
    const b = await start();
    for (const [type, purpose] of [['AES_256', 'encrypt'], ['AES_128', 'wrap'], ['HMAC_256', 'mac'], ['EC_P256', 'sign']] as const) {
      await expect(b.createKey(newKey(`x-${type}`, type, purpose, { exportable: true }))).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    }
    expect(await b.listKeys()).toEqual([]);
  });
});

describe('what each kind of key may do', () => {
  const expectIncompatible = (p: Promise<unknown> | undefined, what: string) => expect(p, what).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });

  it('raw blocks: PIN keys both ways, every TDES payment key encrypts (its KCV), nothing else', async () => {
    const b = await start();
    const made = async (name: string, type: KeyType, purpose: KeyPurpose) => {
      await b.createKey(newKey(name, type, purpose));
      return ref(name, type);
    };
    const tdesPin = await made('tdes-pin', 'TDES_2KEY', 'pin');
    const aesPin = await made('aes-pin', 'AES_128', 'pin');
    for (const key of [tdesPin, aesPin]) {
      const size = key.type === 'AES_128' ? 16 : 8;
      const block = randomBytes(size * 2);
      expect(await b.decryptBlocks!(key, await b.encryptBlocks!(key, block))).toEqual(block);
    }
    for (const purpose of ['mac', 'bdk', 'kbpk'] as const) {
      const tdes = await made(`tdes-${purpose}`, 'TDES_3KEY', purpose);
      expect(await b.encryptBlocks!(tdes, Buffer.alloc(8))).toHaveLength(8);
      await expectIncompatible(b.decryptBlocks!(tdes, Buffer.alloc(8)), `decrypt with a TDES ${purpose} key`);
      const aes = await made(`aes-${purpose}`, 'AES_256', purpose);
      await expectIncompatible(b.encryptBlocks!(aes, Buffer.alloc(16)), `encrypt with an AES ${purpose} key`);
      await expectIncompatible(b.decryptBlocks!(aes, Buffer.alloc(16)), `decrypt with an AES ${purpose} key`);
    }
    for (const [type, purpose] of [['AES_256', 'encrypt'], ['AES_128', 'wrap'], ['HMAC_256', 'mac']] as const) {
      const key = await made(`other-${type}-${purpose}`, type, purpose);
      await expectIncompatible(b.encryptBlocks!(key, Buffer.alloc(16)), `ECB with an ${type} ${purpose} key`);
      await expectIncompatible(b.decryptBlocks!(key, Buffer.alloc(16)), `ECB with an ${type} ${purpose} key`);
    }
    for (const bad of [0, 7, 9, 15]) {
      await expect(b.encryptBlocks!(tdesPin, Buffer.alloc(bad))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    await expect(b.decryptBlocks!(aesPin, Buffer.alloc(8))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('MACs: a MAC key its family; AES payment keys AES_CMAC and TDES KBPKs TDES_CMAC, computed only', async () => {
    const b = await start();
    const made = async (name: string, type: KeyType, purpose: KeyPurpose) => {
      await b.createKey(newKey(name, type, purpose));
      return ref(name, type);
    };
    const data = Buffer.from('0200|4111111111111111|000000010000');
    const tdesMac = await made('tdes-mac', 'TDES_3KEY', 'mac');
    expect(await b.mac(tdesMac, 'ISO9797_ALG1', data)).toHaveLength(8);
    await expectIncompatible(b.mac(tdesMac, 'ISO9797_ALG3', data), 'retail MAC with a 3-key TDES key');
    await expectIncompatible(b.mac(tdesMac, 'AES_CMAC', data), 'AES_CMAC with a TDES key');
    await expectIncompatible(b.mac(tdesMac, 'HMAC_SHA256', data), 'HMAC with a TDES key');
    const aesMac = await made('aes-mac', 'AES_128', 'mac');
    await expectIncompatible(b.mac(aesMac, 'TDES_CMAC', data), 'TDES_CMAC with an AES key');
    const hmac = await made('hmac', 'HMAC_256', 'mac');
    await expectIncompatible(b.mac(hmac, 'AES_CMAC', data), 'AES_CMAC with an HMAC key');

    for (const purpose of ['pin', 'bdk', 'kbpk'] as const) {
      const aes = await made(`aes-${purpose}`, 'AES_256', purpose);
      const tag = await b.mac(aes, 'AES_CMAC', Buffer.alloc(16));
      await expectIncompatible(b.verifyMac(aes, 'AES_CMAC', Buffer.alloc(16), tag), `verifyMac with an AES ${purpose} key`);
      const tdes = await made(`tdes-${purpose}`, 'TDES_2KEY', purpose);
      if (purpose === 'kbpk') expect(await b.mac(tdes, 'TDES_CMAC', data)).toHaveLength(8);
      else await expectIncompatible(b.mac(tdes, 'TDES_CMAC', data), `TDES_CMAC with a TDES ${purpose} key`);
      await expectIncompatible(b.mac(tdes, 'ISO9797_ALG1', data), `ISO 9797 MAC with a TDES ${purpose} key`);
    }
    const aesData = await made('aes-data', 'AES_256', 'encrypt');
    await expectIncompatible(b.mac(aesData, 'AES_CMAC', data), 'CMAC with a data key');
  });

  it('DUKPT: only a BDK of the scheme’s family derives; bad KSNs and too-long working keys are refused', async () => {
    const b = await start();
    await b.importKey!(newKey('tdes-bdk', 'TDES_2KEY', 'bdk'), hex('0123456789ABCDEFFEDCBA9876543210'));
    await b.importKey!(newKey('aes-bdk', 'AES_128', 'bdk'), hex('FEDCBA9876543210F1F1F1F1F1F1F1F1'));
    await b.importKey!(newKey('tdes3-bdk', 'TDES_3KEY', 'bdk'), randomBytes(24));
    await b.importKey!(newKey('pin', 'TDES_2KEY', 'pin'), hex('0123456789ABCDEFFEDCBA9876543210'));
    const tdesKsn = hex('FFFF9876543210E00001');
    const aesKsn = hex('123456789012345600000001');
    await expectIncompatible(b.deriveDukptKey!(ref('pin', 'TDES_2KEY'), { scheme: 'tdes', ksn: tdesKsn }), 'a PIN key as BDK');
    await expectIncompatible(b.deriveDukptKey!(ref('aes-bdk', 'AES_128'), { scheme: 'tdes', ksn: tdesKsn }), 'TDES DUKPT from an AES BDK');
    await expectIncompatible(b.deriveDukptKey!(ref('tdes3-bdk', 'TDES_3KEY'), { scheme: 'tdes', ksn: tdesKsn }), 'TDES DUKPT from a 3-key BDK');
    await expectIncompatible(b.deriveDukptKey!(ref('tdes-bdk', 'TDES_2KEY'), { scheme: 'aes', ksn: aesKsn, workingKey: 'AES_128' }), 'AES DUKPT from a TDES BDK');
    await expect(b.deriveDukptKey!(ref('aes-bdk', 'AES_128'), { scheme: 'aes', ksn: aesKsn, workingKey: 'AES_256' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(b.deriveDukptKey!(ref('tdes-bdk', 'TDES_2KEY'), { scheme: 'tdes', ksn: hex('FFFF9876543210E00000') })).rejects.toBeInstanceOf(HsmBridgeError);
    await expect(b.deriveDukptKey!(ref('aes-bdk', 'AES_128'), { scheme: 'aes', ksn: tdesKsn, workingKey: 'AES_128' })).rejects.toBeInstanceOf(HsmBridgeError);
  });

  it('exportKey gives a copy of an exportable key only', async () => {
    const b = await start();
    const material = randomBytes(32);
    await b.importKey!(newKey('out', 'AES_256', 'kbpk', { exportable: true }), material);
    await b.importKey!(newKey('stay', 'AES_256', 'kbpk'), randomBytes(32));
    const first = await b.exportKey!(ref('out', 'AES_256'));
    expect(first).toEqual(material);
    first.fill(0); // the core zeroes what it gets; the key itself is untouched
    expect(await b.exportKey!(ref('out', 'AES_256'))).toEqual(material);
    await expectIncompatible(b.exportKey!(ref('stay', 'AES_256')), 'a non-exportable key');
  });
});

describe('transient keys', () => {
  it('release zeroes the held key; a released or foreign key is an HsmBridgeError; release never throws', async () => {
    const keys = new TransientKeys();
    const material = randomBytes(16);
    const key = keys.hold('aes', material);
    expect(key).toEqual({ transient: true, family: 'aes', bits: 128 });
    expect(Object.isFrozen(key)).toBe(true);
    expect(keys.material(key)).toBe(material);
    keys.release(key);
    expect(material.every((x) => x === 0)).toBe(true);
    expect(() => keys.material(key)).toThrow(HsmBridgeError);
    keys.release(key);
    expect(() => keys.material({ transient: true, family: 'aes', bits: 128 })).toThrow(HsmBridgeError);
  });

  it('a transient key of one backend instance is refused by another', async () => {
    const b = await start();
    await b.importKey!(newKey('bdk', 'TDES_2KEY', 'bdk'), hex('0123456789ABCDEFFEDCBA9876543210'));
    const transient = await b.deriveDukptKey!(ref('bdk', 'TDES_2KEY'), { scheme: 'tdes', ksn: hex('FFFF9876543210E00001') });
    const h2 = await createSoftwareBackendConfig();
    const other = await openBackend(h2);
    await expect(other.decryptBlocks!(transient, Buffer.alloc(8))).rejects.toBeInstanceOf(HsmBridgeError);
    await other.close();
    await h2.cleanup();
    await b.releaseTransientKey!(transient);
  });
});
