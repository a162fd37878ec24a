/**
 * HsmBridgeClient: hsm-bridge over REST or gRPC, for TypeScript and JavaScript callers (`hsm-bridge/client`).
 * Every declared operation can be called by name (`call('keys.sign', {...})`), its route and rpc taken from
 * the declarations (./routes.ts); the typed methods (./operations.generated.ts) are that call with the core's own request
 * and result types. Both channels take and give the same shapes (the REST ones), binary values as Buffers.
 * A call that changes nothing is retried, with backoff, when the service or its HSM was unavailable or
 * never answered; one that changes state never is.
 */
import { randomUUID } from 'node:crypto';
import type { CallOptions, Channel } from './channel.js';
import { HsmBridgeClientError } from './errors.js';
import { GrpcChannel } from './grpc.js';
import type { TlsFiles } from './http.js';
import { RestChannel } from './rest.js';
import { routes } from './routes.js';
import { ClientOperations } from './operations.generated.js';

interface CommonOptions {
  /** The CA of the service's certificate, and the client certificate and key for mTLS. */
  readonly tls?: TlsFiles;
  /** A bearer token, where the service authenticates callers by token. */
  readonly token?: string;
  /** Per attempt; default 30 s. */
  readonly timeoutMs?: number;
  /** Further attempts of a call that changes nothing, after BACKEND_UNAVAILABLE, UNAVAILABLE or no answer; default 2. */
  readonly retries?: number;
}

/** REST: `{ url }`, the base URL (https://hsm-bridge.example:8443); gRPC: `{ grpc }`, host:port (TLS when `tls` is given). */
export type HsmBridgeClientOptions = CommonOptions & ({ readonly url: string | URL; readonly grpc?: undefined } | { readonly grpc: string; readonly url?: undefined });

/** First pause before a retry; doubled each time, with jitter, up to MAX_BACKOFF_MS. */
const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 2000;

export class HsmBridgeClient extends ClientOperations {
  private readonly channel: Channel;
  private readonly timeoutMs: number;
  private readonly retries: number;

  constructor(private readonly options: HsmBridgeClientOptions) {
    super();
    if ((options.url === undefined) === (options.grpc === undefined)) throw new TypeError('one of url (REST) or grpc (host:port)');
    this.channel = options.grpc !== undefined ? new GrpcChannel(options.grpc, options.tls) : new RestChannel(new URL(options.url!), options.tls);
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.retries = options.retries ?? 2;
    if (!Number.isInteger(this.retries) || this.retries < 0) throw new TypeError('retries: a whole number, 0 or more');
  }

  /** Runs any declared operation by name with its input (path parameters and body fields together). */
  override async call<T = unknown>(operation: string, input: Record<string, unknown> = {}, options: CallOptions = {}): Promise<T> {
    const route = routes.get(operation);
    if (!route) throw new TypeError(`no operation ${operation}`);
    const attempt = { requestId: options.requestId ?? randomUUID(), timeoutMs: options.timeoutMs ?? this.timeoutMs, ...(this.options.token ? { token: this.options.token } : {}) };
    for (let n = 0; ; n++) {
      try {
        return (await this.channel.send(route, input, attempt)) as T;
      } catch (e) {
        if (!(e instanceof HsmBridgeClientError) || !e.transient || !route.idempotent || n >= this.retries) throw e;
        const pause = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** n);
        await new Promise((r) => setTimeout(r, pause / 2 + Math.random() * (pause / 2)));
      }
    }
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.channel.close();
  }
}
