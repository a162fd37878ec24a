/**
 * The KMIP client the adapter talks through: a small pool of mutual-TLS connections to one server, the
 * protocol version negotiated once at open, and failures sorted into what the core understands:
 * - the server answered "failed"        -> KmipOperationError (reason + the server's text, for the adapter to map)
 * - unreachable, closed, timed out      -> HsmBridgeError BACKEND_UNAVAILABLE (retried once on a fresh
 *                                          connection when the caller says the operation is idempotent)
 * - an answer that is not KMIP          -> HsmBridgeError INTERNAL (the detail goes to the log)
 *
 * Connections are made lazily, at most poolSize of them; a dead one (the server restarted, a timeout) is
 * dropped and the next call makes a new one, so the client recovers from a server restart by itself.
 * Health probes use a connection of their own, so that a busy pool never reads as an unhealthy server.
 */
import type { Logger } from 'pino';
import { HsmBridgeError } from '../../src/errors.js';
import { KmipConnection, kmipTlsContext, KmipTransportError, type KmipConnectionOptions } from './connection.js';
import { decodeResponse, encodeRequest, protocolVersion, type KmipResponse, type ProtocolVersion } from './messages.js';
import { Enum, Tag, enumName } from './tags.js';
import { children, intOf, KmipProtocolError, struct, type Ttlv } from './ttlv.js';

export type { ProtocolVersion } from './messages.js';

export interface KmipClientOptions {
  readonly host: string;
  readonly port: number;
  /** The name the server certificate must carry; the host when absent. */
  readonly serverName?: string;
  /**
   * PEM: the CA(s) that issued the server certificate, the client certificate and its private key. They
   * are parsed once at open into a TLS context; the client keeps no reference to the key's buffer, which
   * the caller may wipe once open has settled.
   */
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly poolSize: number;
  /** Larger responses are refused before they are read; also sent to the server as Maximum Response Size. */
  readonly maxResponseBytes: number;
  /** Versions we speak, preferred first; default 1.4, 1.3, 1.2. */
  readonly versions?: readonly ProtocolVersion[];
}

/** The server processed the request and answered "failed". */
export class KmipOperationError extends Error {
  override readonly name = 'KmipOperationError';
  /** A ResultReason value (Enum.ResultReason). */
  readonly reason?: number;
  /** The server's own text. It may quote request fields: log it, do not hand it to API callers. */
  readonly resultMessage?: string;

  constructor(operation: number, reason: number | undefined, resultMessage: string | undefined) {
    super(`KMIP ${enumName('Operation', operation)} failed: ${reason === undefined ? 'no reason given' : enumName('ResultReason', reason)}`);
    if (reason !== undefined) this.reason = reason;
    if (resultMessage !== undefined) this.resultMessage = resultMessage;
  }
}

export const DEFAULT_VERSIONS: readonly ProtocolVersion[] = Object.freeze([
  { major: 1, minor: 4 },
  { major: 1, minor: 3 },
  { major: 1, minor: 2 },
]);
/** What we assume when the server refuses DiscoverVersions (a KMIP 1.0 operation that some servers omit). */
const FALLBACK_VERSION: ProtocolVersion = { major: 1, minor: 2 };
/** Callers that may wait for a connection, per pooled connection, before calls are refused outright. */
const QUEUE_PER_CONNECTION = 64;
const HEALTH_CACHE_MS = 1_000;
const HEALTH_TIMEOUT_MS = 2_000;

const same = (a: ProtocolVersion, b: ProtocolVersion) => a.major === b.major && a.minor === b.minor;
const show = (v: ProtocolVersion) => `${v.major}.${v.minor}`;

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** A counting semaphore with a bounded, timed wait queue: one permit per connection the pool may hold. */
class Permits {
  private free: number;
  private readonly waiters: Waiter[] = [];

  constructor(
    readonly count: number,
    private readonly maxWaiters: number,
  ) {
    this.free = count;
  }

  get inUse(): number {
    return this.count - this.free;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  acquire(timeoutMs: number): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    if (this.waiters.length >= this.maxWaiters) {
      return Promise.reject(new HsmBridgeError('BACKEND_UNAVAILABLE', 'KMIP server busy: too many requests waiting for a connection', { reason: 'BACKEND_BUSY' }));
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          reject(new HsmBridgeError('BACKEND_UNAVAILABLE', `no KMIP connection free within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  release(): void {
    const next = this.waiters.shift();
    if (!next) {
      this.free++;
      return;
    }
    clearTimeout(next.timer);
    next.resolve();
  }

  rejectAll(e: Error): void {
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(e);
    }
  }
}

/** What the client keeps of its options: no PEM (the TLS context holds the parsed credentials). */
type Settings = Omit<KmipClientOptions, 'ca' | 'cert' | 'key'>;

export class KmipClient {
  readonly version: ProtocolVersion;
  private readonly options: Settings;
  private readonly connectionOptions: KmipConnectionOptions;
  private readonly logger: Logger;
  private readonly permits: Permits;
  private readonly idle: KmipConnection[] = [];
  private readonly all = new Set<KmipConnection>();
  private probe: KmipConnection | undefined;
  private lastHealth: { at: number; result: { ready: boolean; detail?: string } } | undefined;
  private healthInFlight: Promise<{ ready: boolean; detail?: string }> | undefined;
  private closed = false;

  private constructor(options: Settings, connectionOptions: KmipConnectionOptions, logger: Logger, version: ProtocolVersion, first: KmipConnection) {
    this.options = options;
    this.connectionOptions = connectionOptions;
    this.logger = logger;
    this.version = version;
    this.permits = new Permits(options.poolSize, options.poolSize * QUEUE_PER_CONNECTION);
    this.all.add(first);
    this.idle.push(first);
  }

  /**
   * Connects once and negotiates the protocol version; fails with BACKEND_UNAVAILABLE if the server cannot
   * be used. Only here does the error carry the transport's detail (a certificate or name mismatch): it
   * reaches the operator starting the service, not an API caller.
   */
  static async open(options: KmipClientOptions, logger: Logger): Promise<KmipClient> {
    checkOptions(options);
    const versions = options.versions ?? DEFAULT_VERSIONS;
    const log = logger.child({ kmip: `${options.host}:${options.port}` });
    const { ca: _ca, cert: _cert, key: _key, ...settings } = options;
    let tls;
    try {
      tls = kmipTlsContext(options);
    } catch (e) {
      throw new HsmBridgeError('INVALID_ARGUMENT', 'kmip: the CA, client certificate or key cannot be used for TLS', { cause: e });
    }
    const connectionOptions = connectionOptionsOf(settings, tls);
    const connection = await KmipConnection.connect(connectionOptions).catch((e: unknown) => {
      throw startFailure(e);
    });
    try {
      const version = await negotiate(connection, versions, options);
      log.info({ version: show(version) }, 'KMIP protocol version negotiated');
      return new KmipClient(settings, connectionOptions, log, version, connection);
    } catch (e) {
      connection.close();
      if (e instanceof HsmBridgeError) throw e;
      if (e instanceof KmipTransportError) throw startFailure(e);
      log.error({ err: e instanceof Error ? e.message : String(e) }, 'KMIP server answered DiscoverVersions with something that is not valid KMIP');
      throw new HsmBridgeError('INTERNAL', 'unexpected answer from the KMIP server to DiscoverVersions', { cause: e });
    }
  }

  /**
   * Sends one operation. Resolves with the response payload on success; rejects with KmipOperationError
   * on a failed result, or HsmBridgeError BACKEND_UNAVAILABLE (INTERNAL for a non-KMIP answer). With
   * `retry`, a transport failure is retried once on a fresh connection: set it only for operations that
   * are safe to repeat, since the first attempt may have reached the server.
   */
  async call(operation: number, payload: Ttlv, options?: { retry?: boolean }): Promise<Ttlv | undefined> {
    // The request may carry key material (Register) or plaintext (Encrypt): wiped once the call is over,
    // when it has either been answered or its connection destroyed with whatever was still queued.
    const message = encodeRequest(this.version, operation, payload, { maximumResponseSize: this.options.maxResponseBytes });
    try {
      return await this.attempt(operation, message);
    } catch (e) {
      if (!(e instanceof KmipTransportError) || !options?.retry || this.closed) throw this.translate(operation, e);
      this.logger.warn({ operation: enumName('Operation', operation), err: e.message }, 'KMIP call failed in transport; retrying on a fresh connection');
      try {
        return await this.attempt(operation, message);
      } catch (again) {
        throw this.translate(operation, again);
      }
    } finally {
      message.fill(0);
    }
  }

  /** Whether the server answers DiscoverVersions, on a connection of its own; cached for a second, never more than one probe in flight. */
  health(): Promise<{ ready: boolean; detail?: string }> {
    if (this.closed) return Promise.resolve({ ready: false, detail: 'KMIP client closed' });
    if (this.lastHealth && Date.now() - this.lastHealth.at < HEALTH_CACHE_MS) return Promise.resolve(this.lastHealth.result);
    this.healthInFlight ??= this.runProbe().then((result) => {
      this.lastHealth = { at: Date.now(), result };
      this.healthInFlight = undefined;
      return result;
    });
    return this.healthInFlight;
  }

  /** The connection pool's size, the connections lent to calls and the calls waiting for one. */
  poolCounts(): { size: number; inUse: number; waiting: number } {
    return { size: this.permits.count, inUse: this.permits.inUse, waiting: this.permits.waiting };
  }

  /** Closes every connection; calls in flight or waiting fail with BACKEND_UNAVAILABLE. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.permits.rejectAll(new HsmBridgeError('BACKEND_UNAVAILABLE', 'KMIP client closed'));
    for (const c of this.all) c.close();
    this.all.clear();
    this.idle.length = 0;
    this.probe?.close();
    this.probe = undefined;
  }

  /** One request on a pooled connection; rejects with the raw failure (transport, protocol or operation). */
  private async attempt(operation: number, message: Buffer): Promise<Ttlv | undefined> {
    if (this.closed) throw new HsmBridgeError('BACKEND_UNAVAILABLE', 'KMIP client closed');
    await this.permits.acquire(this.options.requestTimeoutMs);
    let connection: KmipConnection | undefined;
    try {
      connection = await this.take();
      const response = await connection.request(message, this.options.requestTimeoutMs);
      try {
        // The decoded payload holds copies of its byte strings (the caller wipes those); the wire form goes now.
        return payloadOf(operation, decodeResponse(response, { maxBytes: this.options.maxResponseBytes }));
      } finally {
        response.fill(0);
      }
    } catch (e) {
      if (e instanceof KmipTransportError || e instanceof KmipProtocolError) {
        this.logger.warn({ operation: enumName('Operation', operation), err: e.message }, 'KMIP connection failed');
        // A server that answered nonsense may be out of step with us: that connection is not reused either.
        connection?.close();
        // The idle ones very likely went the same way (a server restart).
        this.dropIdle();
      }
      throw e;
    } finally {
      if (connection) this.giveBack(connection);
      this.permits.release();
    }
  }

  /** An idle live connection, or a new one. The caller holds a permit, so the pool never exceeds poolSize. */
  private async take(): Promise<KmipConnection> {
    for (let c = this.idle.pop(); c; c = this.idle.pop()) {
      if (c.alive) return c;
      this.all.delete(c);
    }
    const connection = await KmipConnection.connect(this.connectionOptions);
    if (this.closed) {
      connection.close();
      throw new HsmBridgeError('BACKEND_UNAVAILABLE', 'KMIP client closed');
    }
    this.all.add(connection);
    this.logger.debug({ connections: this.all.size }, 'KMIP connection opened');
    return connection;
  }

  private giveBack(connection: KmipConnection): void {
    if (connection.alive && !this.closed) this.idle.push(connection);
    else this.all.delete(connection);
  }

  private dropIdle(): void {
    for (const c of this.idle.splice(0)) {
      c.close();
      this.all.delete(c);
    }
  }

  private async runProbe(): Promise<{ ready: boolean; detail?: string }> {
    const timeoutMs = Math.min(HEALTH_TIMEOUT_MS, this.options.requestTimeoutMs);
    try {
      if (!this.probe?.alive) {
        this.probe = await KmipConnection.connect({ ...this.connectionOptions, connectTimeoutMs: Math.min(timeoutMs, this.options.connectTimeoutMs) });
        if (this.closed) {
          this.probe.close();
          return { ready: false, detail: 'KMIP client closed' };
        }
      }
      const message = encodeRequest(this.version, Enum.Operation.DiscoverVersions, struct(Tag.RequestPayload), {
        maximumResponseSize: this.options.maxResponseBytes,
      });
      const response = decodeResponse(await this.probe.request(message, timeoutMs), { maxBytes: this.options.maxResponseBytes });
      payloadOf(Enum.Operation.DiscoverVersions, response);
      return { ready: true };
    } catch (e) {
      this.probe?.close();
      this.probe = undefined;
      this.logger.warn({ err: e instanceof Error ? e.message : String(e) }, 'KMIP health probe failed');
      // Health details are public (readiness endpoints): a fixed text, the cause is in the log.
      return { ready: false, detail: e instanceof KmipTransportError && e.timedOut ? TIMED_OUT : UNREACHABLE };
    }
  }

  /**
   * An answer that contradicts the request (another object's identifier, another IV): refused as INTERNAL
   * with a fixed message; what differed goes to the log.
   */
  unexpectedAnswer(operation: number, detail: string): HsmBridgeError {
    this.logger.error({ operation: enumName('Operation', operation), detail }, 'KMIP server answered something other than what was asked');
    return new HsmBridgeError('INTERNAL', 'unexpected answer from the KMIP server');
  }

  /** The largest response the client reads (and asks the server to keep to). */
  get maxResponseBytes(): number {
    return this.options.maxResponseBytes;
  }

  /** At least this protocol version was negotiated (fields newer than it are not sent). */
  speaks(major: number, minor: number): boolean {
    return this.version.major > major || (this.version.major === major && this.version.minor >= minor);
  }

  private translate(operation: number, e: unknown): Error {
    if (e instanceof KmipOperationError || e instanceof HsmBridgeError) return e;
    if (e instanceof KmipTransportError) return unavailable(e);
    this.logger.error({ operation: enumName('Operation', operation), err: e instanceof Error ? e.message : String(e) }, 'KMIP server answered something that is not a valid KMIP response');
    return new HsmBridgeError('INTERNAL', 'unexpected answer from the KMIP server', { cause: e });
  }
}

function connectionOptionsOf(o: Settings, tls: KmipConnectionOptions['tls']): KmipConnectionOptions {
  return {
    host: o.host,
    port: o.port,
    ...(o.serverName !== undefined ? { serverName: o.serverName } : {}),
    tls,
    connectTimeoutMs: o.connectTimeoutMs,
    maxResponseBytes: o.maxResponseBytes,
  };
}

function checkOptions(o: KmipClientOptions): void {
  const positive = (name: string, v: number) => {
    if (!Number.isSafeInteger(v) || v <= 0) throw new TypeError(`KmipClientOptions.${name} must be a positive integer`);
  };
  positive('port', o.port);
  positive('connectTimeoutMs', o.connectTimeoutMs);
  positive('requestTimeoutMs', o.requestTimeoutMs);
  positive('poolSize', o.poolSize);
  positive('maxResponseBytes', o.maxResponseBytes);
  if (o.versions !== undefined && o.versions.length === 0) throw new TypeError('KmipClientOptions.versions must not be empty');
}

const UNREACHABLE = 'KMIP server unreachable';
const TIMED_OUT = 'KMIP server timed out';

/** A transport failure during a call, for API callers: a fixed text (the cause, logged by attempt(), stays attached). */
const unavailable = (e: unknown) =>
  e instanceof HsmBridgeError ? e : new HsmBridgeError('BACKEND_UNAVAILABLE', e instanceof KmipTransportError && e.timedOut ? TIMED_OUT : UNREACHABLE, { cause: e });

/** A failure at open, for the operator starting the service: says what went wrong (certificate, name, refused). */
const startFailure = (e: unknown) =>
  e instanceof HsmBridgeError ? e : new HsmBridgeError('BACKEND_UNAVAILABLE', `${UNREACHABLE}${e instanceof Error ? `: ${e.message}` : ''}`, { cause: e });

/** The payload of a successful response to `operation`; a failure becomes a KmipOperationError. */
function payloadOf(operation: number, response: KmipResponse): Ttlv | undefined {
  if (response.operation !== undefined && response.operation !== operation) {
    throw new KmipProtocolError(`response is for ${enumName('Operation', response.operation)}, the request was ${enumName('Operation', operation)}`);
  }
  switch (response.status) {
    case 'success':
      return response.payload;
    case 'failed':
      throw new KmipOperationError(operation, response.reason, response.message);
    default:
      // We never ask for asynchronous processing, so a pending or undone result is not a valid answer.
      throw new KmipProtocolError(`unexpected result status "${response.status}"`);
  }
}

/**
 * DiscoverVersions with our versions, preferred first; the server answers with those it supports. The
 * request itself goes out as the lowest version we speak, the one an older server most likely accepts.
 */
async function negotiate(connection: KmipConnection, versions: readonly ProtocolVersion[], o: KmipClientOptions): Promise<ProtocolVersion> {
  const lowest = [...versions].sort((a, b) => a.major - b.major || a.minor - b.minor)[0]!;
  const message = encodeRequest(lowest, Enum.Operation.DiscoverVersions, struct(Tag.RequestPayload, ...versions.map(protocolVersion)), {
    maximumResponseSize: o.maxResponseBytes,
  });
  let payload: Ttlv | undefined;
  try {
    payload = payloadOf(Enum.Operation.DiscoverVersions, decodeResponse(await connection.request(message, o.requestTimeoutMs), { maxBytes: o.maxResponseBytes }));
  } catch (e) {
    if (e instanceof KmipOperationError && e.reason === Enum.ResultReason.OperationNotSupported) {
      const fallback = versions.find((v) => same(v, FALLBACK_VERSION)) ?? versions[versions.length - 1]!;
      return fallback;
    }
    if (e instanceof KmipOperationError) throw new HsmBridgeError('BACKEND_UNAVAILABLE', `${e.message} during version negotiation`, { cause: e });
    throw e;
  }
  const offered = payload ? children(payload, Tag.ProtocolVersion).map((v) => ({ major: intOf(v, Tag.ProtocolVersionMajor), minor: intOf(v, Tag.ProtocolVersionMinor) })) : [];
  const chosen = versions.find((v) => offered.some((s) => same(s, v)));
  if (!chosen) {
    throw new HsmBridgeError('BACKEND_UNAVAILABLE', `KMIP server supports none of the versions ${versions.map(show).join(', ')} (it offered ${offered.map(show).join(', ') || 'none'})`);
  }
  return chosen;
}
