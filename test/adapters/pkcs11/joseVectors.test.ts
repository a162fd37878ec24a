/**
 * The PKCS#11 side of JOSE with keys of known value, checked against published vectors: keys are imported
 * into the token (with pkcs11js directly) under hsm-bridge's label, CKA_ID and metadata object, so that
 * the backend uses them as its own. AES key wrap against RFC 3394 §4, ECDH against RFC 7518 Appendix C,
 * RSA-OAEP (SHA-1) against RFC 7516 A.1, dir and A128KW against RFC 7520 §5.6 and §5.8, all through
 * KeyService and JoseService. Also: the session objects that carry wrapped data and shared secrets are
 * gone afterwards, and keys get the usage flags their purpose needs.
 */
import { createPrivateKey, createPublicKey, randomBytes, type JsonWebKey } from 'node:crypto';
import * as jose from 'jose';
import { pino } from 'pino';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pkcs11BackendFactory } from '../../../adapters/pkcs11/index.js';
import type { Backend } from '../../../src/backend/port.js';
import { decode } from '../../../src/jose/base64url.js';
import { JoseService } from '../../../src/jose/joseService.js';
import type { KeyPurpose, KeyType } from '../../../src/keys/types.js';
import { openEnvelope } from '../../../src/operations/ciphertext.js';
import { KeyService } from '../../../src/operations/keyService.js';
import { createSoftHsmToken, type SoftHsmToken } from '../../helpers/softhsm.js';
import { rfc3394, rfc7516a1, rfc7518c, rfc7520 } from '../../jose/vectors.js';
import { TokenInspector } from './tokenInspector.js';

const A = pkcs11js;
const P256_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex');
let token: SoftHsmToken;
let backend: Backend;
let keys: KeyService;
let jose_: JoseService;
let inspector: TokenInspector;
let seq = 0;

beforeAll(async () => {
  token = await createSoftHsmToken();
  backend = await pkcs11BackendFactory.create(token.backendConfig(), { logger: pino({ level: 'silent' }) });
  keys = new KeyService(backend, { limits: { maxDataBytes: 64 * 1024, maxRandomBytes: 1024 }, metadataCacheTtlMs: 0 });
  jose_ = new JoseService(keys);
  inspector = new TokenInspector(token.library, token.tokenLabel, token.pin);
});
afterAll(async () => {
  await backend?.close();
  await token?.cleanup();
});

const b64u = (s: string | undefined) => Buffer.from(s!, 'base64url');

/** Imports version 1 of a key of known value from its objects' templates, under a fresh name. */
function importKey(type: KeyType, purpose: KeyPurpose, objects: pkcs11js.Template[]): string {
  const name = `known-${type.toLowerCase()}-${purpose}-${seq++}`;
  inspector.importKnownKey(name, type, purpose, objects);
  return name;
}

/** An AES key of known value: a data key (encrypt) or a key-encryption key (wrap), with the usage flags of `purpose` unless `flags` says otherwise. */
const aesKey = (value: Buffer, purpose: 'encrypt' | 'wrap', flags: { wrap: boolean } = { wrap: purpose === 'wrap' }) => {
  const type: KeyType = value.length === 16 ? 'AES_128' : 'AES_256';
  const encrypt = purpose === 'encrypt';
  return importKey(type, purpose, [[
    { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_KEY_TYPE, value: A.CKK_AES }, { type: A.CKA_VALUE, value },
    { type: A.CKA_SENSITIVE, value: true }, { type: A.CKA_EXTRACTABLE, value: false },
    { type: A.CKA_ENCRYPT, value: encrypt }, { type: A.CKA_DECRYPT, value: encrypt }, { type: A.CKA_WRAP, value: flags.wrap }, { type: A.CKA_UNWRAP, value: flags.wrap },
  ]]);
};

const ecAgreementKey = (jwk: JsonWebKey) =>
  importKey('EC_P256', 'agree', [
    [
      { type: A.CKA_CLASS, value: A.CKO_PRIVATE_KEY }, { type: A.CKA_KEY_TYPE, value: A.CKK_EC }, { type: A.CKA_EC_PARAMS, value: P256_PARAMS },
      { type: A.CKA_VALUE, value: b64u(jwk.d) }, { type: A.CKA_SENSITIVE, value: true }, { type: A.CKA_DERIVE, value: true },
    ],
    [
      { type: A.CKA_CLASS, value: A.CKO_PUBLIC_KEY }, { type: A.CKA_KEY_TYPE, value: A.CKK_EC }, { type: A.CKA_EC_PARAMS, value: P256_PARAMS },
      { type: A.CKA_EC_POINT, value: Buffer.concat([Buffer.from([0x04, 0x41, 0x04]), b64u(jwk.x), b64u(jwk.y)]) },
    ],
  ]);

const rsaEncryptionKey = (jwk: JsonWebKey) =>
  importKey('RSA_2048', 'encrypt', [
    [
      { type: A.CKA_CLASS, value: A.CKO_PRIVATE_KEY }, { type: A.CKA_KEY_TYPE, value: A.CKK_RSA },
      { type: A.CKA_MODULUS, value: b64u(jwk.n) }, { type: A.CKA_PUBLIC_EXPONENT, value: b64u(jwk.e) }, { type: A.CKA_PRIVATE_EXPONENT, value: b64u(jwk.d) },
      { type: A.CKA_PRIME_1, value: b64u(jwk.p) }, { type: A.CKA_PRIME_2, value: b64u(jwk.q) }, { type: A.CKA_EXPONENT_1, value: b64u(jwk.dp) },
      { type: A.CKA_EXPONENT_2, value: b64u(jwk.dq) }, { type: A.CKA_COEFFICIENT, value: b64u(jwk.qi) },
      { type: A.CKA_SENSITIVE, value: true }, { type: A.CKA_DECRYPT, value: true },
    ],
    [
      { type: A.CKA_CLASS, value: A.CKO_PUBLIC_KEY }, { type: A.CKA_KEY_TYPE, value: A.CKK_RSA },
      { type: A.CKA_MODULUS, value: b64u(jwk.n) }, { type: A.CKA_PUBLIC_EXPONENT, value: b64u(jwk.e) }, { type: A.CKA_ENCRYPT, value: true },
    ],
  ]);

/** Session objects (CKA_TOKEN false) of this process that are secret keys: the adapter's temporary ones. */
function sessionSecrets(): number {
  return inspector.withSession((api, session) => {
    api.C_FindObjectsInit(session, [{ type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_TOKEN, value: false }]);
    const found = api.C_FindObjects(session, 100);
    api.C_FindObjectsFinal(session);
    return found.length;
  });
}

describe('PKCS#11 JOSE mechanisms with keys of known value', () => {
  for (const v of rfc3394) {
    it(`AES_KW: the RFC 3394 vector with a ${v.kek.length * 4}-bit KEK, through C_WrapKey / C_UnwrapKey`, async () => {
      const name = aesKey(Buffer.from(v.kek, 'hex'), 'wrap');
      const keyData = Buffer.from(v.keyData, 'hex');
      const wrapped = await keys.encrypt({ name, algorithm: 'AES_KW', plaintext: keyData });
      expect(openEnvelope(wrapped.ciphertext).raw.data.toString('hex').toUpperCase()).toBe(v.wrapped);
      expect((await keys.decrypt({ name, algorithm: 'AES_KW', keyVersion: 1, ciphertext: Buffer.from(v.wrapped, 'hex') })).plaintext).toEqual(keyData);
      const tampered = Buffer.from(v.wrapped, 'hex');
      tampered[9]! ^= 1;
      await expect(keys.decrypt({ name, algorithm: 'AES_KW', keyVersion: 1, ciphertext: tampered })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
      expect(sessionSecrets()).toBe(0);
    });
  }

  it('AES_KW with a wrap key whose token object lacks CKA_WRAP/CKA_UNWRAP is INCOMPATIBLE_KEY, not a failure of the HSM', async () => {
    const name = aesKey(randomBytes(32), 'wrap', { wrap: false });
    await expect(keys.encrypt({ name, algorithm: 'AES_KW', plaintext: randomBytes(32) })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    await expect(keys.decrypt({ name, algorithm: 'AES_KW', keyVersion: 1, ciphertext: randomBytes(40) })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    expect(sessionSecrets()).toBe(0);
  });

  it('ECDH: Z with the RFC 7518 Appendix C key is the printed Z; a JWE made with the appendix ephemeral key decrypts', async () => {
    const name = ecAgreementKey(rfc7518c.bob);
    const alice = createPrivateKey({ key: rfc7518c.alice, format: 'jwk' });
    const { sharedSecret } = await keys.deriveSharedSecret({ name, peerPublicKey: createPublicKey(alice) });
    expect([...sharedSecret]).toEqual(rfc7518c.z);
    expect(sessionSecrets()).toBe(0);
    const jwe = await new jose.CompactEncrypt(Buffer.from('appendix C'))
      .setProtectedHeader({ alg: 'ECDH-ES', enc: 'A128GCM' })
      .setKeyManagementParameters({ epk: (await jose.importJWK(rfc7518c.alice, 'ECDH-ES', { extractable: true })) as jose.CryptoKey, apu: Buffer.from('Alice'), apv: Buffer.from('Bob') })
      .encrypt(createPublicKey({ key: { ...rfc7518c.bob, d: undefined }, format: 'jwk' }));
    const header = JSON.parse(decode(jwe.split('.')[0], 'h').toString());
    expect(header).toMatchObject({ apu: rfc7518c.apu, apv: rfc7518c.apv, epk: { x: rfc7518c.alice.x, y: rfc7518c.alice.y } });
    expect((await jose_.decryptJwe({ jwe, key: name })).plaintext.toString()).toBe('appendix C');
    expect(sessionSecrets()).toBe(0);
  });

  it('RSA-OAEP (SHA-1): the RFC 7516 A.1 JWE decrypts with the appendix key in the token', async () => {
    const name = rsaEncryptionKey(rfc7516a1.jwk);
    expect(await jose_.decryptJwe({ jwe: rfc7516a1.compact, key: name })).toMatchObject({ alg: 'RSA-OAEP', enc: 'A256GCM', keyVersion: 1 });
    expect((await jose_.decryptJwe({ jwe: rfc7516a1.compact, key: name })).plaintext.toString()).toBe(rfc7516a1.plaintext);
  });

  it('RFC 7520 §5.6 (dir, A128GCM) and §5.8 (A128KW, A128GCM) decrypt with the cookbook keys in the token', async () => {
    const dir = aesKey(decode(rfc7520.dir.k, 'k'), 'encrypt');
    expect((await jose_.decryptJwe({ jwe: rfc7520.dir.compact, key: dir })).plaintext.toString()).toBe(rfc7520.plaintext);
    const kw = aesKey(decode(rfc7520.a128kw.k, 'k'), 'wrap');
    expect((await jose_.decryptJwe({ jwe: rfc7520.a128kw.compact, key: kw })).plaintext.toString()).toBe(rfc7520.plaintext);
    const otherKek = aesKey(randomBytes(16), 'wrap');
    await expect(jose_.decryptJwe({ jwe: rfc7520.a128kw.compact, key: otherKek })).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
    // the purposes are kept apart: a data key does not unwrap, a key-encryption key is not a "dir" key
    await expect(jose_.decryptJwe({ jwe: rfc7520.a128kw.compact, key: dir })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    await expect(jose_.decryptJwe({ jwe: rfc7520.dir.compact, key: kw })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    expect(sessionSecrets()).toBe(0);
  });

  it('keys get the usage flags of their purpose: agreement keys derive and nothing else, AES wrap keys wrap and AES data keys do not', async () => {
    const agree = (await keys.createKey({ name: `gen-agree-${seq++}`, type: 'EC_P256', purpose: 'agree' })).name;
    const [priv] = inspector.objects(agree, A.CKO_PRIVATE_KEY, [A.CKA_DERIVE, A.CKA_SIGN, A.CKA_DECRYPT, A.CKA_UNWRAP, A.CKA_EXTRACTABLE]);
    expect(Object.fromEntries(priv!.flags)).toEqual({ [A.CKA_DERIVE]: true, [A.CKA_SIGN]: false, [A.CKA_DECRYPT]: false, [A.CKA_UNWRAP]: false, [A.CKA_EXTRACTABLE]: false });
    const usage = [A.CKA_WRAP, A.CKA_UNWRAP, A.CKA_ENCRYPT, A.CKA_DECRYPT, A.CKA_SIGN, A.CKA_DERIVE];
    const aes = (await keys.createKey({ name: `gen-aes-${seq++}`, type: 'AES_256' })).name;
    expect((await keys.getKey(aes)).purpose).toBe('encrypt');
    const [secret] = inspector.objects(aes, A.CKO_SECRET_KEY, usage);
    expect(Object.fromEntries(secret!.flags)).toEqual({ [A.CKA_WRAP]: false, [A.CKA_UNWRAP]: false, [A.CKA_ENCRYPT]: true, [A.CKA_DECRYPT]: true, [A.CKA_SIGN]: false, [A.CKA_DERIVE]: false });
    const kek = (await keys.createKey({ name: `gen-kek-${seq++}`, type: 'AES_128', purpose: 'wrap' })).name;
    const [wrapping] = inspector.objects(kek, A.CKO_SECRET_KEY, usage);
    expect(Object.fromEntries(wrapping!.flags)).toEqual({ [A.CKA_WRAP]: true, [A.CKA_UNWRAP]: true, [A.CKA_ENCRYPT]: false, [A.CKA_DECRYPT]: false, [A.CKA_SIGN]: false, [A.CKA_DERIVE]: false });
    const signing = (await keys.createKey({ name: `gen-ec-${seq++}`, type: 'EC_P256' })).name;
    const [signPriv] = inspector.objects(signing, A.CKO_PRIVATE_KEY, [A.CKA_DERIVE]);
    expect(signPriv!.flags.get(A.CKA_DERIVE)).toBe(false);
  });
});
