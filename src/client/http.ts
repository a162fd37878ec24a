/**
 * One JSON request over HTTP or HTTPS with node:http(s), which (unlike fetch) takes a client certificate
 * for mTLS. A keep-alive agent per client reuses connections.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { HsmBridgeClientError } from './errors.js';

export interface TlsFiles {
  /** The CA that signed the service's certificate (PEM). */
  readonly ca?: string | Buffer;
  /** The client's certificate and key for mTLS (PEM). */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
}

export interface HttpAnswer {
  readonly status: number;
  readonly body: unknown;
  readonly requestId?: string;
}

/** Largest answer read (a batch of 256 items stays far below). */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

export class HttpChannel {
  private readonly agent: HttpAgent | HttpsAgent;
  private readonly https: boolean;

  constructor(readonly base: URL, tls: TlsFiles | undefined) {
    this.https = base.protocol === 'https:';
    if (!this.https && base.protocol !== 'http:') throw new TypeError(`url: http or https, not ${base.protocol}`);
    if (!this.https && tls && (tls.cert || tls.key || tls.ca)) throw new TypeError('tls needs an https url');
    this.agent = this.https ? new HttpsAgent({ keepAlive: true, ...tls }) : new HttpAgent({ keepAlive: true });
  }

  send(method: string, path: string, headers: Record<string, string>, body: string | undefined, timeoutMs: number): Promise<HttpAnswer> {
    const url = new URL(path, this.base);
    const send = this.https ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(url, { method, agent: this.agent, headers: { accept: 'application/json', ...headers, ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}) } });
      const timer = setTimeout(() => req.destroy(new HsmBridgeClientError('TIMEOUT', `no answer within ${timeoutMs} ms`)), timeoutMs);
      req.once('error', (e) => {
        clearTimeout(timer);
        reject(e instanceof HsmBridgeClientError ? e : new HsmBridgeClientError('NETWORK_ERROR', `${method} ${url.pathname}: ${(e as Error).message}`, undefined, undefined, { cause: e }));
      });
      req.once('response', (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_ANSWER_BYTES) req.destroy(new HsmBridgeClientError('NETWORK_ERROR', `the answer is larger than ${MAX_ANSWER_BYTES} bytes`));
          else chunks.push(chunk);
        });
        res.once('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text === '' ? undefined : JSON.parse(text);
          } catch {
            parsed = text;
          }
          const id = res.headers['x-request-id'];
          resolve({ status: res.statusCode ?? 0, body: parsed, ...(typeof id === 'string' ? { requestId: id } : {}) });
        });
        res.once('error', (e) => {
          clearTimeout(timer);
          reject(new HsmBridgeClientError('NETWORK_ERROR', (e as Error).message, undefined, undefined, { cause: e }));
        });
      });
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
