/**
 * Templates for the session objects the adapter makes for one call (CKA_TOKEN false: they vanish with
 * their session at the latest). `readable` ones are taken out at once (a shared secret for a KDF, a
 * derived block to be joined in process) and so are neither sensitive nor protected from extraction; all
 * others are sensitive and never leave the token.
 */
import pkcs11js from 'pkcs11js';

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
