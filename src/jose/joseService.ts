/**
 * JWS and JWE with keys held by the backend. Signing builds the JWS signing input here and has the
 * backend sign it (through KeyService, so every key check applies); verification uses the key version's
 * public key in node:crypto, never the HSM. JWE content is encrypted in process under a one-time CEK;
 * the CEK is protected by, or derived with, the backend key (RSA-OAEP decryption, ECDH, AES key wrap),
 * or for "dir" the backend's AES-GCM encrypts the content itself. CEKs and shared secrets are zeroed
 * after use. Encryption to an external recipient's public JWK runs wholly in process.
 */
import { constants, publicEncrypt, type JsonWebKey, type KeyObject } from 'node:crypto';
import { defaultAlgorithm, MIN_RSA_BITS } from '../algorithms/registry.js';
import { HsmBridgeError, invalid, quote } from '../errors.js';
import { parseKeyName, type KeyName, type KeyVersion } from '../keys/names.js';
import { keyId } from '../keys/publicKey.js';
import { isRetired, keyTypes, type KeyMetadata, type KeyPurpose, type KeyVersionInfo } from '../keys/types.js';
import type { KeyService } from '../operations/keyService.js';
import { encode } from './base64url.js';
import { MAX_JWS_SIGNATURES, MAX_VERSIONS_TRIED, refuseRepeats } from './limits.js';
import {
  decryptJweWith,
  encryptJweWith,
  parseJwe,
  type JweDecryptionKey,
  type JweEncryptionKey,
  type JweHeader,
  type JweSerialization,
  type ParsedJwe,
  type ParsedRecipient,
  type SerializedJwe,
} from './jwe.js';
import { jwksOf, type JsonWebKeySet } from './jwks.js';
import {
  allowList,
  buildProtectedHeader,
  checkAllowed,
  parseJws,
  publicKeyMismatch,
  serializeJws,
  signingInput,
  unencodedPayloadText,
  validResult,
  verifyJwsWithKey,
  verifySignature,
  type JoseHeader,
  type JwsSerialization,
  type JwsVerification,
  type ParsedSignature,
  type SerializedJws,
  type SignedPart,
  type VerifyJwsOptions,
} from './jws.js';
import { importPublicKey, PublicKeyCache, type PublicKeyInput } from './publicKeys.js';
import {
  jweContentEncryptions,
  jweKeyManagements,
  parseJweAlg,
  parseJweEnc,
  parseJwsAlgorithm,
  type JweAlg,
  type JweContentEncryptionInfo,
  type JweEnc,
  type JwsAlgorithm,
} from './registry.js';

export type { JwsVerification, ValidJws, VerifyJwsOptions } from './jws.js';
export type { JsonWebKeySet } from './jwks.js';
export type { PublicKeyInput } from './publicKeys.js';
export { importPublicKey } from './publicKeys.js';

export interface JwsSigner {
  /** Name of a backend key of purpose sign. */
  key: string;
  /** Default: the key's default algorithm (RS256, ES256, ES384, EdDSA). */
  algorithm?: string;
  /** Default: the primary version. The "kid" names the version that signs, so a rotation in between cannot mislabel it. */
  keyVersion?: number;
  /** Members after "alg" (and "kid"), in this order. May not set "b64" or "crit". */
  protectedHeader?: JoseHeader;
  /** JSON serializations only. */
  unprotectedHeader?: JoseHeader;
  /** The "kid": by default keyId(name, version) ("name:version"); a string of the caller's; false for none (FSPIOP). */
  kid?: string | false;
}

export interface SignJwsRequest extends Partial<JwsSigner> {
  payload: Buffer;
  /** Leave the payload out of the JWS (the receiver has it, e.g. an HTTP body). */
  detached?: boolean;
  /** false: RFC 7797 unencoded payload (adds "b64": false and "crit": ["b64"]). Default true. */
  b64?: boolean;
  serialization: JwsSerialization;
  /** Several signers (general serialization); instead of the single-signer fields above. */
  signers?: JwsSigner[];
}

export interface JwsSignature {
  keyName: string;
  keyVersion: number;
  algorithm: JwsAlgorithm;
}

export interface SignJwsResult {
  jws: SerializedJws;
  signatures: JwsSignature[];
}

export interface VerifyJwsRequest extends VerifyJwsOptions {
  jws: string | object;
  /** The key to verify with; without it each signature's "kid" (name:version) names the key. */
  key?: string;
}

export type JweRecipient = { key: string; keyVersion?: number } | { jwk: JsonWebKey };

export interface EncryptJweRequest {
  recipient: JweRecipient;
  alg: string;
  enc: string;
  plaintext: Buffer;
  /** Members after alg, enc, kid (and epk); may not set alg, enc, epk, zip or crit. */
  protectedHeader?: JweHeader;
  /** JSON serialization only. */
  aad?: Buffer;
  serialization: JweSerialization;
}

export interface EncryptJweResult {
  jwe: SerializedJwe;
  /** Set when the recipient is a backend key. */
  keyName?: string;
  keyVersion?: number;
}

export interface DecryptJweRequest {
  jwe: string | object;
  /** The key to decrypt with; without it the recipient's "kid" (name:version) names the key. */
  key?: string;
  /** Allowed "alg" values; default: all. */
  algorithms?: readonly string[];
}

export interface DecryptJweResult {
  plaintext: Buffer;
  protectedHeader: JweHeader;
  alg: JweAlg;
  enc: JweEnc;
  keyName: string;
  keyVersion: number;
}

interface KeyVersionRef {
  readonly meta: KeyMetadata;
  readonly version: KeyVersionInfo;
}

/** A key of this service that a kid (or the caller's `key`) names; version only when the kid names one. */
interface KeyTarget {
  readonly name: KeyName;
  readonly version?: KeyVersion;
}

/** undefined for KEY_VERSION_RETIRED (a kid naming a retired version), else the error again. */
function notRetired(e: unknown): undefined {
  if (e instanceof HsmBridgeError && e.code === 'KEY_VERSION_RETIRED') return undefined;
  throw e;
}

export class JoseService {
  private readonly publicKeys = new PublicKeyCache();

  constructor(private readonly keys: KeyService) {}

  // --- JWS -------------------------------------------------------------------------------------------------

  async signJws(req: SignJwsRequest): Promise<SignJwsResult> {
    const b64 = req.b64 ?? true;
    if (typeof b64 !== 'boolean') throw invalid('b64 must be true or false');
    if (!Buffer.isBuffer(req.payload)) throw invalid('payload must be bytes');
    this.checkSize('payload', req.payload);
    if (!['compact', 'flattened', 'general'].includes(req.serialization)) throw invalid('serialization must be compact, flattened or general');
    const signers = this.signersOf(req);
    const compact = req.serialization === 'compact';
    if (req.serialization !== 'general' && signers.length !== 1) throw invalid(`${req.serialization} serialization carries exactly one signature; use general`);
    // Everything that can be refused is checked before the first signature is made.
    const payloadText = req.detached ? undefined : b64 ? encode(req.payload) : unencodedPayloadText(req.payload, compact);

    const prepared = await Promise.all(
      signers.map(async (s) => {
        const { meta, version } = await this.keys.usableKeyVersion(s.key, 'sign', s.keyVersion);
        const algorithm = s.algorithm === undefined ? (defaultAlgorithm(meta.type, 'sign') as JwsAlgorithm) : parseJwsAlgorithm(s.algorithm);
        if (s.kid !== undefined && s.kid !== false && (typeof s.kid !== 'string' || s.kid === '')) throw invalid('kid must be a non-empty string or false');
        const kid = s.kid === false ? undefined : (s.kid ?? keyId(meta.name, version.version));
        const header = buildProtectedHeader(algorithm, kid, s.protectedHeader, b64);
        if (s.unprotectedHeader !== undefined) checkUnprotected(s.unprotectedHeader, header, compact);
        return { name: meta.name, version: version.version, algorithm, kid, protectedB64: encode(JSON.stringify(header)), unprotected: s.unprotectedHeader };
      }),
    );
    refuseRepeats(prepared.map((p) => p.kid), 'two signers have the same "kid"');
    // The signatures are independent: made at once, each on its own HSM session. KeyService checks the key
    // again (a metadata cache hit): it stays the one place where every backend operation is checked.
    const signed = await Promise.all(
      prepared.map((p) => this.keys.sign({ name: p.name, algorithm: p.algorithm, keyVersion: p.version, message: signingInput(p.protectedB64, req.payload, b64) })),
    );
    const parts: SignedPart[] = prepared.map((p, i) => ({ protectedB64: p.protectedB64, signature: signed[i]!.signature, ...(p.unprotected ? { unprotectedHeader: p.unprotected } : {}) }));
    const signatures: JwsSignature[] = prepared.map((p, i) => ({ keyName: p.name, keyVersion: signed[i]!.keyVersion, algorithm: p.algorithm }));
    return { jws: serializeJws(req.serialization, payloadText, parts), signatures };
  }

  /**
   * Verifies a JWS with this service's keys, using their public parts in process. Malformed input and
   * refused headers ("alg" none or not allowed, unknown "crit") throw; a signature that does not verify
   * gives { valid: false }. A general JWS is valid when one of its signatures verifies.
   */
  async verifyJws(req: VerifyJwsRequest): Promise<JwsVerification> {
    const parsed = parseJws(req.jws, req.payload);
    const allowed = allowList(req.algorithms);
    for (const s of parsed.signatures) checkAllowed(s.alg, allowed);
    const named = req.key === undefined ? undefined : parseKeyName(req.key);
    const candidates = parsed.signatures
      .map((s) => ({ s, target: targetOf(s.kid, named) }))
      .filter((c): c is { s: ParsedSignature; target: KeyTarget } => c.target !== undefined);
    if (candidates.length === 0) {
      throw invalid(named ? `no signature is by key ${named} (its kid names another key)` : 'no signature has a kid naming one of this service\'s keys ("name:version"); give key');
    }
    for (const { s, target } of candidates) {
      const tried = await this.versionsToTry(target, 'sign').catch(notRetired);
      // A signature by a retired version (its kid names it) does not verify; another signature still may.
      if (!tried) continue;
      const { meta, versions } = tried;
      for (const version of versions) {
        const key = this.publicKeys.get(meta, version);
        const mismatch = publicKeyMismatch(s.alg, key);
        if (mismatch) throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${meta.name} cannot verify ${s.alg}: ${mismatch}`);
        if (verifySignature(s.alg, key, s.signingInput, s.signature)) {
          return { ...validResult(parsed.payload, s), keyName: meta.name, keyVersion: version.version };
        }
      }
    }
    return { valid: false };
  }

  /**
   * Verifies a JWS with an external public key (a participant's, say), wholly in process and
   * synchronously: the hot path of a switch. Pass a KeyObject (import JWKs and PEMs once, with
   * importPublicKey) to avoid parsing the key on every call. Same rules and results as verifyJws.
   */
  verifyJwsWithPublicKey(jws: string | object, publicKey: PublicKeyInput, options: VerifyJwsOptions = {}): JwsVerification {
    return verifyJwsWithKey(jws, importPublicKey(publicKey), options);
  }

  // --- JWE -------------------------------------------------------------------------------------------------

  async encryptJwe(req: EncryptJweRequest): Promise<EncryptJweResult> {
    const alg = parseJweAlg(req.alg);
    const enc = parseJweEnc(req.enc);
    if (!Buffer.isBuffer(req.plaintext)) throw invalid('plaintext must be bytes');
    this.checkSize('plaintext', req.plaintext);
    if (req.serialization !== 'compact' && req.serialization !== 'json') throw invalid('serialization must be compact or json');
    const input = { alg, enc, plaintext: req.plaintext, serialization: req.serialization, ...(req.protectedHeader ? { protectedHeader: req.protectedHeader } : {}), ...(req.aad ? { aad: req.aad } : {}) };
    const recipient = req.recipient as Record<string, unknown> | undefined;
    const isObject = typeof recipient === 'object' && recipient !== null;
    if (!isObject || Object.hasOwn(recipient, 'jwk') === Object.hasOwn(recipient, 'key')) {
      throw invalid('recipient is either { key } (a key of this service) or { jwk } (a public JWK)');
    }
    if (Object.hasOwn(recipient, 'jwk')) return { jwe: await encryptJweWith(input, externalRecipient(alg, recipient.jwk as JsonWebKey)) };
    const { key, ref } = await this.backendRecipient(alg, enc, recipient.key, recipient.keyVersion);
    return { jwe: await encryptJweWith(input, key), keyName: ref.meta.name, keyVersion: ref.version.version };
  }

  /** Decrypts with the private key in the backend. Every cryptographic failure is DECRYPTION_FAILED. */
  async decryptJwe(req: DecryptJweRequest): Promise<DecryptJweResult> {
    const jwe = parseJwe(req.jwe);
    this.checkSize('ciphertext', jwe.ciphertext);
    const allowed = req.algorithms === undefined ? undefined : req.algorithms.map(parseJweAlg);
    const named = req.key === undefined ? undefined : parseKeyName(req.key);
    const candidates = jwe.recipients
      .map((r) => ({ r, target: targetOf(r.kid, named) }))
      .filter((c): c is { r: ParsedRecipient; target: KeyTarget } => c.target !== undefined);
    // One recipient only: the first whose kid names our key, else (with `key`) the first without such a kid.
    const chosen = candidates.find((c) => c.target.version !== undefined) ?? candidates[0];
    if (chosen === undefined) {
      throw invalid(named ? `no recipient is key ${named} (its kid names another key)` : 'no recipient has a kid naming one of this service\'s keys ("name:version"); give key');
    }
    const { r, target } = chosen;
    if (allowed && !allowed.includes(r.alg)) throw invalid(`JWE alg ${r.alg} is not allowed here`);
    const { meta, versions } = await this.versionsToTry(target, jwePurpose(r.alg));
    let failure: HsmBridgeError | undefined;
    for (const version of versions) {
      try {
        const plaintext = await decryptJweWith(jwe, r, this.backendDecryption(r.alg, jwe, { meta, version }));
        return { plaintext, protectedHeader: jwe.protectedHeader, alg: r.alg, enc: jwe.enc, keyName: meta.name, keyVersion: version.version };
      } catch (e) {
        if (!(e instanceof HsmBridgeError)) throw e;
        // A version tried unasked that another replica retired or trimmed meanwhile did not open it either.
        const goneMeanwhile = target.version === undefined && (e.code === 'KEY_VERSION_RETIRED' || e.code === 'KEY_VERSION_NOT_FOUND');
        if (e.code !== 'DECRYPTION_FAILED' && !goneMeanwhile) throw e;
        failure = goneMeanwhile ? new HsmBridgeError('DECRYPTION_FAILED', 'the JWE does not decrypt') : e;
      }
    }
    throw failure!;
  }

  // --- JWKS ------------------------------------------------------------------------------------------------

  /** Every version of every asymmetric key neither destroyed nor retired (disabled ones too), as a JWK Set (GET /.well-known/jwks.json). */
  async jwks(): Promise<JsonWebKeySet> {
    return jwksOf(await this.keys.listKeys());
  }

  // --- internals ---------------------------------------------------------------------------------------------

  /** The same limit as KeyService's, for the work done in process. */
  private checkSize(field: string, data: Buffer): void {
    const max = this.keys.limits.maxDataBytes;
    if (data.length > max) throw new HsmBridgeError('PAYLOAD_TOO_LARGE', `${field} is larger than ${max} bytes`);
  }

  /** The key a kid or `key` names, and the versions to try: the one named, or the newest few not retired. */
  private async versionsToTry(target: KeyTarget, purpose: KeyPurpose): Promise<{ meta: KeyMetadata; versions: KeyVersionInfo[] }> {
    const { meta, version } = await this.keys.usableKeyVersion(target.name, purpose, target.version);
    if (target.version !== undefined) return { meta, versions: [version] };
    return { meta, versions: meta.versions.filter((v) => !isRetired(meta, v.version)).slice(-MAX_VERSIONS_TRIED).reverse() };
  }

  private signersOf(req: SignJwsRequest): JwsSigner[] {
    const single = req.key !== undefined;
    if (req.signers !== undefined) {
      if (single) throw invalid('give either key (one signer) or signers, not both');
      if (!Array.isArray(req.signers) || req.signers.length === 0) throw invalid('signers must be a non-empty list');
      if (req.signers.length > MAX_JWS_SIGNATURES) throw invalid(`a JWS carries at most ${MAX_JWS_SIGNATURES} signatures`);
      return req.signers;
    }
    if (!single) throw invalid('give key (one signer) or signers');
    const { key, algorithm, keyVersion, protectedHeader, unprotectedHeader, kid } = req;
    return [{ key: key!, algorithm, keyVersion, protectedHeader, unprotectedHeader, kid } as JwsSigner];
  }

  private async backendRecipient(alg: JweAlg, enc: JweEnc, name: unknown, keyVersion: unknown): Promise<{ key: JweEncryptionKey; ref: KeyVersionRef }> {
    const km = jweKeyManagements[alg];
    const ref = await this.keys.usableKeyVersion(name, jwePurpose(alg), keyVersion);
    checkKeyFits(alg, enc, ref.meta);
    const { meta, version } = ref;
    const kid = keyId(meta.name, version.version);
    const common = { name: meta.name, keyVersion: version.version };
    switch (km.kind) {
      case 'rsa-oaep':
        return {
          ref,
          key: { kid, encryptCek: async (_alg, cek) => (await this.keys.encryptRaw({ ...common, algorithm: km.backendAlgorithm, plaintext: cek })).raw.data },
        };
      case 'aes-kw':
        return { ref, key: { kid, wrapCek: async (_alg, cek) => (await this.keys.encryptRaw({ ...common, algorithm: 'AES_KW', plaintext: cek })).raw.data } };
      case 'ecdh-es':
        return { ref, key: { kid, agreementPublicKey: this.publicKeys.get(meta, version) } };
      case 'dir':
        return {
          ref,
          key: {
            kid,
            encryptContent: async (_enc, plaintext, aad) => {
              const { raw } = await this.keys.encryptRaw({ ...common, algorithm: 'AES_GCM', plaintext, aad });
              return { iv: raw.iv!, data: raw.data };
            },
          },
        };
    }
  }

  private backendDecryption(alg: JweAlg, jwe: ParsedJwe, ref: KeyVersionRef): JweDecryptionKey {
    const km = jweKeyManagements[alg];
    checkKeyFits(alg, jwe.enc, ref.meta);
    const common = { name: ref.meta.name, keyVersion: ref.version.version };
    switch (km.kind) {
      case 'rsa-oaep':
        return { decryptCek: async (_alg, ek) => (await this.keys.decrypt({ ...common, algorithm: km.backendAlgorithm, ciphertext: ek })).plaintext };
      case 'aes-kw':
        return { decryptCek: async (_alg, ek) => (await this.keys.decrypt({ ...common, algorithm: 'AES_KW', ciphertext: ek })).plaintext };
      case 'ecdh-es':
        return { agree: async (epk) => (await this.keys.deriveSharedSecret({ ...common, peerPublicKey: epk })).sharedSecret };
      case 'dir':
        return {
          decryptContent: async (_enc, iv, data, aad) =>
            (await this.keys.decrypt({ ...common, algorithm: 'AES_GCM', ciphertext: Buffer.concat([iv, data]), aad })).plaintext,
        };
    }
  }
}

// --- helpers ---------------------------------------------------------------------------------------------------

function externalRecipient(alg: JweAlg, jwk: JsonWebKey): JweEncryptionKey {
  const key = importPublicKey(jwk);
  return publicKeyRecipient(alg, key, typeof jwk.kid === 'string' ? jwk.kid : undefined);
}

/** An outside recipient's public key (a caller's JWK, a participant's FSPIOP key) as a JWE recipient, wholly in process. */
export function publicKeyRecipient(alg: JweAlg, key: KeyObject, kid?: string): JweEncryptionKey {
  const km = jweKeyManagements[alg];
  const base = kid === undefined ? {} : { kid };
  switch (km.kind) {
    case 'rsa-oaep': {
      const bits = key.asymmetricKeyType === 'rsa' ? (key.asymmetricKeyDetails?.modulusLength ?? 0) : 0;
      if (bits < MIN_RSA_BITS) throw new HsmBridgeError('INCOMPATIBLE_KEY', `${alg} needs an RSA key of at least ${MIN_RSA_BITS} bits`);
      return { ...base, encryptCek: async (_alg, cek) => publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: km.oaepHash }, cek) };
    }
    case 'ecdh-es':
      return { ...base, agreementPublicKey: ecKey(key) };
    case 'aes-kw':
    case 'dir':
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `${alg} needs a symmetric key held by this service: give recipient { key }`);
  }
}

function ecKey(key: KeyObject): KeyObject {
  if (key.asymmetricKeyType !== 'ec') throw new HsmBridgeError('INCOMPATIBLE_KEY', 'ECDH-ES needs an EC public key (P-256 or P-384)');
  return key;
}

/** The purpose of the backend key each JWE alg uses. */
function jwePurpose(alg: JweAlg): KeyPurpose {
  switch (jweKeyManagements[alg].kind) {
    case 'ecdh-es':
      return 'agree';
    case 'aes-kw':
      return 'wrap';
    case 'rsa-oaep':
    case 'dir':
      return 'encrypt';
  }
}

/** The key types each JWE alg can use with a backend key (the purpose is checked by KeyService). */
function checkKeyFits(alg: JweAlg, enc: JweEnc, meta: KeyMetadata): void {
  const km = jweKeyManagements[alg];
  const family = keyTypes[meta.type].family;
  const refuse = (needs: string) => {
    throw new HsmBridgeError('INCOMPATIBLE_KEY', `JWE ${alg}${km.kind === 'dir' ? ` with ${enc}` : ''} needs ${needs}; key ${meta.name} is ${meta.type}`);
  };
  if (km.kind === 'rsa-oaep' && family !== 'rsa') refuse('an RSA key');
  if (km.kind === 'ecdh-es' && family !== 'ec') refuse('an EC key');
  if (km.kind === 'aes-kw' && meta.type !== km.keyType) refuse(`an ${km.keyType} key`);
  if (km.kind === 'dir') {
    const { dirKeyType }: JweContentEncryptionInfo = jweContentEncryptions[enc];
    if (dirKeyType === undefined) refuse('an AES key of a size this service has no key type for');
    else if (meta.type !== dirKeyType) refuse(`an ${dirKeyType} key`);
  }
}

/**
 * The key version a "kid" names ("name:version"). With `named` (the caller's key): that key, at the kid's
 * version when the kid names it, at every version when there is no kid or the kid is not of this form
 * (a kid of the caller's own), and none when the kid names another of this service's keys.
 */
function targetOf(kid: string | undefined, named: KeyName | undefined): KeyTarget | undefined {
  const parsed = kid === undefined ? undefined : parseKid(kid);
  if (named === undefined) return parsed;
  if (parsed === undefined) return { name: named };
  return parsed.name === named ? parsed : undefined;
}

/**
 * The keys of this service that the kids of a JWS name ("name:version"): every key verifyJws may use when
 * the request names none. Read without verifying, so that the access policy can check them first.
 */
export function keysNamedByJws(jws: unknown, payload?: Buffer): KeyName[] {
  return keysNamedBy(parseJws(jws, payload).signatures);
}

/** The same for the recipients of a JWE: every key decryptJwe may use when the request names none. */
export function keysNamedByJwe(jwe: unknown): KeyName[] {
  return keysNamedBy(parseJwe(jwe).recipients);
}

const keysNamedBy = (entries: ReadonlyArray<{ kid?: string | undefined }>): KeyName[] =>
  entries.flatMap((e) => {
    const parsed = e.kid === undefined ? undefined : parseKid(e.kid);
    return parsed ? [parsed.name] : [];
  });

function parseKid(kid: string): { name: KeyName; version: KeyVersion } | undefined {
  const at = kid.lastIndexOf(':');
  const versionText = kid.slice(at + 1);
  if (at < 1 || !/^[1-9][0-9]{0,9}$/.test(versionText)) return undefined;
  try {
    const name = parseKeyName(kid.slice(0, at));
    const version = Number(versionText);
    return version <= 0x7fffffff ? { name, version: version as KeyVersion } : undefined;
  } catch {
    return undefined;
  }
}

function checkUnprotected(header: JoseHeader, protectedHeader: JoseHeader, compact: boolean): void {
  if (compact) throw invalid('the compact serialization has no unprotected header');
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw invalid('unprotectedHeader must be a JSON object');
  for (const name of Object.keys(header)) {
    if (['alg', 'b64', 'crit'].includes(name)) throw invalid(`${quote(name)} belongs in the protected header`);
    if (Object.hasOwn(protectedHeader, name)) throw invalid(`header parameter ${quote(name)} is both protected and unprotected`);
  }
}

