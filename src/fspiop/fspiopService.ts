/**
 * Mojaloop FSPIOP API signatures (API Signature v1.1) with our keys in the backend, and validation of
 * participants' signatures with their registered public keys.
 *
 * sign: encrypt the chosen fields (FSPIOP Encryption v1.1) if asked, serialise the body canonically (the
 * form the reference validator re-serialises to, so that it verifies there too), build the protected
 * header as the reference signer does and sign `b64url(header) "." b64url(body)` through KeyService.
 *
 * validate: the hot path of a switch. It parses only what it must, verifies with cached KeyObjects, tries
 * the received bytes first and computes the canonical form only when they do not verify. Whatever the
 * message, it answers valid or refused (3105) and never throws for it: only our own key (decryptWith)
 * can raise an error.
 */
import { verify as nodeVerify, type KeyObject } from 'node:crypto';
import { HsmBridgeError, invalid } from '../errors.js';
import type { KeyService } from '../operations/keyService.js';
import { encode } from '../jose/base64url.js';
import { canonicalJson, JsonTooDeepError } from './canonicalJson.js';
import { fspiopAlgorithms, type FspiopAlgorithm } from './config.js';
import { decryptFields, encryptFields, FieldDecryptionError, fieldDecryptionKey } from './fieldEncryption.js';
import { parseJsonBody, type JsonBody } from './jsonText.js';
import { isParticipantId, parseParticipantId, type ParticipantKey, type ParticipantRegistry } from './participants.js';
import { buildProtectedHeader, checkSignatureHeaders, pickHeaders, type HeaderInput } from './protectedHeader.js';
import { fspiopUri } from './uri.js';
import { hasRsaSignatureLength } from '../algorithms/signatureLength.js';

export interface FspiopServiceOptions {
  readonly keyService: KeyService;
  readonly registry: ParticipantRegistry;
  /** Algorithms accepted on validation; default RS256, RS384, RS512, ES256. */
  readonly allowedAlgorithms?: readonly FspiopAlgorithm[];
  /** Also accept a signature over the canonical body when the received bytes do not verify; default true. */
  readonly acceptCanonicalBody?: boolean;
}

export interface FspiopSignInput {
  /** Our signing key's name in the backend: RSA (RS256) or EC P-256 (ES256). */
  readonly key: string;
  readonly method: string;
  /** The request URI or path; FSPIOP-URI is the part from the resource on. */
  readonly uri: string;
  readonly source: string;
  readonly destination?: string;
  readonly date?: string;
  /** JSON text or a parsed JSON value. */
  readonly body: string | object;
  /** Fields (dot paths) to encrypt for a participant's registered encryption key before signing. */
  readonly encryptFields?: { readonly fields: readonly string[]; readonly recipient: string };
}

export interface FspiopSignResult {
  /** The FSPIOP-Signature header value: {"protectedHeader","signature"}, byte-compatible with the reference signer. */
  readonly signatureHeader: string;
  /** The version of our key that signed (for the audit record; FSPIOP headers do not name it). */
  readonly keyVersion: number;
  /** The exact body bytes to send (canonical JSON, UTF-8). */
  readonly body: string;
  readonly headers: {
    readonly 'fspiop-signature': string;
    readonly 'fspiop-uri': string;
    readonly 'fspiop-http-method': string;
    readonly 'fspiop-encryption'?: string;
  };
}

export interface FspiopValidateInput {
  /** The request headers, names in any letter case. */
  readonly headers: HeaderInput;
  /** The body bytes as received. */
  readonly body: string | Buffer;
  /** Our RSA key (purpose encrypt) to decrypt fields listed in FSPIOP-Encryption; the result then carries the body. */
  readonly decryptWith?: string;
}

export type FspiopValidation =
  | { readonly valid: true; readonly participant: string; readonly keyId: string; readonly algorithm: FspiopAlgorithm; readonly body?: unknown }
  | { readonly valid: false; readonly errorCode: '3105'; readonly reason: string };

const hashOf: Record<FspiopAlgorithm, string> = { RS256: 'sha256', RS384: 'sha384', RS512: 'sha512', ES256: 'sha256' };
const HTTP_METHOD = /^[A-Za-z]{1,16}$/;
/** Header values must not carry line breaks or other controls (they would split or corrupt the HTTP header). */
const HEADER_VALUE = /^[\x20-\x7e\x80-\uffff]{1,256}$/;

export class FspiopService {
  private readonly keyService: KeyService;
  private readonly registry: ParticipantRegistry;
  private readonly allowed: ReadonlySet<string>;
  private readonly acceptCanonical: boolean;
  /** Our keys' FSPIOP algorithm by name; a key's type never changes, a re-created key is caught on sign. */
  private readonly algorithms = new Map<string, FspiopAlgorithm>();

  constructor(options: FspiopServiceOptions) {
    this.keyService = options.keyService;
    this.registry = options.registry;
    this.allowed = new Set(options.allowedAlgorithms ?? fspiopAlgorithms);
    this.acceptCanonical = options.acceptCanonicalBody ?? true;
  }

  async sign(input: FspiopSignInput): Promise<FspiopSignResult> {
    if (typeof input.method !== 'string' || !HTTP_METHOD.test(input.method)) throw invalid('method must be an HTTP method');
    const method = input.method.toUpperCase();
    const uri = typeof input.uri === 'string' ? fspiopUri(input.uri) : undefined;
    if (uri === undefined) throw invalid('uri must be a request URI or path');
    const source = parseParticipantId(input.source);
    const destination = input.destination === undefined ? undefined : parseParticipantId(input.destination);
    if (input.date !== undefined && (typeof input.date !== 'string' || !HEADER_VALUE.test(input.date))) throw invalid('date must be an HTTP date');

    let body = parseBody(input.body);
    // Canonicalised first: it refuses non-JSON values and deep nesting before anything else walks the body.
    let canonical = canonicalBody(body);
    let encryption: string | undefined;
    if (input.encryptFields) {
      const { fields, recipient } = input.encryptFields;
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('fields can only be encrypted in a JSON object body');
      if (!Array.isArray(fields) || !fields.every((f) => typeof f === 'string' && f !== '')) throw invalid('encryptFields.fields must be a list of dot paths');
      const keys = this.registry.keysFor(parseParticipantId(recipient), 'enc');
      const newest = keys[keys.length - 1]; // the most recently registered: during a rotation, the new key
      if (!newest) throw new HsmBridgeError('KEY_NOT_FOUND', `participant ${recipient} has no encryption key registered`);
      ({ body, header: encryption } = await encryptFields(body as Record<string, unknown>, fields, newest.keyObject));
      canonical = canonicalBody(body);
    }
    const payload = encode(canonical);

    const signOnce = async () => {
      const alg = await this.algorithmOf(input.key);
      const protectedHeader = encode(buildProtectedHeader({ alg, uri, method, source, destination, date: input.date, encryption }));
      const { signature, keyVersion } = await this.keyService.sign({ name: input.key, algorithm: alg, message: signingInput(protectedHeader, payload) });
      // Members in the order the reference signer writes them (it sorts them: protectedHeader, signature).
      return { signatureHeader: JSON.stringify({ protectedHeader, signature: encode(signature) }), keyVersion };
    };
    let signed: { signatureHeader: string; keyVersion: number };
    try {
      signed = await signOnce();
    } catch (e) {
      // The key may have been destroyed and re-created with another type since we cached its algorithm.
      if (!(e instanceof HsmBridgeError && e.code === 'INCOMPATIBLE_KEY' && this.algorithms.delete(input.key))) throw e;
      signed = await signOnce();
    }
    const { signatureHeader, keyVersion } = signed;
    return {
      signatureHeader,
      keyVersion,
      body: canonical,
      headers: {
        'fspiop-signature': signatureHeader,
        'fspiop-uri': uri,
        'fspiop-http-method': method,
        ...(encryption === undefined ? {} : { 'fspiop-encryption': encryption }),
      },
    };
  }

  async validate(input: FspiopValidateInput): Promise<FspiopValidation> {
    const headers = pickHeaders(input.headers);
    if (typeof headers === 'string') return refused(headers);
    const parsed = checkSignatureHeaders(headers, this.allowed);
    if (typeof parsed === 'string') return refused(parsed);
    const { alg, source } = parsed;
    // Checked before it is echoed in a reason or used for a lookup: no registered participant has another form.
    if (!isParticipantId(source)) return refused('FSPIOP-Source is not a valid participant id');

    const bytes = typeof input.body === 'string' ? Buffer.from(input.body, 'utf8') : input.body;
    if (!Buffer.isBuffer(bytes)) return refused('the body must be text or bytes');
    if (bytes.length === 0) return refused('the request has no body to validate');
    const kty = alg === 'ES256' ? 'EC' : 'RSA';
    const keys = this.registry.signatureKeys(source, kty);
    if (keys.length === 0) return refused(`participant ${source} has no registered ${kty} signature key`);
    if (alg === 'ES256' && parsed.signature.length !== 64) return refused('an ES256 signature is 64 bytes');

    let key = verifyWithAny(keys, alg, signingInput(parsed.protectedHeader, bytes.toString('base64url')), parsed.signature);
    let body: JsonBody | undefined;
    if (!key && this.acceptCanonical) {
      const text = bytes.toString('utf8');
      body = parseJsonBody(text);
      // Bytes that are not JSON have no canonical form; JSON we cannot read unambiguously is refused as such.
      if (body.kind === 'refused') return refused(body.reason);
      if (body.kind === 'json') {
        const canonical = canonicalJson(body.value); // cannot throw: parsed JSON within the depth limit
        if (canonical !== text) key = verifyWithAny(keys, alg, signingInput(parsed.protectedHeader, encode(canonical)), parsed.signature);
      }
    }
    if (!key) return refused(`the signature does not verify with any key of participant ${source}`);

    const result = { valid: true as const, participant: source, keyId: key.keyId, algorithm: alg };
    if (input.decryptWith === undefined) return result;
    // The body is handed back parsed: the same rules as for the canonical form (JSON.stringify recurses too).
    body ??= parseJsonBody(bytes.toString('utf8'));
    if (body.kind === 'refused') return refused(body.reason);
    const parsedBody = body.kind === 'json' ? body.value : undefined;
    if (headers.encryption === undefined) return { ...result, body: parsedBody };
    if (typeof parsedBody !== 'object' || parsedBody === null || Array.isArray(parsedBody)) return refused('an encrypted body must be a JSON object');
    try {
      return { ...result, body: await decryptFields(parsedBody as Record<string, unknown>, headers.encryption, this.keyService, input.decryptWith) };
    } catch (e) {
      if (e instanceof FieldDecryptionError) return refused(e.message);
      throw e;
    }
  }

  /** What sign() checks on its key alone (enabled, purpose sign, RSA or EC P-256): for a batch, once before its items. */
  async checkSigningKey(name: string): Promise<void> {
    await this.keyService.checkKeyFor(name, 'sign');
    await this.algorithmOf(name);
  }

  /** What validate() checks on the key it decrypts fields with, should the body be encrypted: for a batch, once before its items. */
  async checkDecryptionKey(name: string): Promise<void> {
    await fieldDecryptionKey(this.keyService, name);
  }

  private async algorithmOf(name: string): Promise<FspiopAlgorithm> {
    let alg = this.algorithms.get(name);
    if (alg) return alg;
    const meta = await this.keyService.getKey(name);
    if (meta.type.startsWith('RSA_')) alg = 'RS256';
    else if (meta.type === 'EC_P256') alg = 'ES256';
    else throw new HsmBridgeError('INCOMPATIBLE_KEY', `FSPIOP signatures need an RSA or EC P-256 key; ${meta.name} is ${meta.type}`);
    this.algorithms.set(name, alg);
    return alg;
  }
}

function refused(reason: string): FspiopValidation {
  return { valid: false, errorCode: '3105', reason };
}

/** `protectedHeader "." payload`, both base64url (ASCII), written into one buffer without an intermediate string. */
function signingInput(protectedHeader: string, payload: string): Buffer {
  const data = Buffer.allocUnsafe(protectedHeader.length + 1 + payload.length);
  data.write(protectedHeader, 0, 'latin1');
  data[protectedHeader.length] = 0x2e; // '.'
  data.write(payload, protectedHeader.length + 1, 'latin1');
  return data;
}

function verifyWithAny(keys: readonly ParticipantKey[], alg: FspiopAlgorithm, data: Buffer, signature: Buffer): ParticipantKey | undefined {
  for (const key of keys) if (verifies(alg, key.keyObject, data, signature)) return key;
  return undefined;
}

function verifies(alg: FspiopAlgorithm, key: KeyObject, data: Buffer, signature: Buffer): boolean {
  if (!hasRsaSignatureLength(key, signature)) return false;
  try {
    return alg === 'ES256'
      ? nodeVerify(hashOf[alg], data, { key, dsaEncoding: 'ieee-p1363' }, signature)
      : nodeVerify(hashOf[alg], data, key, signature);
  } catch {
    return false; // e.g. a signature of the wrong length for this key
  }
}

function parseBody(body: string | object): unknown {
  if (typeof body === 'object' && body !== null) return body;
  if (typeof body !== 'string' || body === '') throw invalid('body must be JSON text or a JSON value');
  try {
    return JSON.parse(body) as unknown;
  } catch {
    throw invalid('body is not valid JSON');
  }
}

function canonicalBody(body: unknown): string {
  try {
    return canonicalJson(body);
  } catch (e) {
    throw invalid(e instanceof JsonTooDeepError ? e.message : 'body holds a value that is not JSON');
  }
}
