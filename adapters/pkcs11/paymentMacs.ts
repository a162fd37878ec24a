/**
 * MACs in the token, by algorithm (README.md, "Payment keys"): HMAC and the CMACs are one mechanism each;
 * ISO 9797-1 algorithm 1 is a TDES CBC encryption with a zero IV of the padded data, whose last block is
 * the MAC; algorithm 3 (retail MAC; keys of usage M3 only) runs single-DES CBC under K1 (the version's 'k1' companion, its mechanism cached with the handles) over all
 * blocks but the last, giving H, then TDES-encrypts (last block XOR H) under the key: the same value as
 * the standard's final decrypt-K2, encrypt-K1 of the single-DES chain.
 */
import type { MacAlgorithm } from '../../src/algorithms/registry.js';
import { macAlgorithms } from '../../src/algorithms/registry.js';
import { HsmBridgeError } from '../../src/errors.js';
import { xorInPlace } from '../../src/payment/crypto/blockCiphers.js';
import { iso9797Pad } from '../../src/payment/crypto/iso9797.js';
import type { VersionHandles } from './keyObjects.js';
import { CKM } from './mechanisms.js';
import { notNull, type Handle, type Pkcs11Api } from './module.js';

const TDES_BLOCK = 8;
const ZERO_IV = Buffer.alloc(TDES_BLOCK);

/** The full-length MAC of `data` under the version's key. */
export async function macInToken(api: Pkcs11Api, session: Handle, key: VersionHandles, algorithm: MacAlgorithm, data: Buffer): Promise<Buffer> {
  const sign = (mechanism: number) => {
    api.C_SignInit(session, { mechanism }, key.key);
    return api.C_Sign(session, notNull(data), Buffer.alloc(macAlgorithms[algorithm].length));
  };
  switch (algorithm) {
    case 'HMAC_SHA256':
      return sign(CKM.SHA256_HMAC);
    case 'AES_CMAC':
      return sign(CKM.AES_CMAC);
    case 'TDES_CMAC':
      return sign(CKM.DES3_CMAC);
    case 'ISO9797_ALG1':
    case 'ISO9797_ALG1_PAD2':
      return cbcMac(api, session, key.key, CKM.DES3_CBC, iso9797Pad(data, macAlgorithms[algorithm].padding, TDES_BLOCK));
    case 'ISO9797_ALG3':
    case 'ISO9797_ALG3_PAD2':
      return retailMac(api, session, key, iso9797Pad(data, macAlgorithms[algorithm].padding, TDES_BLOCK));
  }
}

/** The last block of a CBC encryption with a zero IV; zeroes `padded` and the chain. */
async function cbcMac(api: Pkcs11Api, session: Handle, key: Handle, mechanism: number, padded: Buffer): Promise<Buffer> {
  let chain: Buffer | undefined;
  try {
    api.C_EncryptInit(session, { mechanism, parameter: ZERO_IV }, key);
    chain = api.C_Encrypt(session, padded, Buffer.alloc(padded.length));
    return Buffer.from(chain.subarray(chain.length - TDES_BLOCK));
  } finally {
    padded.fill(0);
    chain?.fill(0);
  }
}

async function retailMac(api: Pkcs11Api, session: Handle, key: VersionHandles, padded: Buffer): Promise<Buffer> {
  const k1 = key.companions?.k1;
  if (!k1 || key.k1Mechanism === undefined) {
    padded.fill(0);
    throw new HsmBridgeError('INCOMPATIBLE_KEY', 'only a TDES_2KEY MAC key of usage M3 computes ISO 9797-1 MAC algorithm 3');
  }
  const last = Buffer.from(padded.subarray(padded.length - TDES_BLOCK));
  try {
    if (padded.length > TDES_BLOCK) {
      const h = await cbcMac(api, session, k1, key.k1Mechanism, Buffer.from(padded.subarray(0, padded.length - TDES_BLOCK)));
      xorInPlace(last, h);
      h.fill(0);
    }
    api.C_EncryptInit(session, { mechanism: CKM.DES3_ECB }, key.key);
    return api.C_Encrypt(session, last, Buffer.alloc(TDES_BLOCK));
  } finally {
    padded.fill(0);
    last.fill(0);
  }
}
