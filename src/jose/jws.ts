/**
 * JWS (RFC 7515) with unencoded payloads (RFC 7797): building the protected header and signing input,
 * serialising (compact, flattened JSON, general JSON), parsing with every check a verifier must make,
 * and verifying one signature with a public key in node:crypto. Signing itself happens elsewhere (the
 * backend signs the signing input); nothing here holds a private key.
 */
import { constants, verify as nodeVerify, type KeyObject, type VerifyKeyObjectInput } from 'node:crypto';
import { hashes } from '../algorithms/hashes.js';
import { MIN_RSA_BITS, signAlgorithms } from '../algorithms/registry.js';
import { HsmBridgeError, invalid, quote } from '../errors.js';
import { checkJsonDepth } from '../json/depth.js';
import { keyTypes } from '../keys/types.js';
import { decode, encode } from './base64url.js';
import { MAX_JWS_SIGNATURES, refuseRepeats } from './limits.js';
import { parseJwsAlgorithm, type JwsAlgorithm } from './registry.js';
import { hasRsaSignatureLength } from '../algorithms/signatureLength.js';

export type JwsSerialization = 'compact' | 'flattened' | 'general';
export type JoseHeader = Record<string, unknown>;

export interface FlattenedJws {
  payload?: string;
  protected: string;
  header?: JoseHeader;
  signature: string;
}
export interface GeneralJws {
  payload?: string;
  signatures: Array<{ protected: string; header?: JoseHeader; signature: string }>;
}
export type SerializedJws = string | FlattenedJws | GeneralJws;

/** Header parameters this implementation understands when they are listed in "crit". */
const UNDERSTOOD_CRIT = new Set(['b64']);
/** Parameters hsm-bridge sets itself; a caller's header may not carry them. */
const RESERVED_BY_SIGNER = ['b64', 'crit'];

/**
 * The protected header of one signature, in this member order: "alg", then "kid" (unless the caller
 * set its own, or asked for none), then the caller's members in the caller's order, then "b64" and
 * "crit" for an unencoded payload. The order matters to verifiers that compare headers byte for byte.
 */
export function buildProtectedHeader(alg: JwsAlgorithm, kid: string | undefined, caller: JoseHeader | undefined, b64: boolean): JoseHeader {
  const own = caller ?? {};
  checkHeaderObject(own, 'protectedHeader');
  for (const name of RESERVED_BY_SIGNER) {
    if (Object.hasOwn(own, name)) throw invalid(`protectedHeader may not set "${name}": use the b64 option`);
  }
  if (Object.hasOwn(own, 'alg') && own.alg !== alg) throw invalid(`protectedHeader "alg" (${quote(own.alg)}) differs from the signing algorithm ${alg}`);
  const header: JoseHeader = { alg };
  if (kid !== undefined && !Object.hasOwn(own, 'kid')) header.kid = kid;
  Object.assign(header, own, { alg });
  if (!b64) Object.assign(header, { b64: false, crit: ['b64'] });
  return header;
}

/** ASCII(BASE64URL(protected)) || '.' || (b64 ? BASE64URL(payload) : payload) (RFC 7515 §5.1, RFC 7797 §3). */
export function signingInput(protectedB64: string, payload: Buffer, b64: boolean): Buffer {
  return Buffer.concat([Buffer.from(`${protectedB64}.`, 'ascii'), b64 ? Buffer.from(encode(payload), 'ascii') : payload]);
}

/** A b64:false payload is carried as text: it must be valid UTF-8 (and, in compact form, have no '.'). */
export function unencodedPayloadText(payload: Buffer, compact: boolean): string {
  const text = payload.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(payload)) throw invalid('with b64 false the payload must be valid UTF-8 (or use detached)');
  if (compact && text.includes('.')) throw invalid("with b64 false the compact form needs a payload without '.' (or use detached)");
  return text;
}

export interface SignedPart {
  readonly protectedB64: string;
  readonly unprotectedHeader?: JoseHeader;
  readonly signature: Buffer;
}

export function serializeJws(serialization: JwsSerialization, payloadText: string | undefined, parts: readonly SignedPart[]): SerializedJws {
  const one = (p: SignedPart) => ({
    protected: p.protectedB64,
    ...(p.unprotectedHeader ? { header: p.unprotectedHeader } : {}),
    signature: encode(p.signature),
  });
  if (serialization === 'general') {
    return { ...(payloadText === undefined ? {} : { payload: payloadText }), signatures: parts.map(one) };
  }
  const [part] = parts;
  if (!part || parts.length !== 1) throw invalid(`${serialization} serialization carries exactly one signature; use general`);
  if (serialization === 'flattened') return { ...(payloadText === undefined ? {} : { payload: payloadText }), ...one(part) };
  if (part.unprotectedHeader) throw invalid('the compact serialization has no unprotected header');
  return `${part.protectedB64}.${payloadText ?? ''}.${encode(part.signature)}`;
}

// --- parsing -------------------------------------------------------------------------------------------

export interface ParsedSignature {
  readonly index: number;
  readonly alg: JwsAlgorithm;
  readonly kid: string | undefined;
  readonly protectedHeader: JoseHeader;
  readonly unprotectedHeader: JoseHeader | undefined;
  readonly signingInput: Buffer;
  readonly signature: Buffer;
}

export interface ParsedJws {
  readonly payload: Buffer;
  readonly signatures: readonly ParsedSignature[];
}

interface RawSignature {
  readonly protected: unknown;
  readonly header: unknown;
  readonly signature: unknown;
}

/**
 * Parses a JWS in any serialization and checks its headers: the protected header is a JSON object with
 * "alg" (a known algorithm, never "none"); protected and unprotected names are disjoint; "crit" lists
 * only understood, protected names; "b64" is protected, boolean, listed in "crit", and the same for every
 * signature. `detached` is the payload when the JWS does not carry it. Throws INVALID_ARGUMENT (or
 * UNSUPPORTED_ALGORITHM) naming the problem.
 */
export function parseJws(jws: unknown, detached?: Buffer): ParsedJws {
  let payloadText: unknown;
  let raws: RawSignature[];
  if (typeof jws === 'string') {
    const parts = jws.split('.');
    if (parts.length !== 3) throw invalid('a compact JWS has three parts separated by "."');
    payloadText = parts[1];
    raws = [{ protected: parts[0], header: undefined, signature: parts[2] }];
  } else if (typeof jws === 'object' && jws !== null && !Array.isArray(jws)) {
    const o = jws as Record<string, unknown>;
    payloadText = o.payload;
    if (Object.hasOwn(o, 'signatures')) {
      if (Object.hasOwn(o, 'signature') || Object.hasOwn(o, 'protected') || Object.hasOwn(o, 'header')) {
        throw invalid('a JWS has either "signatures" (general) or "signature" (flattened), not both');
      }
      if (!Array.isArray(o.signatures) || o.signatures.length === 0) throw invalid('"signatures" must be a non-empty array');
      if (o.signatures.length > MAX_JWS_SIGNATURES) throw invalid(`a JWS carries at most ${MAX_JWS_SIGNATURES} signatures`);
      raws = o.signatures.map((s: unknown) => {
        if (typeof s !== 'object' || s === null || Array.isArray(s)) throw invalid('each of "signatures" must be an object');
        const r = s as Record<string, unknown>;
        return { protected: r.protected, header: r.header, signature: r.signature };
      });
    } else {
      raws = [{ protected: o.protected, header: o.header, signature: o.signature }];
    }
    if (payloadText !== undefined && typeof payloadText !== 'string') throw invalid('"payload" must be a string');
  } else {
    throw invalid('a JWS is a compact string or a JSON object');
  }

  const signatures = raws.map((raw, index) => parseSignatureHeaders(raw, index));
  refuseRepeats(signatures.map((s) => s.kid), 'two signatures have the same "kid"');
  refuseRepeats(signatures.map((s) => s.signature.toString('base64')), 'two signatures are identical');
  const b64 = signatures[0]!.b64;
  if (signatures.some((s) => s.b64 !== b64)) throw invalid('every signature of a JWS must have the same "b64" (RFC 7797 §3)');

  const carried = payloadText !== undefined && payloadText !== '';
  if (carried && detached) throw invalid('the JWS carries a payload: do not give a detached one as well');
  if (!carried && !detached && payloadText === undefined) throw invalid('the JWS has no payload (detached): give it');
  let payload: Buffer;
  let payloadPart: Buffer;
  if (detached) {
    payload = detached;
    payloadPart = b64 ? Buffer.from(encode(detached), 'ascii') : detached;
  } else if (b64) {
    payload = decode(payloadText, 'payload');
    payloadPart = Buffer.from(payloadText as string, 'ascii');
  } else {
    payload = Buffer.from(payloadText as string, 'utf8');
    payloadPart = payload;
  }
  return {
    payload,
    signatures: signatures.map((s) => ({
      index: s.index,
      alg: s.alg,
      kid: s.kid,
      protectedHeader: s.protectedHeader,
      unprotectedHeader: s.unprotectedHeader,
      signingInput: Buffer.concat([Buffer.from(`${s.protectedB64}.`, 'ascii'), payloadPart]),
      signature: s.signature,
    })),
  };
}

function parseSignatureHeaders(raw: RawSignature, index: number) {
  const where = index === 0 ? 'the JWS' : `signature ${index}`;
  if (raw.protected === undefined || raw.protected === '') throw invalid(`${where} has no protected header ("alg" must be integrity protected)`);
  const protectedB64 = raw.protected as string;
  const protectedHeader = parseHeaderJson(decode(raw.protected, 'protected header'), 'protected header');
  let unprotectedHeader: JoseHeader | undefined;
  if (raw.header !== undefined) {
    checkHeaderObject(raw.header, 'unprotected header');
    unprotectedHeader = raw.header as JoseHeader;
    for (const name of Object.keys(unprotectedHeader)) {
      if (Object.hasOwn(protectedHeader, name)) throw invalid(`header parameter ${quote(name)} is both protected and unprotected`);
    }
    for (const name of ['alg', 'crit', 'b64']) {
      if (Object.hasOwn(unprotectedHeader, name)) throw invalid(`${quote(name)} must be in the protected header`);
    }
  }
  if (!Object.hasOwn(protectedHeader, 'alg')) throw invalid(`${where}: the protected header has no "alg"`);
  if (protectedHeader.alg === 'none') throw new HsmBridgeError('UNSUPPORTED_ALGORITHM', 'JWS "alg" none is refused: unsecured JWS are never accepted');
  const alg = parseJwsAlgorithm(protectedHeader.alg);

  const crit = protectedHeader.crit;
  if (crit !== undefined) {
    if (!Array.isArray(crit) || crit.length === 0 || !crit.every((c) => typeof c === 'string' && c !== '')) {
      throw invalid('"crit" must be a non-empty array of header parameter names');
    }
    for (const name of crit as string[]) {
      if (!UNDERSTOOD_CRIT.has(name)) throw invalid(`"crit" lists ${quote(name)}, which this service does not understand`);
      if (!Object.hasOwn(protectedHeader, name)) throw invalid(`"crit" lists ${quote(name)}, which the protected header does not have`);
    }
  }
  let b64 = true;
  if (Object.hasOwn(protectedHeader, 'b64')) {
    if (typeof protectedHeader.b64 !== 'boolean') throw invalid('"b64" must be true or false');
    if (!Array.isArray(crit) || !crit.includes('b64')) throw invalid('"b64" must be listed in "crit" (RFC 7797 §6)');
    b64 = protectedHeader.b64;
  }
  const kid = protectedHeader.kid ?? unprotectedHeader?.kid;
  if (kid !== undefined && typeof kid !== 'string') throw invalid('"kid" must be a string');
  if (raw.signature === undefined) throw invalid(`${where} has no signature`);
  const signature = decode(raw.signature, 'signature');
  return { index, alg, kid, b64, protectedB64, protectedHeader, unprotectedHeader, signature };
}

function parseHeaderJson(bytes: Buffer, what: string): JoseHeader {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw invalid(`${what} is not JSON`);
  }
  checkHeaderObject(value, what);
  checkJsonDepth(what, value);
  return value as JoseHeader;
}

function checkHeaderObject(value: unknown, what: string): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(`${what} must be a JSON object`);
}

// --- verification with a public key ---------------------------------------------------------------------

/** Why `key` cannot verify `alg` (wrong type, curve, or too small an RSA key), or undefined when it can. */
export function publicKeyMismatch(alg: JwsAlgorithm, key: KeyObject): string | undefined {
  if (key.type !== 'public') return 'the key is not a public key';
  const info = signAlgorithms[alg];
  switch (info.scheme) {
    case 'pkcs1':
    case 'pss': {
      if (key.asymmetricKeyType !== 'rsa') return `${alg} needs an RSA key`;
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
      return bits < MIN_RSA_BITS ? `${alg} needs an RSA key of at least ${MIN_RSA_BITS} bits` : undefined;
    }
    case 'ecdsa':
      return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === keyTypes[info.keyType].nodeCurve ? undefined : `${alg} needs an EC key on ${info.keyType}`;
    case 'eddsa':
      return key.asymmetricKeyType === 'ed25519' ? undefined : 'EdDSA needs an Ed25519 key';
  }
}

/** Verifies one signature; a malformed signature is simply not valid. The caller has checked the key with publicKeyMismatch. */
export function verifySignature(alg: JwsAlgorithm, key: KeyObject, input: Buffer, signature: Buffer): boolean {
  const info = signAlgorithms[alg];
  let options: VerifyKeyObjectInput;
  switch (info.scheme) {
    case 'pkcs1':
      options = { key, padding: constants.RSA_PKCS1_PADDING };
      break;
    case 'pss':
      options = { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: hashes[info.hash].length };
      break;
    case 'ecdsa':
      options = { key, dsaEncoding: 'ieee-p1363' };
      break;
    case 'eddsa':
      options = { key };
      break;
  }
  if (!hasRsaSignatureLength(key, signature)) return false;
  try {
    return nodeVerify(info.hash, input, options, signature);
  } catch {
    return false;
  }
}

// --- verification of a whole JWS with one public key ---------------------------------------------------------

export interface VerifyJwsOptions {
  /** The payload of a detached JWS. */
  payload?: Buffer;
  /** Allowed "alg" values; default: all of RS*, PS*, ES256, ES384, EdDSA. */
  algorithms?: readonly string[];
}

export type JwsVerification = { valid: false } | ValidJws;

export interface ValidJws {
  valid: true;
  payload: Buffer;
  protectedHeader: JoseHeader;
  unprotectedHeader?: JoseHeader;
  algorithm: JwsAlgorithm;
  /** Which signature verified (0 for compact and flattened). */
  signatureIndex: number;
  /** Set when a backend key verified it. */
  keyName?: string;
  keyVersion?: number;
}

/**
 * Verifies a JWS with one public key, wholly in process and synchronously (node:crypto's one-shot verify
 * of a few tens of microseconds beats a thread-pool round trip). Malformed input and refused headers
 * throw; a signature that does not verify gives { valid: false }; a general JWS is valid when one of its
 * signatures verifies.
 */
export function verifyJwsWithKey(jws: unknown, key: KeyObject, options: VerifyJwsOptions = {}): JwsVerification {
  const parsed = parseJws(jws, options.payload);
  const allowed = allowList(options.algorithms);
  for (const s of parsed.signatures) {
    checkAllowed(s.alg, allowed);
    const mismatch = publicKeyMismatch(s.alg, key);
    if (mismatch) throw new HsmBridgeError('INCOMPATIBLE_KEY', `the key cannot verify ${s.alg}: ${mismatch}`);
  }
  const ok = parsed.signatures.find((s) => verifySignature(s.alg, key, s.signingInput, s.signature));
  return ok ? validResult(parsed.payload, ok) : { valid: false };
}

export function allowList(algorithms: readonly string[] | undefined): readonly JwsAlgorithm[] | undefined {
  if (algorithms === undefined) return undefined;
  if (!Array.isArray(algorithms) || algorithms.length === 0) throw invalid('algorithms must be a non-empty list');
  return algorithms.map(parseJwsAlgorithm);
}

export function checkAllowed(alg: JwsAlgorithm, allowed: readonly JwsAlgorithm[] | undefined): void {
  if (allowed && !allowed.includes(alg)) throw invalid(`JWS alg ${alg} is not allowed here (allowed: ${allowed.join(', ')})`);
}

export function validResult(payload: Buffer, s: ParsedSignature): ValidJws {
  return {
    valid: true,
    payload,
    protectedHeader: s.protectedHeader,
    ...(s.unprotectedHeader ? { unprotectedHeader: s.unprotectedHeader } : {}),
    algorithm: s.alg,
    signatureIndex: s.index,
  };
}
