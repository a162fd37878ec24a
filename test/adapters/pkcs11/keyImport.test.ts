/**
 * Wrapped import (BYOK) and key ceremonies on a real SoftHSM token. Keys are wrapped here independently
 * with node:crypto (RSA-OAEP SHA-1 of a fresh AES-256 key under the wrapping key's public half, then RFC
 * 5649 of the target), and what the imported keys do is checked against node:crypto with the original
 * material; the token is inspected with pkcs11js directly (attributes, and no object left behind after a
 * failure). A second process on the same token sees and continues a half-done ceremony.
 */
import { execFile } from 'node:child_process';
import { constants, createCipheriv, createHash, createHmac, createPublicKey, generateKeyPairSync, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pkcs11BackendFactory } from '../../../adapters/pkcs11/index.js';
import { newKeyObjectId } from '../../../adapters/pkcs11/keyObjects.js';
import { probeUnwrapsInside, unwrapTransportKey, unwrapVersionObjects } from '../../../adapters/pkcs11/keyUnwrap.js';
import { unpooled } from '../../../adapters/pkcs11/worker/protocol.js';
import { readPublicKeySpki } from '../../../adapters/pkcs11/publicKey.js';
import type { SignAlgorithm } from '../../../src/algorithms/registry.js';
import type { Backend, ImportTarget, KeyRef, NewKey, WrappedKey } from '../../../src/backend/port.js';
import { newCeremonyId, type CeremonyPlan, type ComponentEntry } from '../../../src/ceremonies/record.js';
import { HsmBridgeError, type ErrorCode } from '../../../src/errors.js';
import { parseKeyName, type KeyName, type KeyVersion } from '../../../src/keys/names.js';
import type { KeyPurpose, KeyType } from '../../../src/keys/types.js';
import { setOddParity } from '../../../src/payment/crypto/parity.js';
import { nodeCmacOfZeros, nodeEcb } from '../../../src/conformance/reference/nodeBlockCiphers.js';
import { nodeVerifies } from '../../../src/conformance/reference/nodeVerify.js';
import { createSoftHsmToken, type SoftHsmToken } from '../../helpers/softhsm.js';
import { TokenInspector } from './tokenInspector.js';

const A = pkcs11js;
const logger = pino({ level: 'silent' });
const KWP_IV = Buffer.from('A65959A6', 'hex');
let token: SoftHsmToken;
let backend: Backend;
let inspector: TokenInspector;
let wrappingKey: KeyRef;
let wrappingPublic: KeyObject;
let otherWrappingPublic: KeyObject;
let seq = 0;
const fresh = (stem: string) => parseKeyName(`${stem}-${process.pid}-${seq++}`);
const ref = (name: KeyName, type: KeyType, version = 1): KeyRef => ({ name, type, version: version as KeyVersion });

beforeAll(async () => {
  token = await createSoftHsmToken();
  backend = await pkcs11BackendFactory.create(token.backendConfig(), { logger });
  inspector = new TokenInspector(token.library, token.tokenLabel, token.pin);
  const made = await backend.createKey({ name: parseKeyName('import-wrap'), type: 'RSA_3072', purpose: 'wrap' });
  wrappingKey = ref(made.name, 'RSA_3072');
  wrappingPublic = createPublicKey({ key: made.versions[0]!.publicKeySpki!, format: 'der', type: 'spki' });
  const other = await backend.createKey({ name: parseKeyName('import-wrap-other'), type: 'RSA_3072', purpose: 'wrap' });
  otherWrappingPublic = createPublicKey({ key: other.versions[0]!.publicKeySpki!, format: 'der', type: 'spki' });
}, 60_000);
afterAll(async () => {
  await backend?.close();
  await token?.cleanup();
});

/** CKM_RSA_AES_KEY_WRAP, done with node:crypto only. */
function wrap(material: Buffer, publicKey = wrappingPublic): WrappedKey {
  const aes = randomBytes(32);
  const encryptedKey = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, aes);
  const cipher = createCipheriv('id-aes256-wrap-pad', aes, KWP_IV);
  return { wrappingKey, scheme: 'RSA_OAEP_SHA1_AES_KWP', encryptedKey, wrappedTarget: Buffer.concat([cipher.update(material), cipher.final()]) };
}

/** The same with a transport key of any length (`aes`, under OAEP) and the target wrapped under `kwpKey`. */
function wrapWithTransport(material: Buffer, aes: Buffer, kwpKey = randomBytes(32)): WrappedKey {
  const encryptedKey = publicEncrypt({ key: wrappingPublic, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, aes);
  const cipher = createCipheriv(`id-aes${kwpKey.length * 8}-wrap-pad`, kwpKey, KWP_IV);
  return { wrappingKey, scheme: 'RSA_OAEP_SHA1_AES_KWP', encryptedKey, wrappedTarget: Buffer.concat([cipher.update(material), cipher.final()]) };
}

/** A P-256 PKCS#8 (RFC 5915, no public key) with the private scalar `d`, in or out of range. */
const p256WithScalar = (d: Buffer) => Buffer.concat([Buffer.from('3041020100301306072a8648ce3d020106082a8648ce3d030107042730250201010420', 'hex'), d]);
const P256_ORDER = Buffer.from('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551', 'hex');

const pkcs8 = (key: KeyObject) => key.export({ format: 'der', type: 'pkcs8' });
const create = (name: KeyName, type: KeyType, purpose: KeyPurpose, extra: Partial<NewKey> = {}): ImportTarget => ({ kind: 'create', key: { name, type, purpose, ...extra } });

/** Every token object (of any application): what a failed import must leave unchanged. */
function tokenObjectCount(): number {
  return inspector.withSession((api, session) => {
    api.C_FindObjectsInit(session, [{ type: A.CKA_TOKEN, value: true }]);
    const found = api.C_FindObjects(session, 10_000);
    api.C_FindObjectsFinal(session);
    return found.length;
  });
}

async function expectCode(promise: Promise<unknown>, codes: readonly ErrorCode[]): Promise<void> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(HsmBridgeError);
  expect(codes).toContain((error as HsmBridgeError).code);
}

const PRIVATE = [A.CKA_SENSITIVE, A.CKA_EXTRACTABLE, A.CKA_NEVER_EXTRACTABLE, A.CKA_SIGN, A.CKA_DECRYPT, A.CKA_UNWRAP, A.CKA_DERIVE];
const PUBLIC = [A.CKA_ENCRYPT, A.CKA_WRAP, A.CKA_VERIFY, A.CKA_DERIVE];
const SECRET = [...PRIVATE, A.CKA_ENCRYPT, A.CKA_WRAP, A.CKA_VERIFY];

async function signsLike(name: KeyName, type: KeyType, algorithm: SignAlgorithm, original: KeyObject, version = 1): Promise<void> {
  const message = randomBytes(100);
  const signature = await backend.sign(ref(name, type, version), algorithm, { kind: 'message', data: message });
  expect(nodeVerifies(algorithm, original, message, signature)).toBe(true);
  const described = await backend.describeKey(name);
  const spki = described.versions.find((v) => v.version === version)!.publicKeySpki!;
  expect(spki.equals(original.export({ format: 'der', type: 'spki' }))).toBe(true);
}

describe('capabilities and the wrapping key', () => {
  it('offers OAEP SHA-1 only (SoftHSM) and says which types unwrap inside', () => {
    const { keyImport } = backend.capabilities();
    expect(keyImport.wrappings).toEqual(['RSA_OAEP_SHA1_AES_KWP']);
    expect(keyImport.ceremonies).toBe(true);
    for (const t of ['RSA_2048', 'RSA_3072', 'EC_P256', 'EC_P384', 'AES_128', 'AES_256', 'HMAC_256'] as const) expect(keyImport.unwrapsInside).toContain(t);
    // SoftHSM 2.6.1 fails C_UnwrapKey of Ed25519 PKCS#8; a TDES key's parts must be compared (single DES), which the token cannot do.
    for (const t of ['ED25519', 'TDES_2KEY', 'TDES_3KEY'] as const) expect(keyImport.unwrapsInside).not.toContain(t);
  });

  it('makes the wrapping key unwrap only: private CKA_UNWRAP, no decrypt or sign; public CKA_WRAP', () => {
    const [priv] = inspector.objects('import-wrap', A.CKO_PRIVATE_KEY, PRIVATE);
    expect(priv!.flags.get(A.CKA_UNWRAP)).toBe(true);
    expect(priv!.flags.get(A.CKA_DECRYPT)).toBe(false);
    expect(priv!.flags.get(A.CKA_SIGN)).toBe(false);
    expect(priv!.flags.get(A.CKA_SENSITIVE)).toBe(true);
    expect(priv!.flags.get(A.CKA_EXTRACTABLE)).toBe(false);
    const [pub] = inspector.objects('import-wrap', A.CKO_PUBLIC_KEY, PUBLIC);
    expect(pub!.flags.get(A.CKA_WRAP)).toBe(true);
    expect(pub!.flags.get(A.CKA_ENCRYPT)).toBe(false);
  });
});

describe('wrapped import', () => {
  it('imports an RSA-2048 key inside the token: signatures verify against the original, the key is sensitive and not extractable', async () => {
    const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const name = fresh('rsa');
    const meta = await backend.importWrappedKey(create(name, 'RSA_2048', 'sign'), wrap(pkcs8(pair.privateKey)));
    expect(meta.primaryVersion).toBe(1);
    await signsLike(name, 'RSA_2048', 'RS256', pair.publicKey);
    await signsLike(name, 'RSA_2048', 'PS256', pair.publicKey);
    const [priv] = inspector.objects(name, A.CKO_PRIVATE_KEY, PRIVATE);
    expect(priv!.flags.get(A.CKA_SENSITIVE)).toBe(true);
    expect(priv!.flags.get(A.CKA_EXTRACTABLE)).toBe(false);
    expect(priv!.flags.get(A.CKA_NEVER_EXTRACTABLE)).toBe(false); // SoftHSM: an unwrapped key was once outside
    expect(priv!.flags.get(A.CKA_DECRYPT)).toBe(false);
    expect(inspector.objects(name, A.CKO_PUBLIC_KEY, []).length).toBe(1);
  });

  it('imports a P-256 key inside the token and finds its public point (ECDH with G, then the y that verifies)', async () => {
    for (let i = 0; i < 3; i++) {
      const pair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      const name = fresh('p256');
      await backend.importWrappedKey(create(name, 'EC_P256', 'sign'), wrap(pkcs8(pair.privateKey)));
      await signsLike(name, 'EC_P256', 'ES256', pair.publicKey);
      const [priv] = inspector.objects(name, A.CKO_PRIVATE_KEY, PRIVATE);
      expect(priv!.flags.get(A.CKA_SENSITIVE)).toBe(true);
      expect(priv!.flags.get(A.CKA_EXTRACTABLE)).toBe(false);
      expect(priv!.flags.get(A.CKA_DERIVE)).toBe(false);
    }
  });

  it('imports a P-384 key of purpose agree (its public point is right although it cannot sign)', async () => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    const name = fresh('p384');
    const meta = await backend.importWrappedKey(create(name, 'EC_P384', 'agree'), wrap(pkcs8(pair.privateKey)));
    expect(meta.versions[0]!.publicKeySpki!.equals(pair.publicKey.export({ format: 'der', type: 'spki' }))).toBe(true);
    const [priv] = inspector.objects(name, A.CKO_PRIVATE_KEY, PRIVATE);
    expect(priv!.flags.get(A.CKA_SIGN)).toBe(false);
    expect(priv!.flags.get(A.CKA_DERIVE)).toBe(true);
  });

  it('imports an Ed25519 key through the in-process fallback: signatures verify, the key is sensitive and not extractable', async () => {
    const pair = generateKeyPairSync('ed25519');
    const name = fresh('ed');
    await backend.importWrappedKey(create(name, 'ED25519', 'sign'), wrap(pkcs8(pair.privateKey)));
    await signsLike(name, 'ED25519', 'EdDSA', pair.publicKey);
    const [priv] = inspector.objects(name, A.CKO_PRIVATE_KEY, PRIVATE);
    expect(priv!.flags.get(A.CKA_SENSITIVE)).toBe(true);
    expect(priv!.flags.get(A.CKA_EXTRACTABLE)).toBe(false);
  });

  it('imports an AES-256 encryption key: an AES-GCM ciphertext made with node:crypto decrypts', async () => {
    const key = randomBytes(32);
    const name = fresh('aes');
    await backend.importWrappedKey(create(name, 'AES_256', 'encrypt'), wrap(key));
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    const plaintext = randomBytes(50);
    const data = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    expect((await backend.decrypt(ref(name, 'AES_256'), 'AES_GCM', { iv, data })).equals(plaintext)).toBe(true);
    const [secret] = inspector.objects(name, A.CKO_SECRET_KEY, SECRET);
    expect(secret!.flags.get(A.CKA_SENSITIVE)).toBe(true);
    expect(secret!.flags.get(A.CKA_EXTRACTABLE)).toBe(false);
    expect(secret!.flags.get(A.CKA_WRAP)).toBe(false);
  });

  it('imports an HMAC key: the MAC matches node:crypto', async () => {
    const key = randomBytes(32);
    const name = fresh('hmac');
    await backend.importWrappedKey(create(name, 'HMAC_256', 'mac'), wrap(key));
    const data = randomBytes(77);
    expect((await backend.mac(ref(name, 'HMAC_256'), 'HMAC_SHA256', data)).equals(createHmac('sha256', key).update(data).digest())).toBe(true);
  });

  it('imports payment keys: a TDES_2KEY PIN key (ECB of zeros = its KCV), an AES KBPK (CMAC of zeros), a TDES_2KEY BDK with its variant companion', async () => {
    const tdes = randomBytes(16);
    const pin = fresh('pin');
    await backend.importWrappedKey(create(pin, 'TDES_2KEY', 'pin'), wrap(tdes));
    expect((await backend.encryptBlocks(ref(pin, 'TDES_2KEY'), Buffer.alloc(8))).equals(nodeEcb('tdes', 'encrypt', tdes, Buffer.alloc(8)))).toBe(true);
    const [pinObject] = inspector.objects(pin, A.CKO_SECRET_KEY, SECRET);
    expect(pinObject!.flags.get(A.CKA_EXTRACTABLE)).toBe(false);
    expect(pinObject!.flags.get(A.CKA_NEVER_EXTRACTABLE)).toBe(false); // made from its value: it was outside once
    expect(pinObject!.flags.get(A.CKA_SIGN)).toBe(false);

    const aes = randomBytes(32);
    const kbpk = fresh('kbpk');
    await backend.importWrappedKey(create(kbpk, 'AES_256', 'kbpk', { exportable: true }), wrap(aes));
    expect((await backend.mac(ref(kbpk, 'AES_256'), 'AES_CMAC', Buffer.alloc(16))).equals(nodeCmacOfZeros('aes', aes))).toBe(true);
    const [kbpkObject] = inspector.objects(kbpk, A.CKO_SECRET_KEY, SECRET);
    expect(kbpkObject!.flags.get(A.CKA_SENSITIVE)).toBe(true);
    expect(kbpkObject!.flags.get(A.CKA_EXTRACTABLE)).toBe(true); // exportable
    expect((await backend.exportKey(ref(kbpk, 'AES_256'))).equals(aes)).toBe(true);

    const bdkValue = randomBytes(16);
    const bdk = fresh('bdk');
    await backend.importWrappedKey(create(bdk, 'TDES_2KEY', 'bdk'), wrap(bdkValue));
    expect((await backend.encryptBlocks(ref(bdk, 'TDES_2KEY'), Buffer.alloc(8))).equals(nodeEcb('tdes', 'encrypt', bdkValue, Buffer.alloc(8)))).toBe(true);
    expect(inspector.objects(bdk, A.CKO_SECRET_KEY, []).length).toBe(2); // the key and its variant
  });

  it('rotates by import (same type only) and refuses to create over an existing key', async () => {
    const first = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const name = fresh('rot');
    await backend.importWrappedKey(create(name, 'RSA_2048', 'sign'), wrap(pkcs8(first.privateKey)));
    const second = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const meta = await backend.importWrappedKey({ kind: 'rotate', name, type: 'RSA_2048' }, wrap(pkcs8(second.privateKey)));
    expect(meta.primaryVersion).toBe(2);
    await signsLike(name, 'RSA_2048', 'RS256', second.publicKey, 2);
    await signsLike(name, 'RSA_2048', 'RS256', first.publicKey, 1);
    const count = tokenObjectCount();
    await expectCode(backend.importWrappedKey({ kind: 'rotate', name, type: 'EC_P256' }, wrap(pkcs8(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey))), ['INCOMPATIBLE_KEY']);
    await expectCode(backend.importWrappedKey(create(name, 'RSA_2048', 'sign'), wrap(pkcs8(second.privateKey))), ['KEY_ALREADY_EXISTS']);
    await expectCode(backend.importWrappedKey({ kind: 'rotate', name: fresh('none'), type: 'RSA_2048' }, wrap(pkcs8(second.privateKey))), ['KEY_NOT_FOUND']);
    expect(tokenObjectCount()).toBe(count);
  });

  it('the in-process fallback, forced for RSA and EC (SoftHSM unwraps them inside): the objects sign, their public keys are the originals', async () => {
    const { api, session, close } = inspector.openSession();
    const log = { info: () => undefined, warn: () => undefined, error: () => undefined };
    const setting = { traits: { rawRsaDecrypt: false, singleDes: false }, inside: [] as KeyType[], log };
    try {
      for (const [type, pair, mechanism] of [
        ['RSA_2048', generateKeyPairSync('rsa', { modulusLength: 2048 }), { mechanism: 0x40 }],
        ['EC_P256', generateKeyPairSync('ec', { namedCurve: 'prime256v1' }), { mechanism: 0x1041 }],
      ] as const) {
        const kek = randomBytes(32);
        const transport = api.C_CreateObject(session, [
          { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_KEY_TYPE, value: A.CKK_AES }, { type: A.CKA_TOKEN, value: false },
          { type: A.CKA_UNWRAP, value: true }, { type: A.CKA_VALUE, value: kek },
        ]);
        const cipher = createCipheriv('id-aes256-wrap-pad', kek, KWP_IV);
        const wrapped = Buffer.concat([cipher.update(pkcs8(pair.privateKey)), cipher.final()]);
        const name = fresh('fallback');
        const { handles } = await unwrapVersionObjects(api, session, setting, { type, purpose: 'sign' }, name, newKeyObjectId(1 as KeyVersion), transport, wrapped);
        const [publicHandle, privateHandle] = handles as [Buffer, Buffer];
        expect(readPublicKeySpki(api, session, publicHandle, type).equals(pair.publicKey.export({ format: 'der', type: 'spki' }))).toBe(true);
        const message = randomBytes(40);
        api.C_SignInit(session, mechanism, privateHandle);
        const data = type === 'RSA_2048' ? message : createHash('sha256').update(message).digest();
        const signature = api.C_Sign(session, data, Buffer.alloc(256));
        expect(nodeVerifies(type === 'RSA_2048' ? 'RS256' : 'ES256', pair.publicKey, message, signature)).toBe(true);
        const [priv] = inspector.objects(name, A.CKO_PRIVATE_KEY, PRIVATE);
        expect(priv!.flags.get(A.CKA_SENSITIVE)).toBe(true);
        expect(priv!.flags.get(A.CKA_EXTRACTABLE)).toBe(false);
        for (const h of handles) api.C_DestroyObject(session, h);
        api.C_DestroyObject(session, transport);
      }
    } finally {
      close();
    }
  });

  describe('refuses bad input and leaves the token as it was', () => {
    const rsa2048 = () => pkcs8(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
    const cases: { what: string; type: KeyType; purpose: KeyPurpose; wrapped: () => WrappedKey; codes: ErrorCode[] }[] = [
      { what: 'wrapped for another wrapping key', type: 'RSA_2048', purpose: 'sign', wrapped: () => wrap(rsa2048(), otherWrappingPublic), codes: ['DECRYPTION_FAILED'] },
      { what: 'a tampered transport key', type: 'AES_256', purpose: 'encrypt', wrapped: () => tamper(wrap(randomBytes(32)), 'encryptedKey'), codes: ['DECRYPTION_FAILED'] },
      { what: 'a tampered target', type: 'RSA_2048', purpose: 'sign', wrapped: () => tamper(wrap(rsa2048()), 'wrappedTarget'), codes: ['DECRYPTION_FAILED'] },
      { what: 'a tampered secret target', type: 'AES_256', purpose: 'encrypt', wrapped: () => tamper(wrap(randomBytes(32)), 'wrappedTarget'), codes: ['DECRYPTION_FAILED'] },
      { what: 'a truncated target', type: 'EC_P256', purpose: 'sign', wrapped: () => truncate(wrap(pkcs8(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey))), codes: ['DECRYPTION_FAILED'] },
      { what: 'a truncated Ed25519 target (fallback path)', type: 'ED25519', purpose: 'sign', wrapped: () => truncate(wrap(pkcs8(generateKeyPairSync('ed25519').privateKey))), codes: ['DECRYPTION_FAILED'] },
      { what: 'RSA-3072 for RSA_2048', type: 'RSA_2048', purpose: 'sign', wrapped: () => wrap(pkcs8(generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey)), codes: ['INCOMPATIBLE_KEY'] },
      { what: 'P-384 for EC_P256', type: 'EC_P256', purpose: 'sign', wrapped: () => wrap(pkcs8(generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey)), codes: ['INCOMPATIBLE_KEY'] },
      { what: 'an EC key for RSA_2048', type: 'RSA_2048', purpose: 'sign', wrapped: () => wrap(pkcs8(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey)), codes: ['INCOMPATIBLE_KEY'] },
      { what: 'an RSA key for ED25519', type: 'ED25519', purpose: 'sign', wrapped: () => wrap(rsa2048()), codes: ['INCOMPATIBLE_KEY'] },
      // A secret of the wrong length is malformed material, as on the software backend (keyMaterial.ts).
      { what: 'AES-128 material for AES_256', type: 'AES_256', purpose: 'encrypt', wrapped: () => wrap(randomBytes(16)), codes: ['INVALID_ARGUMENT'] },
      { what: '31 bytes for AES_256 (same RFC 5649 length as 32)', type: 'AES_256', purpose: 'encrypt', wrapped: () => wrap(randomBytes(31)), codes: ['INVALID_ARGUMENT'] },
      { what: '25 bytes for HMAC_256', type: 'HMAC_256', purpose: 'mac', wrapped: () => wrap(randomBytes(25)), codes: ['INVALID_ARGUMENT'] },
      { what: 'a PKCS#8 key for AES_256', type: 'AES_256', purpose: 'encrypt', wrapped: () => wrap(rsa2048()), codes: ['INVALID_ARGUMENT'] },
      { what: '24 bytes for a TDES_2KEY BDK', type: 'TDES_2KEY', purpose: 'bdk', wrapped: () => wrap(randomBytes(24)), codes: ['INVALID_ARGUMENT'] },
      { what: '24 bytes for a TDES_2KEY PIN key', type: 'TDES_2KEY', purpose: 'pin', wrapped: () => wrap(randomBytes(24)), codes: ['INVALID_ARGUMENT'] },
      { what: 'a TDES_2KEY whose halves differ only in parity bits', type: 'TDES_2KEY', purpose: 'pin', wrapped: () => wrap(equalParts(2, true)), codes: ['INCOMPATIBLE_KEY'] },
      { what: 'a TDES_3KEY whose first and third parts are equal', type: 'TDES_3KEY', purpose: 'pin', wrapped: () => wrap(equalParts(3, false)), codes: ['INCOMPATIBLE_KEY'] },
      { what: 'a tampered TDES_2KEY BDK (fallback path)', type: 'TDES_2KEY', purpose: 'bdk', wrapped: () => tamper(wrap(randomBytes(16)), 'wrappedTarget'), codes: ['DECRYPTION_FAILED'] },
      { what: 'garbage for RSA_2048', type: 'RSA_2048', purpose: 'sign', wrapped: () => wrap(randomBytes(300)), codes: ['INVALID_ARGUMENT', 'DECRYPTION_FAILED'] },
      { what: 'garbage for ED25519', type: 'ED25519', purpose: 'sign', wrapped: () => wrap(randomBytes(48)), codes: ['INVALID_ARGUMENT', 'DECRYPTION_FAILED'] },
      // The token unwraps these scalars but neither derives nor signs with them (the public point's derivation).
      { what: 'a P-256 key with d = 0', type: 'EC_P256', purpose: 'sign', wrapped: () => wrap(p256WithScalar(Buffer.alloc(32))), codes: ['INVALID_ARGUMENT'] },
      { what: 'a P-256 key with d = n', type: 'EC_P256', purpose: 'sign', wrapped: () => wrap(p256WithScalar(P256_ORDER)), codes: ['INVALID_ARGUMENT'] },
      // SoftHSM unwraps the empty one but refuses to wrap it for the measurement (CKR_KEY_NOT_WRAPPABLE).
      { what: 'a 0-byte transport key', type: 'AES_256', purpose: 'encrypt', wrapped: () => wrapWithTransport(randomBytes(32), Buffer.alloc(0)), codes: ['DECRYPTION_FAILED'] },
      { what: 'a 1-byte transport key', type: 'AES_256', purpose: 'encrypt', wrapped: () => wrapWithTransport(randomBytes(32), randomBytes(1)), codes: ['DECRYPTION_FAILED'] },
      { what: 'an AES-128 transport key (the target wrapped under it)', type: 'AES_256', purpose: 'encrypt', wrapped: () => { const aes = randomBytes(16); return wrapWithTransport(randomBytes(32), aes, aes); }, codes: ['DECRYPTION_FAILED'] },
      // SoftHSM cannot unwrap Ed25519: its kind is told from the value.
      { what: 'an Ed25519 key for RSA_2048', type: 'RSA_2048', purpose: 'sign', wrapped: () => wrap(pkcs8(generateKeyPairSync('ed25519').privateKey)), codes: ['INCOMPATIBLE_KEY'] },
      { what: 'an Ed25519 key for EC_P256', type: 'EC_P256', purpose: 'sign', wrapped: () => wrap(pkcs8(generateKeyPairSync('ed25519').privateKey)), codes: ['INCOMPATIBLE_KEY'] },
      // OpenSSL parses it, but it is not RFC 8410's one layout, from which the seed is taken.
      { what: 'an Ed25519 PKCS#8 with a long-form length', type: 'ED25519', purpose: 'sign', wrapped: () => wrap(Buffer.concat([Buffer.from('302f020100300506032b65700423048120', 'hex'), pkcs8(generateKeyPairSync('ed25519').privateKey).subarray(16)])), codes: ['INVALID_ARGUMENT'] },
    ];
    for (const c of cases) {
      it(`${c.what}`, async () => {
        const wrapped = c.wrapped();
        const before = tokenObjectCount();
        const name = fresh('bad');
        await expectCode(backend.importWrappedKey(create(name, c.type, c.purpose), wrapped), c.codes);
        expect(tokenObjectCount()).toBe(before);
        await expectCode(backend.describeKey(name), ['KEY_NOT_FOUND']);
      });
    }
  });
});

describe('wrapped import: the start-up probe, and secret results crossing threads', () => {
  const entries: { level: string; fields: object; message: string }[] = [];
  const log = (['info', 'warn', 'error'] as const).reduce((l, level) => ({ ...l, [level]: (fields: object, message: string) => entries.push({ level, fields, message }) }), {} as Record<'info' | 'warn' | 'error', (fields: object, message: string) => void>);
  const types: KeyType[] = ['RSA_2048', 'EC_P256', 'ED25519', 'AES_256', 'TDES_2KEY'];

  it('probes RSA with a 2048-bit key (SoftHSM unwraps it) and lists AES, never TDES', () => {
    const { api, session, close } = inspector.openSession();
    try {
      expect(probeUnwrapsInside(api, session, types, () => true, log)).toEqual(['RSA_2048', 'EC_P256', 'AES_256']);
    } finally {
      close();
    }
  });

  it('a token that refuses the clear AES key (an HSM in FIPS mode) unwraps nothing inside, logged at info, and the probe does not fail', () => {
    const { api, session, close } = inspector.openSession();
    // The real token, but for C_CreateObject answering as such an HSM does.
    const refusing = new Proxy(api, {
      get: (target, p, receiver) => (p === 'C_CreateObject' ? () => { throw new Error('CKR_TEMPLATE_INCONSISTENT:209'); } : Reflect.get(target, p, receiver)),
    });
    try {
      entries.length = 0;
      expect(probeUnwrapsInside(refusing, session, types, () => true, log)).toEqual([]);
      expect(entries.map((e) => e.level)).toEqual(['info']);
      expect(JSON.stringify(entries[0]!.fields)).toContain('CKR_TEMPLATE_INCONSISTENT');
    } finally {
      close();
    }
  });

  it('measures the transport key with templates that name each attribute once (other tokens answer TEMPLATE_INCONSISTENT)', () => {
    const { api, session, close } = inspector.openSession();
    const templates: pkcs11js.Template[] = [];
    const recording = new Proxy(api, {
      get: (target, p, receiver) => {
        const f = Reflect.get(target, p, receiver);
        if (p !== 'C_UnwrapKey' && p !== 'C_GenerateKey' && p !== 'C_CreateObject') return typeof f === 'function' ? f.bind(target) : f;
        return (...args: unknown[]) => {
          templates.push(args.at(-1) as pkcs11js.Template);
          return (f as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    try {
      const { publicKey, privateKey } = api.C_GenerateKeyPair(session, { mechanism: A.CKM_RSA_PKCS_KEY_PAIR_GEN }, [
        { type: A.CKA_TOKEN, value: false }, { type: A.CKA_MODULUS_BITS, value: 2048 }, { type: A.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
      ], [{ type: A.CKA_TOKEN, value: false }, { type: A.CKA_SENSITIVE, value: true }, { type: A.CKA_UNWRAP, value: true }]);
      const [n, e] = api.C_GetAttributeValue(session, publicKey, [{ type: A.CKA_MODULUS }, { type: A.CKA_PUBLIC_EXPONENT }]);
      const rsa = createPublicKey({ key: { kty: 'RSA', n: n!.value!.toString('base64url'), e: e!.value!.toString('base64url') }, format: 'jwk' });
      const aes = randomBytes(32);
      const encryptedKey = publicEncrypt({ key: rsa, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, aes);
      const transport = unwrapTransportKey(recording, session, privateKey, { wrappingKey, scheme: 'RSA_OAEP_SHA1_AES_KWP', encryptedKey, wrappedTarget: Buffer.alloc(0) });
      api.C_DestroyObject(session, transport);
      expect(templates.length).toBeGreaterThanOrEqual(3); // the transport key, the measured copy, the ephemeral key, the AES copy
      for (const template of templates) expect(new Set(template.map((a) => a.type)).size).toBe(template.length);
    } finally {
      close();
    }
  });

  it('unpooled: a view on the shared pool slab is copied into a buffer of its own, in arrays and objects; a whole buffer is kept', () => {
    const pooled = Buffer.concat([Buffer.from([1, 2, 3]), Buffer.from([4])]);
    expect(pooled.buffer.byteLength).toBeGreaterThan(pooled.length); // Node's 8 KB slab
    const own = Buffer.alloc(4, 7);
    const out = unpooled({ a: [pooled], b: own, n: 1 });
    expect(out.a[0]!.equals(pooled)).toBe(true);
    expect(out.a[0]!.buffer.byteLength).toBe(4);
    expect(out.b).toBe(own);
    expect(out.n).toBe(1);
  });

  it('unpooled: lists the copies it made (for the caller to wipe once posted), and leaves a value with nothing to copy as it is', () => {
    const view = Buffer.from(Buffer.alloc(64, 9).buffer, 8, 16);
    const copies: Uint8Array[] = [];
    const args = [{ name: 'k', version: 1 }, 'ES256', { kind: 'message', data: view }];
    const out = unpooled(args, copies);
    expect(copies).toHaveLength(1);
    expect((out[2] as { data: Buffer }).data).toBe(copies[0]);
    expect(out[0]).toBe(args[0]);
    const whole = [{ name: 'k' }, 'ES256', { kind: 'message', data: Buffer.alloc(16) }];
    expect(unpooled(whole, copies)).toBe(whole);
    expect(copies).toHaveLength(1);
  });
});

/** A TDES key whose first and last 8-byte parts are the same DES key (`parity`: one with odd parity, the other with even). */
function equalParts(parts: 2 | 3, parity: boolean): Buffer {
  const first = setOddParity(randomBytes(8));
  const last = Buffer.from(first);
  if (parity) for (let i = 0; i < 8; i++) last[i]! ^= 1;
  return Buffer.concat(parts === 2 ? [first, last] : [first, setOddParity(randomBytes(8)), last]);
}

function tamper(wrapped: WrappedKey, field: 'encryptedKey' | 'wrappedTarget'): WrappedKey {
  const value = Buffer.from(wrapped[field]);
  value[value.length >> 1]! ^= 0x40;
  return { ...wrapped, [field]: value };
}

const truncate = (wrapped: WrappedKey): WrappedKey => ({ ...wrapped, wrappedTarget: wrapped.wrappedTarget.subarray(0, wrapped.wrappedTarget.length - 8) });

// --- ceremonies ------------------------------------------------------------------------------------

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** One backend call in another process on the same token (ceremonyReplica.ts). */
async function inOtherProcess(method: string, args: unknown[]): Promise<{ value?: unknown; error?: string }> {
  const call = { method, args: args.map((a) => (Buffer.isBuffer(a) ? { hex: a.toString('hex') } : a)), config: token.backendConfig({ sessionPoolSize: 2 }) };
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'test/adapters/pkcs11/ceremonyReplica.ts'], {
    cwd: ROOT,
    env: { ...process.env, HSMB_TEST_CALL: JSON.stringify(call) },
    timeout: 60_000,
  });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as { value?: unknown; error?: string };
}

function planFor(components: 2 | 3): CeremonyPlan {
  const now = new Date();
  return {
    id: newCeremonyId(),
    key: { name: fresh('ceremony-key'), type: 'TDES_2KEY', purpose: 'pin' },
    components,
    startedBy: 'token:alice',
    startedAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + 3_600_000).toISOString(),
  };
}

const entry = (number: number, enteredBy: string, kcv = 'ABCDEF'): ComponentEntry => ({ number, enteredBy, identities: [enteredBy], enteredAt: new Date().toISOString(), kcv });

/** Every token object labelled with the ceremony id (plan and components). */
const ceremonyObjects = (id: string) => inspector.objects(id, A.CKO_DATA, []).length + inspector.objects(id, A.CKO_SECRET_KEY, []).length;

describe('key ceremonies', () => {
  it('stages components as unusable sensitive objects, enforces numbers and dual control, hands them back in order, and ends without a trace', async () => {
    const plan = planFor(3);
    await backend.startCeremony(plan);
    expect((await backend.describeCeremony(plan.id)).entries).toEqual([]);
    const c2 = randomBytes(16);
    const c1 = randomBytes(16);
    // Entered out of order: the answer is in number order.
    let state = await backend.stageComponent(plan.id, entry(2, 'token:bob'), c2);
    expect(state.entries.map((e) => e.number)).toEqual([2]);
    state = await backend.stageComponent(plan.id, entry(1, 'token:carol'), c1);
    expect(state.entries.map((e) => [e.number, e.enteredBy])).toEqual([[1, 'token:carol'], [2, 'token:bob']]);
    await expectCode(backend.stageComponent(plan.id, entry(1, 'token:dave'), randomBytes(16)), ['CEREMONY_CONFLICT']);
    await expectCode(backend.stageComponent(plan.id, entry(3, 'token:bob'), randomBytes(16)), ['DUAL_CONTROL']);
    // One shared credential is enough: the certificate bob also presented.
    await expectCode(backend.stageComponent(plan.id, { ...entry(3, 'token:mallory'), identities: ['token:mallory', 'token:bob'] }, randomBytes(16)), ['DUAL_CONTROL']);
    await expectCode(backend.stageComponent(newCeremonyId(), entry(1, 'token:bob'), randomBytes(16)), ['CEREMONY_NOT_FOUND']);

    const staged = inspector.objects(plan.id, A.CKO_SECRET_KEY, SECRET);
    expect(staged.length).toBe(2);
    for (const s of staged) {
      expect(s.flags.get(A.CKA_SENSITIVE)).toBe(true);
      expect(s.flags.get(A.CKA_EXTRACTABLE)).toBe(true);
      for (const usage of [A.CKA_SIGN, A.CKA_DECRYPT, A.CKA_UNWRAP, A.CKA_ENCRYPT, A.CKA_WRAP, A.CKA_VERIFY, A.CKA_DERIVE]) expect(s.flags.get(usage)).toBe(false);
    }
    // Nothing that reads keys sees ceremony objects.
    expect((await backend.listKeys()).map((k) => k.name)).not.toContain(plan.id);
    await expectCode(backend.describeKey(parseKeyName(plan.id)), ['KEY_NOT_FOUND']);
    expect((await backend.listCeremonies()).find((c) => c.plan.id === plan.id)?.entries.length).toBe(2);
    expect((await backend.describeCeremony(plan.id)).plan).toEqual(plan);

    const components = await backend.stagedComponents(plan.id);
    expect(components.map((c) => c.toString('hex'))).toEqual([c1.toString('hex'), c2.toString('hex')]);

    await backend.endCeremony(plan.id);
    expect(ceremonyObjects(plan.id)).toBe(0);
    await backend.endCeremony(plan.id); // idempotent
    await expectCode(backend.describeCeremony(plan.id), ['CEREMONY_NOT_FOUND']);
    await expectCode(backend.stageComponent(plan.id, entry(3, 'token:erin'), randomBytes(16)), ['CEREMONY_NOT_FOUND']);
    await expectCode(backend.stagedComponents(plan.id), ['CEREMONY_NOT_FOUND']);
    expect((await backend.listCeremonies()).some((c) => c.plan.id === plan.id)).toBe(false);
  });

  it('another process on the token sees a half-done ceremony, enforces its entries, and stages the next component', async () => {
    const plan = planFor(2);
    await backend.startCeremony(plan);
    const c1 = randomBytes(16);
    await backend.stageComponent(plan.id, entry(1, 'token:bob'), c1);

    const seen = await inOtherProcess('describeCeremony', [plan.id]);
    expect((seen.value as { entries: ComponentEntry[] }).entries.map((e) => e.enteredBy)).toEqual(['token:bob']);
    expect((await inOtherProcess('stageComponent', [plan.id, entry(1, 'token:carol'), randomBytes(16)])).error).toBe('CEREMONY_CONFLICT');
    expect((await inOtherProcess('stageComponent', [plan.id, entry(2, 'token:bob'), randomBytes(16)])).error).toBe('DUAL_CONTROL');
    const c2 = randomBytes(16);
    const staged = await inOtherProcess('stageComponent', [plan.id, entry(2, 'token:carol'), c2]);
    expect((staged.value as { entries: ComponentEntry[] }).entries.map((e) => e.number)).toEqual([1, 2]);

    expect((await backend.describeCeremony(plan.id)).entries.map((e) => e.enteredBy)).toEqual(['token:bob', 'token:carol']);
    const components = await backend.stagedComponents(plan.id);
    expect(components.map((c) => c.toString('hex'))).toEqual([c1.toString('hex'), c2.toString('hex')]);
    expect((await inOtherProcess('endCeremony', [plan.id])).error).toBeUndefined();
    expect(ceremonyObjects(plan.id)).toBe(0);
    await expectCode(backend.describeCeremony(plan.id), ['CEREMONY_NOT_FOUND']);
  }, 120_000);

  it('of two stagings of one number racing in two backends, exactly one stays', async () => {
    const plan = planFor(2);
    await backend.startCeremony(plan);
    const second = await pkcs11BackendFactory.create(token.backendConfig({ sessionPoolSize: 2 }), { logger });
    try {
      const outcomes = await Promise.allSettled([
        backend.stageComponent(plan.id, entry(1, 'token:bob'), randomBytes(16)),
        second.stageComponent(plan.id, entry(1, 'token:carol'), randomBytes(16)),
      ]);
      expect(outcomes.filter((o) => o.status === 'fulfilled').length).toBe(1);
      const refused = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
      expect((refused.reason as HsmBridgeError).code).toBe('CEREMONY_CONFLICT');
      expect((await backend.describeCeremony(plan.id)).entries.length).toBe(1);
      expect(inspector.objects(plan.id, A.CKO_SECRET_KEY, []).length).toBe(1);
    } finally {
      await second.close();
      await backend.endCeremony(plan.id);
    }
  });
});
