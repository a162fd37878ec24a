/**
 * The core's checks, with a recording backend: every refusal must happen before the backend is called
 * ("bad input changes nothing"). The backends themselves are tested for real in test/conformance.
 */
import { describe, expect, it } from 'vitest';
import type { Backend, Capabilities } from '../../src/backend/port.js';
import type { KeyName, KeyVersion } from '../../src/keys/names.js';
import type { KeyMetadata, KeyState, KeyType } from '../../src/keys/types.js';
import { KeyService } from '../../src/operations/keyService.js';

const caps: Capabilities = {
  keyTypes: ['EC_P256', 'AES_256', 'RSA_2048', 'HMAC_256'],
  sign: ['ES256', 'RS256'],
  signDigest: ['RS256'],
  encrypt: ['AES_GCM'],
  mac: ['HMAC_SHA256'],
  random: true,
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
    close: async () => undefined,
    createKey: async (k) => {
      calls.push('createKey');
      return meta(k.name, k.type, 'enabled');
    },
    rotateKey: async (n) => (calls.push('rotateKey'), find(n)),
    setKeyState: async (n) => (calls.push('setKeyState'), find(n)),
    destroyKey: async () => void calls.push('destroyKey'),
    describeKey: async (n) => {
      calls.push('describeKey');
      return find(n);
    },
    listKeys: async () => keys,
    sign: record('sign'),
    verify: async () => (calls.push('verify'), true),
    encrypt: async () => (calls.push('encrypt'), { iv: Buffer.alloc(12), data: Buffer.alloc(16) }),
    decrypt: record('decrypt'),
    mac: record('mac'),
    verifyMac: async () => (calls.push('verifyMac'), true),
    randomBytes: record('randomBytes'),
  };
  return { backend, calls };
}

function meta(name: string, type: KeyType, state: KeyState, versions = 1): KeyMetadata {
  return {
    name: name as KeyName,
    type,
    purpose: type === 'AES_256' ? 'encrypt' : type === 'HMAC_256' ? 'mac' : 'sign',
    state,
    createdAt: new Date(0).toISOString(),
    primaryVersion: versions as KeyVersion,
    versions: Array.from({ length: versions }, (_, i) => ({ version: (i + 1) as KeyVersion, createdAt: new Date(0).toISOString() })),
  };
}

const setup = (ttl = 60_000) => {
  const r = recordingBackend([meta('ec', 'EC_P256', 'enabled'), meta('aes', 'AES_256', 'enabled', 2), meta('off', 'EC_P256', 'disabled'), meta('rsa', 'RSA_2048', 'enabled'), meta('hmac', 'HMAC_256', 'enabled')]);
  return { ...r, service: new KeyService(r.backend, { limits: { maxDataBytes: 100, maxRandomBytes: 64 }, metadataCacheTtlMs: ttl }) };
};

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

describe('KeyService metadata cache', () => {
  it('asks the backend once per key within the TTL, and always on getKey', async () => {
    const { service, calls } = setup();
    await Promise.all([1, 2, 3].map(() => service.sign({ name: 'ec', message: Buffer.alloc(1) })));
    await service.sign({ name: 'ec', message: Buffer.alloc(1) });
    expect(calls.filter((c) => c === 'describeKey')).toHaveLength(1);
    await service.getKey('ec');
    expect(calls.filter((c) => c === 'describeKey')).toHaveLength(2);
  });

  it('with TTL 0 asks every time', async () => {
    const { service, calls } = setup(0);
    await service.sign({ name: 'ec', message: Buffer.alloc(1) });
    await service.sign({ name: 'ec', message: Buffer.alloc(1) });
    expect(calls.filter((c) => c === 'describeKey')).toHaveLength(2);
  });

  it('uses the primary version for new work and an envelope version for decryption', async () => {
    const { service } = setup();
    const enc = await service.encrypt({ name: 'aes', plaintext: Buffer.from('x') });
    expect(enc.keyVersion).toBe(2);
    expect(enc.ciphertext.readUInt32BE(4)).toBe(2);
  });
});
