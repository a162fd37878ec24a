/**
 * The PKCS#11 side of JOSE's key management: AES key wrap (RFC 3394) of caller data, and raw ECDH.
 *
 * - SoftHSM 2.6.1 refuses CKM_AES_KEY_WRAP in C_Encrypt/C_Decrypt (CKR_MECHANISM_INVALID, measured) and
 *   wraps only key objects, as PKCS#11 intends. So the data to wrap (a JWE content key) becomes a
 *   session object for the length of one C_WrapKey, and C_UnwrapKey makes one that is read and
 *   destroyed at once. Session objects are never on the token, and vanish with the session if the
 *   process dies between the two calls.
 * - ECDH: JOSE derives keys with the Concat KDF (RFC 7518 §4.6), which PKCS#11 does not offer, so
 *   CKM_ECDH1_DERIVE with CKD_NULL puts Z into a session generic secret that is read and destroyed.
 *   Z leaves the HSM (see README.md); the private key does not.
 */
import { createPublicKey } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { encryptAlgorithms } from '../../src/algorithms/registry.js';
import { HsmBridgeError } from '../../src/errors.js';
import { CKR, ckrOf, isDeviceGone, isHandleStale } from './errors.js';
import { CKM } from './mechanisms.js';
import type { Handle, Pkcs11Api } from './module.js';
import { sessionSecretKey } from './sessionObjects.js';

const A = pkcs11js;
const CKD_NULL = 1;

/** A short-lived secret in this session only: readable, so that its value can be taken out and the object destroyed. */
const sessionSecret = (extra: pkcs11js.Template = []): pkcs11js.Template => sessionSecretKey(A.CKK_GENERIC_SECRET, true, extra);

/** Reads an object's value and destroys the object, whatever happens. */
function takeValue(api: Pkcs11Api, session: Handle, handle: Handle): Buffer {
  try {
    const value = api.C_GetAttributeValue(session, handle, [{ type: A.CKA_VALUE }])[0]?.value;
    if (!value) throw new HsmBridgeError('INTERNAL', 'the token returned no value');
    return value;
  } finally {
    api.C_DestroyObject(session, handle);
  }
}

export async function aesKeyWrap(api: Pkcs11Api, session: Handle, kek: Handle, data: Buffer): Promise<Buffer> {
  const object = api.C_CreateObject(session, sessionSecret([{ type: A.CKA_VALUE, value: data }]));
  try {
    return api.C_WrapKey(session, { mechanism: CKM.AES_KEY_WRAP }, kek, object, Buffer.alloc(data.length + encryptAlgorithms.AES_KW.wrap.overhead));
  } finally {
    api.C_DestroyObject(session, object);
  }
}

/** The key or the token does not allow the operation at all: not a decryption failure (toBridgeError names it). */
const refusedByPolicy = (e: unknown) => {
  const code = ckrOf(e);
  return code === CKR.KEY_FUNCTION_NOT_PERMITTED || code === CKR.MECHANISM_INVALID || code === CKR.MECHANISM_PARAM_INVALID;
};

/** Every other failure that is not about the device or the handle is DECRYPTION_FAILED (an integrity check failed, or a bad length). */
export async function aesKeyUnwrap(api: Pkcs11Api, session: Handle, kek: Handle, wrapped: Buffer): Promise<Buffer> {
  let object: Handle;
  try {
    object = api.C_UnwrapKey(session, { mechanism: CKM.AES_KEY_WRAP }, kek, wrapped, sessionSecret());
  } catch (e) {
    throw isDeviceGone(e) || isHandleStale(e) || refusedByPolicy(e) ? e : new HsmBridgeError('DECRYPTION_FAILED', 'decryption failed', { cause: e });
  }
  return takeValue(api, session, object);
}

/** Z of ECDH with the private key and a peer public key (SPKI DER) on its curve; `length` is the field size. */
export async function ecdhSharedSecret(api: Pkcs11Api, session: Handle, privateKey: Handle, peerSpki: Buffer, length: number): Promise<Buffer> {
  const { x, y } = createPublicKey({ key: peerSpki, format: 'der', type: 'spki' }).export({ format: 'jwk' });
  // PKCS#11 §2.3.8: publicData is the peer's point; the uncompressed form 04 || X || Y is what tokens take.
  const publicData = Buffer.concat([Buffer.from([4]), Buffer.from(x!, 'base64url'), Buffer.from(y!, 'base64url')]);
  const object = api.C_DeriveKey(
    session,
    { mechanism: CKM.ECDH1_DERIVE, parameter: { type: A.CK_PARAMS_EC_DH, kdf: CKD_NULL, publicData } as pkcs11js.ECDH1 },
    privateKey,
    sessionSecret([{ type: A.CKA_VALUE_LEN, value: length }]),
  );
  return takeValue(api, session, object);
}
