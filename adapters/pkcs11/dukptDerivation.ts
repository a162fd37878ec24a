/**
 * DUKPT transaction keys from a BDK held in the token (README.md, "Payment keys"):
 *
 * - AES DUKPT (X9.24-3) stays inside the token: each step Key_n = ECB(Key_n-1, data) is a C_DeriveKey
 *   into a session object. pkcs11js cannot pass CKM_AES_ECB_ENCRYPT_DATA's parameter (a pointer
 *   structure), so a 16-byte step uses CKM_AES_CBC_ENCRYPT_DATA with a zero IV, which for one block is
 *   the same computation. A 32-byte step (the keys of an AES-256 BDK) would need two blocks in ECB, and
 *   CBC chains the second: each block is derived alone, read back, and the halves joined in process
 *   (SoftHSM 2.6 has no CKM_CONCATENATE_BASE_AND_KEY to join them inside), then put back as a session
 *   object; the clear bytes are zeroed at once.
 * - TDES DUKPT (X9.24-1): the token encrypts the initial key's halves (under the BDK and its variant
 *   companion); the non-reversible key generation (single DES, XOR with key halves) runs in process on
 *   the initial key, and the PIN key becomes a session object; every clear buffer is zeroed at once.
 */
import pkcs11js from 'pkcs11js';
import { HsmBridgeError } from '../../src/errors.js';
import type { KeyType } from '../../src/keys/types.js';
import { aesDukptPinKeySteps, type AesDukptStep } from '../../src/payment/dukpt/aesDukpt.js';
import { tdesDukptPinKeyFromIpek, tdesInitialKeyInput } from '../../src/payment/dukpt/tdesDukpt.js';
import type { VersionHandles } from './keyObjects.js';
import { CKM } from './mechanisms.js';
import type { Handle, Pkcs11Api } from './module.js';
import { destroyQuietly } from './revisions.js';
import { intermediateKeyTemplate, sessionSecretKey, workingKeyInfo, workingKeyTemplate, type DerivedKey, type WorkingKeyType } from './sessionObjects.js';

const A = pkcs11js;
const AES_BLOCK = 16;
const ZERO_IV = Buffer.alloc(AES_BLOCK);

/** The PIN encryption key of a TDES DUKPT transaction, as a session object. */
export function deriveTdesDukpt(api: Pkcs11Api, session: Handle, bdk: VersionHandles, ksn: Buffer): Omit<DerivedKey, 'epoch'> {
  const variant = bdk.companions?.variant;
  if (!variant) throw new HsmBridgeError('INCOMPATIBLE_KEY', 'this BDK cannot derive TDES DUKPT keys in the HSM (a TDES_2KEY BDK created before payment support: rotate it)');
  const input = tdesInitialKeyInput(ksn);
  const ecb = (key: Handle) => {
    api.C_EncryptInit(session, { mechanism: CKM.DES3_ECB }, key);
    return api.C_Encrypt(session, input, Buffer.alloc(8));
  };
  const left = ecb(bdk.key);
  let right: Buffer | undefined;
  let ipek: Buffer | undefined;
  let pinKey: Buffer | undefined;
  try {
    right = ecb(variant);
    ipek = Buffer.concat([left, right]);
    pinKey = tdesDukptPinKeyFromIpek(ipek, ksn);
    const handle = api.C_CreateObject(session, [...workingKeyTemplate('TDES_2KEY'), { type: A.CKA_VALUE, value: pinKey }]);
    return { handle, family: 'tdes', bits: 128 };
  } finally {
    for (const secret of [left, right, ipek, pinKey]) secret?.fill(0);
  }
}

/** The PIN encryption working key of an AES DUKPT transaction, derived step by step inside the token. */
export function deriveAesDukpt(
  api: Pkcs11Api,
  session: Handle,
  bdk: { readonly type: KeyType; readonly handle: Handle },
  ksn: Buffer,
  workingKey: WorkingKeyType,
): Omit<DerivedKey, 'epoch'> {
  if (bdk.type !== 'AES_128' && bdk.type !== 'AES_256') throw new HsmBridgeError('INCOMPATIBLE_KEY', 'AES DUKPT needs an AES BDK');
  const steps = aesDukptPinKeySteps(bdk.type, ksn, workingKey);
  let base = bdk.handle;
  /** The latest derived key, ours to destroy once the next exists. */
  let owned: Handle | undefined;
  try {
    for (const [i, step] of steps.entries()) {
      const last = i === steps.length - 1;
      const template = last ? workingKeyTemplate(workingKey) : intermediateKeyTemplate();
      const next = deriveStep(api, session, base, step, template, last ? workingKeyInfo(workingKey).keyType : A.CKK_AES);
      if (owned) api.C_DestroyObject(session, owned);
      owned = next;
      base = next;
    }
    const info = workingKeyInfo(workingKey);
    const key = { handle: owned!, family: info.family, bits: info.bytes * 8 };
    owned = undefined;
    return key;
  } finally {
    if (owned) destroyQuietly(api, session, owned);
  }
}

/** One step: the first step.bytes bytes of ECB(base, step.data), as a session object of `template`. */
function deriveStep(api: Pkcs11Api, session: Handle, base: Handle, step: AesDukptStep, template: pkcs11js.Template, keyType: number): Handle {
  // DES key types fix their own length; some tokens refuse CKA_VALUE_LEN on them.
  const length: pkcs11js.Template = keyType === A.CKK_AES ? [{ type: A.CKA_VALUE_LEN, value: step.bytes }] : [];
  if (step.data.length === AES_BLOCK) return api.C_DeriveKey(session, cbcEncryptData(step.data), base, [...template, ...length]);
  const value = Buffer.alloc(step.data.length);
  try {
    for (let at = 0; at < step.data.length; at += AES_BLOCK) {
      const half = api.C_DeriveKey(session, cbcEncryptData(step.data.subarray(at, at + AES_BLOCK)), base, readableBlock);
      try {
        const block = api.C_GetAttributeValue(session, half, [{ type: A.CKA_VALUE }])[0]?.value;
        if (!block || block.length !== AES_BLOCK) throw new HsmBridgeError('INTERNAL', 'the token derived a key of an unexpected length');
        block.copy(value, at);
        block.fill(0);
      } finally {
        api.C_DestroyObject(session, half);
      }
    }
    return api.C_CreateObject(session, [...template, { type: A.CKA_VALUE, value: value.subarray(0, step.bytes) }]);
  } finally {
    value.fill(0);
  }
}

/** ECB encryption of one block as key derivation: CBC with a zero IV over that block. */
const cbcEncryptData = (data: Buffer): pkcs11js.Mechanism => ({
  mechanism: CKM.AES_CBC_ENCRYPT_DATA,
  parameter: { type: A.CK_PARAMS_AES_CBC, iv: ZERO_IV, data } as pkcs11js.AesCBC,
});

/** One derived block that is read back at once (32-byte steps only). */
const readableBlock = sessionSecretKey(A.CKK_GENERIC_SECRET, true, [{ type: A.CKA_VALUE_LEN, value: AES_BLOCK }]);
