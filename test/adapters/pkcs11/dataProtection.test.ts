/**
 * Personal-data protection on SoftHSM, as the token holds it (read back with pkcs11js directly): FF1 keys
 * (purpose fpe) encrypt with AES-ECB and do nothing else, token keys (purpose tokenize) are HMAC-SHA-256
 * keys, generated or imported wrapped; retiring and trimming versions is in the token, so that another
 * backend on the token (a replica, also in another process) sees it, and a trim leaves no object of the
 * versions it removed.
 */
import { execFile } from 'node:child_process';
import { createPublicKey, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeEcb } from '../../../src/conformance/reference/nodeBlockCiphers.js';
import { decodeAllowedMechanisms } from '../../../adapters/pkcs11/allowedMechanisms.js';
import { pkcs11BackendFactory } from '../../../adapters/pkcs11/index.js';
import { newKeyObjectId, parseObjectId } from '../../../adapters/pkcs11/keyObjects.js';
import { ORPHAN_GRACE_MS } from '../../../adapters/pkcs11/revisions.js';
import type { Backend, KeyRef } from '../../../src/backend/port.js';
import { KeyService } from '../../../src/operations/keyService.js';
import { parseKeyName, type KeyName, type KeyVersion } from '../../../src/keys/names.js';
import type { KeyMetadata, KeyPurpose, KeyType } from '../../../src/keys/types.js';
import { wrapForImport } from '../../../src/conformance/reference/byokWrap.js';
import { createSoftHsmToken, type SoftHsmToken } from '../../helpers/softhsm.js';
import { TokenInspector } from './tokenInspector.js';

const logger = pino({ level: 'silent' });
const A = pkcs11js;
const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const CKM_AES_ECB = 0x1081;
const CKM_AES_CBC = 0x1082;
const CKM_SHA256_HMAC = 0x251;
const CKM_SHA_1_HMAC = 0x221;
/** Refused by the usage flags (CKR_KEY_FUNCTION_NOT_PERMITTED) or by the allowed list (CKR_MECHANISM_INVALID). */
const REFUSED = [0x68, 0x70];
const FLAGS = [A.CKA_ENCRYPT, A.CKA_DECRYPT, A.CKA_SIGN, A.CKA_VERIFY, A.CKA_WRAP, A.CKA_UNWRAP, A.CKA_DERIVE, A.CKA_SENSITIVE, A.CKA_EXTRACTABLE] as const;

let token: SoftHsmToken;
let one: Backend;
let two: Backend;
let inspector: TokenInspector;
let wrapping: { ref: KeyRef; publicKey: ReturnType<typeof createPublicKey> };
let seq = 0;
const fresh = (stem: string) => parseKeyName(`${stem}-${process.pid}-${seq++}`);
const ref = (meta: KeyMetadata, version: number = meta.primaryVersion): KeyRef => ({ name: meta.name, type: meta.type, version: version as KeyVersion });
const versionsOf = (meta: KeyMetadata) => meta.versions.map((v) => v.version);

beforeAll(async () => {
  token = await createSoftHsmToken();
  one = await pkcs11BackendFactory.create(token.backendConfig(), { logger });
  two = await pkcs11BackendFactory.create(token.backendConfig(), { logger });
  inspector = new TokenInspector(token.library, token.tokenLabel, token.pin);
  const meta = await one.createKey({ name: fresh('wrapping'), type: 'RSA_3072', purpose: 'wrap' });
  wrapping = { ref: ref(meta), publicKey: createPublicKey({ key: meta.versions[0]!.publicKeySpki!, format: 'der', type: 'spki' }) };
}, 120_000);
afterAll(async () => {
  await one?.close();
  await two?.close();
  await token?.cleanup();
});

interface SecretObject {
  flags: Record<string, boolean>;
  allowed: number[];
  valueLength: number;
  /** CKR of an init with `mechanism` for `direction`, or 'ok'. */
  init(direction: 'encrypt' | 'decrypt' | 'sign', mechanism: pkcs11js.Mechanism): number | 'ok';
}

/** The one secret key object labelled `name`, read back on the inspector's own session. */
function secretObject(name: string): SecretObject {
  return inspector.withSession((api, session) => {
    api.C_FindObjectsInit(session, [{ type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_LABEL, value: name }]);
    const [h, more] = api.C_FindObjects(session, 2);
    api.C_FindObjectsFinal(session);
    expect(h).toBeDefined();
    expect(more).toBeUndefined();
    const values = api.C_GetAttributeValue(session, h!, [...FLAGS.map((type) => ({ type })), { type: A.CKA_ALLOWED_MECHANISMS }, { type: A.CKA_VALUE_LEN }]);
    const names = ['encrypt', 'decrypt', 'sign', 'verify', 'wrap', 'unwrap', 'derive', 'sensitive', 'extractable'];
    const flags = Object.fromEntries(names.map((n, i) => [n, values[i]!.value[0] === 1]));
    const init = (direction: 'encrypt' | 'decrypt' | 'sign', mechanism: pkcs11js.Mechanism) =>
      // A session of its own for each: an init that succeeds leaves its operation active.
      inspector.withSession((a, s) => {
        try {
          if (direction === 'encrypt') a.C_EncryptInit(s, mechanism, h!);
          else if (direction === 'decrypt') a.C_DecryptInit(s, mechanism, h!);
          else a.C_SignInit(s, mechanism, h!);
          return 'ok' as const;
        } catch (e) {
          return (e as { code: number }).code;
        }
      });
    return { flags, allowed: decodeAllowedMechanisms(values[FLAGS.length]!.value), valueLength: Number(values[FLAGS.length + 1]!.value.readBigUInt64LE(0)), init };
  });
}

async function importWrapped(type: KeyType, purpose: KeyPurpose, material: Buffer): Promise<KeyMetadata> {
  const scheme = one.capabilities().keyImport.wrappings[0]!;
  return one.importWrappedKey({ kind: 'create', key: { name: fresh(`known-${type.toLowerCase()}`), type, purpose } }, { wrappingKey: wrapping.ref, scheme, ...wrapForImport(wrapping.publicKey, scheme, material) });
}

describe('FF1 keys (purpose fpe) in the token', () => {
  it('the token has what FF1 needs: capability fpe, AES_192 among the key types', () => {
    expect(one.capabilities().fpe).toBe(true);
    expect(one.capabilities().keyTypes).toContain('AES_192');
  });

  /** `bytes` undefined: SoftHSM reports CKA_VALUE_LEN 0 for an unwrapped secret (README, "Key import"). */
  const expectFpeObject = (o: SecretObject, bytes?: number) => {
    expect(o.flags).toEqual({ encrypt: true, decrypt: false, sign: false, verify: false, wrap: false, unwrap: false, derive: false, sensitive: true, extractable: false });
    expect(o.allowed).toEqual([CKM_AES_ECB]);
    if (bytes !== undefined) expect(o.valueLength).toBe(bytes);
    // The token itself refuses everything but ECB encryption, whoever holds the PIN.
    expect(o.init('encrypt', { mechanism: CKM_AES_ECB })).toBe('ok');
    expect(REFUSED).toContain(o.init('decrypt', { mechanism: CKM_AES_ECB }));
    expect(REFUSED).toContain(o.init('encrypt', { mechanism: CKM_AES_CBC, parameter: Buffer.alloc(16) }));
  };

  for (const type of ['AES_128', 'AES_192', 'AES_256'] as const) {
    it(`a generated ${type} fpe key: CKA_ENCRYPT only, CKM_AES_ECB only, sensitive, not extractable`, async () => {
      const meta = await one.createKey({ name: fresh(`fpe-${type.toLowerCase()}`), type, purpose: 'fpe' });
      expectFpeObject(secretObject(meta.name), Number(type.slice(4)) / 8);
    });
  }

  it('an AES_192 fpe key imported wrapped has the same attributes and encrypts as AES-192-ECB', async () => {
    const material = randomBytes(24);
    const meta = await importWrapped('AES_192', 'fpe', material);
    expectFpeObject(secretObject(meta.name));
    const blocks = randomBytes(48);
    expect(await one.encryptBlocks(ref(meta), blocks)).toEqual(nodeEcb('aes', 'encrypt', material, blocks));
  });

  it('an fpe key refuses decryptBlocks, AES-GCM and CMAC; AES keys of purpose encrypt or wrap refuse encryptBlocks', async () => {
    const fpe = await one.createKey({ name: fresh('fpe-only'), type: 'AES_256', purpose: 'fpe' });
    await expect(one.decryptBlocks(ref(fpe), Buffer.alloc(16))).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    await expect(one.encrypt(ref(fpe), 'AES_GCM', Buffer.from('x'))).rejects.toMatchObject({ code: expect.stringMatching(/^(INCOMPATIBLE_KEY|UNSUPPORTED_BY_BACKEND)$/) });
    await expect(one.mac(ref(fpe), 'AES_CMAC', Buffer.alloc(16))).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    for (const purpose of ['encrypt', 'wrap'] as const) {
      const other = await one.createKey({ name: fresh(`aes-${purpose}`), type: 'AES_256', purpose });
      await expect(one.encryptBlocks(ref(other), Buffer.alloc(16))).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    }
  });
});

describe('token keys (purpose tokenize) in the token', () => {
  const expectTokenizeObject = (o: SecretObject) => {
    expect(o.flags).toEqual({ encrypt: false, decrypt: false, sign: true, verify: true, wrap: false, unwrap: false, derive: false, sensitive: true, extractable: false });
    expect(o.allowed).toEqual([CKM_SHA256_HMAC]);
    expect(o.init('sign', { mechanism: CKM_SHA256_HMAC })).toBe('ok');
    expect(REFUSED).toContain(o.init('sign', { mechanism: CKM_SHA_1_HMAC }));
  };

  it('generated: CKA_SIGN and CKA_VERIFY, CKM_SHA256_HMAC only; mac and verifyMac work', async () => {
    const meta = await one.createKey({ name: fresh('tokens'), type: 'HMAC_256', purpose: 'tokenize' });
    expectTokenizeObject(secretObject(meta.name));
    const mac = await one.mac(ref(meta), 'HMAC_SHA256', Buffer.from('subject-1'));
    expect(await one.verifyMac(ref(meta), 'HMAC_SHA256', Buffer.from('subject-1'), mac)).toBe(true);
    expect(await one.verifyMac(ref(meta), 'HMAC_SHA256', Buffer.from('subject-2'), mac)).toBe(false);
  });

  it('imported wrapped: the same attributes', async () => {
    const meta = await importWrapped('HMAC_256', 'tokenize', randomBytes(32));
    expectTokenizeObject(secretObject(meta.name));
  });
});

/** hsm-bridge's key objects under the name, as (version, kind) pairs: kind is the class, or the companion role. */
function keyObjectsOf(name: KeyName): { version: number; kind: string }[] {
  const out: { version: number; kind: string }[] = [];
  for (const [cls, kind] of [[A.CKO_SECRET_KEY, 'secret'], [A.CKO_PRIVATE_KEY, 'private'], [A.CKO_PUBLIC_KEY, 'public']] as const) {
    for (const { id } of inspector.objects(name, cls, [])) {
      const parsed = parseObjectId(id)!;
      out.push({ version: parsed.version, kind: parsed.companion ?? kind });
    }
  }
  return out.sort((a, b) => a.version - b.version || a.kind.localeCompare(b.kind));
}

/** One backend call in another process on the same token (ceremonyReplica.ts runs any backend method). */
async function inOtherProcess(method: string, args: unknown[]): Promise<{ value?: unknown; error?: string }> {
  const call = { method, args, config: token.backendConfig({ sessionPoolSize: 2 }) };
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'test/adapters/pkcs11/ceremonyReplica.ts'], {
    cwd: ROOT,
    env: { ...process.env, HSMB_TEST_CALL: JSON.stringify(call) },
    timeout: 60_000,
  });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as { value?: unknown; error?: string };
}

describe('retired versions and trimming in the token', () => {
  it('a key written before minDecryptionVersion existed reads as none retired, and takes one', async () => {
    const name = fresh('old-record');
    // The inspector writes the metadata record as the adapter did before the field (no minDecryptionVersion).
    inspector.importKnownKey(name, 'HMAC_256', 'mac', [[
      { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_KEY_TYPE, value: A.CKK_GENERIC_SECRET },
      { type: A.CKA_SIGN, value: true }, { type: A.CKA_VALUE, value: randomBytes(32) },
    ]]);
    expect((await one.describeKey(name)).minDecryptionVersion).toBeUndefined();
    await one.rotateKey(name);
    expect((await one.setMinDecryptionVersion(name, 2 as KeyVersion)).minDecryptionVersion).toBe(2);
    expect((await two.describeKey(name)).minDecryptionVersion).toBe(2);
  });

  it('trimming a payment key removes the old versions\' keys and companions; only the kept versions\' objects remain', async () => {
    let meta = await one.createKey({ name: fresh('bdk'), type: 'TDES_2KEY', purpose: 'bdk' });
    for (let i = 0; i < 2; i++) meta = await one.rotateKey(meta.name);
    expect(keyObjectsOf(meta.name)).toEqual([1, 2, 3].flatMap((version) => [{ version, kind: 'secret' }, { version, kind: 'variant' }]));
    await one.setMinDecryptionVersion(meta.name, 3 as KeyVersion);
    expect(versionsOf(await one.trimKey(meta.name))).toEqual([3]);
    expect(keyObjectsOf(meta.name)).toEqual([{ version: 3, kind: 'secret' }, { version: 3, kind: 'variant' }]);
    // The kept version still has its companion: a DUKPT derivation needs it.
    const derived = await one.deriveDukptKey(ref(meta, 3), { scheme: 'tdes', ksn: Buffer.from('FFFF9876543210E00001', 'hex') });
    await one.releaseTransientKey(derived);
  });

  it('a trim also removes old unlisted objects below the minimum (an interrupted trim\'s), not young ones (a create elsewhere may own them)', async () => {
    let meta = await one.createKey({ name: fresh('leftovers'), type: 'HMAC_256', purpose: 'mac' });
    for (let i = 0; i < 2; i++) meta = await one.rotateKey(meta.name);
    await one.setMinDecryptionVersion(meta.name, 3 as KeyVersion);
    await one.trimKey(meta.name);
    const orphan = (version: number, at: number) =>
      inspector.withSession((api, session) =>
        api.C_CreateObject(session, [
          { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_KEY_TYPE, value: A.CKK_GENERIC_SECRET },
          { type: A.CKA_TOKEN, value: true }, { type: A.CKA_PRIVATE, value: true }, { type: A.CKA_LABEL, value: meta.name },
          { type: A.CKA_ID, value: newKeyObjectId(version as KeyVersion, at) }, { type: A.CKA_VALUE, value: randomBytes(32) },
        ]));
    orphan(1, Date.now() - ORPHAN_GRACE_MS - 60_000);
    orphan(2, Date.now());
    expect(versionsOf(await one.trimKey(meta.name))).toEqual([3]);
    expect(keyObjectsOf(meta.name)).toEqual([{ version: 2, kind: 'secret' }, { version: 3, kind: 'secret' }]);
  });

  it('a replica sees minDecryptionVersion and the trim, and trims from it; a key pair\'s both halves go', async () => {
    let meta = await one.createKey({ name: fresh('pair'), type: 'EC_P256', purpose: 'sign' });
    for (let i = 0; i < 3; i++) meta = await one.rotateKey(meta.name);
    await one.setMinDecryptionVersion(meta.name, 3 as KeyVersion);
    // The replica has version 2's handles cached when the other process trims.
    await two.sign(ref(meta, 2), 'ES256', { kind: 'message', data: Buffer.from('m') });
    // Another backend on the token, in this process and in another one.
    expect((await two.describeKey(meta.name)).minDecryptionVersion).toBe(3);
    expect((await inOtherProcess('describeKey', [meta.name])).value).toMatchObject({ minDecryptionVersion: 3, primaryVersion: 4 });
    // The other process trims; both backends here see the result, and the token holds nothing of 1 and 2.
    expect((await inOtherProcess('trimKey', [meta.name])).value).toMatchObject({ minDecryptionVersion: 3, versions: [{ version: 3 }, { version: 4 }] });
    expect(keyObjectsOf(meta.name)).toEqual([3, 4].flatMap((version) => [{ version, kind: 'private' }, { version, kind: 'public' }]));
    for (const backend of [one, two]) {
      expect(versionsOf(await backend.describeKey(meta.name))).toEqual([3, 4]);
      await expect(backend.sign(ref(meta, 2), 'ES256', { kind: 'message', data: Buffer.from('m') })).rejects.toMatchObject({ code: 'KEY_VERSION_NOT_FOUND' });
    }
    // A trimmed version cannot be named again. The replica raises it; the first backend reads that and
    // trims from it, and rotating goes on after the newest version.
    await expect(two.setMinDecryptionVersion(meta.name, 1 as KeyVersion)).rejects.toMatchObject({ code: 'KEY_VERSION_NOT_FOUND' });
    expect((await two.setMinDecryptionVersion(meta.name, 4 as KeyVersion)).minDecryptionVersion).toBe(4);
    expect((await one.describeKey(meta.name)).minDecryptionVersion).toBe(4);
    expect(versionsOf(await one.trimKey(meta.name))).toEqual([4]);
    expect((await two.rotateKey(meta.name)).primaryVersion).toBe(5);
  }, 120_000);

  it('the core read a key with more versions, and a replica destroyed and made it again: the backend refuses the minimum, and a trim keeps the new key', async () => {
    const name = fresh('remade');
    await one.createKey({ name, type: 'HMAC_256', purpose: 'mac' });
    await one.rotateKey(name);
    await one.rotateKey(name);
    // Right after the core reads the key (3 versions), a replica destroys it and makes it again with 1.
    let remade = false;
    const racing = new Proxy(one, {
      get(target, property) {
        if (property === 'describeKey') {
          return async (n: KeyName) => {
            const read = await target.describeKey(n);
            if (!remade) {
              remade = true;
              await two.setKeyState(n, 'disabled');
              await two.destroyKey(n);
              await two.createKey({ name: n, type: 'HMAC_256', purpose: 'mac' });
            }
            return read;
          };
        }
        const value = Reflect.get(target, property) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const service = new KeyService(racing, { limits: { maxDataBytes: 4096, maxRandomBytes: 64 }, metadataCacheTtlMs: 0 });
    await expect(service.updateKey({ name, minDecryptionVersion: 3 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(remade).toBe(true);
    const after = await one.trimKey(name);
    expect(after).toMatchObject({ primaryVersion: 1, versions: [{ version: 1 }] });
    expect(after.minDecryptionVersion).toBeUndefined();
    expect(keyObjectsOf(name)).toEqual([{ version: 1, kind: 'secret' }]);
    expect(await one.mac(ref(after, 1), 'HMAC_SHA256', Buffer.from('m'))).toHaveLength(32);
  });

  it('a record that holds a minimum above the newest version (never set for this key) reads as none retired, and a trim destroys nothing', async () => {
    let meta = await one.createKey({ name: fresh('over'), type: 'HMAC_256', purpose: 'mac' });
    meta = await one.rotateKey(meta.name);
    inspector.rewriteMetadata(meta.name, (record) => ({ ...record, minDecryptionVersion: 9 as KeyVersion }));
    const described = await two.describeKey(meta.name);
    expect(described).toMatchObject({ primaryVersion: 2 });
    expect(described.minDecryptionVersion).toBeUndefined();
    expect(versionsOf(await two.trimKey(meta.name))).toEqual([1, 2]);
    expect(keyObjectsOf(meta.name)).toEqual([{ version: 1, kind: 'secret' }, { version: 2, kind: 'secret' }]);
    expect(await one.mac(ref(meta, 1), 'HMAC_SHA256', Buffer.from('m'))).toHaveLength(32);
  });
});
