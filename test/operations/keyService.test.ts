/**
 * The core's checks, with a recording backend: every refusal must happen before the backend is called
 * ("bad input changes nothing"). The backends themselves are tested for real in test/conformance.
 */
import { describe, expect, it } from 'vitest';
import type { Backend, Capabilities } from '../../src/backend/port.js';
import type { KeyName, KeyVersion } from '../../src/keys/names.js';
import { generateKeyPairSync } from 'node:crypto';
import type { KeyMetadata, KeyPurpose, KeyState, KeyType } from '../../src/keys/types.js';
import { sealEnvelope } from '../../src/operations/ciphertext.js';
import { KeyService } from '../../src/operations/keyService.js';

const caps: Capabilities = {
  keyTypes: ['EC_P256', 'AES_256', 'RSA_2048', 'HMAC_256'],
  sign: ['ES256', 'RS256'],
  signDigest: ['RS256'],
  encrypt: ['AES_GCM', 'AES_KW', 'RSA_OAEP_SHA1'],
  mac: ['HMAC_SHA256'],
  random: true,
  keyAgreement: ['EC_P256'],
  payment: { dukpt: [], importKeys: false, exportKeys: false },
  keyImport: { wrappings: [], unwrapsInside: [], ceremonies: false },
  fpe: false,
};

function recordingBackend(keys: KeyMetadata[]) {
  const calls: string[] = [];
  const find = (name: string) => {
    const k = keys.find((m) => m.name === name);
    if (!k) throw Object.assign(new Error('nf'), { code: 'KEY_NOT_FOUND' });
    return k;
  };
  const record = (op: string) => async () => {
    calls.push(op);
    return Buffer.alloc(1);
  };
  const backend: Backend = {
    kind: 'recording',
    capabilities: () => caps,
    health: async () => ({ ready: true }),
    gauges: () => ({}),
    close: async () => undefined,
    createKey: async (k) => {
      calls.push('createKey');
      return meta(k.name, k.type, 'enabled');
    },
    rotateKey: async (n) => (calls.push('rotateKey'), find(n)),
    setKeyState: async (n) => (calls.push('setKeyState'), find(n)),
    setMinDecryptionVersion: async (n) => (calls.push('setMinDecryptionVersion'), find(n)),
    trimKey: async (n) => (calls.push('trimKey'), find(n)),
    destroyKey: async () => void calls.push('destroyKey'),
    describeKey: async (n) => {
      calls.push('describeKey');
      return find(n);
    },
    listKeys: async () => keys,
    sign: async (key) => {
      calls.push(`sign:${key.version}`);
      return Buffer.alloc(1);
    },
    verify: async () => (calls.push('verify'), true),
    encrypt: async (key) => (calls.push(`encrypt:${key.version}`), { iv: Buffer.alloc(12), data: Buffer.alloc(16) }),
    decrypt: record('decrypt'),
    mac: record('mac'),
    verifyMac: async () => (calls.push('verifyMac'), true),
    randomBytes: record('randomBytes'),
    deriveSharedSecret: async (key) => {
      calls.push(`deriveSharedSecret:${key.version}`);
      return Buffer.alloc(32);
    },
    encryptBlocks: record('encryptBlocks'),
    decryptBlocks: record('decryptBlocks'),
    deriveDukptKey: async () => (calls.push('deriveDukptKey'), { transient: true, family: 'tdes', bits: 128 }),
    releaseTransientKey: async () => void calls.push('releaseTransientKey'),
    importKey: async (k) => (calls.push('importKey'), meta(k.name, k.type, 'enabled')),
    exportKey: record('exportKey'),
    importWrappedKey: async () => (calls.push('importWrappedKey'), find('')),
    startCeremony: async () => void calls.push('startCeremony'),
    describeCeremony: async () => (calls.push('describeCeremony'), Promise.reject(new Error('none'))),
    listCeremonies: async () => [],
    stageComponent: async () => (calls.push('stageComponent'), Promise.reject(new Error('none'))),
    stagedComponents: async () => [],
    endCeremony: async () => void calls.push('endCeremony'),
  };
  return { backend, calls };
}

function meta(name: string, type: KeyType, state: KeyState, versions = 1, purpose?: KeyPurpose): KeyMetadata {
  return {
    name: name as KeyName,
    type,
    purpose: purpose ?? (type === 'AES_256' ? 'encrypt' : type === 'HMAC_256' ? 'mac' : 'sign'),
    state,
    createdAt: new Date(0).toISOString(),
    primaryVersion: versions as KeyVersion,
    versions: Array.from({ length: versions }, (_, i) => ({ version: (i + 1) as KeyVersion, createdAt: new Date(0).toISOString() })),
  };
}

const setup = (ttl = 60_000) => {
  const r = recordingBackend([meta('ec', 'EC_P256', 'enabled'), meta('aes', 'AES_256', 'enabled', 2), meta('off', 'EC_P256', 'disabled'), meta('rsa', 'RSA_2048', 'enabled'), meta('hmac', 'HMAC_256', 'enabled'), meta('ec2', 'EC_P256', 'enabled', 2), meta('rsaenc', 'RSA_2048', 'enabled', 1, 'encrypt'), meta('ecdh', 'EC_P256', 'enabled', 2, 'agree'), meta('ecdh384', 'EC_P384', 'enabled', 1, 'agree'), meta('ecdhoff', 'EC_P256', 'disabled', 1, 'agree'), meta('kek', 'AES_256', 'enabled', 1, 'wrap')]);
  return { ...r, service: new KeyService(r.backend, { limits: { maxDataBytes: 100, maxRandomBytes: 64 }, metadataCacheTtlMs: ttl }) };
};

const p256 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const p256Peer = p256.publicKey.export({ format: 'der', type: 'spki' });
const p256Private = p256.privateKey;
const p384Peer = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey.export({ format: 'der', type: 'spki' });
const rsaPeer = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
/** An AES_GCM envelope for version 1, as an `encrypt` key's encryption makes it. */
const gcmEnvelope = sealEnvelope('AES_GCM', 1 as KeyVersion, { iv: Buffer.alloc(12), data: Buffer.alloc(20) });
/** The same SPKI with the point's last byte changed: (x, y') is not on P-256. */
const offCurve = Buffer.from(p256Peer);
offCurve[offCurve.length - 1]! ^= 1;

describe('KeyService checks happen before the backend is called', () => {
  const refusals: Array<[string, (s: KeyService) => Promise<unknown>, string]> = [
    ['bad key name', (s) => s.sign({ name: '../x', message: Buffer.alloc(1) }), 'INVALID_ARGUMENT'],
    ['unknown key type', (s) => s.createKey({ name: 'n', type: 'DSA_1024' }), 'INVALID_ARGUMENT'],
    ['type the backend lacks', (s) => s.createKey({ name: 'n', type: 'ED25519' }), 'UNSUPPORTED_BY_BACKEND'],
    ['purpose the type cannot have', (s) => s.createKey({ name: 'n', type: 'AES_256', purpose: 'sign' }), 'INCOMPATIBLE_KEY'],
    ['disabled key', (s) => s.sign({ name: 'off', message: Buffer.alloc(1) }), 'KEY_DISABLED'],
    ['key of another purpose', (s) => s.encrypt({ name: 'ec', plaintext: Buffer.alloc(1) }), 'INCOMPATIBLE_KEY'],
    ['unknown algorithm', (s) => s.sign({ name: 'ec', algorithm: 'ES999', message: Buffer.alloc(1) }), 'UNSUPPORTED_ALGORITHM'],
    ['algorithm for another curve', (s) => s.sign({ name: 'ec', algorithm: 'ES384', message: Buffer.alloc(1) }), 'INCOMPATIBLE_KEY'],
    ['algorithm the backend lacks', (s) => s.sign({ name: 'rsa', algorithm: 'PS256', message: Buffer.alloc(1) }), 'UNSUPPORTED_BY_BACKEND'],
    ['digest signing the backend lacks for ES256', (s) => s.sign({ name: 'ec', digest: Buffer.alloc(32) }), 'UNSUPPORTED_BY_BACKEND'],
    ['digest of the wrong length', (s) => s.sign({ name: 'rsa', digest: Buffer.alloc(20) }), 'INVALID_ARGUMENT'],
    ['both message and digest', (s) => s.sign({ name: 'rsa', message: Buffer.alloc(1), digest: Buffer.alloc(32) }), 'INVALID_ARGUMENT'],
    ['neither message nor digest', (s) => s.sign({ name: 'rsa' }), 'INVALID_ARGUMENT'],
    ['oversized message', (s) => s.sign({ name: 'ec', message: Buffer.alloc(101) }), 'PAYLOAD_TOO_LARGE'],
    ['oversized plaintext', (s) => s.encrypt({ name: 'aes', plaintext: Buffer.alloc(101) }), 'PAYLOAD_TOO_LARGE'],
    ['unknown version', (s) => s.verify({ name: 'ec', message: Buffer.alloc(1), signature: Buffer.alloc(64), keyVersion: 2 }), 'KEY_VERSION_NOT_FOUND'],
    ['version 0', (s) => s.verify({ name: 'ec', message: Buffer.alloc(1), signature: Buffer.alloc(64), keyVersion: 0 }), 'INVALID_ARGUMENT'],
    ['not an envelope', (s) => s.decrypt({ name: 'aes', ciphertext: Buffer.from('garbage-garbage-garbage-garbage-garbage') }), 'INVALID_ARGUMENT'],
    ['algorithm without keyVersion', (s) => s.decrypt({ name: 'aes', ciphertext: Buffer.alloc(40), algorithm: 'AES_GCM' }), 'INVALID_ARGUMENT'],
    ['random length out of range', (s) => s.randomBytes(65), 'INVALID_ARGUMENT'],
    ['destroying an enabled key', (s) => s.destroyKey('ec'), 'KEY_NOT_DISABLED'],
    ['rotating a disabled key', (s) => s.rotateKey('off'), 'KEY_DISABLED'],
    ['signing with a version that does not exist', (s) => s.sign({ name: 'ec2', message: Buffer.alloc(1), keyVersion: 3 }), 'KEY_VERSION_NOT_FOUND'],
    ['signing with version 0', (s) => s.sign({ name: 'ec2', message: Buffer.alloc(1), keyVersion: 0 }), 'INVALID_ARGUMENT'],
    ['encrypting with a version that does not exist', (s) => s.encrypt({ name: 'aes', plaintext: Buffer.alloc(1), keyVersion: 3 }), 'KEY_VERSION_NOT_FOUND'],
    ['AES_KW of 15 bytes', (s) => s.encrypt({ name: 'kek', algorithm: 'AES_KW', plaintext: Buffer.alloc(15) }), 'INVALID_ARGUMENT'],
    ['AES_KW of 8 bytes', (s) => s.encrypt({ name: 'kek', algorithm: 'AES_KW', plaintext: Buffer.alloc(8) }), 'INVALID_ARGUMENT'],
    ['AES_KW of 20 bytes', (s) => s.encrypt({ name: 'kek', algorithm: 'AES_KW', plaintext: Buffer.alloc(20) }), 'INVALID_ARGUMENT'],
    ['AES_KW with aad', (s) => s.encrypt({ name: 'kek', algorithm: 'AES_KW', plaintext: Buffer.alloc(16), aad: Buffer.alloc(1) }), 'INVALID_ARGUMENT'],
    ['AES_KW unwrap of 20 bytes', (s) => s.decrypt({ name: 'kek', algorithm: 'AES_KW', keyVersion: 1, ciphertext: Buffer.alloc(20) }), 'INVALID_ARGUMENT'],
    ['AES_KW unwrap of 16 bytes', (s) => s.decrypt({ name: 'kek', algorithm: 'AES_KW', keyVersion: 1, ciphertext: Buffer.alloc(16) }), 'INVALID_ARGUMENT'],
    ['AES_KW with a data (encrypt) key', (s) => s.encrypt({ name: 'aes', algorithm: 'AES_KW', plaintext: Buffer.alloc(16) }), 'INCOMPATIBLE_KEY'],
    ['AES_KW unwrap with a data (encrypt) key', (s) => s.decrypt({ name: 'aes', algorithm: 'AES_KW', keyVersion: 1, ciphertext: Buffer.alloc(24) }), 'INCOMPATIBLE_KEY'],
    ['AES_GCM with a wrap key', (s) => s.encrypt({ name: 'kek', algorithm: 'AES_GCM', plaintext: Buffer.alloc(16) }), 'INCOMPATIBLE_KEY'],
    ['AES_GCM decryption with a wrap key', (s) => s.decrypt({ name: 'kek', algorithm: 'AES_GCM', keyVersion: 1, ciphertext: Buffer.alloc(40) }), 'INCOMPATIBLE_KEY'],
    ['an AES_GCM envelope opened with a wrap key', (s) => s.decrypt({ name: 'kek', ciphertext: gcmEnvelope }), 'INCOMPATIBLE_KEY'],
    ['a wrap purpose for an RSA key', (s) => s.createKey({ name: 'n', type: 'RSA_2048', purpose: 'wrap' }), 'INCOMPATIBLE_KEY'],
    ['signing with a wrap key', (s) => s.sign({ name: 'kek', message: Buffer.alloc(1) }), 'INCOMPATIBLE_KEY'],
    ['RSA_OAEP_SHA1 with aad', (s) => s.encrypt({ name: 'rsaenc', algorithm: 'RSA_OAEP_SHA1', plaintext: Buffer.alloc(1), aad: Buffer.alloc(1) }), 'INVALID_ARGUMENT'],
    ['RSA_OAEP_SHA256 the backend lacks', (s) => s.encrypt({ name: 'rsaenc', algorithm: 'RSA_OAEP_SHA256', plaintext: Buffer.alloc(1) }), 'UNSUPPORTED_BY_BACKEND'],
    ['key agreement with a signing key', (s) => s.deriveSharedSecret({ name: 'ec', peerPublicKey: p256Peer }), 'INCOMPATIBLE_KEY'],
    ['key agreement with a disabled key', (s) => s.deriveSharedSecret({ name: 'ecdhoff', peerPublicKey: p256Peer }), 'KEY_DISABLED'],
    ['key agreement with a curve the backend lacks', (s) => s.deriveSharedSecret({ name: 'ecdh384', peerPublicKey: p384Peer }), 'UNSUPPORTED_BY_BACKEND'],
    ['key agreement with a peer on another curve', (s) => s.deriveSharedSecret({ name: 'ecdh', peerPublicKey: p384Peer }), 'INCOMPATIBLE_KEY'],
    ['key agreement with an RSA peer', (s) => s.deriveSharedSecret({ name: 'ecdh', peerPublicKey: rsaPeer }), 'INCOMPATIBLE_KEY'],
    ['key agreement with a peer point off the curve', (s) => s.deriveSharedSecret({ name: 'ecdh', peerPublicKey: offCurve }), 'INVALID_ARGUMENT'],
    ['key agreement with a peer that is not SPKI', (s) => s.deriveSharedSecret({ name: 'ecdh', peerPublicKey: Buffer.from('not a key') }), 'INVALID_ARGUMENT'],
    ['key agreement with a private key as peer', (s) => s.deriveSharedSecret({ name: 'ecdh', peerPublicKey: p256Private }), 'INVALID_ARGUMENT'],
    ['key agreement with a version that does not exist', (s) => s.deriveSharedSecret({ name: 'ecdh', keyVersion: 3, peerPublicKey: p256Peer }), 'KEY_VERSION_NOT_FOUND'],
  ];
  for (const [what, call, code] of refusals) {
    it(`${what} -> ${code}`, async () => {
      const { service, calls } = setup();
      await expect(call(service)).rejects.toMatchObject({ code });
      expect(calls.filter((c) => c !== 'describeKey')).toEqual([]);
    });
  }

  it('a MAC of the wrong length is not valid and never reaches the backend', async () => {
    const { service, calls } = setup();
    expect((await service.verifyMac({ name: 'hmac', data: Buffer.alloc(1), mac: Buffer.alloc(31) })).valid).toBe(false);
    expect(calls).not.toContain('verifyMac');
  });
});

describe('KeyService key agreement support', () => {
  it('refuses an agree key on a backend that cannot do key agreement, before the backend is called', async () => {
    const r = recordingBackend([]);
    const noAgreement: Backend = { ...r.backend, capabilities: () => ({ ...caps, keyAgreement: [] }) };
    const service = new KeyService(noAgreement, { limits: { maxDataBytes: 100, maxRandomBytes: 64 }, metadataCacheTtlMs: 0 });
    await expect(service.createKey({ name: 'n', type: 'EC_P256', purpose: 'agree' })).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
    expect(r.calls).toEqual([]);
  });
});

describe('KeyService metadata cache', () => {
  it('asks the backend once per key within the TTL, and always on getKey', async () => {
    const { service, calls } = setup();
    await Promise.all([1, 2, 3].map(() => service.sign({ name: 'ec', message: Buffer.alloc(1) })));
    await service.sign({ name: 'ec', message: Buffer.alloc(1) });
    expect(calls.filter((c) => c === 'describeKey')).toHaveLength(1);
    await service.getKey('ec');
    expect(calls.filter((c) => c === 'describeKey')).toHaveLength(2);
  });

  it('a version the cache does not know costs one refresh, not two', async () => {
    const { service, calls } = setup();
    await service.sign({ name: 'ec', message: Buffer.alloc(1) });
    expect(calls.filter((c) => c === 'describeKey')).toHaveLength(1);
    await expect(service.usableKeyVersion('ec', 'sign', 5)).rejects.toMatchObject({ code: 'KEY_VERSION_NOT_FOUND' });
    expect(calls.filter((c) => c === 'describeKey')).toHaveLength(2);
    await expect(service.sign({ name: 'ec', message: Buffer.alloc(1), keyVersion: 5 })).rejects.toMatchObject({ code: 'KEY_VERSION_NOT_FOUND' });
    expect(calls.filter((c) => c === 'describeKey')).toHaveLength(3);
  });

  it('with TTL 0 asks every time', async () => {
    const { service, calls } = setup(0);
    await service.sign({ name: 'ec', message: Buffer.alloc(1) });
    await service.sign({ name: 'ec', message: Buffer.alloc(1) });
    expect(calls.filter((c) => c === 'describeKey')).toHaveLength(2);
  });

  it('signs and encrypts with a requested existing version, the primary one by default', async () => {
    const { service, calls } = setup();
    expect((await service.sign({ name: 'ec2', message: Buffer.alloc(1), keyVersion: 1 })).keyVersion).toBe(1);
    expect((await service.sign({ name: 'ec2', message: Buffer.alloc(1) })).keyVersion).toBe(2);
    const enc = await service.encrypt({ name: 'aes', plaintext: Buffer.from('x'), keyVersion: 1 });
    expect(enc.keyVersion).toBe(1);
    expect(enc.ciphertext.readUInt32BE(4)).toBe(1);
    expect(calls.filter((c) => c !== 'describeKey')).toEqual(['sign:1', 'sign:2', 'encrypt:1']);
  });

  it('key agreement reaches the backend with the checked version and a peer key as SPKI', async () => {
    const { service, calls } = setup();
    expect((await service.deriveSharedSecret({ name: 'ecdh', peerPublicKey: p256Peer })).keyVersion).toBe(2);
    expect((await service.deriveSharedSecret({ name: 'ecdh', keyVersion: 1, peerPublicKey: p256.publicKey })).keyVersion).toBe(1);
    expect(calls.filter((c) => c !== 'describeKey')).toEqual(['deriveSharedSecret:2', 'deriveSharedSecret:1']);
  });

  it('wraps with a wrap key by default (AES_KW: its only algorithm) and encrypts with a data key by default (AES_GCM)', async () => {
    const { service, calls } = setup();
    expect((await service.encrypt({ name: 'kek', plaintext: Buffer.alloc(16) })).algorithm).toBe('AES_KW');
    expect((await service.encrypt({ name: 'aes', plaintext: Buffer.alloc(16) })).algorithm).toBe('AES_GCM');
    expect(calls.filter((c) => c !== 'describeKey')).toEqual(['encrypt:1', 'encrypt:2']);
  });

  it('uses the primary version for new work and an envelope version for decryption', async () => {
    const { service } = setup();
    const enc = await service.encrypt({ name: 'aes', plaintext: Buffer.from('x') });
    expect(enc.keyVersion).toBe(2);
    expect(enc.ciphertext.readUInt32BE(4)).toBe(2);
  });
});
