/**
 * A server reflection client as grpcurl, Postman or Kreya are: grpc-js with the reflection protocol's own
 * .proto (from @grpc/reflection), nothing of hsm-bridge's contract.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { credentials as grpcCredentials, loadPackageDefinition, type ChannelCredentials, type Client, type ClientDuplexStream, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

const protoDir = join(dirname(createRequire(import.meta.url).resolve('@grpc/reflection/package.json')), 'build/proto');

export type ReflectionVersion = 'v1' | 'v1alpha';

export interface ReflectionAnswer {
  listServicesResponse?: { service: Array<{ name: string }> };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}

export interface ReflectionClient {
  /** One request on a ServerReflectionInfo stream, e.g. { listServices: '*' } or { fileContainingSymbol: 'pkg.Service' }. */
  ask(request: Record<string, string>): Promise<ReflectionAnswer>;
  close(): void;
}

export function reflectionClient(port: number, version: ReflectionVersion = 'v1', channel: ChannelCredentials = grpcCredentials.createInsecure()): ReflectionClient {
  const definition = loadSync(`grpc/reflection/${version}/reflection.proto`, { includeDirs: [protoDir], keepCase: false, defaults: true, oneofs: true });
  const pkg = loadPackageDefinition(definition) as any;
  const Reflection = pkg.grpc.reflection[version].ServerReflection as ServiceClientConstructor;
  const client = new Reflection(`127.0.0.1:${port}`, channel) as unknown as Client & { ServerReflectionInfo(): ClientDuplexStream<object, ReflectionAnswer> };
  return {
    ask: (request) =>
      new Promise((resolve, reject) => {
        const stream = client.ServerReflectionInfo();
        stream.once('data', (answer: ReflectionAnswer) => {
          resolve(answer);
          stream.end();
        });
        stream.once('error', reject);
        stream.write(request);
      }),
    close: () => client.close(),
  };
}
