/** One JSON request over HTTPS with a client's own CA, certificate and key, without a connection pool. */
import { request as httpsRequest } from 'node:https';

export interface HttpsAnswer {
  status: number;
  /** Parsed JSON, the text of another content type (a page), or undefined for an empty body. */
  body: any;
}

export interface HttpsClient {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** Default 127.0.0.1. */
  host?: string;
  headers?: Record<string, string>;
}

export function httpsJson(port: number, method: string, path: string, body: unknown, client: HttpsClient): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = httpsRequest(
      {
        host: client.host ?? '127.0.0.1',
        port,
        method,
        path,
        ca: client.ca,
        cert: client.cert,
        key: client.key,
        agent: false,
        headers: {
          ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
          ...client.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : /json/.test(res.headers['content-type'] ?? '') ? JSON.parse(text) : text });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
