/**
 * The keystore on disk: persistence across reopen, the sealed file format, file modes, a wrong master
 * key, altered or moved records, and the one-process lock.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes, verify as nodeVerify } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Backend } from '../../../src/backend/port.js';
import { parseKeyName } from '../../../src/keys/names.js';
import { allKeyTypes, keyTypes } from '../../../src/keys/types.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../../helpers/software.js';
import { createKey, openBackend, readKeystoreJson, refOf, unsealWithNode, type KeystoreJson } from './support.js';

let h: SoftwareBackendHarness;
const open: Backend[] = [];
const start = async (overrides = {}) => {
  const b = await openBackend(h, overrides);
  open.push(b);
  return b;
};
const path = () => h.config.keystorePath;
const masterKey = () => process.env[h.config.masterKeyEnv]!;
const rewrite = (edit: (doc: KeystoreJson) => void) => {
  const doc = readKeystoreJson(path());
  edit(doc);
  writeFileSync(path(), JSON.stringify(doc));
};

beforeEach(async () => {
  h = await createSoftwareBackendConfig();
});
afterEach(async () => {
  for (const b of open.splice(0)) await b.close();
  await h.cleanup();
});

describe('persistence', () => {
  it('a reopened keystore has the same keys, versions, states and public keys, and they still work', async () => {
    const b1 = await start();
    for (const type of allKeyTypes) await createKey(b1, `k-${type.toLowerCase()}`, type);
    const signer = await createKey(b1, 'signer', 'EC_P384');
    const signature = await b1.sign(signer, 'ES384', { kind: 'message', data: Buffer.from('m') });
    const enc = await createKey(b1, 'enc', 'AES_128');
    const ct = await b1.encrypt(enc, 'AES_GCM', Buffer.from('secret'));
    await b1.rotateKey(signer.name);
    await b1.setKeyState(parseKeyName('k-aes_256'), 'disabled');
    await b1.setKeyState(parseKeyName('k-hmac_256'), 'disabled');
    await b1.destroyKey(parseKeyName('k-hmac_256'));
    const before = await b1.listKeys();
    await b1.close();

    const b2 = await start();
    const after = await b2.listKeys();
    expect(after).toEqual(before);
    expect(after.map((k) => k.name)).not.toContain('k-hmac_256');
    expect(after.find((k) => k.name === 'k-aes_256')?.state).toBe('disabled');
    expect((await b2.describeKey(signer.name)).primaryVersion).toBe(2);
    expect(await b2.verify(signer, 'ES384', { kind: 'message', data: Buffer.from('m') }, signature)).toBe(true);
    expect(await b2.decrypt(enc, 'AES_GCM', ct)).toEqual(Buffer.from('secret'));
  });

  it('every change is on disk when its promise resolves, including concurrent ones', async () => {
    const b = await start();
    await Promise.all(Array.from({ length: 20 }, (_, i) => createKey(b, `c${i}`, i % 2 ? 'EC_P256' : 'AES_256')));
    await Promise.all([b.rotateKey(parseKeyName('c1')), b.rotateKey(parseKeyName('c1')), b.setKeyState(parseKeyName('c2'), 'disabled')]);
    const doc = readKeystoreJson(path());
    expect(doc.keys.map((k) => k.name).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `c${i}`).sort());
    expect(doc.keys.find((k) => k.name === 'c1')!.versions.map((v) => v.version)).toEqual([1, 2, 3]);
    expect((doc.keys.find((k) => k.name === 'c2') as unknown as { state: string }).state).toBe('disabled');
    await expect(createKey(b, 'c3', 'AES_256')).rejects.toMatchObject({ code: 'KEY_ALREADY_EXISTS' });
    const racing = await Promise.allSettled([createKey(b, 'same', 'AES_256'), createKey(b, 'same', 'HMAC_256')]);
    expect(racing.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(racing.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'KEY_ALREADY_EXISTS' } });
    await expect(b.rotateKey(parseKeyName('none'))).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    await expect(b.setKeyState(parseKeyName('none'), 'enabled')).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    await expect(b.destroyKey(parseKeyName('none'))).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
  });

  it('writes atomically: no temp files are left, and the file and its directory have owner-only modes', async () => {
    const b = await start({ keystorePath: join(h.dir, 'nested', 'deeper', 'keystore.json') });
    await createKey(b, 'a', 'AES_256');
    const dir = join(h.dir, 'nested', 'deeper');
    expect(readdirSync(dir).sort()).toEqual(['keystore.json', 'keystore.json.lock']);
    expect(statSync(join(dir, 'keystore.json')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'keystore.json.lock')).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });
});

describe('file format', () => {
  it('holds metadata in clear and key material only sealed, bound to its key', async () => {
    const b = await start();
    const ec = await createKey(b, 'ec', 'EC_P256');
    const hmac = await createKey(b, 'mac', 'HMAC_256');
    const doc = readKeystoreJson(path());
    expect(doc).toMatchObject({ format: 'hsm-bridge-software-keystore', formatVersion: 1 });
    const text = readFileSync(path(), 'utf8');
    const pkcs8 = unsealWithNode(path(), masterKey(), ec.name, 1);
    const secret = unsealWithNode(path(), masterKey(), hmac.name, 1);
    for (const s of [pkcs8, secret]) {
      expect(text).not.toContain(s.toString('base64'));
      expect(text.toLowerCase()).not.toContain(s.toString('hex'));
    }
    expect(text).not.toContain(masterKey());
    // the public key in the file is the one of the sealed private key
    const spki = doc.keys.find((k) => k.name === 'ec')!.versions[0]!.publicKeySpki!;
    const signature = await b.sign(ec, 'ES256', { kind: 'message', data: Buffer.from('x') });
    expect(nodeVerify('sha256', Buffer.from('x'), { key: Buffer.from(spki, 'base64'), format: 'der', type: 'spki', dsaEncoding: 'ieee-p1363' }, signature)).toBe(true);
    expect(doc.keys.find((k) => k.name === 'mac')!.versions[0]!.publicKeySpki).toBeUndefined();
  });
});

describe('refusing a keystore it cannot trust', () => {
  const seed = async () => {
    const b = await start();
    await createKey(b, 'one', 'EC_P256');
    await createKey(b, 'two', 'EC_P256');
    await createKey(b, 'sym', 'AES_256');
    await b.close();
  };

  it('a wrong master key stops the start, and the lock is released for a retry', async () => {
    await seed();
    const right = masterKey();
    process.env[h.config.masterKeyEnv] = randomBytes(32).toString('base64');
    await expect(start()).rejects.toThrow(/master key does not open this keystore/);
    process.env[h.config.masterKeyEnv] = right;
    expect((await start()).capabilities().random).toBe(true);
  });

  it('an altered record, a record moved to another key, or a swapped public key stops the start', async () => {
    await seed();
    const original = readFileSync(path(), 'utf8');
    const attempts: Array<[string, (d: KeystoreJson) => void, RegExp]> = [
      ['flip a ciphertext bit', (d) => {
        const m = d.keys[0]!.versions[0]!.material;
        const data = Buffer.from(m.data, 'base64');
        data[3]! ^= 1;
        m.data = data.toString('base64');
      }, /key one version 1 fails authentication/],
      ['move a record to another key', (d) => { d.keys[1]!.versions[0]!.material = d.keys[0]!.versions[0]!.material; }, /key two version 1 fails authentication/],
      ['renumber a version', (d) => { d.keys[0]!.versions[0]!.version = 2; }, /key one version 2 fails authentication/],
      ['change the type', (d) => { d.keys[2]!.type = 'AES_128'; }, /key sym version 1 fails authentication/],
      ['swap public keys', (d) => { d.keys[0]!.versions[0]!.publicKeySpki = d.keys[1]!.versions[0]!.publicKeySpki; }, /key one version 1 has a public key that does not match/],
      ['drop a public key', (d) => { delete d.keys[0]!.versions[0]!.publicKeySpki; }, /does not match/],
      ['alter the master key check', (d) => { d.masterKeyCheck.iv = Buffer.alloc(12).toString('base64'); }, /master key does not open/],
      ['duplicate a key', (d) => { d.keys.push(d.keys[0]!); }, /key one appears twice/],
      ['unknown field', (d) => { (d as unknown as Record<string, unknown>).extra = 1; }, /malformed/],
      ['bad key name', (d) => { d.keys[0]!.name = 'a/b'; }, /invalid name/],
    ];
    for (const [what, edit, expected] of attempts) {
      writeFileSync(path(), original);
      rewrite(edit);
      await expect(start(), what).rejects.toThrow(expected);
    }
    writeFileSync(path(), '{"format": ');
    await expect(start()).rejects.toThrow(/is not valid JSON/);
    writeFileSync(path(), original);
    expect((await start()).capabilities().keyTypes).toHaveLength(allKeyTypes.length);
  });

  it('a keystore without its master key is refused rather than given a new one', async () => {
    await seed();
    const b = await openBackend(h, { masterKeyEnv: 'HSMB_TEST_UNSET_MASTER_KEY' }).catch((e: Error) => e);
    expect(b).toBeInstanceOf(Error);
    expect((b as Error).message).toMatch(/keystore exists but its master key was not found: set HSMB_TEST_UNSET_MASTER_KEY or restore/);
    expect(readdirSync(h.dir)).not.toContain('keystore.json.master-key');
  });
});

describe('one process per keystore', () => {
  it('a second instance is refused while the first holds the lock, and starts once it is closed', async () => {
    const first = await start();
    await expect(openBackend(h)).rejects.toThrow(new RegExp(`in use by process ${process.pid}`));
    await first.close();
    const second = await start();
    expect(await second.health()).toEqual({ ready: true });
    expect(readFileSync(`${path()}.lock`, 'utf8').trim()).toBe(String(process.pid));
  });

  it("takes over a lock left by a process that has died", async () => {
    const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    const deadPid = Number(child.stdout.toString());
    expect(deadPid).toBeGreaterThan(0);
    writeFileSync(`${path()}.lock`, `${deadPid}\n`);
    const b = await start();
    expect(readFileSync(`${path()}.lock`, 'utf8').trim()).toBe(String(process.pid));
    await b.close();
    expect(readdirSync(h.dir)).not.toContain('keystore.json.lock');
    expect(readdirSync(h.dir).filter((f) => f.includes('stale'))).toEqual([]);
  });
});

describe('key metadata', () => {
  it('describes an RSA encryption key with its size and the same public key after reopen', async () => {
    const b = await start();
    const key = await createKey(b, 'rsa', 'RSA_3072', 'encrypt');
    const meta = await b.describeKey(key.name);
    expect(meta).toMatchObject({ type: 'RSA_3072', purpose: 'encrypt', state: 'enabled', primaryVersion: 1 });
    expect(keyTypes[meta.type].bits).toBe(3072);
    const digest = createHash('sha256').update(meta.versions[0]!.publicKeySpki!).digest('hex');
    await b.close();
    const again = await start();
    expect(createHash('sha256').update((await again.describeKey(refOf('rsa', 1, 'RSA_3072').name)).versions[0]!.publicKeySpki!).digest('hex')).toBe(digest);
  });
});
