/**
 * JwsValidator for Mojaloop services: the reference's (`@mojaloop/sdk-standard-components` JwsValidator)
 * call and answers, with the participants' public keys in hsm-bridge's registry instead of a map in every
 * process. `await validate({ headers, body })` returns true or throws, with the reference's messages in
 * the reference's order, because callers match on them:
 * 1. the request's own shape (body, FSPIOP-Source, the three required headers, the signature header's JSON);
 * 2. the token as jsonwebtoken reads it (`jwt malformed`, `invalid token`, `jwt signature is required`,
 *    `invalid algorithm`: only RS256 and ES256, as the reference);
 * 3. the signature, verified by the service against the participant's registered keys (`invalid signature`);
 * 4. the protected header against the HTTP headers.
 * For step 3 the service is given the headers the protected header names, so that it judges the signature
 * alone; step 4 then runs here on the real headers, as the reference runs it after the signature.
 * Like the reference, the body is verified in its canonical form (a parsed body is re-serialised).
 */
import { canonicalJson } from '../fspiop/canonicalJson.js';
import type { FspiopClient, LogMethods, MojaloopLogger } from './types.js';

/** The algorithms the reference accepts (the service may accept more: RS384, RS512). */
const SIGNATURE_ALGORITHMS = ['RS256', 'ES256'];
/** A JWS in compact form as the jws package (under jsonwebtoken) accepts it. */
const COMPACT_JWS = /^[a-zA-Z0-9\-_]+?\.[a-zA-Z0-9\-_]+?\.([a-zA-Z0-9\-_]+)?$/;

/** The reference's refusal of a source it has no key for; a plain Error by name and message, as the reference throws it. */
class NoKeyError extends Error {}

/** The errors jsonwebtoken throws for a token it refuses, with its name and messages. */
export class JsonWebTokenError extends Error {
  override readonly name = 'JsonWebTokenError';
}

/** An incoming request as Mojaloop services hand it over: header names in lower case, the body parsed. */
export interface IncomingRequest {
  readonly headers: Readonly<Record<string, string | undefined>>;
  readonly body?: unknown;
  readonly data?: unknown;
}

export interface JwsValidatorConfig {
  /** The hsm-bridge client (REST or gRPC); the participants' keys are the ones registered in the service. */
  readonly client: FspiopClient;
  readonly logger?: MojaloopLogger;
}

type Header = Record<string, unknown>;
interface ParticipantView { id: string; keys: { keyId: string; use: 'sig' | 'enc'; kty: 'RSA' | 'EC' }[] }
const json = (value: unknown) => canonicalJson(value);

/**
 * How the service words its refusals of the signature itself (src/fspiop/fspiopService.ts). Its
 * validate answer carries no code that tells these apart from a header mismatch, so they are matched
 * here, in one place, and tested against the service (test/mojaloop/dropIn.test.ts).
 */
const serviceRefusals = {
  unknownKey: /^participant \S+ has no registered (RSA|EC) signature key$/,
  badSignature: /does not verify with any key|^an ES256 signature is 64 bytes$/,
  algorithm: /^alg .* is not allowed/,
};

export class JwsValidator {
  private readonly client: FspiopClient;
  private readonly logger: LogMethods;

  constructor(config: JwsValidatorConfig) {
    if (!config?.client) throw new Error('An hsm-bridge client must be supplied as config argument');
    this.client = config.client;
    this.logger = config.logger?.child({ component: 'JwsValidator' }) ?? console;
  }

  /** True, or throws as the reference does. */
  async validate(request: IncomingRequest): Promise<true> {
    try {
      const { headers } = request;
      const payload = request.body || request.data;
      if (!payload) throw new Error('Cannot validate JWS without a body');
      const source = headers['fspiop-source'];
      if (!source) throw new Error('FSPIOP-Source HTTP header not in request headers. Unable to verify JWS');
      let protectedHeader: unknown;
      let header: Header;
      try {
        if (!headers['fspiop-uri'] || !headers['fspiop-http-method'] || !headers['fspiop-signature']) {
          throw new Error(`fspiop-uri, fspiop-http-method and fspiop-signature HTTP headers are all required for JWS. Only got ${json(headers)}`);
        }
        const parsed = JSON.parse(headers['fspiop-signature']) as { protectedHeader?: unknown; signature?: unknown };
        protectedHeader = parsed.protectedHeader;
        header = tokenHeader(`${protectedHeader}.${Buffer.from(json(payload)).toString('base64url')}.${parsed.signature}`);
      } catch (e) {
        // The reference looks the source's key up before these checks: a source without one is what it reports.
        // Only a refused request pays for the lookup, and only a definite "no key" replaces its fault (not a
        // list this caller may not read, nor an unavailable service).
        const noKey = await this.signatureKeys(source).then(() => undefined, (lookup: unknown) => (lookup instanceof NoKeyError ? lookup : undefined));
        throw noKey ?? e;
      }

      // The reference verifies with the key of the HTTP FSPIOP-Source, the service with the signed one's.
      const sourceKeys = header['FSPIOP-Source'] === source ? undefined : await this.usableKeys(source, header.alg as string);
      const keyId = await this.verifySignature(source, header.alg as string, headers['fspiop-signature']!, String(protectedHeader), json(payload), sourceKeys !== undefined);
      if (sourceKeys && !sourceKeys.includes(keyId)) throw new JsonWebTokenError('invalid signature');
      checkProtectedHeader(headers, header);
      return true;
    } catch (err) {
      this.logger.error?.('Error validating JWS: ', err);
      throw err;
    }
  }

  /**
   * Step 3: the service verifies the signature alone, given the headers the protected header names; the
   * id of the key that verified it. `otherSource`: the HTTP FSPIOP-Source is not the signed one, and has keys.
   */
  private async verifySignature(source: string, alg: string, signatureHeader: string, protectedHeader: string, body: string, otherSource: boolean): Promise<string> {
    const signed = JSON.parse(Buffer.from(protectedHeader, 'base64url').toString('utf8')) as Header;
    const named: Record<string, string> = { 'fspiop-signature': signatureHeader };
    for (const [member, http] of [['FSPIOP-URI', 'fspiop-uri'], ['FSPIOP-HTTP-Method', 'fspiop-http-method'], ['FSPIOP-Source', 'fspiop-source'],
      ['FSPIOP-Destination', 'fspiop-destination'], ['Date', 'date'], ['FSPIOP-Encryption', 'fspiop-encryption']] as const) {
      if (typeof signed[member] === 'string' && signed[member] !== '') named[http] = signed[member];
    }
    const answer = await this.client.fspiopValidate({ headers: named, body });
    if (answer.valid) return answer.keyId!;
    const reason = answer.reason ?? '';
    if (serviceRefusals.unknownKey.test(reason)) {
      // Unknown is the signed source; the reference, holding the HTTP source's key, finds the signature invalid.
      if (otherSource) throw new JsonWebTokenError('invalid signature');
      await this.usableKeys(source, alg); // throws as the reference would: no key, or one of another type
      throw new JsonWebTokenError('invalid signature');
    }
    if (serviceRefusals.badSignature.test(reason)) throw new JsonWebTokenError('invalid signature');
    if (serviceRefusals.algorithm.test(reason)) throw new JsonWebTokenError('invalid algorithm');
    throw new Error(`JWS refused by hsm-bridge: ${reason}`);
  }

  /**
   * The participant's signature keys, or the reference's refusal for a source without one, naming the
   * participants that have keys (in the service's order: the reference names its own map's). A caller
   * the policy does not let read the participant list gets the same refusal, saying so instead.
   */
  private async signatureKeys(source: string): Promise<ParticipantView['keys']> {
    let participants: ParticipantView[];
    try {
      participants = (await this.client.call<{ participants: ParticipantView[] }>('fspiop.participants.list')).participants;
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (code !== 'PERMISSION_DENIED' && code !== 'UNAUTHENTICATED') throw e; // unavailable and the like: not an answer about the key
      throw new Error(`JWS public key for '${source}' not available. Unable to verify JWS. Only have keys for: (the participant list could not be read: ${code})`);
    }
    const withKeys = participants.filter((p) => p.keys.some((k) => k.use === 'sig'));
    const keys = withKeys.find((p) => p.id === source)?.keys.filter((k) => k.use === 'sig') ?? [];
    if (keys.length === 0) throw new NoKeyError(`JWS public key for '${source}' not available. Unable to verify JWS. Only have keys for: ${json(withKeys.map((p) => p.id))}`);
    return keys;
  }

  /**
   * The ids of the participant's signature keys that `alg` can use, or the reference's refusal: no key
   * for the source, or a key of another type (jsonwebtoken's message). Read from the participant list,
   * only when the service's answer does not settle it.
   */
  private async usableKeys(source: string, alg: string): Promise<string[]> {
    const keys = await this.signatureKeys(source);
    const usable = keys.filter((k) => k.kty === (alg === 'ES256' ? 'EC' : 'RSA'));
    if (usable.length === 0) {
      const [type, algs] = keys[0]!.kty === 'EC' ? ['ec', 'ES256, ES384, ES512'] : ['rsa', 'RS256, PS256, RS384, PS384, RS512, PS512'];
      throw new Error(`"alg" parameter for "${type}" key type must be one of: ${algs}.`);
    }
    return usable.map((k) => k.keyId);
  }
}

/** Step 2: what jsonwebtoken refuses before it verifies (its messages); the protected header as it decodes it. */
function tokenHeader(token: string): Header {
  const parts = token.split('.');
  if (parts.length !== 3) throw new JsonWebTokenError('jwt malformed');
  let header: unknown;
  try {
    // jws decodes the header as base64, to a 'binary' (Latin-1) string.
    header = JSON.parse(Buffer.from(parts[0]!, 'base64').toString('latin1'));
  } catch {
    header = undefined;
  }
  if (!COMPACT_JWS.test(token) || !header) throw new JsonWebTokenError('invalid token');
  if (parts[2]!.trim() === '') throw new JsonWebTokenError('jwt signature is required');
  const alg = (header as Header).alg;
  if (typeof alg !== 'string' || !SIGNATURE_ALGORITHMS.includes(alg)) throw new JsonWebTokenError('invalid algorithm');
  return header as Header;
}

/** Step 4: the reference's checks of the protected header against the request's headers, in its order. */
function checkProtectedHeader(headers: IncomingRequest['headers'], decoded: Header): void {
  if (!decoded.alg) throw new Error(`Decoded protected header does not contain required alg element: ${json(decoded)}`);
  if (!SIGNATURE_ALGORITHMS.includes(decoded.alg as string)) throw new Error(`Invalid protected header alg '${decoded.alg}' should be '${SIGNATURE_ALGORITHMS.join(' or ')}'`);
  for (const [member, http] of [['FSPIOP-URI', 'fspiop-uri'], ['FSPIOP-HTTP-Method', 'fspiop-http-method'], ['FSPIOP-Source', 'fspiop-source']] as const) {
    if (!decoded[member]) throw new Error(`Decoded protected header does not contain required ${member} element: ${json(decoded)}`);
    if (!headers[http]) throw new Error(`${member} HTTP header not present in request headers: ${json(headers)}`);
    if (decoded[member] !== headers[http]) throw new Error(`${member} HTTP request header value: ${headers[http]} does not match protected header value: ${decoded[member]}`);
  }
  if (decoded.Date && !headers.date) throw new Error(`Date header is present in protected header but not in HTTP request: ${json(headers)}`);
  if (decoded.Date && headers.date !== decoded.Date) throw new Error(`HTTP date header: ${headers.date} does not match protected header Date value: ${decoded.Date}`);
  const destination = headers['fspiop-destination'];
  if (destination && !decoded['FSPIOP-Destination']) throw new Error(`HTTP fspiop-destination header is present but is not present in protected header: ${json(decoded)}`);
  if (decoded['FSPIOP-Destination'] && !destination) throw new Error(`FSPIOP-Destination header is present in protected header but not in HTTP request: ${json(headers)}`);
  if (destination && destination !== decoded['FSPIOP-Destination']) {
    throw new Error(`HTTP FSPIOP-Destination header: ${destination} does not match protected header FSPIOP-Destination value: ${decoded['FSPIOP-Destination']}`);
  }
}
