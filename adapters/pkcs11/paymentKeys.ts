/**
 * Payment key versions whose schemes need more than the token's mechanisms can do with one object:
 *
 * - a TDES_2KEY BDK: TDES DUKPT's initial key has a right half encrypted under BDK XOR C0C0C0C000000000
 *   C0C0C0C000000000, and no common mechanism XORs a key (SoftHSM has no CKM_XOR_BASE_AND_DATA). The
 *   version gets a companion object holding that variant (role 'variant', DES3_ECB only).
 * - a TDES_2KEY MAC key of usage M3: the retail MAC (ISO 9797-1 algorithm 3) runs single DES under K1.
 *   The version gets a companion holding K1 (role 'k1', CBC only): a CKK_DES key for CKM_DES_CBC when
 *   the token does single DES, else a CKK_DES2 key K1 K1 for CKM_DES3_CBC (EDE with equal halves is
 *   single DES). Only M3 keys: K1 alone is a 56-bit key, which whoever holds the token PIN can attack,
 *   so no other MAC key gets one (the retail MAC itself is that strong anyway).
 *
 * Such keys are built in process from the token's random bytes (parity set) or from imported material,
 * and created with C_CreateObject (tokenWrites.ts) together with their companions; every clear buffer is
 * zeroed before the call returns. Other payment keys are generated as every key is (versionObjects.ts).
 */
import pkcs11js from 'pkcs11js';
import type { KeyName } from '../../src/keys/names.js';
import { keyTypes, type KeyPurpose, type KeyType, type KeyUsage } from '../../src/keys/types.js';
import { xorInPlace } from '../../src/payment/crypto/blockCiphers.js';
import { setOddParity } from '../../src/payment/crypto/parity.js';
import { TDES_BDK_VARIANT } from '../../src/payment/dukpt/tdesDukpt.js';
import { companionObjectId, type CompanionRole } from './keyObjects.js';
import { CKM } from './mechanisms.js';
import type { Handle, Pkcs11Api } from './module.js';
import { companionTemplate, secretObjectTemplate, type TemplateOptions } from './templates.js';
import { createTokenObject, destroyTokenObject } from './tokenWrites.js';

const A = pkcs11js;

/** The companion objects a new version of this kind of key gets. */
export function companionsFor(type: KeyType, purpose: KeyPurpose, keyUsage: KeyUsage | undefined): CompanionRole[] {
  if (type !== 'TDES_2KEY') return [];
  if (purpose === 'bdk') return ['variant'];
  if (purpose === 'mac' && keyUsage === 'M3') return ['k1'];
  return [];
}

/** A companion's value, derived from the key's; the caller zeroes it. */
function companionValue(role: CompanionRole, key: Buffer, singleDes: boolean): Buffer {
  if (role === 'variant') return xorInPlace(Buffer.from(key), TDES_BDK_VARIANT);
  const k1 = key.subarray(0, 8);
  return singleDes ? Buffer.from(k1) : Buffer.concat([k1, k1]);
}

export interface ValueObjectsOptions extends TemplateOptions {
  readonly singleDes: boolean;
}

/**
 * The objects of one version from a clear value: the key and the companions of its kind. Returns every
 * handle made (the caller removes them if its commit fails); on an error, removes what it made.
 */
export function createVersionFromValue(
  api: Pkcs11Api,
  session: Handle,
  key: { readonly type: KeyType; readonly purpose: KeyPurpose; readonly keyUsage?: KeyUsage; readonly name: KeyName },
  id: Buffer,
  value: Buffer,
  options: ValueObjectsOptions,
): { handles: Handle[]; companions: CompanionRole[] } {
  const companions = companionsFor(key.type, key.purpose, key.keyUsage);
  const handles: Handle[] = [];
  try {
    handles.push(createTokenObject(api, session, secretObjectTemplate(key.type, key.purpose, key.name, id, value, options)));
    for (const role of companions) {
      const companion = companionValue(role, value, options.singleDes);
      try {
        handles.push(createTokenObject(api, session, companionTemplate(role, key.name, companionObjectId(id, role), companion, options.singleDes)));
      } finally {
        companion.fill(0);
      }
    }
    return { handles, companions };
  } catch (e) {
    for (const h of handles) {
      try {
        destroyTokenObject(api, session, h);
      } catch {
        // the error that matters is e
      }
    }
    throw e;
  }
}

/** A fresh TDES key from the token's random generator, with odd parity; the caller zeroes it. */
export function randomTdesValue(api: Pkcs11Api, session: Handle, type: KeyType): Buffer {
  return setOddParity(api.C_GenerateRandom(session, Buffer.alloc(keyTypes[type].bits / 8)));
}

/**
 * Whether CKM_DES_CBC really works: SoftHSM 2.6 lists it, but on OpenSSL 3 without the legacy provider
 * every single-DES call fails (CKR_MECHANISM_INVALID, measured). Checked once at start against the
 * FIPS 81 example (key 0123456789ABCDEF, "Now is t" -> 3FA40E8A984D4815) with a session object.
 */
export function probeSingleDes(api: Pkcs11Api, session: Handle): boolean {
  let key: Handle | undefined;
  try {
    key = api.C_CreateObject(session, [
      { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY },
      { type: A.CKA_KEY_TYPE, value: A.CKK_DES },
      { type: A.CKA_TOKEN, value: false },
      { type: A.CKA_ENCRYPT, value: true },
      { type: A.CKA_VALUE, value: Buffer.from('0123456789abcdef', 'hex') },
    ]);
    api.C_EncryptInit(session, { mechanism: CKM.DES_CBC, parameter: Buffer.alloc(8) }, key);
    const out = api.C_Encrypt(session, Buffer.from('Now is t', 'latin1'), Buffer.alloc(8));
    return out.equals(Buffer.from('3fa40e8a984d4815', 'hex'));
  } catch {
    return false;
  } finally {
    if (key) api.C_DestroyObject(session, key);
  }
}
