/**
 * The clear value of an exportable key, for a TR-31 export by the core. An exportable key is sensitive
 * (CKA_VALUE never readable) but extractable, so it leaves the token only wrapped: under a session AES
 * key the adapter makes for this one call from random bytes it knows (CKM_AES_KEY_WRAP, RFC 3394), and
 * unwrapped at once with node:crypto. The session key is destroyed and every buffer zeroed before return;
 * the caller zeroes the value.
 */
import { createDecipheriv, randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { encryptAlgorithms } from '../../src/algorithms/registry.js';
import { HsmBridgeError } from '../../src/errors.js';
import { allowedMechanismsAttribute } from './allowedMechanisms.js';
import { CKR, ckrOf } from './errors.js';
import { CKM } from './mechanisms.js';
import type { Handle, Pkcs11Api } from './module.js';
import { sessionSecretKey } from './sessionObjects.js';

const A = pkcs11js;
const { iv: kwIv, overhead: kwOverhead } = encryptAlgorithms.AES_KW.wrap;
const RFC3394_IV = Buffer.from(kwIv, 'hex');
const CKR_KEY_UNEXTRACTABLE = 0x6a;

export async function exportKeyValue(api: Pkcs11Api, session: Handle, key: Handle, length: number): Promise<Buffer> {
  const kekValue = randomBytes(32);
  let kek: Handle | undefined;
  let wrapped: Buffer | undefined;
  try {
    kek = api.C_CreateObject(session, [
      ...sessionSecretKey(A.CKK_AES, false),
      ...[A.CKA_ENCRYPT, A.CKA_DECRYPT, A.CKA_SIGN, A.CKA_VERIFY, A.CKA_UNWRAP, A.CKA_DERIVE].map((type) => ({ type, value: false })),
      { type: A.CKA_WRAP, value: true },
      allowedMechanismsAttribute([CKM.AES_KEY_WRAP]),
      { type: A.CKA_VALUE, value: kekValue },
    ]);
    try {
      wrapped = api.C_WrapKey(session, { mechanism: CKM.AES_KEY_WRAP }, kek, key, Buffer.alloc(length + kwOverhead));
    } catch (e) {
      const code = ckrOf(e);
      if (code === CKR_KEY_UNEXTRACTABLE || code === CKR.KEY_FUNCTION_NOT_PERMITTED) {
        throw new HsmBridgeError('INCOMPATIBLE_KEY', 'the key is not exportable in the HSM', { cause: e });
      }
      throw e;
    }
    const decipher = createDecipheriv('id-aes256-wrap', kekValue, RFC3394_IV);
    const head = decipher.update(wrapped);
    const tail = decipher.final();
    if (tail.length === 0) return head;
    const value = Buffer.concat([head, tail]);
    head.fill(0);
    tail.fill(0);
    return value;
  } finally {
    kekValue.fill(0);
    wrapped?.fill(0);
    if (kek) {
      try {
        api.C_DestroyObject(session, kek);
      } catch {
        // a session object: it goes with its session anyway
      }
    }
  }
}
