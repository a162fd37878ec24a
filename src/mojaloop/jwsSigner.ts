/**
 * JwsSigner for Mojaloop services: the reference's (`@mojaloop/sdk-standard-components` JwsSigner) calls
 * and effects, with the private key in hsm-bridge instead of a PEM string in the process. `sign` sets the
 * same three headers on the request options (fspiop-http-method, fspiop-uri, fspiop-signature) and turns
 * an object body into the same canonical text; it refuses what the reference refuses, with the same
 * messages. The one change at a call site: `signer.sign(opts)` becomes `await signer.sign(opts)`.
 *
 * The protected header is built by the service from the same inputs (method, FSPIOP-URI, the
 * fspiop-source, fspiop-destination and date headers), so the FSPIOP-Signature validates with the
 * reference validator byte for byte (test/mojaloop/dropIn.test.ts).
 */
import { canonicalJson } from '../fspiop/canonicalJson.js';
import { fspiopUri } from '../fspiop/uri.js';
import type { FspiopClient, LogMethods, MojaloopLogger } from './types.js';

/** A request-promise / axios style request: what sdk-standard-components' request classes build. */
export interface RequestOptions {
  method: string;
  uri?: string;
  url?: string;
  headers: Record<string, string | undefined>;
  body?: unknown;
  data?: unknown;
  [other: string]: unknown;
}

export interface JwsSignerConfig {
  /** The hsm-bridge client (REST or gRPC). */
  readonly client: FspiopClient;
  /** The hsm-bridge key to sign with (RSA: RS256, EC P-256: ES256), in place of the reference's signingKey. */
  readonly keyName: string;
  readonly logger?: MojaloopLogger;
}

export class JwsSigner {
  private readonly client: FspiopClient;
  private readonly keyName: string;
  private readonly logger: LogMethods;

  constructor(config: JwsSignerConfig) {
    if (!config?.client) throw new Error('An hsm-bridge client must be supplied as config argument');
    if (!config.keyName) throw new Error('Signing key name must be supplied as config argument');
    this.client = config.client;
    this.keyName = config.keyName;
    this.logger = config.logger?.child({ component: 'JwsSigner' }) ?? console;
  }

  /** Adds fspiop-http-method, fspiop-uri and fspiop-signature to the request's headers. */
  async sign(requestOptions: RequestOptions): Promise<void> {
    const { uri } = this.checked(requestOptions);
    // As the reference: an object body is sent as its canonical text, a text body as it is.
    if (requestOptions.body && typeof requestOptions.body !== 'string') requestOptions.body = canonicalJson(requestOptions.body);
    if (requestOptions.data && typeof requestOptions.data !== 'string') requestOptions.data = canonicalJson(requestOptions.data);
    requestOptions.headers['fspiop-http-method'] = requestOptions.method.toUpperCase();
    requestOptions.headers['fspiop-uri'] = uri;
    requestOptions.headers['fspiop-signature'] = await this.getSignature(requestOptions);
  }

  /**
   * The FSPIOP-Signature header value for the request, which is not changed. As in the reference, the
   * protected header's FSPIOP-URI is the request's fspiop-uri header (sign() sets it first).
   */
  async getSignature(requestOptions: RequestOptions): Promise<string> {
    const { payload, uri } = this.checked(requestOptions);
    const { headers } = requestOptions;
    if (this.logger.isDebugEnabled) this.logger.debug?.(`JWS signing a ${requestOptions.method.toUpperCase()} request with key ${this.keyName}`);
    const signed = await this.client.fspiopSign({
      key: this.keyName,
      method: requestOptions.method,
      uri: headers['fspiop-uri'] ?? uri,
      source: headers['fspiop-source'] as string,
      ...(headers['fspiop-destination'] ? { destination: headers['fspiop-destination'] } : {}),
      ...(headers.date ? { date: headers.date } : {}),
      body: typeof payload === 'string' ? payload : canonicalJson(payload),
    });
    return signed.headers['fspiop-signature']!;
  }

  /** The reference's two refusals, before anything is sent. */
  private checked(requestOptions: RequestOptions): { payload: unknown; uri: string } {
    const payload = requestOptions.body || requestOptions.data;
    const target = requestOptions.uri || requestOptions.url;
    if (!payload) throw new Error('Cannot sign with no body');
    const uri = typeof target === 'string' ? fspiopUri(target) : undefined;
    if (uri === undefined) throw new Error(`URI not valid for protected header: ${target}`);
    return { payload, uri };
  }
}
