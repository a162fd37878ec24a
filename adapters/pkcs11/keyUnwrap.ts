/**
 * Wrapped import (BYOK, src/backend/port.ts WrappingScheme): CKM_RSA_AES_KEY_WRAP in two steps, since
 * SoftHSM (like several HSMs) lacks the combined mechanism. C_UnwrapKey with CKM_RSA_PKCS_OAEP and the
 * import wrapping key's private half gives a session AES key (sensitive, unwrap only); C_UnwrapKey with
 * CKM_AES_KEY_WRAP_PAD under it gives the target as a session object, which is checked against the type
 * and only then copied into the token (as generated keys are: versionObjects.ts), with its public half.
 *
 * What SoftHSM 2.6.1 does here (measured): it unwraps RSA and EC PKCS#8 and raw secrets inside, but
 * fails Ed25519 PKCS#8 (CKR_FUNCTION_FAILED); an unwrapped secret key reports CKA_VALUE_LEN 0 and takes
 * any length (a 24-byte CKK_DES2 key, a 15-byte AES key); an unwrapped EC key has no public point. So:
 *
 * - a probe at start (probeUnwrapsInside) tells which key families the token unwraps inside; the others
 *   are unwrapped into a readable session object, parsed with node:crypto in this worker and created
 *   with C_CreateObject, every clear buffer zeroed before return (JWK strings of RSA and EC keys on such a
 *   token cannot be: they stay in the heap until collected);
 * - a secret's length (the transport key's, the target's) is told inside the token (secretLength): the
 *   target's CKA_VALUE_LEN where the token reports one, the RFC 5649 length (8 bytes more than the key
 *   rounded up to 8), and whether a sensitive AES copy encrypts (AES takes 16, 24 or 32 bytes);
 * - an EC key's public point comes from ECDH with the curve's generator inside the token (its x), and
 *   the y that verifies a signature made with the key;
 * - TDES keys are unwrapped readable and made as a TR-31 import makes them: a key whose parts are equal
 *   (single DES) must be refused, which the token cannot tell, and kinds with companion objects
 *   (paymentKeys.ts: a BDK, an M3 MAC key) need the clear value for the companion.
 */
import { createCipheriv, createECDH, createHash, createPrivateKey, createPublicKey, ECDH, generateKeyPairSync, randomBytes, verify, type KeyObject } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import type { WrappedKey } from '../../src/backend/port.js';
import { HsmBridgeError } from '../../src/errors.js';
import type { KeyName } from '../../src/keys/names.js';
import { isAsymmetric, keyTypes, type KeyType, type KeyTypeInfo } from '../../src/keys/types.js';
import { hasDistinctParts, setOddParity } from '../../src/payment/crypto/parity.js';
import { allowedMechanismsAttribute } from './allowedMechanisms.js';
import { CKR, ckrName, ckrOf, isDeviceGone, isHandleStale } from './errors.js';
import { ecdhSharedSecret } from './joseMechanisms.js';
import type { CompanionRole, MetadataRecord } from './keyObjects.js';
import { CKM, hashMechanism, CKZ_DATA_SPECIFIED } from './mechanisms.js';
import type { Handle, Pkcs11Api } from './module.js';
import { companionsFor } from './paymentKeys.js';
import { sessionSecretKey } from './sessionObjects.js';
import { CKK_EC_EDWARDS, unwrapTemplates, type TemplateOptions } from './templates.js';
import { copyIntoToken, createTokenObject, destroyTokenObject } from './tokenWrites.js';
import { makeVersionObjects, type TokenTraits } from './versionObjects.js';
import type { TokenLog } from './worker/protocol.js';

const A = pkcs11js;
/** RFC 5649's alternative initial value, as node:crypto's id-aes256-wrap-pad wants it. */
export const KWP_IV = Buffer.from('a65959a6', 'hex');
const KWP = { mechanism: CKM.AES_KEY_WRAP_PAD };
/** The transport key's length: CKM_RSA_AES_KEY_WRAP's AES key is AES-256 here. */
const TRANSPORT_BYTES = 32;
type Family = 'rsa' | 'ec' | 'okp';
const KEY_TYPE: Record<Family, number> = { rsa: A.CKK_RSA, ec: A.CKK_EC, okp: CKK_EC_EDWARDS };

/** OAEP's hash and MGF1 (CKG_MGF1_SHA1 = 1), the same for both, with an empty label. */
const OAEP_HASH = { sha1: { hash: CKM.SHA_1, mgf: 1 }, sha256: hashMechanism.sha256 } as const;
const oaepMechanism = (hash: 'sha1' | 'sha256'): pkcs11js.Mechanism => ({
  mechanism: CKM.RSA_PKCS_OAEP,
  parameter: { type: A.CK_PARAMS_RSA_OAEP, hashAlg: OAEP_HASH[hash].hash, mgf: OAEP_HASH[hash].mgf, source: CKZ_DATA_SPECIFIED } as pkcs11js.RsaOAEP,
});

const flags = (on: readonly number[]): pkcs11js.Template =>
  [A.CKA_ENCRYPT, A.CKA_DECRYPT, A.CKA_SIGN, A.CKA_VERIFY, A.CKA_WRAP, A.CKA_UNWRAP, A.CKA_DERIVE].map((type) => ({ type, value: on.includes(type) }));

/** The transport key: a session AES key that unwraps the target with RFC 5649 and does nothing else. */
const transportTemplate = (): pkcs11js.Template => [
  ...sessionSecretKey(A.CKK_AES, false),
  ...flags([A.CKA_UNWRAP]),
  allowedMechanismsAttribute([CKM.AES_KEY_WRAP_PAD]),
];

/** Failures that are the device's or a stale handle's, never the blob's: passed on as they are. */
const notTheBlob = (e: unknown) => isDeviceGone(e) || isHandleStale(e);
const failed = (cause: unknown) => new HsmBridgeError('DECRYPTION_FAILED', 'the wrapped key does not unwrap', { cause });
const incompatible = (type: KeyType, detail: string) => new HsmBridgeError('INCOMPATIBLE_KEY', `the wrapped key is not a ${type} key: ${detail}`);
const malformed = (cause?: unknown) => new HsmBridgeError('INVALID_ARGUMENT', 'the wrapped key is not a well-formed key', cause === undefined ? undefined : { cause });

function quietly(cleanup: () => void): void {
  try {
    cleanup();
  } catch {
    // a session object goes with its session anyway; the error that matters is the caller's
  }
}

/** Step 1: the transport key, unwrapped with the import wrapping key's private half (a session object). */
export function unwrapTransportKey(api: Pkcs11Api, session: Handle, wrappingKey: Handle, wrapped: WrappedKey): Handle {
  const unwrap = (template: pkcs11js.Template) => unwrapEncryptedKey(api, session, wrappingKey, wrapped, template);
  const transport = unwrap(transportTemplate());
  try {
    // A block that opens to a key of another length is not the sender's transport key.
    if (!secretLength(api, session, TRANSPORT_BYTES, undefined, unwrap)) throw failed(undefined);
    return transport;
  } catch (e) {
    quietly(() => api.C_DestroyObject(session, transport));
    throw e;
  }
}

function unwrapEncryptedKey(api: Pkcs11Api, session: Handle, wrappingKey: Handle, wrapped: WrappedKey, template: pkcs11js.Template): Handle {
  const hash = wrapped.scheme === 'RSA_OAEP_SHA256_AES_KWP' ? 'sha256' : 'sha1';
  try {
    return api.C_UnwrapKey(session, oaepMechanism(hash), wrappingKey, wrapped.encryptedKey, template);
  } catch (e) {
    if (notTheBlob(e)) throw e;
    const code = ckrOf(e);
    if (code === CKR.KEY_FUNCTION_NOT_PERMITTED || code === CKR.MECHANISM_INVALID) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', 'the wrapping key is not an import wrapping key', { cause: e });
    }
    if (hash === 'sha256' && (code === CKR.ARGUMENTS_BAD || code === CKR.MECHANISM_PARAM_INVALID)) {
      throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', 'the HSM does not unwrap with RSA-OAEP SHA-256', { cause: e });
    }
    // SoftHSM answers a bad OAEP block with CKR_GENERAL_ERROR; others with CKR_ENCRYPTED_DATA_INVALID and the like.
    throw failed(e);
  }
}

export interface UnwrapSetting {
  readonly traits: TokenTraits;
  /** The key types the token unwraps inside for every purpose (probeUnwrapsInside). */
  readonly inside: readonly KeyType[];
  readonly log: TokenLog;
}

/**
 * Step 2: the objects of one version (`id`) from the wrapped target, under the transport key. Returns every
 * token object made (the caller removes them if its commit fails); on an error, leaves none.
 */
export async function unwrapVersionObjects(
  api: Pkcs11Api,
  session: Handle,
  setting: UnwrapSetting,
  key: Pick<MetadataRecord, 'type' | 'purpose' | 'exportable' | 'keyUsage'>,
  name: KeyName,
  id: Buffer,
  transport: Handle,
  wrappedTarget: Buffer,
): Promise<{ handles: Handle[]; companions: CompanionRole[] }> {
  const { type, purpose, keyUsage } = key;
  const options: TemplateOptions = { rawRsaDecrypt: setting.traits.rawRsaDecrypt, exportable: key.exportable === true, ...(keyUsage ? { keyUsage } : {}) };
  if (!isAsymmetric(type)) {
    // Secrets unwrap inside on any token with CKM_AES_KEY_WRAP_PAD, but TDES keys need the value (header).
    if (keyTypes[type].family === 'tdes' || companionsFor(type, purpose, keyUsage).length > 0) {
      const value = readableSecret(api, session, transport, wrappedTarget, type);
      try {
        return await makeVersionObjects(api, session, setting.log, setting.traits, key, name, id, value);
      } finally {
        value.fill(0);
      }
    }
    return { handles: secretInside(api, session, type, unwrapTemplates(type, purpose, name, id, options).key, transport, wrappedTarget), companions: [] };
  }
  const templates = unwrapTemplates(type, purpose, name, id, options);
  const handles = setting.inside.includes(type)
    ? await pairInside(api, session, setting.inside, type, templates.key, templates.publicKey!, transport, wrappedTarget)
    : pairFromValue(api, session, type, templates.key, templates.publicKey!, transport, wrappedTarget);
  return { handles, companions: [] };
}

/** Unwraps the target with the transport key into a session object made from `template`; every failure is the blob's. */
function unwrapTarget(api: Pkcs11Api, session: Handle, transport: Handle, wrappedTarget: Buffer, template: pkcs11js.Template): Handle {
  try {
    return api.C_UnwrapKey(session, KWP, transport, wrappedTarget, template);
  } catch (e) {
    if (notTheBlob(e)) throw e;
    throw failed(e);
  }
}

/** The target's clear bytes, through a readable session object destroyed at once; the caller zeroes them. */
function readableValue(api: Pkcs11Api, session: Handle, transport: Handle, wrappedTarget: Buffer): Buffer {
  const object = unwrapTarget(api, session, transport, wrappedTarget, sessionSecretKey(A.CKK_GENERIC_SECRET, true, flags([])));
  try {
    const value = api.C_GetAttributeValue(session, object, [{ type: A.CKA_VALUE }])[0]?.value;
    if (!value) throw new HsmBridgeError('INTERNAL', 'the token returned no value');
    return value;
  } finally {
    quietly(() => api.C_DestroyObject(session, object));
  }
}

/**
 * A secret's clear value, checked as the software backend checks imported material (keyMaterial.ts): a
 * TDES key gets odd parity (DES ignores those bits) and is refused when two of its parts are equal.
 */
function readableSecret(api: Pkcs11Api, session: Handle, transport: Handle, wrappedTarget: Buffer, type: KeyType): Buffer {
  const value = readableValue(api, session, transport, wrappedTarget);
  if (value.length !== keyTypes[type].bits / 8) {
    value.fill(0);
    throw malformed();
  }
  if (keyTypes[type].family !== 'tdes') return value;
  if (!hasDistinctParts(setOddParity(value))) {
    value.fill(0);
    throw incompatible(type, 'two of its parts are equal (single DES)');
  }
  return value;
}

/** A secret key unwrapped inside and copied into the token once its length is checked. */
function secretInside(api: Pkcs11Api, session: Handle, type: KeyType, template: pkcs11js.Template, transport: Handle, wrappedTarget: Buffer): Handle[] {
  const object = unwrapTarget(api, session, transport, wrappedTarget, template);
  try {
    // The wrap passed its integrity check, so its length is the sender's: RFC 5649 without a wrap inside.
    const ok = secretLength(api, session, keyTypes[type].bits / 8, object, (copy) => unwrapTarget(api, session, transport, wrappedTarget, copy), wrappedTarget.length);
    if (!ok) throw malformed();
    return [copyIntoToken(api, session, object)];
  } finally {
    quietly(() => api.C_DestroyObject(session, object));
  }
}

/**
 * Whether a secret the token holds is `bytes` long (16, 24 or 32: AES-128, AES-192, AES-256, HMAC-256), told without
 * its value leaving the token. SoftHSM reports CKA_VALUE_LEN 0 for unwrapped secrets and takes any length,
 * so: CKA_VALUE_LEN of `object` where reported; the RFC 5649 length, ceil(len/8)*8 + 8, which is
 * `kwpLength` when given, else that of an extractable copy wrapped under an ephemeral AES-256 key
 * generated in the token (it never leaves it); and whether a sensitive AES copy encrypts a block, as AES
 * does only with 16, 24 or 32 bytes, which leaves `bytes` alone in its range of 8. `copyOf` unwraps the
 * secret again from a template; every copy and the ephemeral key are destroyed.
 */
function secretLength(api: Pkcs11Api, session: Handle, bytes: number, object: Handle | undefined, copyOf: (template: pkcs11js.Template) => Handle, kwpLength?: number): boolean {
  if (object !== undefined) {
    const reported = readUlong(api.C_GetAttributeValue(session, object, [{ type: A.CKA_VALUE_LEN }])[0]?.value);
    if (reported !== 0 && reported !== bytes) return false;
  }
  // Sensitive but extractable: sessionSecretKey's CKA_EXTRACTABLE replaced, not repeated (a token may refuse a template that says it twice).
  const extractable = [...sessionSecretKey(A.CKK_GENERIC_SECRET, false).filter((a) => a.type !== A.CKA_EXTRACTABLE), { type: A.CKA_EXTRACTABLE, value: true }, ...flags([])];
  const wrappedLength = kwpLength ?? withCopy(api, session, copyOf, extractable, (copy) => {
    const ephemeral = api.C_GenerateKey(session, { mechanism: CKM.AES_KEY_GEN }, [
      ...sessionSecretKey(A.CKK_AES, false, flags([A.CKA_WRAP])),
      { type: A.CKA_VALUE_LEN, value: 32 },
      allowedMechanismsAttribute([CKM.AES_KEY_WRAP_PAD]),
    ]);
    try {
      // Room for any secret OAEP can carry (under 512 bytes), so that a long one is measured, not an error.
      return api.C_WrapKey(session, KWP, ephemeral, copy, Buffer.alloc(1024)).length;
    } catch (e) {
      // A secret the token will not wrap (SoftHSM: an empty one, CKR_KEY_NOT_WRAPPABLE) is not the length asked for.
      if (notTheBlob(e)) throw e;
      return false;
    } finally {
      quietly(() => api.C_DestroyObject(session, ephemeral));
    }
  });
  if (wrappedLength !== bytes + 8) return false;
  return withCopy(api, session, copyOf, sessionSecretKey(A.CKK_AES, false, [...flags([A.CKA_ENCRYPT]), allowedMechanismsAttribute([CKM.AES_ECB])]), (copy) => {
    try {
      api.C_EncryptInit(session, { mechanism: CKM.AES_ECB }, copy);
      api.C_Encrypt(session, Buffer.alloc(16), Buffer.alloc(16));
      return true;
    } catch (e) {
      if (notTheBlob(e)) throw e;
      return false;
    }
  });
}

/** `use` on a session copy made by `copyOf`, destroyed after; a copy the token refuses to make is a length it refuses (false). */
function withCopy<T>(api: Pkcs11Api, session: Handle, copyOf: (template: pkcs11js.Template) => Handle, template: pkcs11js.Template, use: (copy: Handle) => T): T | false {
  let copy: Handle;
  try {
    copy = copyOf(template);
  } catch (e) {
    if (notTheBlob(e)) throw e;
    return false;
  }
  try {
    return use(copy);
  } finally {
    quietly(() => api.C_DestroyObject(session, copy));
  }
}

/** A CK_ULONG attribute; 0 when empty. */
function readUlong(b: Buffer | undefined): number {
  if (!b || b.length === 0) return 0;
  return b.length >= 8 ? Number(b.readBigUInt64LE(0)) : b.readUInt32LE(0);
}

/**
 * A private key unwrapped inside, checked (modulus size, curve), copied into the token, and its public
 * half created from what the token tells of the private key.
 */
async function pairInside(api: Pkcs11Api, session: Handle, inside: readonly KeyType[], type: KeyType, privateTemplate: pkcs11js.Template, publicTemplate: pkcs11js.Template, transport: Handle, wrappedTarget: Buffer): Promise<Handle[]> {
  const info: KeyTypeInfo = keyTypes[type];
  let object: Handle;
  try {
    object = api.C_UnwrapKey(session, KWP, transport, wrappedTarget, privateTemplate);
  } catch (e) {
    if (notTheBlob(e)) throw e;
    throw whyNotUnwrapped(api, session, inside, type, transport, wrappedTarget, e);
  }
  const made: Handle[] = [];
  try {
    let shape: pkcs11js.Template;
    if (info.family === 'rsa') {
      const [n, e] = api.C_GetAttributeValue(session, object, [{ type: A.CKA_MODULUS }, { type: A.CKA_PUBLIC_EXPONENT }]);
      const bits = bitLength(n!.value);
      if (bits !== info.bits) throw incompatible(type, `a ${bits}-bit modulus`);
      shape = [{ type: A.CKA_MODULUS, value: n!.value }, { type: A.CKA_PUBLIC_EXPONENT, value: e!.value }];
    } else {
      const params = api.C_GetAttributeValue(session, object, [{ type: A.CKA_EC_PARAMS }])[0]!.value;
      if (!params.equals(Buffer.from(info.curveOid!, 'hex'))) throw incompatible(type, 'another curve');
      shape = [{ type: A.CKA_EC_PARAMS, value: params }, { type: A.CKA_EC_POINT, value: derOctetString(await ecPublicPoint(api, session, type, transport, wrappedTarget)) }];
    }
    made.push(createTokenObject(api, session, [...publicTemplate, ...shape]));
    made.push(copyIntoToken(api, session, object));
    return made;
  } catch (e) {
    for (const h of made) quietly(() => destroyTokenObject(api, session, h));
    throw e;
  } finally {
    quietly(() => api.C_DestroyObject(session, object));
  }
}

/**
 * Why the token refused to unwrap the target as the type's private key: the wrap itself (a tampered or
 * truncated blob, another transport key: DECRYPTION_FAILED), or what it holds, found by unwrapping it
 * again as session objects that are destroyed at once: another kind of private key (INCOMPATIBLE_KEY), or
 * none the token knows (INVALID_ARGUMENT). A kind the token cannot unwrap at all (not in `inside`; SoftHSM:
 * Ed25519) is told from the value, read as pairFromValue reads such keys and zeroed at once.
 */
function whyNotUnwrapped(api: Pkcs11Api, session: Handle, inside: readonly KeyType[], type: KeyType, transport: Handle, wrappedTarget: Buffer, cause: unknown): HsmBridgeError {
  const opaque = [...sessionSecretKey(A.CKK_GENERIC_SECRET, false), ...flags([])];
  const others = (['rsa', 'ec', 'okp'] as const).filter((f) => f !== keyTypes[type].family);
  const tries: pkcs11js.Template[] = others.map((f) => [{ type: A.CKA_CLASS, value: A.CKO_PRIVATE_KEY }, { type: A.CKA_KEY_TYPE, value: KEY_TYPE[f] }, { type: A.CKA_TOKEN, value: false }, { type: A.CKA_SENSITIVE, value: true }, { type: A.CKA_EXTRACTABLE, value: false }]);
  for (const [i, template] of [opaque, ...tries].entries()) {
    let object: Handle;
    try {
      object = api.C_UnwrapKey(session, KWP, transport, wrappedTarget, template);
    } catch (e) {
      if (notTheBlob(e)) throw e;
      if (i === 0) return failed(cause);
      continue;
    }
    quietly(() => api.C_DestroyObject(session, object));
    if (i > 0) return incompatible(type, 'another kind of key');
  }
  const outside = others.filter((f) => !inside.some((t) => keyTypes[t].family === f));
  if (outside.length > 0 && (outside as readonly (Family | undefined)[]).includes(familyOfValue(api, session, transport, wrappedTarget))) return incompatible(type, 'another kind of key');
  return malformed();
}

/**
 * The family of the PKCS#8 key the target holds, by its algorithm OID; the clear value is zeroed before
 * return. Read by hand, not with node:crypto: the token's failed unwraps can leave errors on this thread's
 * OpenSSL error queue (SoftHSM shares the process's OpenSSL), which createPrivateKey then reports as its own.
 */
function familyOfValue(api: Pkcs11Api, session: Handle, transport: Handle, wrappedTarget: Buffer): Family | undefined {
  const der = readableValue(api, session, transport, wrappedTarget);
  try {
    return PKCS8_ALGORITHMS[pkcs8Algorithm(der) ?? ''];
  } finally {
    der.fill(0);
  }
}

const PKCS8_ALGORITHMS: Readonly<Record<string, Family>> = { '2a864886f70d010101': 'rsa', '2a8648ce3d0201': 'ec', '2b6570': 'okp' };

/** The algorithm OID (hex) of a PrivateKeyInfo: SEQUENCE { INTEGER version, SEQUENCE { OID, ... }, ... }. */
function pkcs8Algorithm(der: Buffer): string | undefined {
  let at = 0;
  const enter = (tag: number): number | undefined => {
    if (der[at] !== tag || at + 1 >= der.length) return undefined;
    let length = der[at + 1]!;
    at += 2;
    if (length & 0x80) {
      const n = length & 0x7f;
      if (n < 1 || n > 3) return undefined;
      length = 0;
      for (let i = 0; i < n; i++) length = length * 256 + (der[at++] ?? 0);
    }
    return at + length <= der.length ? length : undefined;
  };
  if (enter(0x30) === undefined) return undefined;
  const version = enter(0x02);
  if (version === undefined) return undefined;
  at += version;
  if (enter(0x30) === undefined) return undefined;
  const oid = enter(0x06);
  return oid === undefined ? undefined : der.subarray(at, at + oid).toString('hex');
}

/** An Ed25519 PKCS#8 (RFC 8410 §7, no public key, no attributes) is these 16 bytes and the 32-byte seed. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

const bitLength = (n: Buffer) => {
  let i = 0;
  while (i < n.length - 1 && n[i] === 0) i++;
  return (n.length - i) * 8 - Math.clz32(n[i]!) + 24;
};

/** DER OCTET STRING around a point (CKA_EC_POINT as PKCS#11 has it; points here are under 128 bytes). */
const derOctetString = (point: Buffer) => Buffer.concat([Buffer.from([0x04, point.length]), point]);

/** A fixed message signed once per EC import, to tell the two points with the same x apart. */
const PROBE_MESSAGE = Buffer.from('hsm-bridge: which y', 'latin1');

/**
 * The public point Q = dG of an EC key unwrapped inside, without its private scalar leaving the token: a
 * second session copy (derive and sign only, destroyed at once) does ECDH with the generator G, which
 * gives x(Q) (public); of the two points with that x, Q is the one that verifies the copy's signature.
 */
async function ecPublicPoint(api: Pkcs11Api, session: Handle, type: KeyType, transport: Handle, wrappedTarget: Buffer): Promise<Buffer> {
  const info: KeyTypeInfo = keyTypes[type];
  const fieldLength = Math.ceil(info.bits / 8);
  const copy = unwrapTarget(api, session, transport, wrappedTarget, [
    { type: A.CKA_CLASS, value: A.CKO_PRIVATE_KEY },
    { type: A.CKA_KEY_TYPE, value: A.CKK_EC },
    { type: A.CKA_TOKEN, value: false },
    { type: A.CKA_SENSITIVE, value: true },
    { type: A.CKA_EXTRACTABLE, value: false },
    { type: A.CKA_DERIVE, value: true },
    { type: A.CKA_SIGN, value: true },
    allowedMechanismsAttribute([CKM.ECDH1_DERIVE, CKM.ECDSA]),
  ]);
  try {
    let x: Buffer;
    let signature: Buffer;
    try {
      x = await ecdhSharedSecret(api, session, copy, pointSpki(generator(info.nodeCurve!, fieldLength), info.curve!), fieldLength);
      api.C_SignInit(session, { mechanism: CKM.ECDSA }, copy);
      signature = api.C_Sign(session, createHash('sha256').update(PROBE_MESSAGE).digest(), Buffer.alloc(2 * fieldLength));
    } catch (e) {
      // A scalar out of range (0, n) unwraps but neither derives nor signs (SoftHSM: CKR_GENERAL_ERROR).
      if (notTheBlob(e)) throw e;
      throw malformed(e);
    }
    for (const prefix of [2, 3]) {
      const point = ECDH.convertKey(Buffer.concat([Buffer.from([prefix]), x]), info.nodeCurve!, undefined, undefined, 'uncompressed') as Buffer;
      const key = createPublicKey({ key: pointSpki(point, info.curve!), format: 'der', type: 'spki' });
      if (verify('sha256', PROBE_MESSAGE, { key, dsaEncoding: 'ieee-p1363' }, signature)) return point;
    }
    throw new HsmBridgeError('INTERNAL', 'the EC public key could not be determined');
  } finally {
    quietly(() => api.C_DestroyObject(session, copy));
  }
}

/** The curve's generator G, uncompressed: the public key of the private scalar 1. */
function generator(nodeCurve: string, fieldLength: number): Buffer {
  const one = Buffer.alloc(fieldLength);
  one[fieldLength - 1] = 1;
  const ecdh = createECDH(nodeCurve);
  ecdh.setPrivateKey(one);
  return ecdh.getPublicKey();
}

/** SPKI DER of an uncompressed point on a named curve. */
function pointSpki(point: Buffer, curve: string): Buffer {
  const size = (point.length - 1) / 2;
  const jwk = { kty: 'EC', crv: curve, x: point.subarray(1, 1 + size).toString('base64url'), y: point.subarray(1 + size).toString('base64url') };
  return createPublicKey({ key: jwk, format: 'jwk' }).export({ format: 'der', type: 'spki' });
}

/**
 * A private key the token cannot unwrap inside: unwrapped readable, parsed and checked here, and created
 * with C_CreateObject (private half sensitive, not extractable) together with its public half. Every
 * buffer of clear material is zeroed before return.
 */
function pairFromValue(api: Pkcs11Api, session: Handle, type: KeyType, privateTemplate: pkcs11js.Template, publicTemplate: pkcs11js.Template, transport: Handle, wrappedTarget: Buffer): Handle[] {
  const info: KeyTypeInfo = keyTypes[type];
  const der = readableValue(api, session, transport, wrappedTarget);
  const secrets: Buffer[] = [der];
  const made: Handle[] = [];
  try {
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    } catch {
      throw malformed();
    }
    const kind = key.asymmetricKeyType;
    const details = key.asymmetricKeyDetails ?? {};
    if (info.family === 'rsa' && (kind !== 'rsa' || details.modulusLength !== info.bits)) throw incompatible(type, kind === 'rsa' ? `a ${details.modulusLength}-bit modulus` : 'another kind of key');
    if (info.family === 'ec' && (kind !== 'ec' || details.namedCurve !== info.nodeCurve)) throw incompatible(type, kind === 'ec' ? 'another curve' : 'another kind of key');
    if (info.family === 'okp' && kind !== 'ed25519') throw incompatible(type, 'another kind of key');
    let privateValues: pkcs11js.Template;
    let publicValues: pkcs11js.Template;
    if (info.family === 'okp') {
      // The seed straight from the DER (RFC 8410's one layout), so that no string ever holds it; the public key from the SPKI's tail.
      if (der.length !== ED25519_PKCS8_PREFIX.length + 32 || !der.subarray(0, ED25519_PKCS8_PREFIX.length).equals(ED25519_PKCS8_PREFIX)) throw malformed();
      const params = { type: A.CKA_EC_PARAMS, value: Buffer.from(info.curveOid!, 'hex') };
      const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
      privateValues = [params, { type: A.CKA_VALUE, value: der.subarray(ED25519_PKCS8_PREFIX.length) }];
      publicValues = [params, { type: A.CKA_EC_POINT, value: derOctetString(spki.subarray(spki.length - 32)) }];
    } else {
      // JWK strings are immutable: on a token that needs this path for RSA or EC they stay in the heap until collected.
      const jwk = key.export({ format: 'jwk' });
      // Buffer.alloc, never Buffer.from's shared pool slab, which a later message to another thread could carry.
      const b = (v: string | undefined) => {
        const buffer = Buffer.alloc(Buffer.byteLength(v!, 'base64url'));
        buffer.write(v!, 'base64url');
        secrets.push(buffer);
        return buffer;
      };
      if (info.family === 'rsa') {
        const [n, e] = [b(jwk.n), b(jwk.e)];
        privateValues = [
          { type: A.CKA_MODULUS, value: n }, { type: A.CKA_PUBLIC_EXPONENT, value: e }, { type: A.CKA_PRIVATE_EXPONENT, value: b(jwk.d) },
          { type: A.CKA_PRIME_1, value: b(jwk.p) }, { type: A.CKA_PRIME_2, value: b(jwk.q) }, { type: A.CKA_EXPONENT_1, value: b(jwk.dp) },
          { type: A.CKA_EXPONENT_2, value: b(jwk.dq) }, { type: A.CKA_COEFFICIENT, value: b(jwk.qi) },
        ];
        publicValues = [{ type: A.CKA_MODULUS, value: n }, { type: A.CKA_PUBLIC_EXPONENT, value: e }];
      } else {
        const params = { type: A.CKA_EC_PARAMS, value: Buffer.from(info.curveOid!, 'hex') };
        const point = Buffer.concat([Buffer.from([4]), b(jwk.x), b(jwk.y)]);
        privateValues = [params, { type: A.CKA_VALUE, value: b(jwk.d) }];
        publicValues = [params, { type: A.CKA_EC_POINT, value: derOctetString(point) }];
      }
    }
    made.push(createTokenObject(api, session, [...publicTemplate, ...publicValues]));
    made.push(createTokenObject(api, session, [...privateTemplate.map((a) => (a.type === A.CKA_TOKEN ? { type: A.CKA_TOKEN, value: true } : a)), ...privateValues]));
    return made;
  } catch (e) {
    for (const h of made) quietly(() => destroyTokenObject(api, session, h));
    throw e;
  } finally {
    for (const buffer of secrets) buffer.fill(0);
  }
}

/**
 * A THROWAWAY TEST KEY, public in this source and never used for anything but the start-up probe: RSA-2048
 * (HSMs that refuse shorter RSA keys would fail a smaller one), fixed to save a key generation at start.
 */
const PROBE_RSA_2048_PKCS8 =
  'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCRNqRpihV7Oy1I2i0kpOkR/+ugZmidNSauUDT2QYtTidU1Wfxg' +
  'IF6iYMnzu2cDYP2AZ5MeZDVB4FyafPYELQp5j0lipb2+xDuTHwJq2p+XZXnvu+/SiQYXdyCt9aiW26HrNHeQASG/YW6QQnDGejn3' +
  'O5fmSfdN+jtxswwFqVhYMSIe+eaUwRs7sLKpooIETLLnTCbGH/ifPAx5IfczGYDtqbKreWSwPl46Znz4zz09KjB2M0nfa27+S8j6' +
  'bONfhV37GttGxzc/CT5Mxnmm92RyjZ2rwgenkfnPqOJfPi4sCNLv9oTqhoXnQRtpN6X7ChoOvCXkDkUFr2Ot2e50gRatAgMBAAEC' +
  'ggEAASOOko1Uscy7BDFB3WG1ukBplq5275S1IvTaFXxaHWOdWnfENPTMCTX9H34+xpYCJvmo+7oJeOTLlSKZw1qfFGj9SFrIbDCZ' +
  'zwOVP0VLryJKnIi6zsnoVFLI3NRqaBR85p1YurZnj1qyRUtgGw5mWfwLqvC1kdT+lluzInA7kyV8ehJCJ0ZQjrES2Mvr1WJqIujV' +
  'wz+/6IhlNWgUyRZIBiPJgPe9HveQmQk52FG6DUMBMLkqe+J0l/VcaPAWC9r0oeokQOHYklLsoTke2nL15F/edseAXpoecYGdqY4f' +
  'ZsKkZ2VRWMg2VvrFSQKK76MGcFDs2NANSmUOeLqAAVjqgQKBgQDJPTGTnpuOXnODmG/jcJ6b1YSeaAH2IaD2dULtvf7uVEEPwWii' +
  'LFLP00U7DHseJhS6vWPlHsNKepZVzsnzZzcYIjvvO4qI+4CuiraucmQR5xrdFqyMBoS5ekW6rR78yyMqRGfcLL9+I5tGdq6ftXvi' +
  'V+F1vhPHBryCSvpR4HsvsQKBgQC4upFtF8f/6WBHCdeo4j/CvKBZgjhUB+noSvLdC/sj0kfxOyCnRNLeydUdSywXoAVMBVVEWpX5' +
  'ecU0RErKJaC0+lpbGSIOzT9e4BG/d2hR4TuMdjjFSiWiI41n3BDFW+UUOyK1pBkmDM6KWThd1wG6iFqbXFEaKZvJli/uVc4xvQKB' +
  'gGuqQLcA+aq+38B9MweVPlaTcuOpM7tynIKflBJMP3NVQoXibU+utROZrgV8lPY5W4fZQfPYdJWJZps8CpIeG7zevAAvc9v76wn3' +
  'DuvgKafmZFn7Ao/cAPCW+W15qAWJzSOU+5gxnLYo6K9XWe/6kfA0IlzzN/OYqAxxfuGFX4LRAoGARgCVSXUAmk7S6Dinm90Y8m/O' +
  'h/zb4aQaFKgKPo/ivKFcF+MjLZ/cFQcBFpe8/rrqJvPCayO0v5RQkczrVo1JyCszAGCW0mse/5IDx721L4odqc3HF6RQfI/ibyAq' +
  'zs9TEQaT0ad8zDmAL1c+D/mBMzGmvEcQiMyJt6uNQFEN0TUCgYEAoEvFsZw6JwQ6qpSor81KuW0SDdAOhy5dd0YdMhHrymq0o28E' +
  '3lIStPkz8AZ/AoTqoFoJiHTzT/NSnVi0Rl/qlXgyTg39TUtWPBbkre8hsdUCroSnbJXVDBdb2lIuhXxRASTWCzXBQ1G47Pz9436X' +
  'dPFf/lJMCsizUwcGbWhzyJE=';

/**
 * Which asymmetric key types the token unwraps inside (once, at start): a throwaway key of each family
 * (RSA the fixed test key above, EC and Ed25519 made with node:crypto) is wrapped under a known AES key
 * and unwrapped as a session object. An EC key
 * also needs ECDH and ECDSA inside, for its public point (ecPublicPoint). AES and HMAC types unwrap inside
 * on any token with the mechanism; TDES types never do (unwrapVersionObjects). Every throwaway object is
 * destroyed. A token that refuses the known AES key (an HSM in FIPS mode takes no clear secret) unwraps
 * nothing inside as far as hsm-bridge knows: wrapped import is optional, the backend still starts.
 */
export function probeUnwrapsInside(api: Pkcs11Api, session: Handle, types: readonly KeyType[], has: (mechanism: number) => boolean, log: TokenLog): KeyType[] {
  if (!has(CKM.AES_KEY_WRAP_PAD)) return [];
  const kekValue = randomBytes(32);
  let kek: Handle;
  try {
    kek = api.C_CreateObject(session, [...sessionSecretKey(A.CKK_AES, false), ...flags([A.CKA_UNWRAP]), { type: A.CKA_VALUE, value: kekValue }]);
  } catch (e) {
    kekValue.fill(0);
    if (isDeviceGone(e)) throw e;
    log.info({ ckr: ckrName(e) }, 'pkcs11: the token takes no known AES key; no wrapped key is unwrapped inside');
    return [];
  }
  const family: Partial<Record<Family, boolean>> = {};
  const tries = (f: Family): boolean => {
    const cipher = createCipheriv('id-aes256-wrap-pad', kekValue, KWP_IV);
    const der = f === 'rsa' ? Buffer.from(PROBE_RSA_2048_PKCS8, 'base64') : (f === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' }) : generateKeyPairSync('ed25519')).privateKey.export({ format: 'der', type: 'pkcs8' });
    const wrapped = Buffer.concat([cipher.update(der), cipher.final()]);
    der.fill(0);
    try {
      const object = api.C_UnwrapKey(session, KWP, kek, wrapped, [
        { type: A.CKA_CLASS, value: A.CKO_PRIVATE_KEY }, { type: A.CKA_KEY_TYPE, value: KEY_TYPE[f] }, { type: A.CKA_TOKEN, value: false },
        { type: A.CKA_SENSITIVE, value: true }, { type: A.CKA_EXTRACTABLE, value: false },
      ]);
      quietly(() => api.C_DestroyObject(session, object));
      return f !== 'ec' || (has(CKM.ECDH1_DERIVE) && has(CKM.ECDSA));
    } catch (e) {
      if (isDeviceGone(e)) throw e;
      return false;
    }
  };
  try {
    return types.filter((t) => {
      const f = keyTypes[t].family;
      if (f === 'rsa' || f === 'ec' || f === 'okp') return (family[f] ??= tries(f));
      return f !== 'tdes';
    });
  } finally {
    kekValue.fill(0);
    quietly(() => api.C_DestroyObject(session, kek));
  }
}
