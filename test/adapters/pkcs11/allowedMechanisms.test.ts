/**
 * CKA_ALLOWED_MECHANISMS on SoftHSM: every key object carries the mechanisms of its purpose, read back
 * with pkcs11js directly, and the token refuses the others (raw RSA, ECB, other MACs) whatever the usage
 * flags say. The raw-RSA OAEP fallback is opt-in: without it, RSA_OAEP_SHA256 is not offered on SoftHSM.
 */
import { pino } from 'pino';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeAllowedMechanisms } from '../../../adapters/pkcs11/allowedMechanisms.js';
import { pkcs11BackendFactory } from '../../../adapters/pkcs11/index.js';
import type { Backend } from '../../../src/backend/port.js';
import { parseKeyName, type KeyVersion } from '../../../src/keys/names.js';
import type { KeyPurpose, KeyType } from '../../../src/keys/types.js';
import { createSoftHsmToken, type SoftHsmToken } from '../../helpers/softhsm.js';
import { TokenInspector } from './tokenInspector.js';

const logger = pino({ level: 'silent' });
const A = pkcs11js;
const CKR_MECHANISM_INVALID = 0x70;
/** Refused by the usage flags (CKR_KEY_FUNCTION_NOT_PERMITTED) or by the allowed list: either will do there. */
const REFUSED = [0x68, CKR_MECHANISM_INVALID];
let token: SoftHsmToken;
let withFallback: Backend;
let withoutFallback: Backend;
let inspector: TokenInspector;
let seq = 0;
const fresh = (stem: string) => parseKeyName(`${stem}-${process.pid}-${seq++}`);

beforeAll(async () => {
  token = await createSoftHsmToken();
  withFallback = await pkcs11BackendFactory.create(token.backendConfig(), { logger });
  withoutFallback = await pkcs11BackendFactory.create(token.backendConfig({ allowRawRsaOaepFallback: false }), { logger });
  inspector = new TokenInspector(token.library, token.tokenLabel, token.pin);
});
afterAll(async () => {
  await withFallback?.close();
  await withoutFallback?.close();
  await token?.cleanup();
});

/** The one object of `cls` labelled `name`, on the inspector's own session. */
function onObject<T>(name: string, cls: number, fn: (api: pkcs11js.PKCS11, session: Buffer, handle: Buffer) => T): T {
  return inspector.withSession((api, session) => {
    api.C_FindObjectsInit(session, [{ type: A.CKA_CLASS, value: cls }, { type: A.CKA_LABEL, value: name }]);
    const [handle, more] = api.C_FindObjects(session, 2);
    api.C_FindObjectsFinal(session);
    expect(handle).toBeDefined();
    expect(more).toBeUndefined();
    return fn(api, session, handle!);
  });
}

const allowedOn = (name: string, cls: number) =>
  onObject(name, cls, (api, session, h) => decodeAllowedMechanisms(api.C_GetAttributeValue(session, h, [{ type: A.CKA_ALLOWED_MECHANISMS }])[0]!.value));

/** The CKR with which `init` fails, or 'ok'. */
function initOutcome(init: () => void): number | 'ok' {
  try {
    init();
    return 'ok';
  } catch (e) {
    return (e as { code: number }).code;
  }
}

describe('CKA_ALLOWED_MECHANISMS', () => {
  // Written out here rather than taken from the adapter, so that a change there has to be made twice.
  const rsaSign = [0x1, 0xd, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45];
  const cases: [KeyType, KeyPurpose, number, number[]][] = [
    ['RSA_2048', 'sign', A.CKO_PRIVATE_KEY, rsaSign],
    ['RSA_2048', 'encrypt', A.CKO_PRIVATE_KEY, [0x9, 0x3]], // the harness turns the fallback on
    ['EC_P256', 'sign', A.CKO_PRIVATE_KEY, [0x1041, 0x1044, 0x1045]],
    ['ED25519', 'sign', A.CKO_PRIVATE_KEY, [0x1057]],
    ['AES_256', 'encrypt', A.CKO_SECRET_KEY, [0x1087]],
    ['AES_128', 'wrap', A.CKO_SECRET_KEY, [0x2109]],
    ['TDES_3KEY', 'pin', A.CKO_SECRET_KEY, [0x132]],
    ['TDES_3KEY', 'mac', A.CKO_SECRET_KEY, [0x133, 0x132, 0x138]],
    ['TDES_3KEY', 'bdk', A.CKO_SECRET_KEY, [0x132]],
    ['TDES_2KEY', 'kbpk', A.CKO_SECRET_KEY, [0x138, 0x132]],
    ['AES_128', 'pin', A.CKO_SECRET_KEY, [0x1081, 0x108a]],
    ['AES_128', 'mac', A.CKO_SECRET_KEY, [0x108a]],
    ['AES_256', 'bdk', A.CKO_SECRET_KEY, [0x1105, 0x108a]],
    ['AES_256', 'kbpk', A.CKO_SECRET_KEY, [0x108a]],
    ['HMAC_256', 'mac', A.CKO_SECRET_KEY, [0x251]],
    ['HMAC_256', 'tokenize', A.CKO_SECRET_KEY, [0x251]],
    ['AES_128', 'fpe', A.CKO_SECRET_KEY, [0x1081]],
    ['AES_192', 'fpe', A.CKO_SECRET_KEY, [0x1081]],
    ['AES_256', 'fpe', A.CKO_SECRET_KEY, [0x1081]],
  ];
  for (const [type, purpose, cls, expected] of cases) {
    it(`${type} for ${purpose}: ${expected.map((m) => `0x${m.toString(16)}`).join(', ')}`, async () => {
      const name = fresh(type.toLowerCase());
      await withFallback.createKey({ name, type, purpose });
      expect(allowedOn(name, cls).sort((a, b) => a - b)).toEqual([...expected].sort((a, b) => a - b));
      if (cls === A.CKO_PRIVATE_KEY) expect(allowedOn(name, A.CKO_PUBLIC_KEY).sort((a, b) => a - b)).toEqual([...expected].sort((a, b) => a - b));
    });
  }

  it('an RSA signing key cannot do raw RSA (decrypt or sign), nor PKCS#1 v1.5 decryption', async () => {
    const name = fresh('rsa-sign');
    await withFallback.createKey({ name, type: 'RSA_2048', purpose: 'sign' });
    onObject(name, A.CKO_PRIVATE_KEY, (api, session, h) => {
      expect(REFUSED).toContain(initOutcome(() => api.C_DecryptInit(session, { mechanism: 0x3 }, h)));
      expect(REFUSED).toContain(initOutcome(() => api.C_DecryptInit(session, { mechanism: 0x1 }, h)));
      // CKA_SIGN is true: only the allowed list stops raw RSA here
      expect(initOutcome(() => api.C_SignInit(session, { mechanism: 0x3 }, h))).toBe(CKR_MECHANISM_INVALID);
      // what it is for still works
      expect(initOutcome(() => api.C_SignInit(session, { mechanism: 0x40 }, h))).toBe('ok');
      api.C_Sign(session, Buffer.from('m'), Buffer.alloc(256));
    });
  });

  it('an RSA encryption key made without the fallback cannot do raw RSA; it can decrypt with OAEP', async () => {
    const name = fresh('rsa-enc');
    await withoutFallback.createKey({ name, type: 'RSA_2048', purpose: 'encrypt' });
    expect(allowedOn(name, A.CKO_PRIVATE_KEY)).toEqual([0x9]);
    onObject(name, A.CKO_PRIVATE_KEY, (api, session, h) => {
      // CKA_DECRYPT is true: only the allowed list stops raw RSA (which would sign) here
      expect(initOutcome(() => api.C_DecryptInit(session, { mechanism: 0x3 }, h))).toBe(CKR_MECHANISM_INVALID);
      expect(REFUSED).toContain(initOutcome(() => api.C_SignInit(session, { mechanism: 0x1 }, h)));
      const sha1Oaep = { mechanism: 0x9, parameter: { type: A.CK_PARAMS_RSA_OAEP, hashAlg: 0x220, mgf: A.CKG_MGF1_SHA1, source: 1 } as pkcs11js.RsaOAEP };
      expect(initOutcome(() => api.C_DecryptInit(session, sha1Oaep, h))).toBe('ok');
      expect(() => api.C_Decrypt(session, Buffer.alloc(256, 1), Buffer.alloc(256))).toThrow(); // ends the operation
    });
  });

  it('an AES key cannot do ECB or CBC; an HMAC key cannot do another MAC', async () => {
    const aes = fresh('aes');
    await withFallback.createKey({ name: aes, type: 'AES_128', purpose: 'encrypt' });
    onObject(aes, A.CKO_SECRET_KEY, (api, session, h) => {
      expect(initOutcome(() => api.C_EncryptInit(session, { mechanism: 0x1081 }, h))).toBe(CKR_MECHANISM_INVALID);
      expect(initOutcome(() => api.C_DecryptInit(session, { mechanism: 0x1082, parameter: Buffer.alloc(16) }, h))).toBe(CKR_MECHANISM_INVALID);
    });
    const hmac = fresh('hmac');
    await withFallback.createKey({ name: hmac, type: 'HMAC_256', purpose: 'mac' });
    onObject(hmac, A.CKO_SECRET_KEY, (api, session, h) => {
      expect(initOutcome(() => api.C_SignInit(session, { mechanism: 0x221 /* SHA_1_HMAC */ }, h))).toBe(CKR_MECHANISM_INVALID);
    });
  });
});

describe('AES data keys and key-encryption keys are apart in the token', () => {
  /** A session generic secret to wrap, and the CKR with which C_WrapKey under `kek` fails, or 'ok'. */
  const wrapOutcome = (api: pkcs11js.PKCS11, session: Buffer, kek: Buffer) => {
    const secret = api.C_CreateObject(session, [
      { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_KEY_TYPE, value: A.CKK_GENERIC_SECRET },
      { type: A.CKA_TOKEN, value: false }, { type: A.CKA_SENSITIVE, value: false }, { type: A.CKA_EXTRACTABLE, value: true },
      { type: A.CKA_VALUE, value: Buffer.alloc(32, 7) },
    ]);
    try {
      return initOutcome(() => api.C_WrapKey(session, { mechanism: 0x2109 }, kek, secret, Buffer.alloc(40)));
    } finally {
      api.C_DestroyObject(session, secret);
    }
  };

  it('an encrypt key has no CKA_WRAP/CKA_UNWRAP and cannot wrap; a wrap key has no CKA_ENCRYPT/CKA_DECRYPT and cannot do AES-GCM', async () => {
    const dataKey = fresh('aes-data');
    const kek = fresh('aes-kek');
    await withFallback.createKey({ name: dataKey, type: 'AES_256', purpose: 'encrypt' });
    await withFallback.createKey({ name: kek, type: 'AES_256', purpose: 'wrap' });
    const usage = [A.CKA_ENCRYPT, A.CKA_DECRYPT, A.CKA_WRAP, A.CKA_UNWRAP, A.CKA_SIGN, A.CKA_DERIVE];
    const flagsOf = (name: string) => Object.fromEntries(inspector.objects(name, A.CKO_SECRET_KEY, usage)[0]!.flags);
    const f = (encrypt: boolean, wrap: boolean) => ({
      [A.CKA_ENCRYPT]: encrypt, [A.CKA_DECRYPT]: encrypt, [A.CKA_WRAP]: wrap, [A.CKA_UNWRAP]: wrap, [A.CKA_SIGN]: false, [A.CKA_DERIVE]: false,
    });
    expect(flagsOf(dataKey)).toEqual(f(true, false));
    expect(flagsOf(kek)).toEqual(f(false, true));
    const gcm = { mechanism: 0x1087, parameter: { type: A.CK_PARAMS_AES_GCM, iv: Buffer.alloc(12), ivBits: 96, tagBits: 128 } as pkcs11js.AesGCM };
    onObject(dataKey, A.CKO_SECRET_KEY, (api, session, h) => {
      expect(REFUSED).toContain(wrapOutcome(api, session, h));
      expect(initOutcome(() => api.C_EncryptInit(session, gcm, h))).toBe('ok');
      api.C_Encrypt(session, Buffer.alloc(16), Buffer.alloc(32)); // ends the operation
    });
    onObject(kek, A.CKO_SECRET_KEY, (api, session, h) => {
      expect(REFUSED).toContain(initOutcome(() => api.C_EncryptInit(session, gcm, h)));
      expect(REFUSED).toContain(initOutcome(() => api.C_DecryptInit(session, gcm, h)));
      expect(wrapOutcome(api, session, h)).toBe('ok');
    });
  });
});

describe('allowRawRsaOaepFallback', () => {
  it('off (the default): SoftHSM, which does OAEP only with SHA-1, offers no RSA_OAEP_SHA256', async () => {
    expect(withoutFallback.capabilities().encrypt).not.toContain('RSA_OAEP_SHA256');
    const name = fresh('no-fallback');
    await withoutFallback.createKey({ name, type: 'RSA_2048', purpose: 'encrypt' });
    await expect(withoutFallback.decrypt({ name, type: 'RSA_2048', version: 1 as KeyVersion }, 'RSA_OAEP_SHA256', { data: Buffer.alloc(256, 1) })).rejects.toMatchObject({
      code: 'UNSUPPORTED_BY_BACKEND',
    });
  });

  it('on: RSA_OAEP_SHA256 is offered', () => {
    expect(withFallback.capabilities().encrypt).toContain('RSA_OAEP_SHA256');
  });

  it('the config schema takes it as a boolean, and maxQueuedRequests as a whole number', async () => {
    const { validateSection } = await import('../../../src/config/load.js');
    const check = (c: object) => () => validateSection(pkcs11BackendFactory.configSchema, c, '/backend/pkcs11');
    expect(check({ library: '/x.so', tokenLabel: 't', allowRawRsaOaepFallback: true, maxQueuedRequests: 0 })).not.toThrow();
    expect(check({ library: '/x.so', tokenLabel: 't', allowRawRsaOaepFallback: 'yes' })).toThrow();
    expect(check({ library: '/x.so', tokenLabel: 't', maxQueuedRequests: -1 })).toThrow();
  });
});
