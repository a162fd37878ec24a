/**
 * The defects an outside fuzz run found, fixed once in the request pipeline, checked on both transports
 * with the failing inputs as they were reported: JSON nested thousands of levels deep (a stack overflow,
 * 500), caller input copied whole into an error message (a gRPC status over 64 KB never reaches the
 * client, which then hangs), and a rejected key name written to the gRPC log as given. The pipeline
 * comes before any backend, so the software backend is enough here (one SoftHSM token per process would
 * not serve the two fixtures at once).
 */
import { constants, createCipheriv, createPublicKey, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_ERROR_MESSAGE_CHARS } from '../../src/errors.js';
import { expectGrpcError } from '../transports/grpc/grpcClient.js';
import { startGrpc, type GrpcFixture } from '../transports/grpc/issue3Fixture.js';
import { freshName, restTargets, startRest, type RestFixture } from '../transports/rest/restFixture.js';

/** `{"a":{"a":...{}}}` nested `depth` levels, as text (the reporter's reproduction used 5000). */
const nestedText = (depth: number) => `${'{"a":'.repeat(depth)}{}${'}'.repeat(depth)}`;
const nested = (depth: number): object => JSON.parse(nestedText(depth));
const PAN = '4111111111111111';
const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

/** A well-formed compact JWE (RSA-OAEP-256, A256GCM) to an RSA public key, with the given protected header text. */
function compactJwe(publicKey: KeyObject, protectedText: string): string {
  const cek = randomBytes(32);
  const iv = randomBytes(12);
  const protectedB64 = b64url(protectedText);
  const cipher = createCipheriv('aes-256-gcm', cek, iv).setAAD(Buffer.from(protectedB64, 'ascii'));
  const ciphertext = Buffer.concat([cipher.update('deep'), cipher.final()]);
  const encryptedKey = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, cek);
  return [protectedB64, b64url(encryptedKey), b64url(iv), b64url(ciphertext), b64url(cipher.getAuthTag())].join('.');
}

for (const target of restTargets.filter((t) => t.label === 'software')) {
  describe(`request pipeline regressions (${target.label})`, () => {
    let rest: RestFixture;
    let grpc: GrpcFixture;
    let signer: string;
    let aes: string;

    beforeAll(async () => {
      rest = await startRest(target, 512 * 1024);
      grpc = await startGrpc(target);
      signer = freshName('deep-ec');
      aes = freshName('deep-aes');
      for (const [service, names] of [[rest.service, [signer, aes]], [grpc.service, [signer, aes]]] as const) {
        await service.createKey({ name: names[0], type: 'EC_P256' });
        await service.createKey({ name: names[1], type: 'AES_256' });
      }
    });
    afterAll(async () => {
      await rest?.close();
      await grpc?.close();
    });

    it('REST: a header nested 5000 levels deep is a 400, not a 500, on /v1/jws/sign and /v1/jwe/encrypt', async () => {
      // The reporter's exact body, sent as text so that nothing in the test serialises it first.
      const body = `{"key":"${signer}","payload":"bQ==","protectedHeader":{"x":${nestedText(5000)}}}`;
      const reply = await rest.send('POST', '/v1/jws/sign', body, { 'content-type': 'application/json' });
      expect(reply.status).toBe(400);
      expect(reply.body.error).toEqual({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^protectedHeader is nested too deeply/) });

      const unprotected = await rest.call('POST', '/v1/jws/sign', { key: signer, payload: 'bQ==', serialization: 'flattened', unprotectedHeader: { x: nested(200) } });
      expect(unprotected.status).toBe(400);
      expect(unprotected.body.error.message).toMatch(/^unprotectedHeader is nested too deeply/);

      const jwe = await rest.send('POST', '/v1/jwe/encrypt', `{"recipient":{"key":"${aes}"},"alg":"dir","enc":"A256GCM","plaintext":"bQ==","protectedHeader":{"x":${nestedText(5000)}}}`, {
        'content-type': 'application/json',
      });
      expect(jwe.status).toBe(400);
      expect(jwe.body.error.message).toMatch(/^protectedHeader is nested too deeply/);
      const jwk = await rest.call('POST', '/v1/jwe/encrypt', { recipient: { jwk: { kty: 'EC', x: nested(100) } }, alg: 'ECDH-ES', enc: 'A256GCM', plaintext: 'bQ==' });
      expect(jwk.status).toBe(400);
      expect(jwk.body.error.message).toMatch(/^recipient\.jwk is nested too deeply/);
    });

    it('REST: a header at the depth cap still signs (the cap refuses only what is deeper)', async () => {
      const ok = await rest.call('POST', '/v1/jws/sign', { key: signer, payload: 'bQ==', protectedHeader: { x: nested(62) } });
      expect(ok.status).toBe(200);
      const deeper = await rest.call('POST', '/v1/jws/sign', { key: signer, payload: 'bQ==', protectedHeader: { x: nested(63) } });
      expect(deeper.status).toBe(400);
    });

    it('gRPC: SignJws and EncryptJwe with a header nested 5000 levels deep are INVALID_ARGUMENT', async () => {
      await expectGrpcError(grpc.client.callJose('SignJws', { key: signer, payload: Buffer.from('m'), protectedHeader: `{"x":${nestedText(5000)}}` }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
      await expectGrpcError(
        grpc.client.callJose('EncryptJwe', { key: aes, alg: 'dir', enc: 'A256GCM', plaintext: Buffer.from('m'), protectedHeader: `{"x":${nestedText(5000)}}` }),
        status.INVALID_ARGUMENT,
        'INVALID_ARGUMENT',
      );
      // The server is still there.
      expect(await grpc.client.callJose('SignJws', { key: signer, payload: Buffer.from('m') })).toMatchObject({ keyName: signer });
    });

    it('gRPC: a 50,000-character key id gets a short NOT_FOUND at once, and the connection keeps working', async () => {
      const started = Date.now();
      const error = await expectGrpcError(grpc.client.callFspiop('DeleteParticipantKey', { id: 'x', keyId: '"'.repeat(50_000) }), status.NOT_FOUND, 'KEY_NOT_FOUND');
      // The message quotes a 64-character prefix (quote()), well under the pipeline's backstop cut.
      expect(error.details.length).toBeLessThanOrEqual(MAX_ERROR_MESSAGE_CHARS);
      expect(error.details.match(/"/g)!.length).toBeLessThanOrEqual(64 + 2);
      expect(error.details).toContain('has no key');
      expect(Date.now() - started).toBeLessThan(5000);
      expect(await grpc.client.callFspiop('ListParticipants', {})).toHaveProperty('participants');
    });

    it('both transports: error messages quote at most a short prefix of any input', async () => {
      const long = `${'A'.repeat(40_000)}\n`;
      const restReply = await rest.call('POST', '/v1/jws/sign', { key: signer, payload: 'bQ==', protectedHeader: { alg: long } });
      expect(restReply.status).toBe(400);
      expect(restReply.body.error.message.length).toBeLessThan(200);
      const grpcError = await expectGrpcError(grpc.client.callJose('SignJws', { key: signer, payload: Buffer.from('m'), protectedHeader: JSON.stringify({ alg: long }) }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
      expect(grpcError.details.length).toBeLessThan(200);
      expect(grpcError.details).not.toContain('\n');
    });

    it('gRPC logs only key names that are well formed', async () => {
      const rejected = `pin=1234 pan=${PAN}`;
      await expectGrpcError(grpc.client.call('Sign', { name: rejected, message: Buffer.from('m') }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
      const line = grpc.logs().filter((l) => l.method === 'hsmbridge.v1.KeyService/Sign').at(-1);
      expect(line).toMatchObject({ status: 'INVALID_ARGUMENT', code: 'INVALID_ARGUMENT' });
      expect(line).not.toHaveProperty('keyName');
      expect(grpc.logText()).not.toContain(PAN);
    });

    it('both transports: a JWE whose protected header is nested 5000 levels deep is refused, not a 500', async () => {
      for (const [service, label] of [[rest.service, 'rest'], [grpc.service, 'grpc']] as const) {
        const name = freshName(`deep-rsa-${label}`);
        const key = await service.createKey({ name, type: 'RSA_2048', purpose: 'encrypt' });
        const spki = key.versions[0]!.publicKeySpki!;
        const jwe = compactJwe(createPublicKey({ key: spki, format: 'der', type: 'spki' }), `{"alg":"RSA-OAEP-256","enc":"A256GCM","x":${nestedText(5000)}}`);
        if (label === 'rest') {
          const reply = await rest.call('POST', '/v1/jwe/decrypt', { jwe, key: name });
          expect(reply.status).toBe(400);
          expect(reply.body.error).toEqual({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/nested too deeply/) });
        } else {
          const error = await expectGrpcError(grpc.client.callJose('DecryptJwe', { jwe, key: name }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
          expect(error.details).toMatch(/nested too deeply/);
        }
      }
    });
  });
}
