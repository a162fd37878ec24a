/**
 * The PKCS#11 adapter's payment keys on SoftHSM, looked at with pkcs11js directly: templates (allowed
 * mechanisms, usage flags, sensitive / extractable), the companion objects of TDES BDKs and MAC keys
 * (present, never listed, rotated and destroyed with their version, required), the token refusing what a
 * key is not for, and DUKPT session objects gone after release. The outputs themselves are checked
 * against node:crypto and the published vectors in test/conformance/payment.pkcs11.test.ts.
 */
import { createCipheriv } from 'node:crypto';
import { pino } from 'pino';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeAllowedMechanisms } from '../../../adapters/pkcs11/allowedMechanisms.js';
import { pkcs11BackendFactory } from '../../../adapters/pkcs11/index.js';
import { decodeMetadata, encodeMetadata } from '../../../adapters/pkcs11/keyObjects.js';
import type { Backend, KeyRef } from '../../../src/backend/port.js';
import { parseKeyName, type KeyVersion } from '../../../src/keys/names.js';
import type { KeyPurpose, KeyType, KeyUsage } from '../../../src/keys/types.js';
import { createSoftHsmToken, type SoftHsmToken } from '../../helpers/softhsm.js';
import { TokenInspector } from './tokenInspector.js';

const logger = pino({ level: 'silent' });
const A = pkcs11js;
const CKR_MECHANISM_INVALID = 0x70;
const CKR_ATTRIBUTE_SENSITIVE = 0x11;
let token: SoftHsmToken;
let backend: Backend;
let inspector: TokenInspector;
let seq = 0;
const fresh = (stem: string) => parseKeyName(`${stem}-${process.pid}-${seq++}`);
const ref = (name: string, type: KeyType, version = 1): KeyRef => ({ name: parseKeyName(name), type, version: version as KeyVersion });

beforeAll(async () => {
  token = await createSoftHsmToken();
  backend = await pkcs11BackendFactory.create(token.backendConfig(), { logger });
  inspector = new TokenInspector(token.library, token.tokenLabel, token.pin);
});
afterAll(async () => {
  await backend?.close();
  await token?.cleanup();
});

interface SecretObject {
  handle: Buffer;
  id: Buffer;
  keyType: number;
  allowed: number[];
  flags: Record<number, boolean>;
}

const FLAGS = [A.CKA_SENSITIVE, A.CKA_EXTRACTABLE, A.CKA_ENCRYPT, A.CKA_DECRYPT, A.CKA_SIGN, A.CKA_VERIFY, A.CKA_WRAP, A.CKA_UNWRAP, A.CKA_DERIVE];
const ulong = (b: Buffer) => (b.length >= 8 ? Number(b.readBigUInt64LE(0)) : b.readUInt32LE(0));

/** Every secret key object labelled `name` (the key's versions and their companions), read with pkcs11js. */
function secretObjects(name: string): SecretObject[] {
  return inspector.withSession((api, session) => {
    api.C_FindObjectsInit(session, [{ type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_LABEL, value: name }]);
    const handles = api.C_FindObjects(session, 100);
    api.C_FindObjectsFinal(session);
    return handles.map((handle) => {
      const [id, keyType, allowed, ...flags] = api.C_GetAttributeValue(session, handle, [
        { type: A.CKA_ID }, { type: A.CKA_KEY_TYPE }, { type: A.CKA_ALLOWED_MECHANISMS }, ...FLAGS.map((type) => ({ type })),
      ]);
      return {
        handle, id: id!.value, keyType: ulong(keyType!.value), allowed: decodeAllowedMechanisms(allowed!.value).sort((a, b) => a - b),
        flags: Object.fromEntries(flags.map((f) => [f.type, f.value[0] === 1])),
      };
    });
  });
}

const usage = (on: number[]) => Object.fromEntries(FLAGS.slice(2).map((f) => [f, on.includes(f)]));

/** The CKR with which fn fails, or 'ok'. */
function outcome(fn: () => unknown): number | 'ok' {
  try {
    fn();
    return 'ok';
  } catch (e) {
    return (e as { code: number }).code;
  }
}

/** Session objects (CKA_TOKEN false) of this process: pkcs11js shares the module, so the adapter's are visible. */
const sessionKeyCount = () =>
  inspector.withSession((api, session) => {
    api.C_FindObjectsInit(session, [{ type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_TOKEN, value: false }]);
    const n = api.C_FindObjects(session, 1000).length;
    api.C_FindObjectsFinal(session);
    return n;
  });

describe('payment key templates', () => {
  it('a TDES_2KEY BDK: built from HSM random bytes, DES3_ECB encrypt only, plus its variant companion (DES3_ECB only), both sensitive and not extractable', async () => {
    const name = fresh('bdk');
    await backend.createKey({ name, type: 'TDES_2KEY', purpose: 'bdk' });
    const objects = secretObjects(name).sort((a, b) => a.id.length - b.id.length);
    expect(objects).toHaveLength(2);
    const [key, variant] = objects as [SecretObject, SecretObject];
    expect(variant.id).toEqual(Buffer.concat([key.id, Buffer.of(1)]));
    for (const o of objects) {
      expect(o.keyType).toBe(A.CKK_DES2);
      expect(o.allowed).toEqual([0x132]);
      expect(o.flags).toMatchObject({ [A.CKA_SENSITIVE]: true, [A.CKA_EXTRACTABLE]: false, ...usage([A.CKA_ENCRYPT]) });
    }
    // never readable, and the two halves differ (the variant is not the key)
    inspector.withSession((api, session) => {
      expect(outcome(() => api.C_GetAttributeValue(session, key.handle, [{ type: A.CKA_VALUE }]))).toBe(CKR_ATTRIBUTE_SENSITIVE);
      const kcv = (h: Buffer) => {
        api.C_EncryptInit(session, { mechanism: 0x132 }, h);
        return api.C_Encrypt(session, Buffer.alloc(8), Buffer.alloc(8));
      };
      expect(kcv(key.handle).equals(kcv(variant.handle))).toBe(false);
    });
  });

  it('a TDES_2KEY MAC key of usage M3: ECB only; its K1 companion only CBC (a DES2 key K1 K1: SoftHSM on OpenSSL 3 refuses single DES)', async () => {
    const name = fresh('mac');
    await backend.createKey({ name, type: 'TDES_2KEY', purpose: 'mac', keyUsage: 'M3' });
    const [key, k1] = secretObjects(name).sort((a, b) => a.id.length - b.id.length) as [SecretObject, SecretObject];
    expect(key.allowed).toEqual([0x132]);
    expect(key.flags).toMatchObject(usage([A.CKA_SIGN, A.CKA_ENCRYPT]));
    expect(k1.id).toEqual(Buffer.concat([key.id, Buffer.of(2)]));
    expect(k1.keyType).toBe(A.CKK_DES2);
    expect(k1.allowed).toEqual([0x133]);
    expect(k1.flags).toMatchObject({ [A.CKA_SENSITIVE]: true, [A.CKA_EXTRACTABLE]: false, ...usage([A.CKA_ENCRYPT]) });
    inspector.withSession((api, session) => {
      // single DES is what SoftHSM 2.6.1 on OpenSSL 3 cannot do: the reason for the DES2 form
      expect(outcome(() => api.C_EncryptInit(session, { mechanism: 0x122, parameter: Buffer.alloc(8) }, k1.handle))).not.toBe('ok');
      expect(outcome(() => api.C_EncryptInit(session, { mechanism: 0x132 }, k1.handle))).toBe(CKR_MECHANISM_INVALID);
    });
  });

  it('every other TDES MAC key is generated in the token, with no single-DES companion, and allows only its usage\'s mechanisms', async () => {
    const cases: Array<[KeyType, KeyUsage | undefined, number[]]> = [
      ['TDES_2KEY', undefined, [0x132, 0x133, 0x138]],
      ['TDES_2KEY', 'M1', [0x132, 0x133]],
      ['TDES_2KEY', 'M0', [0x132, 0x133]],
      ['TDES_2KEY', 'M6', [0x132, 0x138]],
      ['TDES_3KEY', 'M1', [0x132, 0x133]],
    ];
    for (const [type, keyUsage, allowed] of cases) {
      const name = fresh('mac');
      const meta = await backend.createKey({ name, type, purpose: 'mac', ...(keyUsage ? { keyUsage } : {}) });
      expect(meta.keyUsage).toBe(keyUsage);
      const objects = secretObjects(name);
      expect(objects, `${type} ${keyUsage}`).toHaveLength(1);
      expect(objects[0]!.allowed).toEqual(allowed);
      // Generated by the token: it has never been outside it.
      const [always, never] = inspector.withSession((api, session) =>
        api.C_GetAttributeValue(session, objects[0]!.handle, [{ type: A.CKA_ALWAYS_SENSITIVE }, { type: A.CKA_NEVER_EXTRACTABLE }]),
      );
      expect([always!.value[0], never!.value[0]], `${type} ${keyUsage}`).toEqual([1, 1]);
      await expect(backend.mac(ref(name, type), 'ISO9797_ALG3', Buffer.alloc(8))).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    }
    // An imported key of another MAC usage gets no companion either; an imported M3 key does.
    const m1 = fresh('mac-imp');
    await backend.importKey!({ name: m1, type: 'TDES_2KEY', purpose: 'mac', keyUsage: 'M1' }, Buffer.from('7A1C3E5B6D4F2A0E9B8C7D6E5F4A3B2C', 'hex'));
    expect(secretObjects(m1)).toHaveLength(1);
    const m3 = fresh('mac-imp');
    await backend.importKey!({ name: m3, type: 'TDES_2KEY', purpose: 'mac', keyUsage: 'M3' }, Buffer.from('5D2E8F1A3B4C6D7E0F1E2D3C4B5A6978', 'hex'));
    expect(secretObjects(m3)).toHaveLength(2);
  });

  it('a PIN key refuses DES3_CBC (no CBC oracle); TDES_3KEY BDKs and MAC keys, and other TDES kinds, have no companions', async () => {
    const pin = fresh('pin');
    await backend.createKey({ name: pin, type: 'TDES_2KEY', purpose: 'pin' });
    const [key] = secretObjects(pin) as [SecretObject];
    expect(key.allowed).toEqual([0x132]);
    inspector.withSession((api, session) => {
      expect(outcome(() => api.C_EncryptInit(session, { mechanism: 0x133, parameter: Buffer.alloc(8) }, key.handle))).toBe(CKR_MECHANISM_INVALID);
      expect(outcome(() => api.C_SignInit(session, { mechanism: 0x138 }, key.handle))).not.toBe('ok');
    });
    for (const [type, purpose] of [['TDES_3KEY', 'bdk'], ['TDES_3KEY', 'mac'], ['TDES_2KEY', 'kbpk']] as [KeyType, KeyPurpose][]) {
      const name = fresh(purpose);
      await backend.createKey({ name, type, purpose });
      expect(secretObjects(name)).toHaveLength(1);
    }
  });

  it('an exportable key is extractable (wrappable) but still sensitive; others are not extractable', async () => {
    const name = fresh('exp');
    const meta = await backend.createKey({ name, type: 'AES_128', purpose: 'kbpk', exportable: true });
    expect(meta.exportable).toBe(true);
    const [key] = secretObjects(name) as [SecretObject];
    expect(key.flags).toMatchObject({ [A.CKA_SENSITIVE]: true, [A.CKA_EXTRACTABLE]: true, ...usage([A.CKA_SIGN]) });
    inspector.withSession((api, session) => {
      expect(outcome(() => api.C_GetAttributeValue(session, key.handle, [{ type: A.CKA_VALUE }]))).toBe(CKR_ATTRIBUTE_SENSITIVE);
    });
    const other = fresh('noexp');
    expect((await backend.createKey({ name: other, type: 'AES_128', purpose: 'kbpk' })).exportable).toBeUndefined();
    expect(secretObjects(other)[0]!.flags[A.CKA_EXTRACTABLE]).toBe(false);
    await expect(backend.exportKey!(ref(other, 'AES_128'))).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
  });

  it('an imported key is the material given (its KCV), with exportable and mode of use kept in the metadata', async () => {
    const name = fresh('imp');
    const material = Buffer.from('0123456789ABCDEFFEDCBA9876543210', 'hex');
    const meta = await backend.importKey!({ name, type: 'TDES_2KEY', purpose: 'bdk', modeOfUse: 'X' }, material);
    expect(meta).toMatchObject({ type: 'TDES_2KEY', purpose: 'bdk', modeOfUse: 'X', primaryVersion: 1 });
    expect(meta.exportable).toBeUndefined();
    expect((await backend.encryptBlocks!(ref(name, 'TDES_2KEY'), Buffer.alloc(8))).toString('hex').slice(0, 6)).toBe('08d7b4');
    expect(secretObjects(name)).toHaveLength(2); // the variant companion too
    expect(secretObjects(name).every((o) => o.flags[A.CKA_EXTRACTABLE] === false)).toBe(true);
  });

  it('metadata records without exportable, modeOfUse and keyUsage (written before them) still decode; bad values do not', () => {
    const base = { revision: 0, type: 'AES_256', purpose: 'encrypt', state: 'enabled', createdAt: 'x', writtenAt: 'x', nonce: '00', versions: { 1: { createdAt: 'x', id: 'ab' } } } as const;
    expect(decodeMetadata(encodeMetadata(base))).toMatchObject({ type: 'AES_256', purpose: 'encrypt' });
    expect(decodeMetadata(encodeMetadata(base))?.exportable).toBeUndefined();
    const bad = (extra: object) => decodeMetadata(Buffer.from(JSON.stringify({ format: 2, ...base, ...extra })));
    expect(bad({ exportable: 'yes' })).toBeUndefined();
    expect(bad({ modeOfUse: 'Q' })).toBeUndefined();
    expect(bad({ keyUsage: 'M3' })).toBeUndefined(); // not a usage an AES encrypt key can carry
    expect(bad({ type: 'TDES_2KEY', purpose: 'mac', keyUsage: 'M9' })).toBeUndefined();
    expect(bad({ type: 'TDES_2KEY', purpose: 'mac', keyUsage: 'M3' })?.keyUsage).toBe('M3');
    expect(decodeMetadata(encodeMetadata(base))?.keyUsage).toBeUndefined();
    expect(bad({ versions: { 1: { createdAt: 'x', id: 'ab', companions: ['other'] } } })).toBeUndefined();
    expect(bad({ versions: { 1: { createdAt: 'x', id: 'ab', companions: ['k1'] } } })?.versions['1']?.companions).toEqual(['k1']);
    expect(bad({ format: 1, versions: { 1: 'x' } })).toBeUndefined(); // format 1 (0.1.0 had no users) is not read
  });
});

describe('companions follow their version', () => {
  it('are invisible to listKeys, rotate with the key, and are destroyed with it', async () => {
    const name = fresh('rot');
    await backend.createKey({ name, type: 'TDES_2KEY', purpose: 'mac', keyUsage: 'M3' });
    await backend.rotateKey(name);
    expect(secretObjects(name)).toHaveLength(4);
    const listed = (await backend.listKeys()).filter((k) => k.name === name);
    expect(listed).toHaveLength(1);
    expect(listed[0]!.versions.map((v) => v.version)).toEqual([1, 2]);
    // both versions compute the retail MAC (each with its own K1)
    const data = Buffer.from('4E6F77206973207468652074696D6520666F7220616C6C20', 'hex');
    const v1 = await backend.mac(ref(name, 'TDES_2KEY', 1), 'ISO9797_ALG3', data);
    const v2 = await backend.mac(ref(name, 'TDES_2KEY', 2), 'ISO9797_ALG3', data);
    expect(v1).toHaveLength(8);
    expect(v1.equals(v2)).toBe(false);
    await backend.setKeyState(name, 'disabled');
    await backend.destroyKey(name);
    expect(secretObjects(name)).toEqual([]);
  });

  it('a version whose companion is missing fails with an error, never a MAC computed some other way', async () => {
    const name = fresh('lost');
    await backend.createKey({ name, type: 'TDES_2KEY', purpose: 'mac', keyUsage: 'M3' });
    const k1 = secretObjects(name).find((o) => o.id.length === 21)!;
    inspector.withSession((api, session) => api.C_DestroyObject(session, k1.handle));
    await expect(backend.mac(ref(name, 'TDES_2KEY'), 'ISO9797_ALG3', Buffer.alloc(16))).rejects.toMatchObject({ code: 'INTERNAL' });
    await expect(backend.describeKey(name)).rejects.toMatchObject({ code: 'INTERNAL' });
    // listing still works, without the damaged key
    expect((await backend.listKeys()).some((k) => k.name === name)).toBe(false);
  });
});

describe('DUKPT transaction keys are session objects, gone once released', () => {
  it('TDES: one session object while held, none after release; it decrypts as the X9.24-1 PIN key does', async () => {
    const name = fresh('tbdk');
    await backend.importKey!({ name, type: 'TDES_2KEY', purpose: 'bdk' }, Buffer.from('0123456789ABCDEFFEDCBA9876543210', 'hex'));
    const before = sessionKeyCount();
    const key = await backend.deriveDukptKey!(ref(name, 'TDES_2KEY'), { scheme: 'tdes', ksn: Buffer.from('FFFF9876543210E00001', 'hex') });
    try {
      expect(sessionKeyCount()).toBe(before + 1);
      const clear = Buffer.from('041274EDCBA9876F', 'hex');
      const expected = createCipheriv('des-ede-ecb', Buffer.from('042666B49184CF5C68DE9628D0397B36', 'hex'), null).setAutoPadding(false).update(clear);
      expect((await backend.encryptBlocks!(key, clear)).toString('hex')).toBe(expected.toString('hex'));
      expect(expected.toString('hex').toUpperCase()).toBe('1B9C1845EB993A7A');
    } finally {
      await backend.releaseTransientKey!(key);
    }
    expect(sessionKeyCount()).toBe(before);
    await expect(backend.encryptBlocks!(key, Buffer.alloc(8))).rejects.toMatchObject({ name: 'HsmBridgeError' });
  });

  it('AES: the intermediate keys are destroyed as the derivation goes; the working key is AES_ECB only, not extractable', async () => {
    const name = fresh('abdk');
    await backend.importKey!({ name, type: 'AES_256', purpose: 'bdk' }, Buffer.alloc(32, 0x5a));
    const before = sessionKeyCount();
    // counter with several bits set: several intermediate steps, 32-byte ones for an AES-256 BDK
    const key = await backend.deriveDukptKey!(ref(name, 'AES_256'), { scheme: 'aes', ksn: Buffer.from('123456789012345600000007', 'hex'), workingKey: 'AES_128' });
    try {
      expect(sessionKeyCount()).toBe(before + 1);
      const working = inspector.withSession((api, session) => {
        api.C_FindObjectsInit(session, [{ type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_TOKEN, value: false }]);
        const [h] = api.C_FindObjects(session, 1000);
        api.C_FindObjectsFinal(session);
        const [allowed, sensitive, extractable, derive] = api.C_GetAttributeValue(session, h!, [
          { type: A.CKA_ALLOWED_MECHANISMS }, { type: A.CKA_SENSITIVE }, { type: A.CKA_EXTRACTABLE }, { type: A.CKA_DERIVE },
        ]);
        return { allowed: decodeAllowedMechanisms(allowed!.value), sensitive: sensitive!.value[0], extractable: extractable!.value[0], derive: derive!.value[0] };
      });
      expect(working).toEqual({ allowed: [0x1081], sensitive: 1, extractable: 0, derive: 0 });
    } finally {
      await backend.releaseTransientKey!(key);
    }
    expect(sessionKeyCount()).toBe(before);
  });

  it('a TDES_3KEY BDK cannot do TDES DUKPT (INCOMPATIBLE_KEY), and a TDES BDK no AES DUKPT', async () => {
    const name = fresh('t3bdk');
    await backend.createKey({ name, type: 'TDES_3KEY', purpose: 'bdk' });
    await expect(backend.deriveDukptKey!(ref(name, 'TDES_3KEY'), { scheme: 'tdes', ksn: Buffer.from('FFFF9876543210E00001', 'hex') })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    await expect(
      backend.deriveDukptKey!(ref(name, 'TDES_3KEY'), { scheme: 'aes', ksn: Buffer.from('123456789012345600000001', 'hex'), workingKey: 'AES_128' }),
    ).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
  });
});
