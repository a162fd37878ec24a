/**
 * The REST API end to end: HTTP request -> fastify -> KeyService -> a real backend, on the software
 * adapter, PKCS#11 over SoftHSM and KMIP over PyKMIP. Signatures are checked with node:crypto using the public key the API
 * returns, not only with our own verify. What a backend cannot do must be refused with
 * UNSUPPORTED_BY_BACKEND, as its capabilities say: nothing is skipped silently.
 */
import { constants, createHash, createPublicKey, publicEncrypt, type KeyObject } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allEncryptAlgorithms, allSignAlgorithms, signAlgorithms, type SignAlgorithm } from '../../../src/algorithms/registry.js';
import { allKeyTypes, isAsymmetric, type KeyType } from '../../../src/keys/types.js';
import { b64, freshName, keyServiceTargets, startRest, unb64, type RestFixture } from './restFixture.js';
import { nodeVerifies } from '../../../src/conformance/reference/nodeVerify.js';

const signKeyType: Record<SignAlgorithm, KeyType> = {
  RS256: 'RSA_2048', RS384: 'RSA_2048', RS512: 'RSA_2048',
  PS256: 'RSA_2048', PS384: 'RSA_2048', PS512: 'RSA_2048',
  ES256: 'EC_P256', ES384: 'EC_P384', EdDSA: 'ED25519',
};


describe.each(keyServiceTargets)('REST API on the $label backend', (target) => {
  let rest: RestFixture;
  const caps = () => rest.service.capabilities();
  /** An RSA encryption key is made only where some RSA-OAEP is offered (a key nothing could use is refused). */
  const rsaOaepOffered = () => caps().encrypt.some((a) => a.startsWith('RSA_OAEP'));
  const keys = new Map<KeyType, string>();
  /**
   * The everyday signing key of the tests that are about something else (listing, rotation, a real
   * socket): EC P-256, or RSA-2048 on a backend without EC keys (KMIP), whose EC refusal the key
   * lifecycle tests assert.
   */
  const signer = () =>
    caps().keyTypes.includes('EC_P256') ? ({ type: 'EC_P256', algorithm: 'ES256' } as const) : ({ type: 'RSA_2048', algorithm: 'RS256' } as const);

  /** A key of this type created through the API once per suite (and reused by the operation tests). */
  const keyOf = async (type: KeyType): Promise<string> => {
    const existing = keys.get(type);
    if (existing) return existing;
    const name = freshName(type.toLowerCase().replace('_', '-'));
    const r = await rest.call('POST', '/v1/keys', { name, type });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    keys.set(type, name);
    return name;
  };
  const create = async (type: KeyType): Promise<string> => {
    const name = freshName(type.toLowerCase().replace('_', '-'));
    expect((await rest.call('POST', '/v1/keys', { name, type })).status).toBe(201);
    return name;
  };
  const publicKey = async (name: string, version = 1): Promise<KeyObject> => {
    const r = await rest.call('GET', `/v1/keys/${name}`);
    const pem = r.body.versions.find((v: { version: number }) => v.version === version)?.publicKeyPem;
    expect(pem, `PEM of ${name} v${version}`).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    return createPublicKey(pem);
  };

  beforeAll(async () => {
    rest = await startRest(target);
  });
  afterAll(async () => {
    await rest?.close();
  });

  describe('key lifecycle', () => {
    it.each(allKeyTypes)('creates a %s key, or refuses it as the capabilities say', async (type) => {
      const name = freshName(type.toLowerCase().replace('_', '-'));
      const r = await rest.call('POST', '/v1/keys', { name, type });
      if (!caps().keyTypes.includes(type)) {
        expect(r.status).toBe(400);
        expect(r.body.error.code).toBe('UNSUPPORTED_BY_BACKEND');
        return;
      }
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      expect(r.body).toMatchObject({ name, type, state: 'enabled', primaryVersion: 1 });
      expect(Number.isNaN(Date.parse(r.body.createdAt))).toBe(false);
      expect(r.body.versions).toHaveLength(1);
      const v1 = r.body.versions[0];
      if (isAsymmetric(type)) {
        // The JWK and the PEM are the same key, and the JWK names the key version.
        const fromPem = createPublicKey(v1.publicKeyPem).export({ format: 'jwk' });
        expect(v1.publicKeyJwk).toMatchObject({ ...fromPem, kid: `${name}:1` });
      } else {
        expect(v1.publicKeyPem).toBeUndefined();
        expect(v1.publicKeyJwk).toBeUndefined();
      }
      keys.set(type, keys.get(type) ?? name);
    });

    it('creates a key with an explicit purpose (RSA for encryption), or refuses one the backend could never use', async () => {
      const name = freshName('rsa-enc');
      const r = await rest.call('POST', '/v1/keys', { name, type: 'RSA_2048', purpose: 'encrypt' });
      if (!rsaOaepOffered()) {
        expect([r.status, r.body.error.code]).toEqual([400, 'UNSUPPORTED_BY_BACKEND']);
        return;
      }
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      expect(r.body.purpose).toBe('encrypt');
      expect(r.body.versions[0].publicKeyJwk.use).toBe('enc');
    });

    it('gets a key with its public key as PEM and JWK, usable by node:crypto', async () => {
      const { type, algorithm } = signer();
      const name = await keyOf(type);
      const r = await rest.call('GET', `/v1/keys/${name}`);
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ name, type, purpose: 'sign', state: 'enabled' });
      const { publicKeyPem, publicKeyJwk } = r.body.versions[0];
      expect(publicKeyJwk).toMatchObject({ ...(type === 'EC_P256' ? { kty: 'EC', crv: 'P-256' } : { kty: 'RSA', e: 'AQAB' }), kid: `${name}:1`, use: 'sig' });
      const message = Buffer.from('checked by node:crypto with the returned PEM');
      const s = await rest.call('POST', `/v1/keys/${name}/sign`, { algorithm, message: b64(message) });
      expect(s.status).toBe(200);
      const signature = unb64(s.body.signature);
      expect(nodeVerifies(algorithm, createPublicKey(publicKeyPem), message, signature)).toBe(true);
      expect(nodeVerifies(algorithm, createPublicKey({ key: publicKeyJwk, format: 'jwk' }), message, signature)).toBe(true);
    });

    it('lists keys', async () => {
      const a = await keyOf(signer().type);
      const b = await keyOf('AES_256');
      const r = await rest.call('GET', '/v1/keys');
      expect(r.status).toBe(200);
      const names = r.body.keys.map((k: { name: string }) => k.name);
      expect(names).toEqual(expect.arrayContaining([a, b]));
      expect(r.body.keys.find((k: { name: string }) => k.name === b)).toMatchObject({ type: 'AES_256', purpose: 'encrypt' });
    });

    it('rotates a signing key: v2 signs, a v1 signature still verifies with keyVersion 1', async () => {
      const { type, algorithm } = signer();
      const name = await create(type);
      const message = Buffer.from('signed before rotation');
      const old = await rest.call('POST', `/v1/keys/${name}/sign`, { message: b64(message) });
      expect(old.body.keyVersion).toBe(1);

      const r = await rest.call('POST', `/v1/keys/${name}/rotate`);
      expect(r.status).toBe(200);
      expect(r.body.primaryVersion).toBe(2);
      expect(r.body.versions.map((v: { version: number }) => v.version)).toEqual([1, 2]);
      expect(r.body.versions[1].publicKeyJwk.kid).toBe(`${name}:2`);
      expect(r.body.versions[1].publicKeyPem).not.toBe(r.body.versions[0].publicKeyPem);

      const fresh = await rest.call('POST', `/v1/keys/${name}/sign`, { message: b64(message) });
      expect(fresh.body.keyVersion).toBe(2);
      expect(nodeVerifies(algorithm, await publicKey(name, 2), message, unb64(fresh.body.signature))).toBe(true);
      expect(nodeVerifies(algorithm, await publicKey(name, 1), message, unb64(fresh.body.signature))).toBe(false);

      const v1 = await rest.call('POST', `/v1/keys/${name}/verify`, { keyVersion: 1, message: b64(message), signature: old.body.signature });
      expect(v1.body).toMatchObject({ keyName: name, keyVersion: 1, algorithm, valid: true });
      const primary = await rest.call('POST', `/v1/keys/${name}/verify`, { message: b64(message), signature: old.body.signature });
      expect(primary.body).toMatchObject({ keyVersion: 2, valid: false });
      const missing = await rest.call('POST', `/v1/keys/${name}/verify`, { keyVersion: 9, message: b64(message), signature: old.body.signature });
      expect([missing.status, missing.body.error.code]).toEqual([404, 'KEY_VERSION_NOT_FOUND']);
    });

    it('rotates an encryption key: a v1 ciphertext still decrypts', async () => {
      const name = await create('AES_256');
      const plaintext = Buffer.from('encrypted under version 1');
      const c1 = await rest.call('POST', `/v1/keys/${name}/encrypt`, { plaintext: b64(plaintext) });
      expect(c1.body.keyVersion).toBe(1);
      expect((await rest.call('POST', `/v1/keys/${name}/rotate`)).body.primaryVersion).toBe(2);
      const c2 = await rest.call('POST', `/v1/keys/${name}/encrypt`, { plaintext: b64(plaintext) });
      expect(c2.body.keyVersion).toBe(2);
      for (const [c, version] of [[c1, 1], [c2, 2]] as const) {
        const d = await rest.call('POST', `/v1/keys/${name}/decrypt`, { ciphertext: c.body.ciphertext });
        expect(d.status).toBe(200);
        expect(d.body).toMatchObject({ keyName: name, keyVersion: version, algorithm: 'AES_GCM' });
        expect(unb64(d.body.plaintext)).toEqual(plaintext);
      }
    });

    it('disables and enables a key: a disabled key is refused with 409 KEY_DISABLED', async () => {
      const name = await create('HMAC_256');
      const data = b64('x');
      const off = await rest.call('POST', `/v1/keys/${name}/disable`);
      expect([off.status, off.body.state]).toEqual([200, 'disabled']);
      expect((await rest.call('GET', `/v1/keys/${name}`)).body.state).toBe('disabled');
      for (const [path, body] of [['mac', { data }], ['rotate', undefined]] as const) {
        const r = await rest.call('POST', `/v1/keys/${name}/${path}`, body);
        expect([r.status, r.body.error.code], path).toEqual([409, 'KEY_DISABLED']);
      }
      const on = await rest.call('POST', `/v1/keys/${name}/enable`);
      expect([on.status, on.body.state]).toEqual([200, 'enabled']);
      expect((await rest.call('POST', `/v1/keys/${name}/mac`, { data })).status).toBe(200);
    });

    it('destroys only a disabled key: 409 KEY_NOT_DISABLED, then 204, then 404', async () => {
      const name = await create('AES_128');
      const enabled = await rest.call('DELETE', `/v1/keys/${name}`);
      expect([enabled.status, enabled.body.error.code]).toEqual([409, 'KEY_NOT_DISABLED']);
      expect((await rest.call('GET', `/v1/keys/${name}`)).status).toBe(200);
      await rest.call('POST', `/v1/keys/${name}/disable`);
      const gone = await rest.call('DELETE', `/v1/keys/${name}`);
      expect(gone.status).toBe(204);
      expect(gone.raw).toBe('');
      for (const r of [await rest.call('GET', `/v1/keys/${name}`), await rest.call('DELETE', `/v1/keys/${name}`)]) {
        expect([r.status, r.body.error.code]).toEqual([404, 'KEY_NOT_FOUND']);
      }
      expect((await rest.call('GET', '/v1/keys')).body.keys.map((k: { name: string }) => k.name)).not.toContain(name);
    });
  });

  describe('sign and verify', () => {
    it.each(allSignAlgorithms)('%s: node:crypto verifies our signature; we verify it and reject a forgery', async (algorithm) => {
      const type = signKeyType[algorithm];
      const message = Buffer.from(`message for ${algorithm}`);
      if (!caps().keyTypes.includes(type) || !caps().sign.includes(algorithm)) {
        // A key of the algorithm's type refuses it as unsupported; without such keys, another key's type does not fit it.
        const hasType = caps().keyTypes.includes(type);
        const name = await keyOf(hasType ? type : signer().type);
        const r = await rest.call('POST', `/v1/keys/${name}/sign`, { algorithm, message: b64(message) });
        expect([r.status, r.body.error.code]).toEqual([400, hasType ? 'UNSUPPORTED_BY_BACKEND' : 'INCOMPATIBLE_KEY']);
        return;
      }
      const name = await keyOf(type);
      const s = await rest.call('POST', `/v1/keys/${name}/sign`, { algorithm, message: b64(message) });
      expect(s.status, JSON.stringify(s.body)).toBe(200);
      expect(s.body).toMatchObject({ keyName: name, keyVersion: 1, algorithm });
      const signature = unb64(s.body.signature);
      expect(nodeVerifies(algorithm, await publicKey(name), message, signature)).toBe(true);

      const ok = await rest.call('POST', `/v1/keys/${name}/verify`, { algorithm, message: b64(message), signature: s.body.signature });
      expect(ok.body).toMatchObject({ keyName: name, keyVersion: 1, algorithm, valid: true });
      const forged = await rest.call('POST', `/v1/keys/${name}/verify`, { algorithm, message: b64('another message'), signature: s.body.signature });
      expect([forged.status, forged.body.valid]).toEqual([200, false]);
    });

    it.each(allSignAlgorithms)('%s over a precomputed digest, or a clear refusal', async (algorithm) => {
      const type = signKeyType[algorithm];
      if (!caps().keyTypes.includes(type) || !caps().sign.includes(algorithm)) {
        const name = await keyOf(caps().keyTypes.includes(type) ? type : signer().type);
        const r = await rest.call('POST', `/v1/keys/${name}/sign`, { algorithm, digest: b64(Buffer.alloc(32)) });
        expect(r.status).toBe(400);
        expect(['UNSUPPORTED_BY_BACKEND', 'INCOMPATIBLE_KEY', 'INVALID_ARGUMENT']).toContain(r.body.error.code);
        return;
      }
      const name = await keyOf(type);
      const message = Buffer.from(`digest input for ${algorithm}`);
      const hash = signAlgorithms[algorithm].hash;
      const digest = createHash(hash ?? 'sha256').update(message).digest();
      const s = await rest.call('POST', `/v1/keys/${name}/sign`, { algorithm, digest: b64(digest) });
      if (hash === null) {
        expect([s.status, s.body.error.code]).toEqual([400, 'INVALID_ARGUMENT']);
        return;
      }
      if (!caps().signDigest.includes(algorithm)) {
        expect([s.status, s.body.error.code]).toEqual([400, 'UNSUPPORTED_BY_BACKEND']);
        return;
      }
      expect(s.status, JSON.stringify(s.body)).toBe(200);
      // The signature over the digest is the signature over the message.
      expect(nodeVerifies(algorithm, await publicKey(name), message, unb64(s.body.signature))).toBe(true);
      const v = await rest.call('POST', `/v1/keys/${name}/verify`, { algorithm, digest: b64(digest), signature: s.body.signature });
      expect(v.body.valid).toBe(true);
    });

    it('signs with the key type default algorithm when none is given (or an empty one)', async () => {
      const name = await keyOf('RSA_2048');
      for (const body of [{ message: b64('m') }, { algorithm: '', message: b64('m') }]) {
        const s = await rest.call('POST', `/v1/keys/${name}/sign`, body);
        expect([s.status, s.body.algorithm]).toEqual([200, 'RS256']);
        expect(nodeVerifies('RS256', await publicKey(name), Buffer.from('m'), unb64(s.body.signature))).toBe(true);
      }
    });
  });

  describe('encrypt and decrypt', () => {
    it('AES_GCM with AAD: round trip, wrong AAD and a tampered ciphertext fail with DECRYPTION_FAILED', async () => {
      const name = await keyOf('AES_256');
      const plaintext = Buffer.from('4111111111111111 exp 12/30');
      const aad = Buffer.from('merchant 42');
      const e = await rest.call('POST', `/v1/keys/${name}/encrypt`, { algorithm: 'AES_GCM', plaintext: b64(plaintext), aad: b64(aad) });
      expect(e.status).toBe(200);
      expect(e.body).toMatchObject({ keyName: name, keyVersion: 1, algorithm: 'AES_GCM' });
      const envelope = unb64(e.body.ciphertext);
      // 'HB' | format | algorithm | version | IV (12) | ciphertext | tag (16); the plaintext does not appear.
      expect(envelope.length).toBe(8 + 12 + plaintext.length + 16);
      expect(envelope.includes(plaintext)).toBe(false);

      const d = await rest.call('POST', `/v1/keys/${name}/decrypt`, { ciphertext: e.body.ciphertext, aad: b64(aad) });
      expect(d.status).toBe(200);
      expect(unb64(d.body.plaintext)).toEqual(plaintext);

      // The raw form (IV || ciphertext || tag) with keyVersion and algorithm, as another system would store it.
      const raw = await rest.call('POST', `/v1/keys/${name}/decrypt`, { ciphertext: b64(envelope.subarray(8)), aad: b64(aad), keyVersion: 1, algorithm: 'AES_GCM' });
      expect(unb64(raw.body.plaintext)).toEqual(plaintext);

      const noAad = await rest.call('POST', `/v1/keys/${name}/decrypt`, { ciphertext: e.body.ciphertext });
      const wrongAad = await rest.call('POST', `/v1/keys/${name}/decrypt`, { ciphertext: e.body.ciphertext, aad: b64('merchant 43') });
      const tampered = Buffer.from(envelope);
      tampered[8 + 12] = (tampered[8 + 12] as number) ^ 0x01;
      const flipped = await rest.call('POST', `/v1/keys/${name}/decrypt`, { ciphertext: b64(tampered), aad: b64(aad) });
      for (const r of [noAad, wrongAad, flipped]) expect([r.status, r.body.error.code]).toEqual([400, 'DECRYPTION_FAILED']);
    });

    it('AES_GCM on an AES_128 key', async () => {
      const name = await keyOf('AES_128');
      const e = await rest.call('POST', `/v1/keys/${name}/encrypt`, { plaintext: b64('short') });
      expect(e.body.algorithm).toBe('AES_GCM');
      // An empty algorithm means "not given", as in proto3.
      const d = await rest.call('POST', `/v1/keys/${name}/decrypt`, { ciphertext: e.body.ciphertext, algorithm: '' });
      expect(d.status, JSON.stringify(d.body)).toBe(200);
      expect(unb64(d.body.plaintext).toString()).toBe('short');
    });

    it('RSA_OAEP_SHA256: node:crypto encrypts with the returned PEM, we decrypt with keyVersion (or refuse per capabilities)', async () => {
      const name = freshName('rsa-oaep');
      const created = await rest.call('POST', '/v1/keys', { name, type: 'RSA_2048', purpose: 'encrypt' });
      if (!rsaOaepOffered()) {
        expect([created.status, created.body.error.code]).toEqual([400, 'UNSUPPORTED_BY_BACKEND']);
        return;
      }
      expect(created.status).toBe(201);
      const plaintext = Buffer.from('a 32-byte content key, say......');
      const ours = await rest.call('POST', `/v1/keys/${name}/encrypt`, { algorithm: 'RSA_OAEP_SHA256', plaintext: b64(plaintext) });
      if (!caps().encrypt.includes('RSA_OAEP_SHA256')) {
        expect([ours.status, ours.body.error.code]).toEqual([400, 'UNSUPPORTED_BY_BACKEND']);
        return;
      }
      expect(ours.status, JSON.stringify(ours.body)).toBe(200);
      const foreign = publicEncrypt({ key: await publicKey(name), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, plaintext);
      const d = await rest.call('POST', `/v1/keys/${name}/decrypt`, { ciphertext: b64(foreign), keyVersion: 1, algorithm: 'RSA_OAEP_SHA256' });
      expect(d.status, JSON.stringify(d.body)).toBe(200);
      expect(d.body).toMatchObject({ keyName: name, keyVersion: 1, algorithm: 'RSA_OAEP_SHA256' });
      expect(unb64(d.body.plaintext)).toEqual(plaintext);
      const back = await rest.call('POST', `/v1/keys/${name}/decrypt`, { ciphertext: ours.body.ciphertext });
      expect(unb64(back.body.plaintext)).toEqual(plaintext);
      foreign[10] = (foreign[10] as number) ^ 0xff;
      const bad = await rest.call('POST', `/v1/keys/${name}/decrypt`, { ciphertext: b64(foreign), keyVersion: 1, algorithm: 'RSA_OAEP_SHA256' });
      expect([bad.status, bad.body.error.code]).toEqual([400, 'DECRYPTION_FAILED']);
    });

    it('every encryption algorithm is either supported or refused as the capabilities say', () => {
      for (const a of caps().encrypt) expect(allEncryptAlgorithms).toContain(a);
    });
  });

  describe('MAC', () => {
    it('HMAC_SHA256: generates, verifies, rejects a wrong or short MAC', async () => {
      const name = await keyOf('HMAC_256');
      const data = b64('amount=100.00;currency=EUR');
      const m = await rest.call('POST', `/v1/keys/${name}/mac`, { data });
      expect(m.status).toBe(200);
      expect(m.body).toMatchObject({ keyName: name, keyVersion: 1, algorithm: 'HMAC_SHA256' });
      const mac = unb64(m.body.mac);
      expect(mac).toHaveLength(32);
      // Deterministic per key and data, different for other data.
      expect((await rest.call('POST', `/v1/keys/${name}/mac`, { algorithm: 'HMAC_SHA256', data })).body.mac).toBe(m.body.mac);
      expect((await rest.call('POST', `/v1/keys/${name}/mac`, { data: b64('amount=900.00;currency=EUR') })).body.mac).not.toBe(m.body.mac);

      const ok = await rest.call('POST', `/v1/keys/${name}/mac/verify`, { data, mac: m.body.mac });
      expect(ok.body).toMatchObject({ keyName: name, keyVersion: 1, algorithm: 'HMAC_SHA256', valid: true });
      const wrong = Buffer.from(mac);
      wrong[0] = (wrong[0] as number) ^ 1;
      for (const bad of [wrong, mac.subarray(0, 16)]) {
        const r = await rest.call('POST', `/v1/keys/${name}/mac/verify`, { data, mac: b64(bad) });
        expect([r.status, r.body.valid]).toEqual([200, false]);
      }
    });

    it('gives the MAC in hex too, and verifies one given in hex (either case); exactly one form', async () => {
      const name = await keyOf('HMAC_256');
      const data = b64('amount=100.00;currency=EUR');
      const m = await rest.call('POST', `/v1/keys/${name}/mac`, { data });
      expect(m.body.macHex).toBe(unb64(m.body.mac).toString('hex').toUpperCase());
      for (const macHex of [m.body.macHex, m.body.macHex.toLowerCase()]) {
        expect((await rest.call('POST', `/v1/keys/${name}/mac/verify`, { data, macHex })).body.valid).toBe(true);
      }
      expect((await rest.call('POST', `/v1/keys/${name}/mac/verify`, { data, macHex: `${m.body.macHex.slice(0, -1)}0` })).body.valid).toBe(m.body.macHex.endsWith('0'));
      for (const body of [{ data, mac: m.body.mac, macHex: m.body.macHex }, { data, macHex: 'XYZ' }, { data, macHex: 'ABC' }]) {
        expect(await rest.call('POST', `/v1/keys/${name}/mac/verify`, body)).toMatchObject({ status: 400, body: { error: { code: 'INVALID_ARGUMENT' } } });
      }
    });
  });

  describe('over a real socket', () => {
    it('serves concurrent requests on 127.0.0.1 and refuses an oversized body with 413', async () => {
      const address = await rest.app.listen({ host: '127.0.0.1', port: 0 });
      const { type, algorithm } = signer();
      const name = await keyOf(type);
      const pem = await publicKey(name);
      const messages = Array.from({ length: 16 }, (_, i) => Buffer.from(`concurrent ${i}`));
      const replies = await Promise.all(
        messages.map((m) =>
          fetch(`${address}/v1/keys/${name}/sign`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: b64(m) }) }),
        ),
      );
      for (const [i, r] of replies.entries()) {
        expect(r.status).toBe(200);
        const body = (await r.json()) as { signature: string };
        expect(nodeVerifies(algorithm, pem, messages[i]!, unb64(body.signature))).toBe(true);
      }
      const big = await fetch(`${address}/v1/random`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ length: 1, pad: 'x'.repeat(64 * 1024) }) });
      expect(big.status).toBe(413);
      expect(await big.json()).toEqual({ error: { code: 'PAYLOAD_TOO_LARGE', message: expect.any(String) } });
    });
  });

  describe('system routes', () => {
    it('random: the asked number of bytes, different each time (or a clear refusal)', async () => {
      const a = await rest.call('POST', '/v1/random', { length: 32 });
      if (!caps().random) {
        expect([a.status, a.body.error.code]).toEqual([400, 'UNSUPPORTED_BY_BACKEND']);
        return;
      }
      const b = await rest.call('POST', '/v1/random', { length: 32 });
      expect(a.status).toBe(200);
      expect(unb64(a.body.random)).toHaveLength(32);
      expect(a.body.random).not.toBe(b.body.random);
    });

    it('capabilities are the backend capabilities', async () => {
      const r = await rest.call('GET', '/v1/capabilities');
      expect(r.status).toBe(200);
      expect(r.body).toEqual(JSON.parse(JSON.stringify(rest.backend.capabilities())));
      expect(r.body.keyTypes.length).toBeGreaterThan(0);
    });

    it('health: live and ready', async () => {
      expect(await rest.call('GET', '/health/live')).toMatchObject({ status: 200, body: { status: 'ok' } });
      expect(await rest.call('GET', '/health/ready')).toMatchObject({ status: 200, body: { status: 'ready' } });
    });
  });
});
