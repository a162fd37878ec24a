/**
 * HsmBridgeClient: hsm-bridge over REST, for TypeScript and JavaScript callers (`hsm-bridge/client`).
 * Every declared operation can be called by name (`call('keys.sign', {...})`), its route taken from the
 * declarations (./routes.ts); the typed methods below are that call with the core's own request and result
 * types. Binary values are Buffers both ways. A call that changes nothing is retried, with backoff, when
 * the service or its HSM was unavailable or never answered; one that changes state never is.
 */
import { randomUUID } from 'node:crypto';
import type { FspiopSignInput, FspiopValidateInput, FspiopValidation } from '../fspiop/index.js';
import type { KeyView } from '../api/keyView.js';
import type {
  CreateKeyInput, DecryptRequest, DecryptResult, EncryptRequest, EncryptResult, MacRequest, MacResult, SignRequest, SignResult,
  VerifyMacRequest, VerifyMacResult, VerifyRequest, VerifyResult,
} from '../operations/requests.js';
import { HsmBridgeClientError, type ClientErrorCode } from './errors.js';
import { HttpChannel, type TlsFiles } from './http.js';
import { routes, type Route } from './routes.js';
import { fromWire, toWire } from './wire.js';

export interface HsmBridgeClientOptions {
  /** The REST base URL, e.g. https://hsm-bridge.example:8443 */
  readonly url: string | URL;
  /** The CA of the service's certificate, and the client certificate and key for mTLS. */
  readonly tls?: TlsFiles;
  /** A bearer token, where the service authenticates callers by token. */
  readonly token?: string;
  /** Per attempt; default 30 s. */
  readonly timeoutMs?: number;
  /** Further attempts of a call that changes nothing, after BACKEND_UNAVAILABLE, UNAVAILABLE or no answer; default 2. */
  readonly retries?: number;
}

export interface CallOptions {
  /** Sent as x-request-id, so that the caller's logs and the service's join; default: a new UUID per call. */
  readonly requestId?: string;
  readonly timeoutMs?: number;
}

/** A batch's answer: one result per item, in order; a failed item carries its error instead. */
export type BatchResult<T> = ({ error?: undefined } & T) | { error: { code: ClientErrorCode; message: string } };

/** First pause before a retry; doubled each time, with jitter, up to MAX_BACKOFF_MS. */
const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 2000;

type Without<T, K extends keyof T> = Omit<T, K>;

export class HsmBridgeClient {
  private readonly channel: HttpChannel;
  private readonly timeoutMs: number;
  private readonly retries: number;

  constructor(private readonly options: HsmBridgeClientOptions) {
    this.channel = new HttpChannel(new URL(options.url), options.tls);
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.retries = options.retries ?? 2;
    if (!Number.isInteger(this.retries) || this.retries < 0) throw new TypeError('retries: a whole number, 0 or more');
  }

  /** Runs any declared operation by name with its input (path parameters and body fields together). */
  async call<T = unknown>(operation: string, input: Record<string, unknown> = {}, options: CallOptions = {}): Promise<T> {
    const route = routes.get(operation);
    if (!route) throw new TypeError(`no operation ${operation}`);
    const { path, body } = this.request(route, input);
    const requestId = options.requestId ?? randomUUID();
    const headers: Record<string, string> = { 'x-request-id': requestId, ...(this.options.token ? { authorization: `Bearer ${this.options.token}` } : {}) };
    for (let attempt = 0; ; attempt++) {
      try {
        const answer = await this.channel.send(route.method, path, headers, body, options.timeoutMs ?? this.timeoutMs);
        return this.answer<T>(route, answer.status, answer.body, answer.requestId ?? requestId);
      } catch (e) {
        if (!(e instanceof HsmBridgeClientError) || !e.transient || !route.idempotent || attempt >= this.retries) throw e;
        const pause = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** attempt);
        await new Promise((r) => setTimeout(r, pause / 2 + Math.random() * (pause / 2)));
      }
    }
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.channel.close();
  }

  // --- keys ----------------------------------------------------------------------------------------

  createKey(input: { name: string; type: string; purpose?: string; exportable?: boolean; keyUsage?: string } & Partial<CreateKeyInput>, options?: CallOptions): Promise<KeyView> {
    return this.call('keys.create', input, options);
  }
  async listKeys(options?: CallOptions): Promise<KeyView[]> {
    return (await this.call<{ keys: KeyView[] }>('keys.list', {}, options)).keys;
  }
  getKey(name: string, options?: CallOptions): Promise<KeyView> {
    return this.call('keys.get', { name }, options);
  }
  rotateKey(name: string, options?: CallOptions): Promise<KeyView> {
    return this.call('keys.rotate', { name }, options);
  }
  enableKey(name: string, options?: CallOptions): Promise<KeyView> {
    return this.call('keys.enable', { name }, options);
  }
  disableKey(name: string, options?: CallOptions): Promise<KeyView> {
    return this.call('keys.disable', { name }, options);
  }
  async destroyKey(name: string, options?: CallOptions): Promise<void> {
    await this.call('keys.destroy', { name }, options);
  }

  // --- key operations --------------------------------------------------------------------------------

  /** With the primary version: REST signs with no other. */
  sign(name: string, input: Without<SignRequest, 'name' | 'keyVersion'>, options?: CallOptions): Promise<SignResult> {
    return this.call('keys.sign', { ...input, name }, options);
  }
  verify(name: string, input: Without<VerifyRequest, 'name'>, options?: CallOptions): Promise<VerifyResult> {
    return this.call('keys.verify', { ...input, name }, options);
  }
  encrypt(name: string, input: Without<EncryptRequest, 'name' | 'keyVersion'>, options?: CallOptions): Promise<EncryptResult> {
    return this.call('keys.encrypt', { ...input, name }, options);
  }
  decrypt(name: string, input: Without<DecryptRequest, 'name'>, options?: CallOptions): Promise<DecryptResult> {
    return this.call('keys.decrypt', { ...input, name }, options);
  }
  mac(name: string, input: Without<MacRequest, 'name'>, options?: CallOptions): Promise<MacResult> {
    return this.call('keys.mac', { ...input, name }, options);
  }
  verifyMac(name: string, input: Without<VerifyMacRequest, 'name'>, options?: CallOptions): Promise<VerifyMacResult> {
    return this.call('keys.verifyMac', { ...input, name }, options);
  }
  async signBatch(name: string, items: Without<SignRequest, 'name' | 'keyVersion'>[], options?: CallOptions): Promise<BatchResult<SignResult>[]> {
    return (await this.call<{ results: BatchResult<SignResult>[] }>('keys.signBatch', { name, items }, options)).results;
  }
  async verifyBatch(name: string, items: Without<VerifyRequest, 'name'>[], options?: CallOptions): Promise<BatchResult<VerifyResult>[]> {
    return (await this.call<{ results: BatchResult<VerifyResult>[] }>('keys.verifyBatch', { name, items }, options)).results;
  }

  // --- system ----------------------------------------------------------------------------------------

  async random(length: number, options?: CallOptions): Promise<Buffer> {
    return (await this.call<{ random: Buffer }>('system.random', { length }, options)).random;
  }
  capabilities(options?: CallOptions): Promise<Record<string, unknown>> {
    return this.call('system.capabilities', {}, options);
  }
  whoami(options?: CallOptions): Promise<{ id: string; authenticatedBy: 'certificate' | 'token' | 'none'; policy: boolean; principals?: string[]; [field: string]: unknown }> {
    return this.call('system.whoami', {}, options);
  }

  // --- FSPIOP ----------------------------------------------------------------------------------------

  /** The FSPIOP-Signature header (and the others to send) and the exact body to send. */
  fspiopSign(input: FspiopSignInput, options?: CallOptions): Promise<{ headers: Record<string, string>; body: string }> {
    return this.call('fspiop.sign', { ...input }, options);
  }
  /** A refused signature is an answer, {valid: false, errorCode: '3105', ...}, not an error. */
  fspiopValidate(input: FspiopValidateInput, options?: CallOptions): Promise<FspiopValidation> {
    // REST carries the body as text (JSON is UTF-8); a Buffer is not base64 here.
    return this.call('fspiop.validate', { ...input, body: typeof input.body === 'string' ? input.body : input.body.toString('utf8') }, options);
  }

  // --- internals -------------------------------------------------------------------------------------

  private request(route: Route, input: Record<string, unknown>): { path: string; body?: string } {
    let path = route.path;
    const rest: Record<string, unknown> = { ...input };
    for (const param of route.params) {
      const value = rest[param];
      if (typeof value !== 'string' && typeof value !== 'number') throw new TypeError(`${route.operation}: ${param} is required`);
      path = path.replace(`:${param}`, encodeURIComponent(String(value)));
      delete rest[param];
    }
    return route.body ? { path, body: JSON.stringify(toWire(rest)) } : { path };
  }

  private answer<T>(route: Route, status: number, body: unknown, requestId: string): T {
    if (status >= 200 && status < 300) return fromWire(body, route.response) as T;
    const error = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    if (error && typeof error.code === 'string' && typeof error.message === 'string') {
      throw new HsmBridgeClientError(error.code as ClientErrorCode, error.message, status, requestId);
    }
    const code: ClientErrorCode = status === 502 || status === 503 || status === 504 ? 'UNAVAILABLE' : 'INTERNAL';
    throw new HsmBridgeClientError(code, `${route.operation}: HTTP ${status} without an hsm-bridge error`, status, requestId);
  }
}
