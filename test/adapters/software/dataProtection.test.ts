/**
 * Issue 14 in the software keystore: retired versions (minDecryptionVersion) and trimming as the file holds
 * them, keystores written before they existed, edits of the file, and what keys of purpose fpe and tokenize
 * may do here (exactly INCOMPATIBLE_KEY for the rest; the shared conformance suite also allows
 * UNSUPPORTED_BY_BACKEND).
 */
import { createCipheriv, createHmac, createPublicKey, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { nodeEcb } from '../../../src/conformance/reference/nodeBlockCiphers.js';
import type { Backend, KeyRef } from '../../../src/backend/port.js';
import { parseKeyName, type KeyVersion } from '../../../src/keys/names.js';
import type { KeyPurpose, KeyType } from '../../../src/keys/types.js';
import { wrapForImport } from '../../../src/conformance/reference/byokWrap.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../../helpers/software.js';
import { createKey, openBackend, readKeystoreJson, refOf, unsealWithNode, type KeystoreJson } from './support.js';

let h: SoftwareBackendHarness;
const open: Backend[] = [];
const start = async () => {
  const b = await openBackend(h);
  open.push(b);
  return b;
};
const path = () => h.config.keystorePath;
const masterKey = () => process.env[h.config.masterKeyEnv]!;
const fileKey = (name: string) => readKeystoreJson(path()).keys.find((k) => k.name === name)!;
const v = (n: number) => n as KeyVersion;

beforeEach(async () => {
  h = await createSoftwareBackendConfig();
});
afterEach(async () => {
  for (const b of open.splice(0)) await b.close();
  await h.cleanup();
});

/** AES-256-GCM as the keystore documents it, with node:crypto alone: for writing a file of an older release. */
function sealWithNode(aad: string, plaintext: Buffer): { iv: string; data: string } {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', Buffer.from(masterKey(), 'base64'), iv);
  cipher.setAAD(Buffer.from(aad));
  const data = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return { iv: iv.toString('base64'), data: data.toString('base64') };
}

describe('retired versions in the keystore file', () => {
  it('a keystore written before minDecryptionVersion existed opens; retiring then un-retiring rewrites its records and it still opens', async () => {
    const secrets = [randomBytes(32), randomBytes(32)];
    const createdAt = new Date().toISOString();
    const old = {
      format: 'hsm-bridge-software-keystore',
      formatVersion: 1,
      masterKeyCheck: sealWithNode('hsm-bridge software keystore master key check v1', Buffer.alloc(0)),
      keys: [
        {
          name: 'old-mac',
          type: 'HMAC_256',
          purpose: 'mac',
          state: 'enabled',
          createdAt,
          versions: secrets.map((secret, i) => ({
            version: i + 1,
            createdAt,
            material: sealWithNode(JSON.stringify(['hsm-bridge software keystore record v1', 'old-mac', i + 1, 'HMAC_256', 'mac']), secret),
          })),
        },
      ],
    };
    writeFileSync(path(), JSON.stringify(old));
    const data = Buffer.from('m');
    const macOf = (secret: Buffer) => createHmac('sha256', secret).update(data).digest();

    let b = await start();
    const meta = await b.describeKey(parseKeyName('old-mac'));
    expect(meta).not.toHaveProperty('minDecryptionVersion');
    expect(meta.versions.map((x) => x.version)).toEqual([1, 2]);
    for (const version of [1, 2]) expect(await b.mac(refOf('old-mac', version, 'HMAC_256'), 'HMAC_SHA256', data)).toEqual(macOf(secrets[version - 1]!));

    expect(await b.setMinDecryptionVersion(meta.name, v(2))).toMatchObject({ minDecryptionVersion: 2, primaryVersion: 2 });
    expect(fileKey('old-mac').minDecryptionVersion).toBe(2);
    for (const version of [1, 2]) expect(unsealWithNode(path(), masterKey(), 'old-mac', version)).toEqual(secrets[version - 1]);
    await b.close();
    b = await start();
    expect((await b.describeKey(meta.name)).minDecryptionVersion).toBe(2);
    // Retired is not destroyed: the backend still computes with version 1 (the core refuses it).
    expect(await b.mac(refOf('old-mac', 1, 'HMAC_256'), 'HMAC_SHA256', data)).toEqual(macOf(secrets[0]!));

    expect(await b.setMinDecryptionVersion(meta.name, v(1))).not.toHaveProperty('minDecryptionVersion');
    expect(fileKey('old-mac')).not.toHaveProperty('minDecryptionVersion');
    expect(unsealWithNode(path(), masterKey(), 'old-mac', 1)).toEqual(secrets[0]);
    await b.close();
    expect((await (await start()).describeKey(meta.name)).versions).toHaveLength(2);
  });

  it('an edit of minDecryptionVersion in the file, or a record from before the retirement, stops the start', async () => {
    const b = await start();
    const key = await createKey(b, 'retiring', 'AES_256');
    await b.rotateKey(key.name);
    await b.rotateKey(key.name);
    const beforeRetirement = readKeystoreJson(path());
    await b.setMinDecryptionVersion(key.name, v(3));
    await b.close();
    const original = readFileSync(path(), 'utf8');
    const attempts: Array<[string, (d: KeystoreJson) => void, RegExp]> = [
      ['lower it', (d) => void (d.keys[0]!.minDecryptionVersion = 2), /key retiring version 1 fails authentication/],
      ['remove it', (d) => void delete d.keys[0]!.minDecryptionVersion, /key retiring version 1 fails authentication/],
      ['raise it', (d) => void (d.keys[0]!.minDecryptionVersion = 3 + 1), /key retiring has a minDecryptionVersion above its newest version/],
      ['write 1, which the backend stores as absent', (d) => void (d.keys[0]!.minDecryptionVersion = 1), /malformed: \/keys\/0\/minDecryptionVersion/],
      ['bring back the records as they were sealed before', (d) => void (d.keys[0]!.versions = beforeRetirement.keys[0]!.versions), /key retiring version 1 fails authentication/],
    ];
    for (const [what, edit, expected] of attempts) {
      const doc = JSON.parse(original) as KeystoreJson;
      edit(doc);
      writeFileSync(path(), JSON.stringify(doc));
      await expect(start(), what).rejects.toThrow(expected);
    }
    writeFileSync(path(), original);
    expect((await (await start()).describeKey(key.name)).minDecryptionVersion).toBe(3);
  });

  it('concurrent retirements and rotations are all on disk, and every record is sealed for the final value', async () => {
    const b = await start();
    const key = await createKey(b, 'busy', 'HMAC_256');
    await b.rotateKey(key.name);
    await b.rotateKey(key.name);
    await Promise.all([b.setMinDecryptionVersion(key.name, v(2)), b.rotateKey(key.name), b.setMinDecryptionVersion(key.name, v(3)), b.rotateKey(key.name)]);
    expect(await b.describeKey(key.name)).toMatchObject({ minDecryptionVersion: 3, primaryVersion: 5 });
    await b.close();
    const b2 = await start();
    expect(await b2.describeKey(key.name)).toMatchObject({ minDecryptionVersion: 3, primaryVersion: 5 });
    for (const version of [1, 2, 3, 4, 5]) expect(unsealWithNode(path(), masterKey(), 'busy', version)).toHaveLength(32);
  });

  it('trimming takes the old versions out of the file: no record of them, sealed or clear, and the numbers are not reused', async () => {
    const b = await start();
    const aes = await createKey(b, 'trimmed', 'AES_256');
    const ec = await createKey(b, 'trimmed-pair', 'EC_P256');
    for (const ref of [aes, ec]) {
      await b.rotateKey(ref.name);
      await b.rotateKey(ref.name);
    }
    const clear = [1, 2].map((version) => unsealWithNode(path(), masterKey(), 'trimmed', version));
    const sealedBefore = (name: string) => fileKey(name).versions.filter((x) => x.version < 3).flatMap((x) => [x.material.data, x.material.iv]);
    const gone = [...sealedBefore('trimmed'), ...sealedBefore('trimmed-pair'), ...fileKey('trimmed-pair').versions.slice(0, 2).map((x) => x.publicKeySpki!)];
    for (const ref of [aes, ec]) await b.setMinDecryptionVersion(ref.name, v(3));
    gone.push(...sealedBefore('trimmed'), ...sealedBefore('trimmed-pair')); // as resealed for the retirement

    for (const ref of [aes, ec]) expect((await b.trimKey(ref.name)).versions.map((x) => x.version)).toEqual([3]);
    const text = readFileSync(path(), 'utf8');
    for (const s of gone) expect(text).not.toContain(s);
    for (const c of clear) {
      expect(text).not.toContain(c.toString('base64'));
      expect(text.toLowerCase()).not.toContain(c.toString('hex'));
    }
    expect(fileKey('trimmed').versions.map((x) => x.version)).toEqual([3]);
    await expect(b.encrypt(refOf('trimmed', 2, 'AES_256'), 'AES_GCM', Buffer.from('x'))).rejects.toMatchObject({ code: 'KEY_VERSION_NOT_FOUND' });
    await b.close();

    const b2 = await start();
    expect(await b2.describeKey(aes.name)).toMatchObject({ minDecryptionVersion: 3, primaryVersion: 3, versions: [{ version: 3 }] });
    expect((await b2.rotateKey(aes.name)).versions.map((x) => x.version)).toEqual([3, 4]);
    // Trimming again with nothing below: nothing changes.
    expect((await b2.trimKey(ec.name)).versions.map((x) => x.version)).toEqual([3]);
  });

  it('a minDecryptionVersion above the newest version is refused (INVALID_ARGUMENT), so the file stays readable', async () => {
    const b = await start();
    const key = await createKey(b, 'short', 'AES_128');
    await expect(b.setMinDecryptionVersion(key.name, v(2))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(fileKey('short')).not.toHaveProperty('minDecryptionVersion');
  });
});

describe('keys of purpose fpe and tokenize', () => {
  let b: Backend;
  let wrapping: KeyRef;
  const importKnown = async (name: string, type: KeyType, purpose: KeyPurpose, material: Buffer) => {
    const meta = await b.describeKey(wrapping.name);
    const publicKey = createPublicKey({ key: meta.versions[0]!.publicKeySpki!, format: 'der', type: 'spki' });
    const scheme = 'RSA_OAEP_SHA256_AES_KWP';
    const imported = await b.importWrappedKey(
      { kind: 'create', key: { name: parseKeyName(name), type, purpose } },
      { wrappingKey: wrapping, scheme, ...wrapForImport(publicKey, scheme, material) },
    );
    return refOf(imported.name, imported.primaryVersion, type);
  };
  const refused = { code: 'INCOMPATIBLE_KEY' };

  beforeEach(async () => {
    b = await start();
    wrapping = await createKey(b, 'import-wrapping', 'RSA_2048', 'wrap');
  });

  it('AES_192 comes in by wrapped import as 24 bytes only, and encrypts blocks as node:crypto AES-192-ECB does', async () => {
    const material = randomBytes(24);
    const ref = await importKnown('fpe-192', 'AES_192', 'fpe', material);
    const blocks = randomBytes(16 * 3);
    expect(await b.encryptBlocks(ref, blocks)).toEqual(nodeEcb('aes', 'encrypt', material, blocks));
    expect(fileKey('fpe-192')).toMatchObject({ type: 'AES_192', purpose: 'fpe' });
    expect(unsealWithNode(path(), masterKey(), 'fpe-192', 1)).toEqual(material);
    for (const length of [16, 32]) {
      await expect(importKnown(`fpe-192-${length}`, 'AES_192', 'fpe', randomBytes(length))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    await expect(b.encryptBlocks(ref, Buffer.alloc(15))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('an fpe key encrypts blocks and does nothing else', async () => {
    for (const type of ['AES_128', 'AES_192', 'AES_256'] as const) {
      const ref = await createKey(b, `fpe-${type.toLowerCase()}`, type, 'fpe');
      expect(await b.encryptBlocks(ref, Buffer.alloc(32))).toHaveLength(32);
      await expect(b.decryptBlocks(ref, Buffer.alloc(16))).rejects.toMatchObject(refused);
      await expect(b.encrypt(ref, 'AES_GCM', Buffer.from('x'))).rejects.toMatchObject(refused);
      await expect(b.decrypt(ref, 'AES_GCM', { iv: Buffer.alloc(12), data: Buffer.alloc(32) })).rejects.toMatchObject(refused);
      await expect(b.encrypt(ref, 'AES_KW', Buffer.alloc(16))).rejects.toMatchObject(refused);
      await expect(b.mac(ref, 'AES_CMAC', Buffer.alloc(16))).rejects.toMatchObject(refused);
      await expect(b.verifyMac(ref, 'AES_CMAC', Buffer.alloc(16), Buffer.alloc(16))).rejects.toMatchObject(refused);
      await expect(b.exportKey(ref)).rejects.toMatchObject(refused);
      await expect(b.deriveDukptKey(ref, { scheme: 'aes', ksn: Buffer.alloc(12), workingKey: 'AES_128' })).rejects.toMatchObject(refused);
    }
    await expect(b.createKey({ name: parseKeyName('fpe-exportable'), type: 'AES_256', purpose: 'fpe', exportable: true })).rejects.toMatchObject(refused);
  });

  it('AES keys of purpose encrypt and wrap still encrypt no raw blocks', async () => {
    for (const purpose of ['encrypt', 'wrap'] as const) {
      const ref = await createKey(b, `aes-${purpose}`, 'AES_256', purpose);
      await expect(b.encryptBlocks(ref, Buffer.alloc(16))).rejects.toMatchObject(refused);
    }
  });

  it('a tokenize key computes and verifies HMAC-SHA-256, comes in by wrapped import, and does nothing else', async () => {
    const secret = randomBytes(32);
    const ref = await importKnown('tokens', 'HMAC_256', 'tokenize', secret);
    const data = Buffer.from('context\u0000value');
    const expected = createHmac('sha256', secret).update(data).digest();
    expect(await b.mac(ref, 'HMAC_SHA256', data)).toEqual(expected);
    expect(await b.verifyMac(ref, 'HMAC_SHA256', data, expected)).toBe(true);
    expect(await b.verifyMac(ref, 'HMAC_SHA256', Buffer.from('other'), expected)).toBe(false);
    expect(fileKey('tokens')).toMatchObject({ type: 'HMAC_256', purpose: 'tokenize' });
    await expect(b.encryptBlocks(ref, Buffer.alloc(16))).rejects.toMatchObject(refused);
    await expect(b.decryptBlocks(ref, Buffer.alloc(16))).rejects.toMatchObject(refused);
    await expect(b.encrypt(ref, 'AES_GCM', Buffer.from('x'))).rejects.toMatchObject(refused);
    await expect(b.sign(ref, 'ES256', { kind: 'message', data })).rejects.toMatchObject(refused);
    await expect(b.exportKey(ref)).rejects.toMatchObject(refused);
    const generated = await createKey(b, 'tokens-generated', 'HMAC_256', 'tokenize');
    expect(await b.mac(generated, 'HMAC_SHA256', data)).toHaveLength(32);
  });
});
