/**
 * Bad input of every kind, through the real server, core and backend: each gets its exact status and
 * stable code in our error envelope, a message naming what was wrong, and never a 5xx.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Capabilities } from '../../../src/backend/port.js';
import type { KeyType } from '../../../src/keys/types.js';
import { b64, freshName, keyServiceTargets, startRest, testLimits, type Reply, type RestFixture } from './restFixture.js';

const MAX_REQUEST_BYTES = 16 * 1024;

interface Keys {
  /** A signing key: EC P-256, or RSA-2048 on a backend without EC keys (KMIP). */
  signer: string;
  signerType: 'EC_P256' | 'RSA_2048';
  /** An EC P-256 key; only on backends that have EC keys (cases that need one say so with `needs`). */
  ec: string;
  rsa: string;
  aes: string;
  hmac: string;
  /** A disabled key of the signer's type. */
  off: string;
}

interface Case {
  readonly what: string;
  readonly request: (rest: RestFixture, k: Keys) => Promise<Reply>;
  readonly status: number;
  readonly code: string;
  /** A word the message must contain, e.g. the field's name. */
  readonly mentions?: string;
  /** A key type the case is about: on a backend without it, creating one is refused instead. */
  readonly needs?: KeyType;
  /** A capability the request needs: on a backend without it, the request is refused 400 UNSUPPORTED_BY_BACKEND. */
  readonly unless?: (caps: Capabilities) => boolean;
}

const json = { 'content-type': 'application/json' };
const msg = b64('payment 42');

const cases: Case[] = [
  // base64
  { what: 'base64url alphabet', request: (r, k) => r.call('POST', `/v1/keys/${k.signer}/sign`, { message: 'a-b_' }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'message' },
  { what: 'base64 with a space', request: (r, k) => r.call('POST', `/v1/keys/${k.aes}/encrypt`, { plaintext: 'aGVs bG8=' }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'plaintext' },
  { what: 'base64 with non-zero spare bits', request: (r, k) => r.call('POST', `/v1/keys/${k.hmac}/mac`, { data: 'aGVsbG9=' }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'data' },
  { what: 'base64 of impossible length', request: (r, k) => r.call('POST', `/v1/keys/${k.signer}/verify`, { message: msg, signature: 'abcde' }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'signature' },
  { what: 'base64 field that is a number', request: (r, k) => r.call('POST', `/v1/keys/${k.aes}/decrypt`, { ciphertext: 12 }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'ciphertext' },
  // algorithms, key types, purposes
  { what: 'unknown sign algorithm', request: (r, k) => r.call('POST', `/v1/keys/${k.signer}/sign`, { algorithm: 'ES999', message: msg }), status: 400, code: 'UNSUPPORTED_ALGORITHM' },
  { what: 'unknown encrypt algorithm', request: (r, k) => r.call('POST', `/v1/keys/${k.aes}/encrypt`, { algorithm: 'AES_ECB', plaintext: msg }), status: 400, code: 'UNSUPPORTED_ALGORITHM' },
  { what: 'unknown MAC algorithm', request: (r, k) => r.call('POST', `/v1/keys/${k.hmac}/mac`, { algorithm: 'HMAC_MD5', data: msg }), status: 400, code: 'UNSUPPORTED_ALGORITHM' },
  { what: 'unknown key type', request: (r) => r.call('POST', '/v1/keys', { name: freshName('x'), type: 'DSA_1024' }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'key type' },
  { what: 'unknown purpose', request: (r) => r.call('POST', '/v1/keys', { name: freshName('x'), type: 'RSA_2048', purpose: 'decrypt' }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'purpose' },
  { what: 'purpose the key type cannot have', request: (r) => r.call('POST', '/v1/keys', { name: freshName('x'), type: 'AES_256', purpose: 'sign' }), status: 400, code: 'INCOMPATIBLE_KEY' },
  // key names
  { what: 'bad key name in the path', request: (r) => r.call('POST', '/v1/keys/..%2Fetc/sign', { message: msg }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'key name' },
  { what: 'key name starting with a dash', request: (r) => r.call('GET', '/v1/keys/-dash'), status: 400, code: 'INVALID_ARGUMENT', mentions: 'key name' },
  { what: 'key name of 65 characters', request: (r) => r.call('GET', `/v1/keys/${'a'.repeat(65)}`), status: 400, code: 'INVALID_ARGUMENT', mentions: 'key name' },
  { what: 'bad key name in the body', request: (r) => r.call('POST', '/v1/keys', { name: 'has space', type: 'AES_256' }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'key name' },
  { what: 'malformed %-escape in the URL', request: (r) => r.call('GET', '/v1/keys/%zz'), status: 400, code: 'INVALID_ARGUMENT', mentions: 'URL' },
  // fields
  { what: 'unknown field', request: (r, k) => r.call('POST', `/v1/keys/${k.signer}/sign`, { message: msg, hash: 'sha256' }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'hash' },
  { what: 'unknown field on create', request: (r) => r.call('POST', '/v1/keys', { name: freshName('x'), type: 'AES_256', colour: 'red' }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'colour' },
  { what: 'missing field', request: (r, k) => r.call('POST', `/v1/keys/${k.aes}/encrypt`, { aad: msg }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'plaintext' },
  { what: 'missing mac on verify', request: (r, k) => r.call('POST', `/v1/keys/${k.hmac}/mac/verify`, { data: msg }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'mac' },
  { what: 'no body where one is needed', request: (r, k) => r.call('POST', `/v1/keys/${k.signer}/sign`), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'keyVersion as a string', request: (r, k) => r.call('POST', `/v1/keys/${k.signer}/verify`, { keyVersion: '1', message: msg, signature: msg }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'keyVersion' },
  { what: 'keyVersion 0', request: (r, k) => r.call('POST', `/v1/keys/${k.signer}/verify`, { keyVersion: 0, message: msg, signature: msg }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'keyVersion' },
  { what: 'keyVersion that does not exist', request: (r, k) => r.call('POST', `/v1/keys/${k.hmac}/mac/verify`, { keyVersion: 7, data: msg, mac: msg }), status: 404, code: 'KEY_VERSION_NOT_FOUND' },
  // sign inputs
  { what: 'both message and digest', request: (r, k) => r.call('POST', `/v1/keys/${k.signer}/sign`, { message: msg, digest: b64(Buffer.alloc(32)) }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'digest' },
  { what: 'neither message nor digest', request: (r, k) => r.call('POST', `/v1/keys/${k.signer}/sign`, {}), status: 400, code: 'INVALID_ARGUMENT', mentions: 'digest' },
  { what: 'digest of the wrong length (UNSUPPORTED_BY_BACKEND without RS256 digest signing)', request: (r, k) => r.call('POST', `/v1/keys/${k.rsa}/sign`, { algorithm: 'RS256', digest: b64(Buffer.alloc(20)) }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'digest', unless: (c) => c.signDigest.includes('RS256') },
  // keys that cannot do the operation
  { what: 'sign with an AES key', request: (r, k) => r.call('POST', `/v1/keys/${k.aes}/sign`, { message: msg }), status: 400, code: 'INCOMPATIBLE_KEY' },
  { what: 'encrypt with an EC key', request: (r, k) => r.call('POST', `/v1/keys/${k.ec}/encrypt`, { plaintext: msg }), status: 400, code: 'INCOMPATIBLE_KEY', needs: 'EC_P256' },
  { what: 'encrypt with an RSA signing key', request: (r, k) => r.call('POST', `/v1/keys/${k.rsa}/encrypt`, { plaintext: msg }), status: 400, code: 'INCOMPATIBLE_KEY' },
  { what: 'MAC with an AES key', request: (r, k) => r.call('POST', `/v1/keys/${k.aes}/mac`, { data: msg }), status: 400, code: 'INCOMPATIBLE_KEY' },
  { what: 'an RSA algorithm on an EC key', request: (r, k) => r.call('POST', `/v1/keys/${k.ec}/sign`, { algorithm: 'RS256', message: msg }), status: 400, code: 'INCOMPATIBLE_KEY', needs: 'EC_P256' },
  { what: 'an EC algorithm on an RSA key', request: (r, k) => r.call('POST', `/v1/keys/${k.rsa}/sign`, { algorithm: 'ES256', message: msg }), status: 400, code: 'INCOMPATIBLE_KEY' },
  { what: 'ES384 on a P-256 key', request: (r, k) => r.call('POST', `/v1/keys/${k.ec}/sign`, { algorithm: 'ES384', message: msg }), status: 400, code: 'INCOMPATIBLE_KEY', needs: 'EC_P256' },
  // key state and existence
  { what: 'sign with a disabled key', request: (r, k) => r.call('POST', `/v1/keys/${k.off}/sign`, { message: msg }), status: 409, code: 'KEY_DISABLED' },
  { what: 'sign with an unknown key', request: (r) => r.call('POST', `/v1/keys/${freshName('nobody')}/sign`, { message: msg }), status: 404, code: 'KEY_NOT_FOUND' },
  { what: 'get an unknown key', request: (r) => r.call('GET', `/v1/keys/${freshName('nobody')}`), status: 404, code: 'KEY_NOT_FOUND' },
  { what: 'rotate an unknown key', request: (r) => r.call('POST', `/v1/keys/${freshName('nobody')}/rotate`), status: 404, code: 'KEY_NOT_FOUND' },
  { what: 'duplicate name', request: (r, k) => r.call('POST', '/v1/keys', { name: k.aes, type: 'AES_256' }), status: 409, code: 'KEY_ALREADY_EXISTS' },
  // ciphertexts
  { what: 'ciphertext that is not an envelope', request: (r, k) => r.call('POST', `/v1/keys/${k.aes}/decrypt`, { ciphertext: b64(Buffer.alloc(40, 7)) }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'ciphertext' },
  { what: 'algorithm without keyVersion on decrypt', request: (r, k) => r.call('POST', `/v1/keys/${k.aes}/decrypt`, { ciphertext: msg, algorithm: 'AES_GCM' }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'keyVersion' },
  {
    what: 'tampered ciphertext',
    request: async (r, k) => {
      const e = await r.call('POST', `/v1/keys/${k.aes}/encrypt`, { plaintext: msg });
      const c = Buffer.from(e.body.ciphertext, 'base64');
      c[c.length - 1] = (c[c.length - 1] as number) ^ 0x80;
      return r.call('POST', `/v1/keys/${k.aes}/decrypt`, { ciphertext: b64(c) });
    },
    status: 400,
    code: 'DECRYPTION_FAILED',
  },
  // sizes
  { what: 'body over the request limit', request: (r, k) => r.call('POST', `/v1/keys/${k.aes}/encrypt`, { plaintext: b64(Buffer.alloc(MAX_REQUEST_BYTES)) }), status: 413, code: 'PAYLOAD_TOO_LARGE' },
  { what: 'field over the data limit', request: (r, k) => r.call('POST', `/v1/keys/${k.aes}/encrypt`, { plaintext: b64(Buffer.alloc(testLimits.maxDataBytes + 1)) }), status: 413, code: 'PAYLOAD_TOO_LARGE', mentions: 'plaintext' },
  { what: 'random length 0', request: (r) => r.call('POST', '/v1/random', { length: 0 }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'length' },
  { what: 'random length over the limit', request: (r) => r.call('POST', '/v1/random', { length: testLimits.maxRandomBytes + 1 }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'length' },
  { what: 'random length not whole', request: (r) => r.call('POST', '/v1/random', { length: 1.5 }), status: 400, code: 'INVALID_ARGUMENT', mentions: 'length' },
  // the HTTP layer
  { what: 'text/plain body', request: (r) => r.send('POST', '/v1/random', '{"length":4}', { 'content-type': 'text/plain' }), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { what: 'form body', request: (r) => r.send('POST', '/v1/random', 'length=4', { 'content-type': 'application/x-www-form-urlencoded' }), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { what: 'malformed JSON', request: (r) => r.send('POST', '/v1/random', '{"length": 4', json), status: 400, code: 'INVALID_ARGUMENT', mentions: 'JSON' },
  { what: 'JSON that is not an object', request: (r) => r.send('POST', '/v1/random', '[4]', json), status: 400, code: 'INVALID_ARGUMENT', mentions: 'object' },
  { what: 'JSON null', request: (r) => r.send('POST', '/v1/random', 'null', json), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'prototype poisoning', request: (r) => r.send('POST', '/v1/random', '{"length":4,"__proto__":{"x":1}}', json), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'unknown route', request: (r) => r.call('GET', '/v1/keyz'), status: 404, code: 'NOT_FOUND' },
  { what: 'unknown operation on a key', request: (r, k) => r.call('POST', `/v1/keys/${k.signer}/wrap`, {}), status: 404, code: 'NOT_FOUND' },
  { what: 'method a route does not have', request: (r) => r.call('DELETE', '/v1/capabilities'), status: 404, code: 'NOT_FOUND' },
];

describe.each(keyServiceTargets)('REST bad input on the $label backend', (target) => {
  let rest: RestFixture;
  const keys = {} as Keys;
  const has = (type: KeyType) => rest.service.capabilities().keyTypes.includes(type);

  beforeAll(async () => {
    rest = await startRest(target, MAX_REQUEST_BYTES);
    const create = async (type: string) => {
      const name = freshName(type.toLowerCase().replace('_', '-'));
      const r = await rest.call('POST', '/v1/keys', { name, type });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      return name;
    };
    keys.rsa = await create('RSA_2048');
    if (has('EC_P256')) keys.ec = await create('EC_P256');
    keys.signerType = has('EC_P256') ? 'EC_P256' : 'RSA_2048';
    keys.signer = keys.signerType === 'EC_P256' ? keys.ec : keys.rsa;
    keys.aes = await create('AES_256');
    keys.hmac = await create('HMAC_256');
    keys.off = await create(keys.signerType);
    expect((await rest.call('POST', `/v1/keys/${keys.off}/disable`)).status).toBe(200);
  });
  afterAll(async () => {
    await rest?.close();
  });

  it.each(cases)('$what -> $status $code', async (c) => {
    if (c.needs !== undefined && !has(c.needs)) {
      const refused = await rest.call('POST', '/v1/keys', { name: freshName('absent'), type: c.needs });
      expect(refused).toMatchObject({ status: 400, body: { error: { code: 'UNSUPPORTED_BY_BACKEND' } } });
      return;
    }
    const { status, code, mentions } = c.unless === undefined || c.unless(rest.service.capabilities())
      ? c
      : { status: 400, code: 'UNSUPPORTED_BY_BACKEND', mentions: undefined };
    const r = await c.request(rest, keys);
    expect(r.status).toBeLessThan(500);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    expect(r.body).toEqual({ error: { code, message: expect.any(String) } });
    expect(r.status).toBe(status);
    expect(r.body.error.message.length).toBeGreaterThan(0);
    if (mentions) expect(r.body.error.message).toContain(mentions);
  });

  it('a refused request changes nothing: the duplicate keeps its type and versions', async () => {
    const before = await rest.call('GET', `/v1/keys/${keys.aes}`);
    await rest.call('POST', '/v1/keys', { name: keys.aes, type: 'HMAC_256' });
    expect(await rest.call('GET', `/v1/keys/${keys.aes}`)).toMatchObject({ status: 200, body: before.body });
  });
});
