/**
 * Issue 14 on KMIP, against a real PyKMIP server: minDecryptionVersion lives in the key's head, so a
 * replica (a second backend on the same server) sees it and the trim; trimmed versions' objects are gone
 * from the server; a trim and another replica's lowering of minDecryptionVersion are serialised by the
 * head's Revoke; token keys carry a MAC usage mask; fpe keys are Encrypt-only and their blocks are AES-ECB
 * (PKCS5-padded ECB on the server, the padding block dropped), so FF1 through them, and the service's FF1,
 * equal FF1 on node:crypto under the key's bytes (read with Get).
 */
import { randomBytes, randomInt } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeEcb } from '../../../src/conformance/reference/nodeBlockCiphers.js';
import { KmipBackend } from '../../../adapters/kmip/backend.js';
import { KmipClient } from '../../../adapters/kmip/client.js';
import type { KeyHeads } from '../../../adapters/kmip/keyHeads.js';
import { resolveConfig } from '../../../adapters/kmip/config.js';
import { isReason, KmipOperations } from '../../../adapters/kmip/operations.js';
import { Enum } from '../../../adapters/kmip/tags.js';
import type { Backend, KeyRef } from '../../../src/backend/port.js';
import { ff1, minLength, type Ecb } from '../../../src/dataProtection/ff1.js';
import { parseKeyName, type KeyName, type KeyVersion } from '../../../src/keys/names.js';
import { KeyService } from '../../../src/operations/keyService.js';
import type { KeyMetadata, KeyType } from '../../../src/keys/types.js';
import { kmipConfigFor } from '../../helpers/kmipBackend.js';
import { startPyKmip, type PyKmipServer } from '../../helpers/pykmip.js';

const log = pino({ level: 'silent' });
const R = Enum.ResultReason;
const ecbParams = { blockCipherMode: Enum.BlockCipherMode.ECB, cryptographicAlgorithm: Enum.CryptographicAlgorithm.AES };
/** node:crypto's AES-ECB under known key bytes: the reference for the server's blocks. */
const nodeAesEcb = (key: Buffer): Ecb => async (blocks) => nodeEcb('aes', 'encrypt', key, blocks);
const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
};

/** The backend's typed operations and heads, for hooks (a test reaches into the instance on purpose). */
type Hooked = Backend & { ops: KmipOperations; keyHeads: KeyHeads };

describe('kmip data protection (PyKMIP)', () => {
  let server: PyKmipServer;
  let rawClient: KmipClient;
  let raw: KmipOperations;
  const opened: Backend[] = [];
  let seq = 0;
  const fresh = (stem: string) => parseKeyName(`dp-${stem}-${Date.now().toString(36)}-${seq++}`);
  const ref = (meta: KeyMetadata, version: number): KeyRef => ({ name: meta.name, version: version as KeyVersion, type: meta.type });
  const versionsOf = (meta: KeyMetadata) => meta.versions.map((v) => v.version);
  /** The objects named after a key version (both halves of a pair). */
  const objectsOf = (name: KeyName, version: number) => raw.locate([{ name: 'Name', value: `hsmb/${name}/v${version}` }]);
  const gone = (uid: string) => raw.get(uid).then(() => false, (e: unknown) => isReason(e, R.ItemNotFound));

  const backend = async (): Promise<Hooked> => {
    const client = await KmipClient.open(await resolveConfig(kmipConfigFor(server)), log);
    const b = await KmipBackend.open(client, log);
    opened.push(b);
    return b as unknown as Hooked;
  };
  const withVersions = async (b: Backend, count: number) => {
    let meta = await b.createKey({ name: fresh('aes'), type: 'AES_256', purpose: 'encrypt' });
    for (let i = 1; i < count; i++) meta = await b.rotateKey(meta.name);
    return meta;
  };

  beforeAll(async () => {
    server = await startPyKmip();
    rawClient = await KmipClient.open(await resolveConfig(kmipConfigFor(server)), log);
    raw = new KmipOperations(rawClient);
  }, 60_000);

  afterAll(async () => {
    for (const b of opened) await b.close();
    await rawClient?.close();
    await server?.stop();
  });

  it('a replica sees minDecryptionVersion and the trim; the trimmed objects are gone from the server', async () => {
    const A = await backend();
    const B = await backend();
    const meta = await withVersions(A, 4);
    const sealed = await B.encrypt(ref(meta, 1), 'AES_GCM', Buffer.from('old')); // B now holds the head listing v1
    const old = [...await objectsOf(meta.name, 1), ...await objectsOf(meta.name, 2)];
    expect(old).toHaveLength(2);

    await A.setMinDecryptionVersion(meta.name, 3 as KeyVersion);
    expect((await B.describeKey(meta.name)).minDecryptionVersion).toBe(3);
    expect((await B.listKeys()).find((k) => k.name === meta.name)?.minDecryptionVersion).toBe(3);

    expect(versionsOf(await A.trimKey(meta.name))).toEqual([3, 4]);
    for (const uid of old) expect(await gone(uid)).toBe(true);
    expect(await objectsOf(meta.name, 1)).toEqual([]);
    expect(await objectsOf(meta.name, 2)).toEqual([]);
    // B's head still lists v1: the server answers Item Not Found, B reads the head again and the version is gone.
    await expect(B.decrypt(ref(meta, 1), 'AES_GCM', sealed)).rejects.toMatchObject({ code: 'KEY_VERSION_NOT_FOUND' });
    expect(await B.describeKey(meta.name)).toMatchObject({ minDecryptionVersion: 3, primaryVersion: 4 });
    expect(versionsOf(await B.describeKey(meta.name))).toEqual([3, 4]);
    // Numbers are never reused: B's rotation makes v5, and nothing is named v1 again.
    expect((await B.rotateKey(meta.name)).primaryVersion).toBe(5);
    expect(await objectsOf(meta.name, 1)).toEqual([]);
  });

  it("a trim that read minDecryptionVersion before another replica lowered it loses the head's Revoke and trims nothing", async () => {
    const A = await backend();
    const B = await backend();
    const meta = await withVersions(A, 3);
    await A.setMinDecryptionVersion(meta.name, 3 as KeyVersion);
    const aAtRevoke = deferred(), bLowered = deferred();
    const aRevoke = A.ops.revoke.bind(A.ops);
    let paused = false;
    A.ops.revoke = async (uid, code) => {
      if (!paused) {
        paused = true;
        aAtRevoke.resolve();
        await bLowered.promise;
      }
      return aRevoke(uid, code);
    };
    const trim = A.trimKey(meta.name);
    await aAtRevoke.promise;
    await B.setMinDecryptionVersion(meta.name, 1 as KeyVersion);
    bLowered.resolve();
    const after = await trim;
    expect(versionsOf(after)).toEqual([1, 2, 3]);
    expect(after.minDecryptionVersion ?? 1).toBe(1);
    expect(await objectsOf(meta.name, 1)).toHaveLength(1);
    expect(await objectsOf(meta.name, 2)).toHaveLength(1);
    // Exactly one head is left, the Active one.
    const heads = await raw.locate([{ name: 'Name', value: `hsmb/${meta.name}` }]);
    expect(heads).toHaveLength(1);
  });

  it('the core read a key with more versions, and a replica destroyed and made it again: the backend refuses the minimum, and a trim keeps the new key', async () => {
    const A = await backend();
    const B = await backend();
    const meta = await withVersions(A, 3);
    // Right after the core reads the key (3 versions), a replica destroys it and makes it again with 1.
    let remade = false;
    const racing = new Proxy(A, {
      get(target, property) {
        if (property === 'describeKey') {
          return async (n: KeyName) => {
            const read = await target.describeKey(n);
            if (!remade) {
              remade = true;
              await B.setKeyState(n, 'disabled');
              await B.destroyKey(n);
              await B.createKey({ name: n, type: 'AES_256', purpose: 'encrypt' });
            }
            return read;
          };
        }
        const value = Reflect.get(target, property) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const service = new KeyService(racing, { limits: { maxDataBytes: 4096, maxRandomBytes: 256 }, metadataCacheTtlMs: 0 });
    await expect(service.updateKey({ name: meta.name, minDecryptionVersion: 3 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(remade).toBe(true);
    const after = await A.trimKey(meta.name);
    expect(after).toMatchObject({ primaryVersion: 1, versions: [{ version: 1 }] });
    expect(after.minDecryptionVersion).toBeUndefined();
    expect(await objectsOf(meta.name, 1)).toHaveLength(1);
    const sealed = await A.encrypt(ref(after, 1), 'AES_GCM', Buffer.from('kept'));
    expect((await B.decrypt(ref(after, 1), 'AES_GCM', sealed)).toString()).toBe('kept');
  });

  it('a head that holds a minimum above the newest version (never set for this key) reads as none retired, and a trim destroys nothing', async () => {
    const A = await backend();
    const B = await backend();
    const meta = await withVersions(A, 2);
    const head = await A.keyHeads.requireHead(meta.name);
    await A.keyHeads.commit(head, { ...head.record, minDecryptionVersion: 9 }, []);
    const described = await B.describeKey(meta.name);
    expect(described).toMatchObject({ primaryVersion: 2 });
    expect(described.minDecryptionVersion).toBeUndefined();
    const v1 = await objectsOf(meta.name, 1);
    expect(versionsOf(await B.trimKey(meta.name))).toEqual([1, 2]);
    for (const uid of v1) expect(await gone(uid)).toBe(false);
    const sealed = await A.encrypt(ref(meta, 1), 'AES_GCM', Buffer.from('kept'));
    expect((await A.decrypt(ref(meta, 1), 'AES_GCM', sealed)).toString()).toBe('kept');
  });

  it('token keys: HMAC keys with a MAC usage mask, so the server itself refuses to encrypt with them', async () => {
    const A = await backend();
    const meta = await A.createKey({ name: fresh('tokens'), type: 'HMAC_256', purpose: 'tokenize' });
    expect(meta).toMatchObject({ type: 'HMAC_256', purpose: 'tokenize' });
    const [uid] = await objectsOf(meta.name, 1);
    const gcm = { blockCipherMode: Enum.BlockCipherMode.GCM, cryptographicAlgorithm: Enum.CryptographicAlgorithm.AES, tagLength: 16 };
    await expect(raw.encrypt(uid!, gcm, Buffer.from('x'), randomBytes(12))).rejects.toSatisfy((e) => isReason(e, R.PermissionDenied));
    expect(await A.mac(ref(meta, 1), 'HMAC_SHA256', Buffer.from('+255700000001'))).toHaveLength(32);
  });

  it('fpe is offered: capability, AES_192; fpe keys are Encrypt-only on the server, other keys and decryptBlocks refuse', async () => {
    const A = await backend();
    expect(A.capabilities().fpe).toBe(true);
    expect(A.capabilities().keyTypes).toContain('AES_192');
    const meta = await A.createKey({ name: fresh('fpe'), type: 'AES_192', purpose: 'fpe' });
    const [uid] = await objectsOf(meta.name, 1);
    const gcm = { blockCipherMode: Enum.BlockCipherMode.GCM, cryptographicAlgorithm: Enum.CryptographicAlgorithm.AES, tagLength: 16 };
    await expect(raw.decrypt(uid!, gcm, randomBytes(16), randomBytes(12), undefined, randomBytes(16))).rejects.toSatisfy((e) => isReason(e, R.PermissionDenied));
    await expect(A.decryptBlocks(ref(meta, 1), randomBytes(16))).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
    await expect(A.encrypt(ref(meta, 1), 'AES_GCM', Buffer.from('x'))).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
    const aes = await A.createKey({ name: fresh('gcm'), type: 'AES_256', purpose: 'encrypt' });
    const tokens = await A.createKey({ name: fresh('tokens'), type: 'HMAC_256', purpose: 'tokenize' });
    for (const other of [aes, tokens]) await expect(A.encryptBlocks(ref(other, 1), randomBytes(16))).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
  });

  it("fpe keys of each AES size: encryptBlocks is node's aes-*-ecb under the key's bytes, and FF1 through it is FF1 on node:crypto", async () => {
    const A = await backend();
    for (const type of ['AES_128', 'AES_192', 'AES_256'] as KeyType[]) {
      const meta = await A.createKey({ name: fresh(`fpe-${type.toLowerCase()}`), type, purpose: 'fpe' });
      const [uid] = await objectsOf(meta.name, 1);
      const local = nodeAesEcb((await raw.get(uid!)).material);
      const kmip: Ecb = (blocks) => A.encryptBlocks(ref(meta, 1), blocks);
      for (const count of [1, 2, 7]) {
        const blocks = randomBytes(16 * count);
        expect(await kmip(blocks), `${type}, ${count} blocks`).toEqual(await local(blocks));
      }
      for (const radix of [10, 36]) {
        const values = Array.from({ length: 6 }, () => Array.from({ length: randomInt(minLength(radix), 40) }, () => randomInt(radix)));
        const tweak = randomBytes(randomInt(0, 20));
        const expected = await ff1('encrypt', local, radix, tweak, values);
        const encrypted = await ff1('encrypt', kmip, radix, tweak, values);
        expect(encrypted, `${type}, radix ${radix}`).toEqual(expected);
        expect(await ff1('decrypt', kmip, radix, tweak, encrypted)).toEqual(values);
      }
    }
  }, 60_000);

  it("the service's FF1 on KMIP: MSISDNs encrypt to digits as FF1 on node:crypto does under the key's bytes, and decrypt back", async () => {
    const service = new KeyService(await backend(), { limits: { maxDataBytes: 4096, maxRandomBytes: 256 }, metadataCacheTtlMs: 0 });
    const meta = await service.createKey({ name: fresh('msisdn'), type: 'AES_256', purpose: 'fpe' });
    const [uid] = await objectsOf(meta.name, 1);
    const local = nodeAesEcb((await raw.get(uid!)).material);
    const msisdns = Array.from({ length: 50 }, () => `255${Array.from({ length: randomInt(7, 13) }, () => randomInt(10)).join('')}`);
    const tweak = Buffer.from('als.msisdn');
    const encrypted = await service.dataProtection.fpe('encrypt', { name: meta.name, values: msisdns, radix: 10, tweak: tweak.toString('hex') });
    const expected = await ff1('encrypt', local, 10, tweak, msisdns.map((m) => Array.from(m, Number)));
    expect(encrypted.values).toEqual(expected.map((n) => ({ ok: n.join('') })));
    const decrypted = await service.dataProtection.fpe('decrypt', { name: meta.name, values: encrypted.values.map((v) => ('ok' in v ? v.ok : '')), radix: 10, tweak: tweak.toString('hex') });
    expect(decrypted.values).toEqual(msisdns.map((ok) => ({ ok })));
  });

  // What encryptBlocks relies on, pinned against the server: no raw ECB, and PKCS5 appends exactly one
  // block, the encryption of sixteen 0x10 bytes, after the ECB of the blocks sent.
  it("PyKMIP's ECB: Padding Method None (or none given) is refused; PKCS5 appends one whole padding block", async () => {
    for (const bits of [128, 192, 256]) {
      const uid = await raw.create(Enum.ObjectType.SymmetricKey, [
        { name: 'Cryptographic Algorithm', value: Enum.CryptographicAlgorithm.AES },
        { name: 'Cryptographic Length', value: bits },
        { name: 'Cryptographic Usage Mask', value: Enum.CryptographicUsageMask.Encrypt },
      ]);
      await raw.activate(uid);
      const blocks = randomBytes(48);
      for (const p of [{ ...ecbParams, paddingMethod: Enum.PaddingMethod.None }, ecbParams]) {
        await expect(raw.encrypt(uid, p, blocks, undefined)).rejects.toSatisfy((e) => isReason(e, R.InvalidField));
      }
      const padded = (await raw.encrypt(uid, { ...ecbParams, paddingMethod: Enum.PaddingMethod.PKCS5 }, blocks, undefined)).data;
      const local = nodeAesEcb((await raw.get(uid)).material);
      expect(padded).toEqual(await local(Buffer.concat([blocks, Buffer.alloc(16, 0x10)])));
      await raw.revoke(uid, Enum.RevocationReasonCode.CessationOfOperation);
      await raw.destroy(uid);
    }
  });
});
