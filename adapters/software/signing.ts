/**
 * Signatures with node:crypto. Over a message, node:crypto hashes and signs (on the thread pool). Over
 * a precomputed digest, node:crypto has no "sign this digest" call, so the RSA schemes are built from
 * the raw private-key operation: PKCS#1 v1.5 pads DigestInfo || digest (privateEncrypt does that
 * padding), PSS encodes with our EMSA-PSS and applies RSA without padding. ECDSA over a digest is not
 * offered (see capabilities): node:crypto cannot do it and we do not implement ECDSA ourselves.
 */
import {
  constants,
  privateEncrypt,
  publicDecrypt,
  randomBytes,
  sign as nodeSign,
  timingSafeEqual,
  verify as nodeVerify,
  type KeyObject,
  type SignKeyObjectInput,
  type VerifyKeyObjectInput,
} from 'node:crypto';
import { hashes } from '../../src/algorithms/hashes.js';
import { signAlgorithms, type SignAlgorithm } from '../../src/algorithms/registry.js';
import type { SignInput } from '../../src/backend/port.js';
import { emsaPssEncode, emsaPssVerify } from './pss.js';
import { hasRsaSignatureLength } from '../../src/algorithms/signatureLength.js';

/** The sign algorithms whose input may be a precomputed digest. */
export const digestSignAlgorithms = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'] as const satisfies readonly SignAlgorithm[];

function options<K extends SignKeyObjectInput | VerifyKeyObjectInput>(algorithm: SignAlgorithm, key: KeyObject): K {
  const info = signAlgorithms[algorithm];
  switch (info.scheme) {
    case 'pkcs1':
      return { key, padding: constants.RSA_PKCS1_PADDING } as K;
    case 'pss':
      return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: hashes[info.hash].length } as K;
    case 'ecdsa':
      return { key, dsaEncoding: 'ieee-p1363' } as K;
    case 'eddsa':
      return { key } as K;
  }
}

function rsaDigestHash(algorithm: SignAlgorithm) {
  const info = signAlgorithms[algorithm];
  if ((info.scheme !== 'pkcs1' && info.scheme !== 'pss') || info.hash === null) {
    throw new Error(`${algorithm} cannot sign a digest in the software backend`);
  }
  return { scheme: info.scheme, hash: info.hash };
}

const modulusBits = (key: KeyObject) => key.asymmetricKeyDetails!.modulusLength!;

export function sign(algorithm: SignAlgorithm, privateKey: KeyObject, input: SignInput): Promise<Buffer> {
  if (input.kind === 'digest') return Promise.resolve(signDigest(algorithm, privateKey, input.data));
  return new Promise((resolve, reject) =>
    nodeSign(signAlgorithms[algorithm].hash, input.data, options<SignKeyObjectInput>(algorithm, privateKey), (e, signature) =>
      e ? reject(e) : resolve(signature),
    ),
  );
}

/** A signature that is not even well formed is simply not valid: verify answers false rather than throwing. */
export function verify(algorithm: SignAlgorithm, publicKey: KeyObject, input: SignInput, signature: Buffer): Promise<boolean> {
  if (!hasRsaSignatureLength(publicKey, signature)) return Promise.resolve(false);
  if (input.kind === 'digest') return Promise.resolve(verifyDigest(algorithm, publicKey, input.data, signature));
  return new Promise((resolve) =>
    nodeVerify(signAlgorithms[algorithm].hash, input.data, options<VerifyKeyObjectInput>(algorithm, publicKey), signature, (e, valid) =>
      resolve(!e && valid),
    ),
  );
}

function signDigest(algorithm: SignAlgorithm, privateKey: KeyObject, digest: Buffer): Buffer {
  const { scheme, hash } = rsaDigestHash(algorithm);
  if (scheme === 'pkcs1') {
    return privateEncrypt({ key: privateKey, padding: constants.RSA_PKCS1_PADDING }, Buffer.concat([hashes[hash].digestInfoPrefix, digest]));
  }
  const bits = modulusBits(privateKey);
  const em = emsaPssEncode(hash, digest, bits - 1, randomBytes(hashes[hash].length));
  // Raw RSA takes a block as long as the modulus; EM is one byte shorter when bits ≡ 1 (mod 8).
  const block = Buffer.concat([Buffer.alloc(Math.ceil(bits / 8) - em.length), em]);
  return privateEncrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, block);
}

function verifyDigest(algorithm: SignAlgorithm, publicKey: KeyObject, digest: Buffer, signature: Buffer): boolean {
  const { scheme, hash } = rsaDigestHash(algorithm);
  const bits = modulusBits(publicKey);
  if (signature.length !== Math.ceil(bits / 8)) return false;
  let recovered: Buffer;
  try {
    recovered = publicDecrypt({ key: publicKey, padding: scheme === 'pkcs1' ? constants.RSA_PKCS1_PADDING : constants.RSA_NO_PADDING }, signature);
  } catch {
    return false; // bad padding, or a signature not below the modulus
  }
  if (scheme === 'pkcs1') {
    const expected = Buffer.concat([hashes[hash].digestInfoPrefix, digest]);
    return recovered.length === expected.length && timingSafeEqual(recovered, expected);
  }
  const emLength = Math.ceil((bits - 1) / 8);
  const lead = recovered.subarray(0, recovered.length - emLength);
  return lead.every((b) => b === 0) && emsaPssVerify(hash, digest, recovered.subarray(recovered.length - emLength), bits - 1, hashes[hash].length);
}
