/**
 * Templates for the session objects the adapter makes for one call (CKA_TOKEN false: they vanish with
 * their session at the latest). `readable` ones are taken out at once (a shared secret for a KDF, a
 * derived block to be joined in process) and so are neither sensitive nor protected from extraction; all
 * others are sensitive and never leave the token.
 */
import pkcs11js from 'pkcs11js';
import { allowedMechanismsAttribute } from './allowedMechanisms.js';
import { CKM } from './mechanisms.js';

const A = pkcs11js;

export function sessionSecretKey(keyType: number, readable: boolean, extra: pkcs11js.Template = []): pkcs11js.Template {
  return [
    { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY },
    { type: A.CKA_KEY_TYPE, value: keyType },
    { type: A.CKA_TOKEN, value: false },
    { type: A.CKA_PRIVATE, value: true },
    { type: A.CKA_SENSITIVE, value: !readable },
    { type: A.CKA_EXTRACTABLE, value: readable },
    ...extra,
  ];
}

export type WorkingKeyType = 'AES_128' | 'AES_192' | 'AES_256' | 'TDES_2KEY' | 'TDES_3KEY';

const workingKeys: Record<WorkingKeyType, { readonly family: 'aes' | 'tdes'; readonly bytes: number; readonly keyType: number }> = {
  AES_128: { family: 'aes', bytes: 16, keyType: A.CKK_AES },
  AES_192: { family: 'aes', bytes: 24, keyType: A.CKK_AES },
  AES_256: { family: 'aes', bytes: 32, keyType: A.CKK_AES },
  TDES_2KEY: { family: 'tdes', bytes: 16, keyType: A.CKK_DES2 },
  TDES_3KEY: { family: 'tdes', bytes: 24, keyType: A.CKK_DES3 },
};

export function workingKeyInfo(type: WorkingKeyType) {
  return workingKeys[type];
}

const flags = (on: readonly number[]): pkcs11js.Template =>
  [A.CKA_ENCRYPT, A.CKA_DECRYPT, A.CKA_SIGN, A.CKA_VERIFY, A.CKA_WRAP, A.CKA_UNWRAP, A.CKA_DERIVE].map((type) => ({ type, value: on.includes(type) }));

/** A PIN encryption working key: ECB encryption and decryption of PIN blocks, nothing else. */
export function workingKeyTemplate(type: WorkingKeyType): pkcs11js.Template {
  const info = workingKeys[type];
  return [
    ...sessionSecretKey(info.keyType, false),
    allowedMechanismsAttribute([info.family === 'aes' ? CKM.AES_ECB : CKM.DES3_ECB]),
    ...flags([A.CKA_ENCRYPT, A.CKA_DECRYPT]),
  ];
}

/** An AES DUKPT intermediate derivation key: derives the next key, nothing else. */
export function intermediateKeyTemplate(): pkcs11js.Template {
  return [...sessionSecretKey(A.CKK_AES, false), allowedMechanismsAttribute([CKM.AES_CBC_ENCRYPT_DATA]), ...flags([A.CKA_DERIVE])];
}

/**
 * A DUKPT transaction key made in a session: its handle, the epoch of the worker's sessions it belongs to
 * (handles are numbered afresh after a reinitialization, so a handle alone could name another request's
 * key), and what kind of block key it is.
 */
export interface DerivedKey {
  readonly handle: pkcs11js.Handle;
  readonly epoch: number;
  readonly family: 'aes' | 'tdes';
  readonly bits: number;
}
