/**
 * JWE (RFC 7516) with the algorithms of ./registry.ts: parsing and header checks, content encryption
 * with AES-GCM in node:crypto under a one-time CEK, ECDH-ES key derivation, serialisation, and the two
 * orchestrations (encrypt, decrypt) written against small key interfaces, so that the same code runs
 * with a backend key (joseService.ts), an external public JWK, or a published test vector's key.
 *
 * Failures: malformed input is INVALID_ARGUMENT naming the problem; anything that fails once the
 * cryptography starts (a wrong key, a tampered header, encrypted key, IV, ciphertext or tag) is the one
 * DECRYPTION_FAILED. A CEK that does not unwrap is replaced by a random one and decryption carries on
 * (RFC 7516 §11.5), so the failure takes the same path whatever went wrong.
 */
import { createCipheriv, createDecipheriv, createPublicKey, diffieHellman, generateKeyPairSync, randomBytes, type JsonWebKey, type KeyObject } from 'node:crypto';
import { HsmBridgeError, invalid, quote } from '../errors.js';
import { checkJsonDepth } from '../json/depth.js';
import { decode, encode } from './base64url.js';
import { concatKdf } from './concatKdf.js';
import { MAX_JWE_RECIPIENTS, refuseRepeats } from './limits.js';
import {
  AES_KW_IV,
  aesKeyWrapCipher,
  ecdhCurves,
  jweContentEncryptions,
  jweKeyManagements,
  parseJweAlg,
  parseJweEnc,
  type JweAlg,
  type JweContentEncryptionInfo,
  type JweEnc,
} from './registry.js';

export type JweHeader = Record<string, unknown>;
export type JweSerialization = 'compact' | 'json';

export interface FlattenedJwe {
  protected: string;
  unprotected?: JweHeader;
  header?: JweHeader;
  encrypted_key?: string;
  iv: string;
  ciphertext: string;
  tag: string;
  aad?: string;
}
export type SerializedJwe = string | FlattenedJwe;

const decryptionFailed = () => new HsmBridgeError('DECRYPTION_FAILED', 'the JWE does not decrypt with this key');

/** Members hsm-bridge sets; a caller's protected header may not. "zip" and "crit" are not supported. */
const RESERVED_BY_ENCRYPTER = ['alg', 'enc', 'epk', 'zip', 'crit'];

// --- the key side, as seen by the orchestrations ---------------------------------------------------------

/** What encryption needs from the recipient's key, by key management kind. */
export interface JweEncryptionKey {
  /** Goes into the protected header as "kid" when set. */
  readonly kid?: string;
  /** rsa-oaep: encrypts the CEK. */
  encryptCek?(alg: JweAlg, cek: Buffer): Promise<Buffer>;
  /** ecdh-es: the recipient's public key (P-256 or P-384). */
  readonly agreementPublicKey?: KeyObject;
  /** aes-kw: wraps the CEK. */
  wrapCek?(alg: JweAlg, cek: Buffer): Promise<Buffer>;
  /** dir: encrypts the content with the recipient's key itself; returns IV and ciphertext || tag. */
  encryptContent?(enc: JweEnc, plaintext: Buffer, aad: Buffer): Promise<{ iv: Buffer; data: Buffer }>;
}

/** What decryption needs from the recipient's private key. Each throws DECRYPTION_FAILED when the input does not decrypt. */
export interface JweDecryptionKey {
  /** rsa-oaep and aes-kw: recovers the CEK from the encrypted key. */
  decryptCek?(alg: JweAlg, encryptedKey: Buffer): Promise<Buffer>;
  /** ecdh-es: Z from the ephemeral public key. The caller zeroes it. */
  agree?(ephemeralPublicKey: KeyObject): Promise<Buffer>;
  /** dir: decrypts the content with the recipient's key itself. */
  decryptContent?(enc: JweEnc, iv: Buffer, data: Buffer, aad: Buffer): Promise<Buffer>;
}

// --- encryption -----------------------------------------------------------------------------------------

export interface JweEncryptInput {
  readonly alg: JweAlg;
  readonly enc: JweEnc;
  readonly plaintext: Buffer;
  readonly protectedHeader?: JweHeader;
  /** JSON serialization only: additional authenticated data. */
  readonly aad?: Buffer;
  readonly serialization: JweSerialization;
}

export async function encryptJweWith(input: JweEncryptInput, key: JweEncryptionKey): Promise<SerializedJwe> {
  const { alg, enc, plaintext, serialization } = input;
  const km = jweKeyManagements[alg];
  const ce = jweContentEncryptions[enc];
  if (input.aad && serialization === 'compact') throw invalid('aad needs the JSON serialization');
  const caller = input.protectedHeader ?? {};
  if (typeof caller !== 'object' || caller === null || Array.isArray(caller)) throw invalid('protectedHeader must be a JSON object');
  for (const name of RESERVED_BY_ENCRYPTER) {
    if (Object.hasOwn(caller, name)) throw invalid(`protectedHeader may not set "${name}"`);
  }
  const header: JweHeader = { alg, enc };
  if (key.kid !== undefined) header.kid = key.kid;

  let cek: Buffer | undefined;
  let encryptedKey: Buffer = Buffer.alloc(0);
  try {
    switch (km.kind) {
      case 'rsa-oaep':
        cek = randomBytes(ce.keyLength);
        encryptedKey = await need(key.encryptCek, alg)(alg, cek);
        break;
      case 'aes-kw':
        cek = randomBytes(ce.keyLength);
        encryptedKey = await need(key.wrapCek, alg)(alg, cek);
        break;
      case 'ecdh-es': {
        const recipient = need(key.agreementPublicKey, alg);
        const curve = curveOf(recipient);
        const ephemeral = generateKeyPairSync('ec', { namedCurve: ecdhCurves[curve].nodeCurve });
        const { kty, crv, x, y } = ephemeral.publicKey.export({ format: 'jwk' });
        header.epk = { kty, crv, x, y };
        const z = diffieHellman({ privateKey: ephemeral.privateKey, publicKey: recipient });
        try {
          const derived = deriveKey(z, caller, alg, enc); // apu / apv, when the caller sets them
          if ('wrapKeyLength' in km) {
            cek = randomBytes(ce.keyLength);
            try {
              encryptedKey = aesKeyWrap(derived, cek);
            } finally {
              derived.fill(0);
            }
          } else {
            cek = derived;
          }
        } finally {
          z.fill(0);
        }
        break;
      }
      case 'dir':
        need(key.encryptContent, alg);
        break;
    }
    Object.assign(header, caller);
    const protectedB64 = encode(JSON.stringify(header));
    const aadB64 = input.aad ? encode(input.aad) : undefined;
    const aad = jweAad(protectedB64, aadB64);
    let iv: Buffer;
    let data: Buffer;
    if (km.kind === 'dir') {
      ({ iv, data } = await key.encryptContent!(enc, plaintext, aad));
    } else {
      iv = randomBytes(ce.ivLength);
      const cipher = createCipheriv(ce.cipher, cek!, iv, { authTagLength: ce.tagLength });
      cipher.setAAD(aad);
      data = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    }
    const ciphertext = data.subarray(0, data.length - ce.tagLength);
    const tag = data.subarray(data.length - ce.tagLength);
    if (serialization === 'compact') return [protectedB64, encode(encryptedKey), encode(iv), encode(ciphertext), encode(tag)].join('.');
    return {
      protected: protectedB64,
      ...(encryptedKey.length > 0 ? { encrypted_key: encode(encryptedKey) } : {}),
      iv: encode(iv),
      ciphertext: encode(ciphertext),
      tag: encode(tag),
      ...(aadB64 === undefined ? {} : { aad: aadB64 }),
    };
  } finally {
    cek?.fill(0);
  }
}

// --- parsing ----------------------------------------------------------------------------------------------

export interface ParsedRecipient {
  readonly index: number;
  readonly alg: JweAlg;
  readonly kid: string | undefined;
  /** Protected, shared unprotected and per-recipient header, merged (the names are disjoint). */
  readonly header: JweHeader;
  readonly encryptedKey: Buffer;
}

export interface ParsedJwe {
  readonly protectedHeader: JweHeader;
  readonly enc: JweEnc;
  readonly aad: Buffer;
  readonly iv: Buffer;
  readonly ciphertext: Buffer;
  readonly tag: Buffer;
  readonly recipients: readonly ParsedRecipient[];
}

export interface ParseJweOptions {
  /** The IV lengths (bytes) accepted; default the "enc"'s own. FSPIOP also takes a 128-bit GCM IV (its spec's example). */
  readonly ivLengths?: readonly number[];
}

/**
 * Parses a compact, flattened or general JWE and checks its headers. Throws INVALID_ARGUMENT naming the
 * problem. "zip" and any "crit" are refused: this service implements neither compression nor extensions,
 * and RFC 7516 §4.1.13 requires refusing a JWE whose critical extensions the recipient does not understand.
 */
export function parseJwe(jwe: unknown, options: ParseJweOptions = {}): ParsedJwe {
  let protectedB64: unknown;
  let shared: unknown;
  let raws: Array<{ header: unknown; encryptedKey: unknown }>;
  let ivB64: unknown;
  let ciphertextB64: unknown;
  let tagB64: unknown;
  let aadB64: unknown;
  if (typeof jwe === 'string') {
    const parts = jwe.split('.');
    if (parts.length !== 5) throw invalid('a compact JWE has five parts separated by "."');
    [protectedB64, , ivB64, ciphertextB64, tagB64] = parts;
    raws = [{ header: undefined, encryptedKey: parts[1] }];
  } else if (typeof jwe === 'object' && jwe !== null && !Array.isArray(jwe)) {
    const o = jwe as Record<string, unknown>;
    ({ protected: protectedB64, unprotected: shared, iv: ivB64, ciphertext: ciphertextB64, tag: tagB64, aad: aadB64 } = o);
    if (Object.hasOwn(o, 'recipients')) {
      if (Object.hasOwn(o, 'encrypted_key') || Object.hasOwn(o, 'header')) throw invalid('a JWE has either "recipients" (general) or one recipient (flattened), not both');
      if (!Array.isArray(o.recipients) || o.recipients.length === 0) throw invalid('"recipients" must be a non-empty array');
      if (o.recipients.length > MAX_JWE_RECIPIENTS) throw invalid(`a JWE has at most ${MAX_JWE_RECIPIENTS} recipients`);
      raws = o.recipients.map((r: unknown) => {
        if (typeof r !== 'object' || r === null || Array.isArray(r)) throw invalid('each of "recipients" must be an object');
        const rr = r as Record<string, unknown>;
        return { header: rr.header, encryptedKey: rr.encrypted_key };
      });
    } else {
      raws = [{ header: o.header, encryptedKey: o.encrypted_key }];
    }
  } else {
    throw invalid('a JWE is a compact string or a JSON object');
  }

  if (protectedB64 === undefined || protectedB64 === '') throw invalid('the JWE has no protected header ("enc" must be integrity protected)');
  const protectedHeader = headerJson(decode(protectedB64, 'protected header'), 'protected header');
  if (shared !== undefined) checkObject(shared, 'unprotected header');
  if (Object.hasOwn(protectedHeader, 'zip')) throw invalid('"zip" (compressed plaintext) is not supported');
  if (Object.hasOwn(protectedHeader, 'crit')) throw invalid('"crit" lists extensions this service does not understand');
  if (!Object.hasOwn(protectedHeader, 'enc')) throw invalid('the protected header has no "enc"');
  const enc = parseJweEnc(protectedHeader.enc);
  const ce = jweContentEncryptions[enc];
  const iv = decode(ivB64, 'iv');
  const tag = decode(tagB64, 'tag');
  const ivLengths = options.ivLengths ?? [ce.ivLength];
  if (!ivLengths.includes(iv.length)) throw invalid(`${enc} takes a ${ivLengths.join(' or ')}-byte IV`);
  if (tag.length !== ce.tagLength) throw invalid(`${enc} has a ${ce.tagLength}-byte tag`);
  const ciphertext = decode(ciphertextB64, 'ciphertext');
  if (aadB64 !== undefined) decode(aadB64, 'aad');

  const recipients = raws.map((raw, index): ParsedRecipient => {
    if (raw.header !== undefined) checkObject(raw.header, 'recipient header');
    const parts = [protectedHeader, (shared ?? {}) as JweHeader, (raw.header ?? {}) as JweHeader];
    const header: JweHeader = {};
    for (const part of parts) {
      for (const [name, value] of Object.entries(part)) {
        if (Object.hasOwn(header, name)) throw invalid(`header parameter ${quote(name)} appears more than once`);
        header[name] = value;
      }
    }
    for (const name of ['enc', 'zip', 'crit']) {
      if (Object.hasOwn(header, name) && !Object.hasOwn(protectedHeader, name)) throw invalid(`"${name}" must be in the protected header`);
    }
    if (!Object.hasOwn(header, 'alg')) throw invalid('the JWE has no "alg"');
    const alg = parseJweAlg(header.alg);
    const kid = header.kid;
    if (kid !== undefined && typeof kid !== 'string') throw invalid('"kid" must be a string');
    const encryptedKey = raw.encryptedKey === undefined ? Buffer.alloc(0) : decode(raw.encryptedKey, 'encrypted_key');
    const km = jweKeyManagements[alg];
    const carriesKey = km.kind === 'rsa-oaep' || km.kind === 'aes-kw' || (km.kind === 'ecdh-es' && 'wrapKeyLength' in km);
    if (carriesKey !== encryptedKey.length > 0) throw invalid(carriesKey ? `${alg} needs an encrypted key` : `${alg} has an empty encrypted key`);
    const wrapped = km.kind === 'aes-kw' || (km.kind === 'ecdh-es' && 'wrapKeyLength' in km);
    if (wrapped && encryptedKey.length !== ce.keyLength + 8) throw invalid(`${alg} with ${enc} has a ${ce.keyLength + 8}-byte encrypted key`);
    return { index, alg, kid, header, encryptedKey };
  });
  refuseRepeats(recipients.map((r) => r.kid), 'two recipients have the same "kid"');
  refuseRepeats(recipients.map((r) => (r.encryptedKey.length > 0 ? r.encryptedKey.toString('base64') : undefined)), 'two recipients have the same encrypted key');
  return { protectedHeader, enc, aad: jweAad(protectedB64 as string, aadB64 as string | undefined), iv, ciphertext, tag, recipients };
}

// --- decryption -------------------------------------------------------------------------------------------

/** Decrypts for one recipient of a parsed JWE. Key errors (not found, disabled, wrong type) pass through. */
export async function decryptJweWith(jwe: ParsedJwe, recipient: ParsedRecipient, key: JweDecryptionKey): Promise<Buffer> {
  const { alg, header, encryptedKey } = recipient;
  const km = jweKeyManagements[alg];
  const ce = jweContentEncryptions[jwe.enc];
  if (km.kind === 'dir') return need(key.decryptContent, alg)(jwe.enc, jwe.iv, Buffer.concat([jwe.ciphertext, jwe.tag]), jwe.aad);

  let cek: Buffer;
  let unwrapped = true;
  if (km.kind === 'ecdh-es') {
    const agree = need(key.agree, alg);
    const epk = ephemeralKey(header.epk);
    for (const name of ['apu', 'apv']) if (header[name] !== undefined) decode(header[name], `"${name}"`);
    const z = await agree(epk);
    let derived: Buffer;
    try {
      derived = deriveKey(z, header, alg, jwe.enc);
    } finally {
      z.fill(0);
    }
    if ('wrapKeyLength' in km) {
      try {
        ({ cek, unwrapped } = withFallback(ce.keyLength, () => aesKeyUnwrap(derived, encryptedKey)));
      } finally {
        derived.fill(0);
      }
    } else {
      cek = derived;
    }
  } else {
    const decryptCek = need(key.decryptCek, alg);
    try {
      cek = await decryptCek(alg, encryptedKey);
      if (cek.length !== ce.keyLength) {
        cek.fill(0);
        cek = randomBytes(ce.keyLength);
        unwrapped = false;
      }
    } catch (e) {
      if (!(e instanceof HsmBridgeError && e.code === 'DECRYPTION_FAILED')) throw e;
      cek = randomBytes(ce.keyLength);
      unwrapped = false;
    }
  }
  try {
    const plaintext = gcmDecrypt(ce.cipher, cek, jwe.iv, jwe.ciphertext, jwe.tag, jwe.aad);
    if (!unwrapped) {
      plaintext.fill(0);
      throw decryptionFailed();
    }
    return plaintext;
  } finally {
    cek.fill(0);
  }
}

// --- pieces -----------------------------------------------------------------------------------------------

/** The AAD of the content encryption: ASCII(BASE64URL(protected)) [|| '.' || BASE64URL(aad)] (RFC 7516 §5.1 step 14). */
export function jweAad(protectedB64: string, aadB64: string | undefined): Buffer {
  return Buffer.from(aadB64 === undefined ? protectedB64 : `${protectedB64}.${aadB64}`, 'ascii');
}

/** AES-GCM decryption of the content; every failure is DECRYPTION_FAILED and no unauthenticated byte is returned. */
export function gcmDecrypt(cipherName: JweContentEncryptionInfo['cipher'], cek: Buffer, iv: Buffer, ciphertext: Buffer, tag: Buffer, aad: Buffer): Buffer {
  const decipher = createDecipheriv(cipherName, cek, iv, { authTagLength: tag.length });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  const plaintext = decipher.update(ciphertext);
  try {
    decipher.final();
  } catch {
    plaintext.fill(0);
    throw decryptionFailed();
  }
  return plaintext;
}

/** RFC 3394 key wrap with a KEK held in process (ECDH-ES+AxxxKW); node:crypto's id-aes*-wrap. */
export function aesKeyWrap(kek: Buffer, cek: Buffer): Buffer {
  const cipher = createCipheriv(aesKeyWrapCipher[kek.length as 16 | 32], kek, AES_KW_IV);
  return Buffer.concat([cipher.update(cek), cipher.final()]);
}

export function aesKeyUnwrap(kek: Buffer, wrapped: Buffer): Buffer {
  const decipher = createDecipheriv(aesKeyWrapCipher[kek.length as 16 | 32], kek, AES_KW_IV);
  let part: Buffer | undefined;
  try {
    part = decipher.update(wrapped);
    return Buffer.concat([part, decipher.final()]);
  } catch {
    throw decryptionFailed();
  } finally {
    part?.fill(0);
  }
}

/** The KDF step of ECDH-ES: AlgorithmID is "enc" for direct agreement, "alg" when the result wraps a CEK. */
function deriveKey(z: Buffer, header: JweHeader, alg: JweAlg, enc: JweEnc): Buffer {
  const km = jweKeyManagements[alg];
  const direct = !('wrapKeyLength' in km);
  const party = (name: string) => (header[name] === undefined ? Buffer.alloc(0) : decode(header[name], `"${name}"`));
  return concatKdf({
    z,
    keyLength: direct ? jweContentEncryptions[enc].keyLength : (km as { wrapKeyLength: number }).wrapKeyLength,
    algorithmId: direct ? enc : alg,
    partyUInfo: party('apu'),
    partyVInfo: party('apv'),
  });
}

/** The "epk" header as a public key on a supported curve; node:crypto refuses a point that is not on it. */
function ephemeralKey(epk: unknown): KeyObject {
  checkObject(epk, '"epk"');
  const jwk = epk as JsonWebKey;
  if (jwk.kty !== 'EC' || typeof jwk.crv !== 'string' || !Object.hasOwn(ecdhCurves, jwk.crv) || jwk.d !== undefined) {
    throw invalid('"epk" must be a public EC key on P-256 or P-384');
  }
  try {
    return createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, format: 'jwk' });
  } catch {
    throw invalid('"epk" is not a valid point on its curve');
  }
}

export function curveOf(key: KeyObject): keyof typeof ecdhCurves {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  const found = (Object.keys(ecdhCurves) as Array<keyof typeof ecdhCurves>).find((c) => ecdhCurves[c].nodeCurve === curve);
  if (key.asymmetricKeyType !== 'ec' || !found) throw new HsmBridgeError('INCOMPATIBLE_KEY', 'ECDH-ES needs an EC key on P-256 or P-384');
  return found;
}

function withFallback(length: number, unwrap: () => Buffer): { cek: Buffer; unwrapped: boolean } {
  try {
    const cek = unwrap();
    if (cek.length === length) return { cek, unwrapped: true };
    cek.fill(0);
  } catch (e) {
    if (!(e instanceof HsmBridgeError && e.code === 'DECRYPTION_FAILED')) throw e;
  }
  return { cek: randomBytes(length), unwrapped: false };
}

function need<T>(value: T | undefined, alg: JweAlg): T {
  if (value === undefined) throw new HsmBridgeError('INCOMPATIBLE_KEY', `this key cannot be used with JWE alg ${alg}`);
  return value;
}

function headerJson(bytes: Buffer, what: string): JweHeader {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw invalid(`${what} is not JSON`);
  }
  checkObject(value, what);
  checkJsonDepth(what, value);
  return value as JweHeader;
}

function checkObject(value: unknown, what: string): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(`${what} must be a JSON object`);
}
