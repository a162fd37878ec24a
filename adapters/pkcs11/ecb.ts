/** ECB over whole blocks in the token, the payment services' block primitive (the core checked the length). */
import { CKM } from './mechanisms.js';
import type { Handle, Pkcs11Api } from './module.js';

export function ecbInToken(api: Pkcs11Api, session: Handle, key: Handle, family: 'aes' | 'tdes', direction: 'encrypt' | 'decrypt', data: Buffer): Buffer {
  const mechanism = { mechanism: family === 'aes' ? CKM.AES_ECB : CKM.DES3_ECB };
  if (direction === 'encrypt') {
    api.C_EncryptInit(session, mechanism, key);
    return api.C_Encrypt(session, data, Buffer.alloc(data.length));
  }
  api.C_DecryptInit(session, mechanism, key);
  return api.C_Decrypt(session, data, Buffer.alloc(data.length));
}
