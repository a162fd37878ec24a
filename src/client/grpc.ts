/**
 * The gRPC channel: each operation's rpc on the hsmbridge.v1 services, the request laid onto its message
 * type and the answer read back into the REST shape (./grpcWire.ts), so that both channels answer alike.
 * The .proto files are the package's own (proto/), loaded once, on the first call.
 */
import { credentials, makeClientConstructor, Metadata, status, type Client, type ServiceDefinition, type ServiceError } from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { REQUEST_ID_HEADER } from '../ops/requestId.js';
import { ERROR_CODE_METADATA } from '../transports/grpc/errors.js';
import { loadProtos } from '../transports/grpc/protos.js';
import type { Attempt, Channel } from './channel.js';
import { HsmBridgeClientError, type ClientErrorCode } from './errors.js';
import { fromGrpcAnswer, toGrpcRequest, type MessageDescriptor } from './grpcWire.js';
import type { TlsFiles } from './http.js';
import type { Route } from './routes.js';

/** Largest answer read, as on REST. */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

type Unary = (request: unknown, metadata: Metadata, options: { deadline: Date }, callback: (error: ServiceError | null, answer: unknown) => void) => unknown;

interface Loaded {
  readonly definitions: PackageDefinition;
  readonly clients: Map<string, Client>;
}

/** Without the service's code (it never answered, or something in between did): transient where a retry may help. */
function codeOfStatus(code: number): ClientErrorCode {
  if (code === status.UNAVAILABLE) return 'UNAVAILABLE';
  if (code === status.DEADLINE_EXCEEDED) return 'TIMEOUT';
  if (code === status.CANCELLED) return 'NETWORK_ERROR';
  return 'INTERNAL';
}

export class GrpcChannel implements Channel {
  private loaded: Promise<Loaded> | undefined;
  private closed = false;

  constructor(
    private readonly address: string,
    private readonly tls: TlsFiles | undefined,
  ) {
    if (!/^[^\s/]+:\d+$/.test(address)) throw new TypeError(`grpc: host:port, not ${address}`);
  }

  private load(): Promise<Loaded> {
    this.loaded ??= loadProtos().then((definitions) => ({ definitions, clients: new Map() }));
    return this.loaded;
  }

  private client(loaded: Loaded, service: string): Client {
    let client = loaded.clients.get(service);
    if (!client) {
      const Constructor = makeClientConstructor(loaded.definitions[service] as ServiceDefinition, service);
      const creds = this.tls ? credentials.createSsl(asBuffer(this.tls.ca), asBuffer(this.tls.key), asBuffer(this.tls.cert)) : credentials.createInsecure();
      client = new Constructor(this.address, creds, { 'grpc.max_receive_message_length': MAX_ANSWER_BYTES });
      loaded.clients.set(service, client);
    }
    return client;
  }

  async send(route: Route, input: Record<string, unknown>, attempt: Attempt): Promise<unknown> {
    const loaded = await this.load();
    if (this.closed) throw new TypeError('the client is closed');
    const method = (loaded.definitions[route.grpc.service] as Record<string, { requestType: { type: MessageDescriptor } }>)[route.grpc.method]!;
    // Descriptors name field types relative to the package (SignRequest for hsmbridge.v1.SignRequest).
    const pkg = route.grpc.service.slice(0, route.grpc.service.lastIndexOf('.'));
    const lookup = (typeName: string) => {
      const found = (loaded.definitions[typeName] ?? loaded.definitions[`${pkg}.${typeName}`]) as unknown as { type?: MessageDescriptor } | undefined;
      return found?.type;
    };
    const request = toGrpcRequest(route.operation, input, method.requestType.type, lookup);
    const metadata = new Metadata();
    metadata.set(REQUEST_ID_HEADER, attempt.requestId);
    if (attempt.token) metadata.set('authorization', `Bearer ${attempt.token}`);
    const client = this.client(loaded, route.grpc.service);
    const call = (client as unknown as Record<string, Unary>)[route.grpc.method]!;
    const answer = await new Promise<unknown>((resolve, reject) => {
      call.call(client, request, metadata, { deadline: new Date(Date.now() + attempt.timeoutMs) }, (error, value) => {
        if (!error) return resolve(value);
        const code = error.metadata?.get(ERROR_CODE_METADATA)[0];
        const requestId = error.metadata?.get(REQUEST_ID_HEADER)[0];
        reject(new HsmBridgeClientError(typeof code === 'string' ? (code as ClientErrorCode) : codeOfStatus(error.code), error.details || error.message, undefined, typeof requestId === 'string' ? requestId : attempt.requestId, { cause: error, grpcStatus: error.code }));
      });
    });
    return fromGrpcAnswer(answer, route.response);
  }

  close(): void {
    this.closed = true;
    void this.loaded?.then((loaded) => {
      for (const client of loaded.clients.values()) client.close();
    });
  }
}

const asBuffer = (v: string | Buffer | undefined): Buffer | null => (v === undefined ? null : Buffer.from(v));
