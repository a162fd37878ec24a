/**
 * One mutual-TLS connection to a KMIP server, carrying one request at a time (KMIP over TLS is a plain
 * request/response stream: a response is recognized only by arriving next).
 *
 * The server is not trusted to be well-behaved: a response is framed by its TTLV header and refused before
 * its body is buffered if it is larger than maxResponseBytes; bytes nobody asked for, a closed stream or
 * a request that outlives its timeout end the connection. The caller gets a KmipTransportError (the
 * server is unreachable or went away) or a KmipProtocolError (it answered something that is not KMIP)
 * and makes a new connection; nothing here throws past a promise or leaves a timer behind. The response
 * handed to the caller is the caller's to wipe once decoded; the partial buffers behind it are wiped here.
 */
import { isIP } from 'node:net';
import { connect, checkServerIdentity, createSecureContext, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { KmipProtocolError, messageLength } from './ttlv.js';

/**
 * TLS 1.2 suites with ECDHE key exchange (forward secrecy) and an AEAD cipher only; TLS 1.3 suites are
 * all of that kind. Node's default list would also accept RSA key exchange and CBC suites, which a KMIP
 * server may prefer (PyKMIP's default is AES128-SHA256).
 */
export const KMIP_CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_AES_128_GCM_SHA256',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** The credentials and TLS policy of every connection, built once (the PEM is parsed here, not per connection). */
export function kmipTlsContext(pem: { readonly ca: Buffer; readonly cert: Buffer; readonly key: Buffer }): SecureContext {
  return createSecureContext({ ca: pem.ca, cert: pem.cert, key: pem.key, minVersion: 'TLSv1.2', ciphers: KMIP_CIPHERS });
}

export interface KmipConnectionOptions {
  readonly host: string;
  readonly port: number;
  /** The name the server certificate must carry (DNS name or IP address); the host when absent. */
  readonly serverName?: string;
  /** From kmipTlsContext: CA, client certificate and key, protocol and cipher policy. */
  readonly tls: SecureContext;
  readonly connectTimeoutMs: number;
  readonly maxResponseBytes: number;
}

/**
 * The server cannot be reached, refused the TLS handshake, closed the connection or did not answer in
 * time. `timedOut` tells a silent server from an unreachable one; the message is for the log.
 */
export class KmipTransportError extends Error {
  override readonly name = 'KmipTransportError';
  readonly timedOut: boolean;

  constructor(message: string, options?: { cause?: unknown; timedOut?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.timedOut = options?.timedOut ?? false;
  }
}

const HEADER = 8;
const KEEPALIVE_MS = 30_000;

interface Pending {
  readonly resolve: (response: Buffer) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** Responses may carry key material (Get) or plaintext (Decrypt): no copy outlives its use. */
function wipe(chunks: Buffer[]): void {
  for (const c of chunks) c.fill(0);
}

export class KmipConnection {
  private readonly socket: TLSSocket;
  private readonly maxResponseBytes: number;
  private pending: Pending | undefined;
  private chunks: Buffer[] = [];
  private received = 0;
  /** Total length of the response being read, once its header is in. */
  private expected: number | undefined;
  private failure: Error | undefined;

  private constructor(socket: TLSSocket, maxResponseBytes: number) {
    this.socket = socket;
    this.maxResponseBytes = maxResponseBytes;
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (e: NodeJS.ErrnoException) => this.fail(new KmipTransportError(`connection failed: ${e.code ?? e.message}`, { cause: e })));
    socket.on('close', () => this.fail(new KmipTransportError('the server closed the connection')));
  }

  /** Opens a connection: TCP, then a TLS 1.2+ handshake presenting the client certificate and checking the server's. */
  static connect(options: KmipConnectionOptions): Promise<KmipConnection> {
    const expectedName = options.serverName ?? options.host;
    return new Promise((resolve, reject) => {
      const socket = connect({
        host: options.host,
        port: options.port,
        // SNI carries host names only (RFC 6066); the certificate check below covers IP addresses too.
        ...(isIP(expectedName) !== 0 ? {} : { servername: expectedName }),
        secureContext: options.tls,
        rejectUnauthorized: true,
        checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(expectedName, cert),
      });
      const timer = setTimeout(
        () => settle(new KmipTransportError(`no TLS handshake within ${options.connectTimeoutMs} ms`, { timedOut: true })),
        options.connectTimeoutMs,
      );
      const settle = (e?: Error) => {
        clearTimeout(timer);
        socket.removeListener('secureConnect', onConnect);
        socket.removeListener('error', onError);
        socket.removeListener('close', onClose);
        if (!e) {
          socket.setNoDelay(true);
          // Notices a server that vanished without closing (a partition) while the connection sits idle.
          socket.setKeepAlive(true, KEEPALIVE_MS);
          return resolve(new KmipConnection(socket, options.maxResponseBytes));
        }
        socket.on('error', () => undefined); // whatever a dying socket still reports is already decided
        socket.destroy();
        reject(e);
      };
      const onConnect = () => settle();
      // A socket error's code says enough (ECONNREFUSED); its message would repeat the address. TLS errors
      // (certificate, name) have no syscall and their message is what an operator needs.
      const onError = (e: NodeJS.ErrnoException) =>
        settle(new KmipTransportError(`cannot connect: ${e.syscall ? `${e.syscall} ${e.code ?? 'failed'}` : e.message}`, { cause: e }));
      // A server that refuses our certificate may just close the stream after its handshake messages.
      const onClose = () => settle(new KmipTransportError('the server closed the connection during the TLS handshake'));
      socket.once('secureConnect', onConnect);
      socket.once('error', onError);
      socket.once('close', onClose);
    });
  }

  /** False once the connection failed or was closed: it is then never usable again. */
  get alive(): boolean {
    return this.failure === undefined;
  }

  /** Sends one encoded request message and resolves with the encoded response message. */
  request(message: Buffer, timeoutMs: number): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.pending) return Promise.reject(new Error('KmipConnection.request: a request is already in flight')); // a caller bug
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(new KmipTransportError(`no answer within ${timeoutMs} ms`, { timedOut: true })),
        timeoutMs,
      );
      this.pending = { resolve, reject, timer };
      this.socket.write(message);
    });
  }

  /** Ends the connection; a request in flight fails. */
  close(): void {
    this.fail(new KmipTransportError('connection closed'));
  }

  private onData(data: Buffer): void {
    if (this.failure) return;
    if (!this.pending) {
      this.fail(new KmipProtocolError('the server sent data while no request was in flight'));
      return;
    }
    this.chunks.push(data);
    this.received += data.length;
    try {
      if (this.expected === undefined && this.received >= HEADER) {
        this.expected = messageLength(this.joined(), this.maxResponseBytes);
      }
    } catch (e) {
      this.fail(e as Error);
      return;
    }
    if (this.expected === undefined || this.received < this.expected) return;
    if (this.received > this.expected) {
      this.fail(new KmipProtocolError('the server sent more than one response to one request'));
      return;
    }
    const response = this.joined();
    const { resolve, timer } = this.pending;
    clearTimeout(timer);
    this.pending = undefined;
    this.chunks = [];
    this.received = 0;
    this.expected = undefined;
    resolve(response);
  }

  private joined(): Buffer {
    if (this.chunks.length > 1) {
      const whole = Buffer.concat(this.chunks);
      wipe(this.chunks);
      this.chunks = [whole];
    }
    return this.chunks[0]!;
  }

  /** The first failure is the one reported; the socket is destroyed and the request in flight rejected. */
  private fail(e: Error): void {
    if (!this.failure) this.failure = e;
    this.socket.destroy();
    wipe(this.chunks);
    this.chunks = [];
    const pending = this.pending;
    if (!pending) return;
    this.pending = undefined;
    clearTimeout(pending.timer);
    pending.reject(this.failure);
  }
}
