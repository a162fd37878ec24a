/**
 * Key material for every key type: generation, the bytes that are sealed into the keystore (PKCS#8 DER
 * for key pairs, raw bytes for secrets), and the reverse, which checks that what comes back out of the
 * keystore really is a key of the recorded type.
 */
import { createPrivateKey, createPublicKey, createSecretKey, generateKey, generateKeyPair, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { HsmBridgeError, invalid } from '../../src/errors.js';
import { keyTypes, type KeyType } from '../../src/keys/types.js';
import { hasDistinctParts, hasOddParity, setOddParity } from '../../src/payment/crypto/parity.js';

const generateKeyPairAsync = promisify(generateKeyPair);
const generateKeyAsync = promisify(generateKey);
const randomBytesAsync = promisify(randomBytes);

/** The keys of one key version, ready for node:crypto. */
export type VersionKeys =
  | { readonly kind: 'pair'; readonly privateKey: KeyObject; readonly publicKey: KeyObject }
  | { readonly kind: 'secret'; readonly secretKey: KeyObject };

async function generateTdesKey(length: 16 | 24): Promise<KeyObject> {
  for (;;) {
    const raw = setOddParity(await randomBytesAsync(length));
    if (hasDistinctParts(raw)) {
      const key = createSecretKey(raw);
      raw.fill(0);
      return key;
    }
    raw.fill(0);
  }
}

/** Generates a new key of `type`, off the event loop where node:crypto allows it. */
export async function generateKeys(type: KeyType): Promise<VersionKeys> {
  const info = keyTypes[type];
  switch (info.family) {
    case 'rsa':
      return pair(await generateKeyPairAsync('rsa', { modulusLength: info.bits, publicExponent: 0x10001 }));
    case 'ec':
      return pair(await generateKeyPairAsync('ec', { namedCurve: info.nodeCurve }));
    case 'okp':
      return pair(await generateKeyPairAsync('ed25519'));
    case 'aes':
      return { kind: 'secret', secretKey: await generateKeyAsync('aes', { length: info.bits }) };
    case 'hmac':
      return { kind: 'secret', secretKey: await generateKeyAsync('hmac', { length: info.bits }) };
    case 'tdes':
      return { kind: 'secret', secretKey: await generateTdesKey(info.bits === 128 ? 16 : 24) };
  }
}

function pair(k: { privateKey: KeyObject; publicKey: KeyObject }): VersionKeys {
  return { kind: 'pair', privateKey: k.privateKey, publicKey: k.publicKey };
}

/** The secret bytes to seal. The caller zeroes them once sealed. */
export function exportSecretMaterial(keys: VersionKeys): Buffer {
  return keys.kind === 'pair' ? keys.privateKey.export({ format: 'der', type: 'pkcs8' }) : keys.secretKey.export();
}

export function publicKeySpki(keys: VersionKeys): Buffer | undefined {
  return keys.kind === 'pair' ? keys.publicKey.export({ format: 'der', type: 'spki' }) : undefined;
}

/** Whether a private key is one of `type` (kind, modulus size, curve). */
function isOfType(privateKey: KeyObject, type: KeyType): boolean {
  const info = keyTypes[type];
  const details = privateKey.asymmetricKeyDetails;
  switch (info.family) {
    case 'rsa':
      return privateKey.asymmetricKeyType === 'rsa' && details?.modulusLength === info.bits;
    case 'ec':
      return privateKey.asymmetricKeyType === 'ec' && details?.namedCurve === info.nodeCurve;
    default:
      return privateKey.asymmetricKeyType === 'ed25519';
  }
}

/**
 * Rebuilds the keys from unsealed bytes and zeroes those bytes. Throws a plain Error (no key bytes in it)
 * when the bytes are not a key of `type`.
 */
export function importSecretMaterial(type: KeyType, material: Buffer): VersionKeys {
  try {
    const info = keyTypes[type];
    if (info.family === 'aes' || info.family === 'hmac' || info.family === 'tdes') {
      if (material.length * 8 !== info.bits) throw new Error(`expected ${info.bits / 8} bytes of ${type} key`);
      if (info.family === 'tdes' && !hasOddParity(material)) throw new Error('TDES key parity is wrong');
      return { kind: 'secret', secretKey: createSecretKey(material) };
    }
    const privateKey = createPrivateKey({ key: material, format: 'der', type: 'pkcs8' });
    if (!isOfType(privateKey, type)) throw new Error(`the private key is not a ${type} key`);
    return { kind: 'pair', privateKey, publicKey: createPublicKey(privateKey) };
  } finally {
    material.fill(0);
  }
}

/**
 * A TDES or AES key from clear material the core supplies (a TR-31 import); `material` is left as it is
 * (the core zeroes it).
 */
export function importClearKey(type: KeyType, material: Buffer): VersionKeys {
  const family = keyTypes[type].family;
  if (family !== 'tdes' && family !== 'aes') {
    throw new HsmBridgeError('INCOMPATIBLE_KEY', `only TDES and AES keys can be imported, not ${type}`);
  }
  return importKeyMaterial(type, material);
}

const PROBE = Buffer.from('hsm-bridge imported key pairwise check');

/**
 * A key of `type` from material that came from outside (raw bytes of a secret key, PKCS#8 DER of a
 * private key), with the port's error codes: a secret of the wrong length, bytes that are not PKCS#8, or
 * a private key whose parts disagree, INVALID_ARGUMENT; a private key of another kind, size or curve
 * (well-formed, but not this type), or a TDES key whose parts are equal, INCOMPATIBLE_KEY. `material` is
 * left as it is (the caller zeroes it). DES ignores parity bits, so a TDES key is given odd parity, the
 * form this backend always holds (and checks when the keystore is read).
 */
export function importKeyMaterial(type: KeyType, material: Buffer): VersionKeys {
  const info = keyTypes[type];
  if (info.family === 'aes' || info.family === 'hmac' || info.family === 'tdes') {
    if (material.length * 8 !== info.bits) throw invalid(`a ${type} key is ${info.bits / 8} bytes`);
    const copy = Buffer.from(material);
    if (info.family === 'tdes' && !hasDistinctParts(setOddParity(copy))) {
      copy.fill(0);
      throw new HsmBridgeError('INCOMPATIBLE_KEY', 'a TDES key whose parts are equal is single DES and is refused');
    }
    return importSecretMaterial(type, copy);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: material, format: 'der', type: 'pkcs8' });
  } catch {
    throw invalid('the key material is not a PKCS#8 private key');
  }
  if (!isOfType(privateKey, type)) throw new HsmBridgeError('INCOMPATIBLE_KEY', `the private key is not a ${type} key`);
  // PKCS#8 may carry a public key (EC) or CRT parts (RSA) that do not belong to the private key: the
  // pair must sign and verify before it is kept.
  const publicKey = createPublicKey(privateKey);
  const hash = info.family === 'okp' ? null : 'sha256';
  let consistent: boolean;
  try {
    consistent = verify(hash, PROBE, publicKey, sign(hash, PROBE, privateKey));
  } catch {
    consistent = false;
  }
  if (!consistent) throw invalid('the private key is inconsistent (its parts do not belong together)');
  return { kind: 'pair', privateKey, publicKey };
}
