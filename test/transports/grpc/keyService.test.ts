/**
 * The gRPC transport end to end: a real grpc-js client over 127.0.0.1, the real server, the real
 * KeyService and a real backend: the software adapter, a SoftHSM token through the PKCS#11 adapter and
 * a PyKMIP server through the KMIP adapter. Signatures are checked with node:crypto using the public key
 * that GetKey returns. What a backend lacks (KMIP: EC keys, PS*, digest signing, RSA-OAEP, random) is
 * asserted as the UNSUPPORTED_BY_BACKEND refusal its capabilities announce, never skipped.
 */
import {
  constants,
  createHash,
  createPublicKey,
  publicEncrypt,
  randomBytes,
  verify as nodeVerify,
  type KeyObject,
} from 'node:crypto';
import { Writable } from 'node:stream';
import { status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pkcs11BackendFactory } from '../../../adapters/pkcs11/index.js';
import { softwareBackendFactory } from '../../../adapters/software/index.js';
import type { Backend, BackendHealth, Capabilities } from '../../../src/backend/port.js';
import { createLogger } from '../../../src/log.js';
import { KeyService } from '../../../src/operations/keyService.js';
import { startGrpcServer, type RunningGrpcServer } from '../../../src/transports/grpc/server.js';
import { openKmipBackend } from '../../helpers/kmipBackend.js';
import { createSoftHsmToken } from '../../helpers/softhsm.js';
import { createSoftwareBackendConfig } from '../../helpers/software.js';
import { connect, expectGrpcError, type TestClients } from './grpcClient.js';

interface OpenedBackend {
  readonly backend: Backend;
  cleanup(): Promise<void>;
}

const quiet = pino({ level: 'silent' });

const targets: ReadonlyArray<{ label: string; open(): Promise<OpenedBackend> }> = [
  {
    label: 'software',
    async open() {
      const harness = await createSoftwareBackendConfig();
      const backend = await softwareBackendFactory.create(harness.config, { logger: quiet });
      return { backend, cleanup: () => harness.cleanup() };
    },
  },
  {
    label: 'pkcs11 (SoftHSM)',
    async open() {
      const token = await createSoftHsmToken();
      const backend = await pkcs11BackendFactory.create(token.backendConfig(), { logger: quiet });
      return { backend, cleanup: () => token.cleanup() };
    },
  },
  {
    label: 'kmip (PyKMIP)',
    open: () => openKmipBackend(quiet),
  },
];

const MAX_MESSAGE_BYTES = 64 * 1024;
const limits = { maxDataBytes: 16 * 1024, maxRandomBytes: 1024 };

/** The real backend, except that the test can make it report "not ready". */
function withHealthSwitch(backend: Backend): { backend: Backend; setNotReady(detail: string | undefined): void } {
  let notReady: BackendHealth | undefined;
  const wrapped = new Proxy(backend, {
    get(target, property) {
      if (property === 'health') return () => (notReady ? Promise.resolve(notReady) : target.health());
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { backend: wrapped, setNotReady: (detail) => (notReady = detail === undefined ? undefined : { ready: false, detail }) };
}

/** Every log line the server writes, parsed. */
function capturingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  let raw = '';
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      raw += chunk.toString();
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger('debug', destination), lines, raw: () => raw };
}

const ecdsaVerifies = (key: KeyObject, hash: string, message: Buffer, signature: Buffer) =>
  nodeVerify(hash, message, { key, dsaEncoding: 'ieee-p1363' }, signature);

/**
 * The everyday signing key of the tests about something else (lifecycle, rotation, limits): EC P-256,
 * or RSA-2048 on a backend without EC keys (KMIP), whose EC refusal the EC tests assert.
 */
interface Signer {
  readonly type: 'EC_P256' | 'RSA_2048';
  readonly algorithm: 'ES256' | 'RS256';
  readonly signatureBytes: number;
  readonly jwk: Record<string, string>;
  /** Algorithms of the other key family, which this key must refuse with INCOMPATIBLE_KEY. */
  readonly foreignAlgorithms: readonly string[];
  verifies(key: KeyObject, message: Buffer, signature: Buffer): boolean;
}
const ecSigner: Signer = {
  type: 'EC_P256', algorithm: 'ES256', signatureBytes: 64, jwk: { kty: 'EC', crv: 'P-256' }, foreignAlgorithms: ['ES384', 'RS256'],
  verifies: (key, message, signature) => ecdsaVerifies(key, 'sha256', message, signature),
};
const rsaSigner: Signer = {
  type: 'RSA_2048', algorithm: 'RS256', signatureBytes: 256, jwk: { kty: 'RSA', e: 'AQAB' }, foreignAlgorithms: ['ES256', 'EdDSA'],
  verifies: (key, message, signature) => nodeVerify('sha256', message, key, signature),
};

describe.each(targets)('gRPC transport end to end: $label', (target) => {
  let opened: OpenedBackend;
  let healthSwitch: ReturnType<typeof withHealthSwitch>;
  let server: RunningGrpcServer;
  let client: TestClients;
  let caps: Capabilities;
  let signer: Signer;
  let logs: ReturnType<typeof capturingLogger>;
  let seq = 0;
  const fresh = (stem: string) => `grpc-${stem}-${Date.now().toString(36)}-${seq++}`;

  beforeAll(async () => {
    opened = await target.open();
    healthSwitch = withHealthSwitch(opened.backend);
    logs = capturingLogger();
    const service = new KeyService(healthSwitch.backend, { limits, metadataCacheTtlMs: 1000 });
    caps = service.capabilities();
    signer = caps.keyTypes.includes('EC_P256') ? ecSigner : rsaSigner;
    server = await startGrpcServer({
      service,
      logger: logs.logger,
      host: '127.0.0.1',
      port: 0,
      maxMessageBytes: MAX_MESSAGE_BYTES,
      healthPollMs: 50,
    });
    client = connect(server.port);
  });

  afterAll(async () => {
    client?.close();
    await server?.close();
    await opened?.backend.close();
    await opened?.cleanup();
  });

  const createKey = async (type: string, purpose = '') => {
    const name = fresh(type.toLowerCase());
    await client.call('CreateKey', { name, type, purpose });
    return name;
  };
  const publicKeyOf = async (name: string, version = 1): Promise<KeyObject> => {
    const key = await client.call('GetKey', { name });
    const pem = key.versions.find((v: { version: number }) => v.version === version)?.publicKeyPem as string | undefined;
    expect(pem, 'PEM of an asymmetric key version').toMatch(/^-----BEGIN PUBLIC KEY-----/);
    return createPublicKey(pem!);
  };
  /** On a backend without EC keys, asserts that CreateKey refuses one; true when the test can go on. */
  const hasEcKeys = async () => {
    if (caps.keyTypes.includes('EC_P256')) return true;
    await expectGrpcError(client.call('CreateKey', { name: fresh('ec'), type: 'EC_P256' }), status.INVALID_ARGUMENT, 'UNSUPPORTED_BY_BACKEND');
    return false;
  };

  describe('keys', () => {
    it('CreateKey returns the Key message with its public key as PEM and JWK', async () => {
      const name = fresh('signer');
      const before = Date.now();
      const key = await client.call('CreateKey', { name, type: signer.type });
      expect(key).toMatchObject({ name, type: signer.type, purpose: 'sign', state: 'enabled', primaryVersion: 1 });
      expect(Date.parse(key.createdAt)).toBeGreaterThanOrEqual(before - 2000);
      expect(key.versions).toHaveLength(1);
      const [v1] = key.versions;
      expect(v1.version).toBe(1);
      const jwk = JSON.parse(v1.publicKeyJwk);
      expect(jwk).toMatchObject({ ...signer.jwk, kid: `${name}:1`, use: 'sig' });
      // PEM and JWK are the same key.
      expect(createPublicKey({ key: jwk, format: 'jwk' }).export({ format: 'der', type: 'spki' }))
        .toEqual(createPublicKey(v1.publicKeyPem).export({ format: 'der', type: 'spki' }));
    });

    it('a symmetric key has no public parts; purpose defaults from the type', async () => {
      const name = await createKey('AES_256');
      const key = await client.call('GetKey', { name });
      expect(key).toMatchObject({ type: 'AES_256', purpose: 'encrypt' });
      expect(key.versions[0].publicKeyPem).toBeUndefined();
      expect(key.versions[0].publicKeyJwk).toBeUndefined();
    });

    it('CreateKey of a taken name is ALREADY_EXISTS', async () => {
      const name = await createKey(signer.type);
      await expectGrpcError(client.call('CreateKey', { name, type: signer.type }), status.ALREADY_EXISTS, 'KEY_ALREADY_EXISTS');
    });

    it('CreateKey with a bad name, type or purpose is INVALID_ARGUMENT', async () => {
      await expectGrpcError(client.call('CreateKey', { name: 'no spaces', type: 'EC_P256' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
      await expectGrpcError(client.call('CreateKey', { name: fresh('x'), type: 'EC_P999' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
      await expectGrpcError(client.call('CreateKey', { name: fresh('x'), type: 'EC_P256', purpose: 'encrypt' }), status.INVALID_ARGUMENT, 'INCOMPATIBLE_KEY');
    });

    it('GetKey of an unknown key is NOT_FOUND', async () => {
      await expectGrpcError(client.call('GetKey', { name: fresh('missing') }), status.NOT_FOUND, 'KEY_NOT_FOUND');
    });

    it('ListKeys lists the keys created', async () => {
      const a = await createKey(signer.type);
      const b = await createKey('HMAC_256');
      const { keys } = await client.call('ListKeys');
      const names = keys.map((k: { name: string }) => k.name);
      expect(names).toEqual(expect.arrayContaining([a, b]));
      expect(keys.find((k: { name: string }) => k.name === b)).toMatchObject({ type: 'HMAC_256', purpose: 'mac', state: 'enabled' });
    });

    it('disable, enable, and destroy only once disabled', async () => {
      const name = await createKey(signer.type);
      const message = Buffer.from('payment 42');
      expect((await client.call('DisableKey', { name })).state).toBe('disabled');
      await expectGrpcError(client.call('Sign', { name, message }), status.FAILED_PRECONDITION, 'KEY_DISABLED');
      await expectGrpcError(client.call('RotateKey', { name }), status.FAILED_PRECONDITION, 'KEY_DISABLED');
      expect((await client.call('EnableKey', { name })).state).toBe('enabled');
      expect((await client.call('Sign', { name, message })).signature).toHaveLength(signer.signatureBytes);
      await expectGrpcError(client.call('DestroyKey', { name }), status.FAILED_PRECONDITION, 'KEY_NOT_DISABLED');
      await client.call('DisableKey', { name });
      expect(await client.call('DestroyKey', { name })).toEqual({});
      await expectGrpcError(client.call('GetKey', { name }), status.NOT_FOUND, 'KEY_NOT_FOUND');
      await expectGrpcError(client.call('Sign', { name, message }), status.NOT_FOUND, 'KEY_NOT_FOUND');
    });
  });

  describe('sign and verify', () => {
    it('ES256 signs a message as raw r||s that node:crypto verifies', async () => {
      if (!(await hasEcKeys())) return;
      const name = await createKey('EC_P256');
      const message = Buffer.from('{"amount":"100.00","currency":"EUR"}');
      const signed = await client.call('Sign', { name, algorithm: 'ES256', message });
      expect(signed).toMatchObject({ keyName: name, keyVersion: 1, algorithm: 'ES256' });
      // Raw r||s is exactly 64 bytes; DER would start with 0x30 and be 70-72 bytes.
      expect(signed.signature).toHaveLength(64);
      const key = await publicKeyOf(name);
      expect(ecdsaVerifies(key, 'sha256', message, signed.signature)).toBe(true);
      expect(ecdsaVerifies(key, 'sha256', Buffer.from('another message'), signed.signature)).toBe(false);

      const verified = await client.call('Verify', { name, message, signature: signed.signature });
      expect(verified).toMatchObject({ keyName: name, keyVersion: 1, algorithm: 'ES256', valid: true });
      const tampered = Buffer.from(signed.signature);
      tampered[10]! ^= 1;
      expect((await client.call('Verify', { name, message, signature: tampered })).valid).toBe(false);
    });

    it('many concurrent Sign calls all succeed and all verify', async () => {
      const name = await createKey(signer.type);
      const messages = Array.from({ length: 40 }, (_, i) => Buffer.from(`concurrent message ${i}`));
      const signed = await Promise.all(messages.map((message) => client.call('Sign', { name, message })));
      const key = await publicKeyOf(name);
      expect(signed.every((s, i) => signer.verifies(key, messages[i]!, s.signature))).toBe(true);
    });

    it('signs a precomputed digest (RS256, PS384), and refuses a digest of the wrong length; UNSUPPORTED_BY_BACKEND without digest signing', async () => {
      const name = await createKey('RSA_2048');
      const message = randomBytes(300);
      const key = await publicKeyOf(name);
      const sha256 = createHash('sha256').update(message).digest();
      const sha384 = createHash('sha384').update(message).digest();
      if (!caps.signDigest.includes('RS256')) {
        // KMIP: Sign takes the message itself; a digest is refused for signing and verifying alike.
        const overMessage = await client.call('Sign', { name, algorithm: 'RS256', message });
        expect(nodeVerify('sha256', message, key, overMessage.signature)).toBe(true);
        await expectGrpcError(client.call('Sign', { name, algorithm: 'RS256', digest: sha256 }), status.INVALID_ARGUMENT, 'UNSUPPORTED_BY_BACKEND');
        await expectGrpcError(client.call('Verify', { name, algorithm: 'RS256', digest: sha256, signature: overMessage.signature }), status.INVALID_ARGUMENT, 'UNSUPPORTED_BY_BACKEND');
        await expectGrpcError(client.call('Sign', { name, algorithm: 'PS384', digest: sha384 }), status.INVALID_ARGUMENT, 'UNSUPPORTED_BY_BACKEND');
        return;
      }
      const rs = await client.call('Sign', { name, algorithm: 'RS256', digest: sha256 });
      expect(nodeVerify('sha256', message, key, rs.signature)).toBe(true);
      // Digest and message input are one scheme: the signature also checks against the message.
      expect((await client.call('Verify', { name, algorithm: 'RS256', message, signature: rs.signature })).valid).toBe(true);
      expect((await client.call('Verify', { name, algorithm: 'RS256', digest: sha256, signature: rs.signature })).valid).toBe(true);

      const ps = await client.call('Sign', { name, algorithm: 'PS384', digest: sha384 });
      expect(nodeVerify('sha384', message, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 }, ps.signature)).toBe(true);

      await expectGrpcError(client.call('Sign', { name, algorithm: 'RS256', digest: sha384 }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
      await expectGrpcError(client.call('Verify', { name, algorithm: 'PS384', digest: sha256, signature: ps.signature }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    });

    it('ES256 digest signing where the backend offers it; UNSUPPORTED_BY_BACKEND where it does not', async () => {
      if (!(await hasEcKeys())) return;
      const name = await createKey('EC_P256');
      const message = randomBytes(300);
      const digest = createHash('sha256').update(message).digest();
      if (!caps.signDigest.includes('ES256')) {
        await expectGrpcError(client.call('Sign', { name, digest }), status.INVALID_ARGUMENT, 'UNSUPPORTED_BY_BACKEND');
        return;
      }
      const signed = await client.call('Sign', { name, digest });
      expect(signed.signature).toHaveLength(64);
      expect(ecdsaVerifies(await publicKeyOf(name), 'sha256', message, signed.signature)).toBe(true);
      expect((await client.call('Verify', { name, message, signature: signed.signature })).valid).toBe(true);
      await expectGrpcError(client.call('Sign', { name, digest: digest.subarray(0, 31) }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    });

    it('RSA: the default algorithm is RS256, and PS256 verifies with node:crypto (or is UNSUPPORTED_BY_BACKEND)', async () => {
      const name = await createKey('RSA_2048');
      const message = Buffer.from('transfer 7f3a');
      const rs = await client.call('Sign', { name, message });
      expect(rs.algorithm).toBe('RS256');
      expect(rs.signature).toHaveLength(256);
      const key = await publicKeyOf(name);
      expect(nodeVerify('sha256', message, key, rs.signature)).toBe(true);

      if (!caps.sign.includes('PS256')) {
        // KMIP: PyKMIP's PSS salt is the longest possible, not the hash length PS256 means.
        await expectGrpcError(client.call('Sign', { name, algorithm: 'PS256', message }), status.INVALID_ARGUMENT, 'UNSUPPORTED_BY_BACKEND');
        await expectGrpcError(client.call('Verify', { name, algorithm: 'PS256', message, signature: rs.signature }), status.INVALID_ARGUMENT, 'UNSUPPORTED_BY_BACKEND');
        return;
      }
      const ps = await client.call('Sign', { name, algorithm: 'PS256', message });
      const pss = { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 };
      expect(nodeVerify('sha256', message, pss, ps.signature)).toBe(true);
      expect((await client.call('Verify', { name, algorithm: 'PS256', message, signature: ps.signature })).valid).toBe(true);
      // A PKCS#1 signature is not a PSS one.
      expect((await client.call('Verify', { name, algorithm: 'PS256', message, signature: rs.signature })).valid).toBe(false);
    });

    it('EdDSA signs the message (node:crypto verifies) and refuses a digest', async () => {
      if (!caps.keyTypes.includes('ED25519')) {
        await expectGrpcError(client.call('CreateKey', { name: fresh('ed'), type: 'ED25519' }), status.INVALID_ARGUMENT, 'UNSUPPORTED_BY_BACKEND');
        return;
      }
      const name = await createKey('ED25519');
      const message = Buffer.from('ed25519 over gRPC');
      const signed = await client.call('Sign', { name, message });
      expect(signed.algorithm).toBe('EdDSA');
      expect(nodeVerify(null, message, await publicKeyOf(name), signed.signature)).toBe(true);
      const digest = createHash('sha256').update(message).digest();
      await expectGrpcError(client.call('Sign', { name, digest }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    });

    it('an unknown algorithm, an algorithm of another key type and a key of another purpose are refused with their codes', async () => {
      const signing = await createKey(signer.type);
      const aes = await createKey('AES_256');
      const message = Buffer.from('m');
      await expectGrpcError(client.call('Sign', { name: signing, algorithm: 'ES999', message }), status.INVALID_ARGUMENT, 'UNSUPPORTED_ALGORITHM');
      for (const algorithm of signer.foreignAlgorithms) {
        await expectGrpcError(client.call('Sign', { name: signing, algorithm, message }), status.INVALID_ARGUMENT, 'INCOMPATIBLE_KEY');
      }
      await expectGrpcError(client.call('Sign', { name: aes, message }), status.INVALID_ARGUMENT, 'INCOMPATIBLE_KEY');
      await expectGrpcError(client.call('Encrypt', { name: signing, plaintext: message }), status.INVALID_ARGUMENT, 'INCOMPATIBLE_KEY');
      // Neither message nor digest: the oneof is empty.
      await expectGrpcError(client.call('Sign', { name: signing }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    });

    it('Verify with a version that does not exist, or version 0, is refused', async () => {
      const name = await createKey(signer.type);
      const message = Buffer.from('m');
      const { signature } = await client.call('Sign', { name, message });
      await expectGrpcError(client.call('Verify', { name, keyVersion: 9, message, signature }), status.NOT_FOUND, 'KEY_VERSION_NOT_FOUND');
      await expectGrpcError(client.call('Verify', { name, keyVersion: 0, message, signature }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    });
  });

  describe('rotation', () => {
    it('signs with the new version; the old version still verifies its signatures', async () => {
      const name = await createKey(signer.type);
      const message = Buffer.from('signed before rotation');
      const old = await client.call('Sign', { name, message });
      const rotated = await client.call('RotateKey', { name });
      expect(rotated.primaryVersion).toBe(2);
      expect(rotated.versions.map((v: { version: number }) => v.version)).toEqual([1, 2]);
      expect(rotated.versions[1].publicKeyPem).not.toBe(rotated.versions[0].publicKeyPem);

      const current = await client.call('Sign', { name, message });
      expect(current.keyVersion).toBe(2);
      expect(signer.verifies(await publicKeyOf(name, 2), message, current.signature)).toBe(true);
      expect(signer.verifies(await publicKeyOf(name, 1), message, current.signature)).toBe(false);

      expect(await client.call('Verify', { name, keyVersion: 1, message, signature: old.signature }))
        .toMatchObject({ keyVersion: 1, valid: true });
      // Without a version, Verify uses the primary (2), which did not make the old signature.
      expect(await client.call('Verify', { name, message, signature: old.signature })).toMatchObject({ keyVersion: 2, valid: false });
    });

    it('ciphertexts made before a rotation still decrypt', async () => {
      const name = await createKey('AES_256');
      const plaintext = Buffer.from('card data 4111');
      const before = await client.call('Encrypt', { name, plaintext });
      expect(before.keyVersion).toBe(1);
      await client.call('RotateKey', { name });
      const after = await client.call('Encrypt', { name, plaintext });
      expect(after.keyVersion).toBe(2);
      expect(await client.call('Decrypt', { name, ciphertext: before.ciphertext })).toMatchObject({ keyVersion: 1, plaintext });
      expect(await client.call('Decrypt', { name, ciphertext: after.ciphertext })).toMatchObject({ keyVersion: 2, plaintext });
    });
  });

  describe('encrypt and decrypt', () => {
    it('AES_GCM round-trips with AAD; a fresh IV each time; tampering and a wrong AAD are DECRYPTION_FAILED', async () => {
      const name = await createKey('AES_256');
      const plaintext = randomBytes(1000);
      const aad = Buffer.from('txn-0001');
      const sealed = await client.call('Encrypt', { name, plaintext, aad });
      expect(sealed).toMatchObject({ keyName: name, keyVersion: 1, algorithm: 'AES_GCM' });
      // 8-byte header, 12-byte IV, ciphertext, 16-byte tag.
      expect(sealed.ciphertext).toHaveLength(8 + 12 + plaintext.length + 16);
      expect(sealed.ciphertext.includes(plaintext.subarray(0, 16))).toBe(false);
      const again = await client.call('Encrypt', { name, plaintext, aad });
      expect(again.ciphertext.equals(sealed.ciphertext)).toBe(false);

      const opened = await client.call('Decrypt', { name, ciphertext: sealed.ciphertext, aad });
      expect(opened).toMatchObject({ keyName: name, keyVersion: 1, algorithm: 'AES_GCM' });
      expect(opened.plaintext.equals(plaintext)).toBe(true);

      const tampered = Buffer.from(sealed.ciphertext);
      tampered[30]! ^= 0x01;
      await expectGrpcError(client.call('Decrypt', { name, ciphertext: tampered, aad }), status.INVALID_ARGUMENT, 'DECRYPTION_FAILED');
      await expectGrpcError(client.call('Decrypt', { name, ciphertext: sealed.ciphertext, aad: Buffer.from('txn-0002') }), status.INVALID_ARGUMENT, 'DECRYPTION_FAILED');
      await expectGrpcError(client.call('Decrypt', { name, ciphertext: sealed.ciphertext }), status.INVALID_ARGUMENT, 'DECRYPTION_FAILED');
      await expectGrpcError(client.call('Decrypt', { name, ciphertext: Buffer.from('not an envelope') }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    });

    it('decrypts a raw AES_GCM ciphertext given its key version', async () => {
      const name = await createKey('AES_128');
      const plaintext = Buffer.from('raw mode');
      const sealed = await client.call('Encrypt', { name, plaintext });
      const raw = sealed.ciphertext.subarray(8);
      expect(await client.call('Decrypt', { name, ciphertext: raw, keyVersion: 1, algorithm: 'AES_GCM' })).toMatchObject({ plaintext });
      // An algorithm without a key version is a contradiction: an envelope names its own.
      await expectGrpcError(client.call('Decrypt', { name, ciphertext: sealed.ciphertext, algorithm: 'AES_GCM' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    });

    it('RSA_OAEP_SHA256: decrypts what node:crypto encrypted with the GetKey public key', async () => {
      if (!caps.encrypt.some((a) => a.startsWith('RSA_OAEP'))) {
        // A key nothing offered could use is not made.
        await expectGrpcError(client.call('CreateKey', { name: `oaep-${Date.now()}`, type: 'RSA_2048', purpose: 'encrypt' }), status.INVALID_ARGUMENT, 'UNSUPPORTED_BY_BACKEND');
        return;
      }
      const name = await createKey('RSA_2048', 'encrypt');
      const plaintext = Buffer.from('a data key 0123456789abcdef');
      if (!caps.encrypt.includes('RSA_OAEP_SHA256')) {
        await expectGrpcError(client.call('Encrypt', { name, plaintext }), status.INVALID_ARGUMENT, 'UNSUPPORTED_BY_BACKEND');
        return;
      }
      const key = await publicKeyOf(name);
      const external = publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, plaintext);
      const opened = await client.call('Decrypt', { name, ciphertext: external, keyVersion: 1, algorithm: 'RSA_OAEP_SHA256' });
      expect(opened.plaintext.equals(plaintext)).toBe(true);
      const sealed = await client.call('Encrypt', { name, plaintext });
      expect(sealed.algorithm).toBe('RSA_OAEP_SHA256');
      expect((await client.call('Decrypt', { name, ciphertext: sealed.ciphertext })).plaintext.equals(plaintext)).toBe(true);
      await expectGrpcError(client.call('Encrypt', { name, plaintext, aad: Buffer.alloc(0) }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    });
  });

  describe('MAC', () => {
    it('GenerateMac and VerifyMac; a changed MAC, changed data or a short MAC is not valid', async () => {
      const name = await createKey('HMAC_256');
      const data = Buffer.from('0200 4111111111111111 000000010000');
      const made = await client.call('GenerateMac', { name, data });
      expect(made).toMatchObject({ keyName: name, keyVersion: 1, algorithm: 'HMAC_SHA256' });
      expect(made.mac).toHaveLength(32);
      expect((await client.call('GenerateMac', { name, data })).mac.equals(made.mac)).toBe(true);
      expect((await client.call('GenerateMac', { name, data: Buffer.from('other') })).mac.equals(made.mac)).toBe(false);

      expect(await client.call('VerifyMac', { name, data, mac: made.mac })).toMatchObject({ valid: true, keyVersion: 1 });
      const flipped = Buffer.from(made.mac);
      flipped[0]! ^= 0x80;
      expect((await client.call('VerifyMac', { name, data, mac: flipped })).valid).toBe(false);
      expect((await client.call('VerifyMac', { name, data: Buffer.from('other'), mac: made.mac })).valid).toBe(false);
      expect((await client.call('VerifyMac', { name, data, mac: made.mac.subarray(0, 16) })).valid).toBe(false);
      await expectGrpcError(client.call('GenerateMac', { name, algorithm: 'HMAC_MD5', data }), status.INVALID_ARGUMENT, 'UNSUPPORTED_ALGORITHM');
    });

    it('a MAC made before a rotation verifies with its version only', async () => {
      const name = await createKey('HMAC_256');
      const data = Buffer.from('iso 9797');
      const old = await client.call('GenerateMac', { name, data });
      await client.call('RotateKey', { name });
      expect((await client.call('VerifyMac', { name, data, mac: old.mac, keyVersion: 1 })).valid).toBe(true);
      expect(await client.call('VerifyMac', { name, data, mac: old.mac })).toMatchObject({ keyVersion: 2, valid: false });
    });
  });

  describe('random and capabilities', () => {
    it('GenerateRandom gives the bytes asked for, different each time, within limits (or a clear refusal)', async () => {
      if (!caps.random) {
        await expectGrpcError(client.call('GenerateRandom', { length: 32 }), status.INVALID_ARGUMENT, 'UNSUPPORTED_BY_BACKEND');
        // The length is checked first, as on every backend.
        await expectGrpcError(client.call('GenerateRandom', { length: 0 }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
        return;
      }
      const a = await client.call('GenerateRandom', { length: 32 });
      const b = await client.call('GenerateRandom', { length: 32 });
      expect(a.random).toHaveLength(32);
      expect(a.random.equals(b.random)).toBe(false);
      expect((await client.call('GenerateRandom', { length: limits.maxRandomBytes })).random).toHaveLength(limits.maxRandomBytes);
      await expectGrpcError(client.call('GenerateRandom', { length: 0 }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
      await expectGrpcError(client.call('GenerateRandom', { length: limits.maxRandomBytes + 1 }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    });

    it('GetCapabilities is the backend’s capabilities', async () => {
      const got = await client.call('GetCapabilities');
      expect(got).toEqual({
        keyTypes: [...caps.keyTypes],
        sign: [...caps.sign],
        encrypt: [...caps.encrypt],
        mac: [...caps.mac],
        signDigest: [...caps.signDigest],
        random: caps.random,
        keyAgreement: [...(caps.keyAgreement ?? [])],
        payment: {
          dukpt: [...(caps.payment?.dukpt ?? [])],
          importKeys: caps.payment?.importKeys ?? false,
          exportKeys: caps.payment?.exportKeys ?? false,
        },
        keyImport: { wrappings: [...caps.keyImport.wrappings], unwrapsInside: [...caps.keyImport.unwrapsInside], ceremonies: caps.keyImport.ceremonies },
        fpe: caps.fpe,
      });
      expect(got.keyTypes).toContain(signer.type);
    });
  });

  describe('limits and malformed input', () => {
    it('a message larger than the server limit is RESOURCE_EXHAUSTED', async () => {
      const name = await createKey(signer.type);
      const error = await client.call('Sign', { name, message: Buffer.alloc(MAX_MESSAGE_BYTES + 1) }).catch((e: ServiceError) => e);
      expect((error as ServiceError).code).toBe(status.RESOURCE_EXHAUSTED);
    });

    it('data above the data limit, inside the message limit, is RESOURCE_EXHAUSTED with PAYLOAD_TOO_LARGE', async () => {
      const name = await createKey(signer.type);
      await expectGrpcError(client.call('Sign', { name, message: Buffer.alloc(limits.maxDataBytes + 1) }), status.RESOURCE_EXHAUSTED, 'PAYLOAD_TOO_LARGE');
    });

    it('bytes that are not a valid request message are INVALID_ARGUMENT, not INTERNAL', async () => {
      const garbage = Buffer.from([0x12, 0x05, 0x61]); // field 2 claims 5 bytes, 1 follows
      const error = await new Promise<ServiceError>((resolve) => {
        client.keyService.makeUnaryRequest(
          '/hsmbridge.v1.KeyService/GetKey',
          (b: Buffer) => b,
          (b: Buffer) => b,
          garbage,
          (e: ServiceError | null) => resolve(e!),
        );
      });
      expect({ status: error.code, code: error.metadata.get('hsmbridge-error-code')[0] })
        .toEqual({ status: status.INVALID_ARGUMENT, code: 'INVALID_ARGUMENT' });
      expect(error.details).toBe('the request is not a valid GetKey request message');
    });
  });

  describe('health', () => {
    const check = (service: string) =>
      new Promise<{ status: string }>((resolve, reject) =>
        client.health.Check({ service }, (e: ServiceError | null, r: { status: string }) => (e ? reject(e) : resolve(r))),
      );

    it('Check is SERVING for the server and the key service, NOT_FOUND for others', async () => {
      expect(await check('')).toEqual({ status: 'SERVING' });
      expect(await check('hsmbridge.v1.KeyService')).toEqual({ status: 'SERVING' });
      await expectGrpcError(check('no.such.Service'), status.NOT_FOUND, 'NOT_FOUND');
    });

    it('Check is NOT_SERVING while the backend is not ready', async () => {
      healthSwitch.setNotReady('token not present');
      try {
        expect(await check('')).toEqual({ status: 'NOT_SERVING' });
        expect(await check('hsmbridge.v1.KeyService')).toEqual({ status: 'NOT_SERVING' });
      } finally {
        healthSwitch.setNotReady(undefined);
      }
      expect(await check('')).toEqual({ status: 'SERVING' });
    });

    it('Watch sends the current status, then each change', async () => {
      const stream = client.health.Watch({ service: 'hsmbridge.v1.KeyService' }) as ClientReadableStream<{ status: string }>;
      const seen: string[] = [];
      const waitFor = (wanted: string) =>
        new Promise<void>((resolve) => {
          const onData = (r: { status: string }) => {
            seen.push(r.status);
            if (r.status === wanted) {
              stream.off('data', onData);
              resolve();
            }
          };
          stream.on('data', onData);
        });
      stream.on('error', () => undefined); // the cancel below ends it with CANCELLED
      try {
        await waitFor('SERVING');
        healthSwitch.setNotReady('HSM restarting');
        await waitFor('NOT_SERVING');
        healthSwitch.setNotReady(undefined);
        await waitFor('SERVING');
        // Only changes are sent: no repeats between them.
        expect(seen).toEqual(['SERVING', 'NOT_SERVING', 'SERVING']);
      } finally {
        healthSwitch.setNotReady(undefined);
        stream.cancel();
      }
    });

    it('Watch of an unknown service says SERVICE_UNKNOWN', async () => {
      const stream = client.health.Watch({ service: 'no.such.Service' }) as ClientReadableStream<{ status: string }>;
      stream.on('error', () => undefined);
      const first = await new Promise<{ status: string }>((resolve) => stream.once('data', resolve));
      stream.cancel();
      expect(first).toEqual({ status: 'SERVICE_UNKNOWN' });
    });
  });

  describe('logging', () => {
    it('one line per call with method, status, duration and key name, and never a payload', async () => {
      const name = await createKey('AES_256');
      const plaintext = Buffer.from('SECRET-PLAINTEXT-CANARY-0123456789');
      const sealed = await client.call('Encrypt', { name, plaintext });
      await client.call('Decrypt', { name, ciphertext: sealed.ciphertext });
      await client.call('Sign', { name: fresh('missing'), message: plaintext }).catch(() => undefined);

      const calls = logs.lines.filter((l) => l.msg === 'grpc call' && l.keyName === name);
      expect(calls.map((l) => [l.method, l.status])).toEqual([
        ['hsmbridge.v1.KeyService/CreateKey', 'OK'],
        ['hsmbridge.v1.KeyService/Encrypt', 'OK'],
        ['hsmbridge.v1.KeyService/Decrypt', 'OK'],
      ]);
      for (const line of calls) expect(typeof line.durationMs).toBe('number');
      const failed = logs.lines.find((l) => l.method === 'hsmbridge.v1.KeyService/Sign' && l.code === 'KEY_NOT_FOUND');
      expect(failed).toMatchObject({ status: 'NOT_FOUND' });
      for (const form of [plaintext.toString(), plaintext.toString('base64'), plaintext.toString('hex'), sealed.ciphertext.toString('base64')]) {
        expect(logs.raw()).not.toContain(form);
      }
    });
  });
});

describe('gRPC server shutdown', () => {
  it('close() ends open Watch streams and resolves well before the forced-shutdown grace period', async () => {
    const harness = await createSoftwareBackendConfig();
    const backend = await softwareBackendFactory.create(harness.config, { logger: quiet });
    const service = new KeyService(backend, { limits, metadataCacheTtlMs: 0 });
    const server = await startGrpcServer({ service, logger: quiet, host: '127.0.0.1', port: 0, maxMessageBytes: MAX_MESSAGE_BYTES });
    const client = connect(server.port);
    try {
      const stream = client.health.Watch({ service: '' }) as ClientReadableStream<{ status: string }>;
      const statuses: string[] = [];
      stream.on('data', (r: { status: string }) => statuses.push(r.status));
      stream.on('error', () => undefined);
      const ended = new Promise<void>((resolve) => stream.on('status', () => resolve()));
      await new Promise<void>((resolve) => stream.once('data', () => resolve()));
      const started = Date.now();
      await server.close();
      await ended;
      expect(Date.now() - started).toBeLessThan(2000);
      expect(statuses).toEqual(['SERVING', 'NOT_SERVING']);
      await expect(client.call('ListKeys')).rejects.toMatchObject({ code: status.UNAVAILABLE });
    } finally {
      client.close();
      await server.close();
      await backend.close();
      await harness.cleanup();
    }
  });
});
