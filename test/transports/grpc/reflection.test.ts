/**
 * gRPC server reflection, asked as grpcurl, Postman or Kreya ask it (reflectionClient.ts): it lists the
 * services the server serves, and hands out file descriptors from which a client builds working codecs
 * without the .proto files, as the call of GenerateRandom below shows.
 */
import { writeFileSync } from 'node:fs';
import { Client, credentials } from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { FileDescriptorProto, type IFileDescriptorProto } from 'protobufjs/ext/descriptor/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../../../src/app.js';
import { loadServiceConfig } from '../../../src/config/load.js';
import { createLogger } from '../../../src/log.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../../helpers/software.js';
import { tempDir } from '../../identity/accessSupport.js';
import { reflectionClient, type ReflectionClient } from './reflectionClient.js';

const services = ['grpc.health.v1.Health', 'hsmbridge.v1.FspiopService', 'hsmbridge.v1.JoseService', 'hsmbridge.v1.KeyService', 'hsmbridge.v1.PaymentService'];

describe('gRPC server reflection', () => {
  const dir = tempDir();
  let harness: SoftwareBackendHarness;
  let app: RunningApp;
  let v1: ReflectionClient;

  beforeAll(async () => {
    harness = await createSoftwareBackendConfig();
    writeFileSync(dir.at('config.json'), JSON.stringify({ rest: { enabled: false }, grpc: { port: 0 }, ops: { enabled: false }, backend: { type: 'software', software: harness.config } }));
    app = await startApp(loadServiceConfig({ file: dir.at('config.json'), env: {} }), createLogger('silent'));
    v1 = reflectionClient(app.grpcPort!);
  });
  afterAll(async () => {
    v1?.close();
    await app?.close();
    await harness?.cleanup();
    dir.remove();
  });

  it('lists the hsmbridge.v1 services and health, in both protocol versions (v1, and v1alpha for older clients)', async () => {
    expect((await v1.ask({ listServices: '*' })).listServicesResponse!.service.map((s) => s.name).sort()).toEqual(services);
    const alpha = reflectionClient(app.grpcPort!, 'v1alpha');
    try {
      expect((await alpha.ask({ listServices: '*' })).listServicesResponse!.service.map((s) => s.name).sort()).toEqual(services);
    } finally {
      alpha.close();
    }
  });

  it('hands out the file descriptors of KeyService with what they import; a client built from them calls GenerateRandom', async () => {
    const answer = await v1.ask({ fileContainingSymbol: 'hsmbridge.v1.KeyService' });
    const files = answer.fileDescriptorResponse!.fileDescriptorProto.map((bytes) => FileDescriptorProto.decode(bytes) as unknown as IFileDescriptorProto);
    const keyService = files.flatMap((file) => (file.service ?? []).map((service) => ({ file, service }))).find(({ service }) => service.name === 'KeyService');
    expect(keyService?.file.package).toBe('hsmbridge.v1');
    expect(keyService!.service.method).toContainEqual(expect.objectContaining({ name: 'Sign', inputType: '.hsmbridge.v1.SignRequest', outputType: '.hsmbridge.v1.SignResponse' }));

    // Every type the service uses resolves within what reflection returned.
    const root = (protobuf.Root as unknown as { fromDescriptor(set: { file: IFileDescriptorProto[] }): protobuf.Root }).fromDescriptor({ file: files }).resolveAll();
    const service = root.lookupService('hsmbridge.v1.KeyService');
    expect(Object.keys(service.methods)).toEqual(expect.arrayContaining(['Sign', 'Verify', 'Encrypt', 'Decrypt', 'GenerateRandom', 'SignBatch']));
    const method = service.methods.GenerateRandom!;
    const [request, response] = [root.lookupType(method.requestType), root.lookupType(method.responseType)];
    const client = new Client(`127.0.0.1:${app.grpcPort}`, credentials.createInsecure());
    try {
      const random = await new Promise<{ random: Uint8Array }>((resolve, reject) =>
        client.makeUnaryRequest(
          '/hsmbridge.v1.KeyService/GenerateRandom',
          (value: object) => Buffer.from(request.encode(request.fromObject(value)).finish()),
          (bytes: Buffer) => response.decode(bytes) as unknown as { random: Uint8Array },
          { length: 16 },
          (error, value) => (error ? reject(error) : resolve(value!)),
        ),
      );
      expect(random.random).toHaveLength(16);
    } finally {
      client.close();
    }
  });

  it('describes the health service too, and says NOT_FOUND for a symbol it does not serve', async () => {
    const health = await v1.ask({ fileContainingSymbol: 'grpc.health.v1.Health' });
    const names = health.fileDescriptorResponse!.fileDescriptorProto.map((bytes) => (FileDescriptorProto.decode(bytes) as unknown as IFileDescriptorProto).package);
    expect(names).toContain('grpc.health.v1');
    expect((await v1.ask({ fileContainingSymbol: 'hsmbridge.v1.NoSuchService' })).errorResponse).toMatchObject({ errorCode: 5 });
  });
});
