/**
 * The proto loading around grpc-js: finding proto/ from the source and the build layout, and the two
 * codec changes (undecodable requests become a marker; secret response fields are wiped once encoded).
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { operations } from '../../../src/api/index.js';
import { secretResponseFields } from '../../../src/transports/grpc/server.js';
import { findProtoRoot, isMalformed, loadProtos, serviceDefinitions, type ServiceSecrets } from '../../../src/transports/grpc/protos.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

describe('findProtoRoot', () => {
  it('finds proto/ from the source folder and from the compiled dist/ folder', () => {
    expect(findProtoRoot(join(repoRoot, 'src/transports/grpc'))).toBe(join(repoRoot, 'proto'));
    expect(findProtoRoot(join(repoRoot, 'dist/src/transports/grpc'))).toBe(join(repoRoot, 'proto'));
  });

  it('names the start folder when there is no proto/ above it', () => {
    expect(() => findProtoRoot('/')).toThrow(/cannot find proto\/hsmbridge\/v1\/key_service\.proto in \//);
  });
});

const loadServices = async (secrets: ServiceSecrets) => serviceDefinitions(await loadProtos(), secrets);

describe('service definition codecs', () => {
  it('turns bytes that do not decode into a malformed marker, and decodes good ones as before', async () => {
    const { KeyService: keyService } = await loadServices({});
    const getKey = keyService.GetKey!;
    expect(isMalformed(getKey.requestDeserialize(Buffer.from([0x12, 0x05, 0x61])))).toBe(true);
    const good = getKey.requestDeserialize(getKey.requestSerialize({ name: 'k1' }));
    expect(isMalformed(good)).toBe(false);
    expect(good).toEqual({ name: 'k1' });
  });

  it('wipes the declared secret fields once the response is encoded, and only those', async () => {
    const { KeyService: keyService } = await loadServices({ KeyService: { Decrypt: ['plaintext'] } });
    const decrypt = keyService.Decrypt!;
    const plaintext = Buffer.from('PAN 4111111111111111');
    const response = { keyName: 'k', keyVersion: 1, algorithm: 'AES_GCM', plaintext };
    const encoded = decrypt.responseSerialize(response);
    expect(plaintext.equals(Buffer.alloc(plaintext.length))).toBe(true);
    expect(decrypt.responseDeserialize(encoded)).toMatchObject({ keyName: 'k', plaintext: Buffer.from('PAN 4111111111111111') });

    const signature = Buffer.from('signature bytes');
    keyService.Sign!.responseSerialize({ keyName: 'k', keyVersion: 1, algorithm: 'ES256', signature });
    expect(signature.toString()).toBe('signature bytes');
  });

  it('wipes a decrypted JWE plaintext once encoded, and leaves fields of other services alone (the FspiopService Sign body)', async () => {
    const { JoseService: jose, FspiopService: fspiop } = await loadServices(secretResponseFields(operations));
    const plaintext = Buffer.from('{"pan":"4111111111111111"}');
    const encoded = jose.DecryptJwe!.responseSerialize({ plaintext, protectedHeader: '{}', kid: 'k:1', keyName: 'k', keyVersion: 1, alg: 'dir', enc: 'A256GCM' });
    expect(plaintext.equals(Buffer.alloc(plaintext.length))).toBe(true);
    expect(jose.DecryptJwe!.responseDeserialize(encoded)).toMatchObject({ plaintext: Buffer.from('{"pan":"4111111111111111"}') });
    const body = Buffer.from('{"a":1}');
    fspiop.Sign!.responseSerialize({ headers: {}, body });
    expect(body.toString()).toBe('{"a":1}');
  });
});
