/**
 * hsmbridge.v1.JoseService end to end over a real gRPC connection, on the software backend and on
 * SoftHSM: JWS made here verify with the `jose` package, JWE made by `jose` decrypt here, the JWKS lets
 * `jose` verify across a rotation, and bad input is INVALID_ARGUMENT (or its own status) with its code.
 */
import { generateKeyPairSync } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import * as jose from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restTargets } from '../rest/restFixture.js';
import { expectGrpcError } from './grpcClient.js';
import { startGrpc, type GrpcFixture } from './issue3Fixture.js';

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

for (const target of restTargets) {
  describe(`JoseService over gRPC (${target.label})`, () => {
    let f: GrpcFixture;
    let seq = 0;
    const create = async (type: string, purpose = '') => {
      const name = `grpc-jose-${type.toLowerCase()}-${process.pid}-${seq++}`;
      await f.client.call('CreateKey', { name, type, purpose });
      return name;
    };
    const publicKeyOf = async (name: string, alg: string, version = 1) => {
      const key = await f.client.call('GetKey', { name });
      return jose.importJWK(JSON.parse(key.versions.find((v: { version: number }) => v.version === version).publicKeyJwk), alg);
    };

    beforeAll(async () => {
      f = await startGrpc(target);
    });
    afterAll(async () => {
      await f?.close();
    });

    it('health answers SERVING for JoseService and FspiopService', async () => {
      expect(await f.health('hsmbridge.v1.JoseService')).toEqual({ status: 'SERVING' });
      expect(await f.health('hsmbridge.v1.FspiopService')).toEqual({ status: 'SERVING' });
    });

    it('SignJws: compact and JSON serializations verify with jose; VerifyJws accepts them', async () => {
      const name = await create('EC_P256');
      const pub = await publicKeyOf(name, 'ES256');
      const payload = Buffer.from('{"amount":"1.00"}');
      const compact = await f.client.callJose('SignJws', { key: name, payload, protectedHeader: '{"typ":"JOSE"}' });
      expect(compact).toEqual({ jws: expect.any(String), kid: `${name}:1`, keyName: name, keyVersion: 1, algorithm: 'ES256' });
      const v = await jose.compactVerify(compact.jws, pub);
      expect(v.protectedHeader).toEqual({ alg: 'ES256', kid: `${name}:1`, typ: 'JOSE' });
      expect(Buffer.from(v.payload)).toEqual(payload);

      const flat = await f.client.callJose('SignJws', { key: name, payload, serialization: 'flattened', unprotectedHeader: '{"note":"x"}', detached: true, b64: false });
      const flatJws = JSON.parse(flat.jws);
      expect(flatJws.payload).toBeUndefined();
      await jose.flattenedVerify({ ...flatJws, payload: payload.toString() }, pub);

      const ok = await f.client.callJose('VerifyJws', { jws: compact.jws });
      expect(ok).toMatchObject({ valid: true, kid: `${name}:1`, keyName: name, keyVersion: 1, algorithm: 'ES256', payload });
      expect(JSON.parse(ok.protectedHeader)).toEqual({ alg: 'ES256', kid: `${name}:1`, typ: 'JOSE' });
      const detached = await f.client.callJose('VerifyJws', { jws: flat.jws, payload, key: name, algorithms: ['ES256'] });
      expect(detached).toMatchObject({ valid: true, unprotectedHeader: '{"note":"x"}' });

      const [h, , s] = compact.jws.split('.');
      const bad = await f.client.callJose('VerifyJws', { jws: `${h}.${b64url('{"amount":"9.00"}')}.${s}` });
      expect(bad).toMatchObject({ valid: false, reason: expect.any(String) });
    });

    it('GetJwks: jose verifies JWS of both versions across a rotation with the served set', async () => {
      const name = await create('RSA_2048');
      const v1 = (await f.client.callJose('SignJws', { key: name, payload: Buffer.from('one') })).jws;
      await f.client.call('RotateKey', { name });
      const v2 = await f.client.callJose('SignJws', { key: name, payload: Buffer.from('two'), algorithm: 'PS256' });
      expect(v2.kid).toBe(`${name}:2`);
      const set = jose.createLocalJWKSet(JSON.parse((await f.client.callJose('GetJwks')).jwks));
      expect(Buffer.from((await jose.compactVerify(v1, set)).payload).toString()).toBe('one');
      expect(Buffer.from((await jose.compactVerify(v2.jws, set)).payload).toString()).toBe('two');
    });

    it('DecryptJwe: jose encrypts to our RSA key, we decrypt; EncryptJwe to a key and to an external JWK', async () => {
      const name = await create('RSA_2048', 'encrypt');
      const plaintext = Buffer.from('{"pan":"4111111111111111"}');
      const jwe = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg: 'RSA-OAEP-256', enc: 'A256GCM', kid: `${name}:1` })
        .encrypt(await publicKeyOf(name, 'RSA-OAEP-256'));
      const d = await f.client.callJose('DecryptJwe', { jwe });
      expect(d).toEqual({
        plaintext,
        protectedHeader: JSON.stringify({ alg: 'RSA-OAEP-256', enc: 'A256GCM', kid: `${name}:1` }),
        kid: `${name}:1`,
        keyName: name,
        keyVersion: 1,
        alg: 'RSA-OAEP-256',
        enc: 'A256GCM',
      });

      const e = await f.client.callJose('EncryptJwe', { key: name, alg: 'RSA-OAEP-256', enc: 'A128GCM', plaintext, serialization: 'json', aad: Buffer.from('ctx') });
      expect(e).toMatchObject({ kid: `${name}:1`, keyName: name, keyVersion: 1 });
      expect(JSON.parse(e.jwe)).toMatchObject({ protected: expect.any(String), aad: b64url('ctx') });
      expect((await f.client.callJose('DecryptJwe', { jwe: e.jwe, key: name })).plaintext).toEqual(plaintext);

      const external = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const toThem = await f.client.callJose('EncryptJwe', { jwk: JSON.stringify(external.publicKey.export({ format: 'jwk' })), alg: 'ECDH-ES', enc: 'A256GCM', plaintext });
      expect(toThem.keyName).toBe('');
      expect(Buffer.from((await jose.compactDecrypt(toThem.jwe, external.privateKey)).plaintext)).toEqual(plaintext);

      const parts = (jwe as string).split('.');
      const tag = Buffer.from(parts[4]!, 'base64url');
      tag[0]! ^= 1;
      await expectGrpcError(f.client.callJose('DecryptJwe', { jwe: [...parts.slice(0, 4), b64url(tag)].join('.') }), status.INVALID_ARGUMENT, 'DECRYPTION_FAILED');
    });

    it('bad input is INVALID_ARGUMENT (or its own status) with the stable code, never INTERNAL', async () => {
      const name = await create('EC_P256');
      const enc = await create('RSA_2048', 'encrypt');
      const cases: Array<[string, Record<string, unknown>, number, string]> = [
        ['SignJws', { key: name, payload: Buffer.from('x'), protectedHeader: '[1]' }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        ['SignJws', { key: name, payload: Buffer.from('x'), protectedHeader: '{not json' }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        ['SignJws', { key: name, payload: Buffer.from('x'), serialization: 'xml' }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        ['SignJws', { key: name, payload: Buffer.from('x'), algorithm: 'HS256' }, status.INVALID_ARGUMENT, 'UNSUPPORTED_ALGORITHM'],
        ['SignJws', { key: '', payload: Buffer.from('x') }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        ['SignJws', { key: 'no-such-key', payload: Buffer.from('x') }, status.NOT_FOUND, 'KEY_NOT_FOUND'],
        ['SignJws', { key: name, payload: Buffer.alloc(20 * 1024) }, status.RESOURCE_EXHAUSTED, 'PAYLOAD_TOO_LARGE'],
        ['VerifyJws', { jws: '' }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        ['VerifyJws', { jws: 'a.b' }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        ['VerifyJws', { jws: '{"payload":' }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        ['EncryptJwe', { alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext: Buffer.from('x') }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        ['EncryptJwe', { jwk: '{"kty":"oct","k":"AAAA"}', alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext: Buffer.from('x') }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        ['EncryptJwe', { jwk: '{}', keyVersion: 1, alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext: Buffer.from('x') }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        ['EncryptJwe', { key: enc, alg: 'RSA1_5', enc: 'A256GCM', plaintext: Buffer.from('x') }, status.INVALID_ARGUMENT, 'UNSUPPORTED_ALGORITHM'],
        ['EncryptJwe', { key: name, alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext: Buffer.from('x') }, status.INVALID_ARGUMENT, 'INCOMPATIBLE_KEY'],
        ['DecryptJwe', { jwe: 'x.y.z' }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
      ];
      for (const [method, request, grpcStatus, code] of cases) {
        await expectGrpcError(f.client.callJose(method, request), grpcStatus, code);
      }
    });

    it('logs one line per call with the key name, never a payload or plaintext', async () => {
      const name = await create('EC_P256');
      const secret = Buffer.from('SECRET-JOSE-PAYLOAD-4111');
      await f.client.callJose('SignJws', { key: name, payload: secret });
      const line = f.logs().filter((l) => l.method === 'hsmbridge.v1.JoseService/SignJws').at(-1);
      expect(line).toMatchObject({ status: 'OK', keyName: name });
      expect(f.logText()).not.toContain(secret.toString());
      expect(f.logText()).not.toContain(b64url(secret));
    });
  });
}
