/** The REST channel: the route's method and path, path parameters from the input, the rest as a JSON body. */
import type { Attempt, Channel } from './channel.js';
import { HsmBridgeClientError, type ClientErrorCode } from './errors.js';
import { HttpChannel, type TlsFiles } from './http.js';
import type { Route } from './routes.js';
import { fromWire, toWire } from './wire.js';

export class RestChannel implements Channel {
  private readonly http: HttpChannel;

  constructor(url: URL, tls: TlsFiles | undefined) {
    this.http = new HttpChannel(url, tls);
  }

  async send(route: Route, input: Record<string, unknown>, attempt: Attempt): Promise<unknown> {
    const { path, body } = request(route, input);
    const headers: Record<string, string> = { 'x-request-id': attempt.requestId, ...(attempt.token ? { authorization: `Bearer ${attempt.token}` } : {}) };
    const answer = await this.http.send(route.method, path, headers, body, attempt.timeoutMs);
    const requestId = answer.requestId ?? attempt.requestId;
    if (answer.status >= 200 && answer.status < 300) return fromWire(answer.body, route.response);
    const error = (answer.body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    if (error && typeof error.code === 'string' && typeof error.message === 'string') {
      throw new HsmBridgeClientError(error.code as ClientErrorCode, error.message, answer.status, requestId);
    }
    const code: ClientErrorCode = answer.status === 502 || answer.status === 503 || answer.status === 504 ? 'UNAVAILABLE' : 'INTERNAL';
    throw new HsmBridgeClientError(code, `${route.operation}: HTTP ${answer.status} without an hsm-bridge error`, answer.status, requestId);
  }

  close(): void {
    this.http.close();
  }
}

function request(route: Route, input: Record<string, unknown>): { path: string; body?: string } {
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
