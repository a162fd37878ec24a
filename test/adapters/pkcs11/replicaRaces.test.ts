/**
 * Lifecycle changes racing on one SoftHSM token: within one backend (enable vs destroy through the
 * core) and between two backends on the token acting as replicas (create/create, rotate/rotate,
 * rotate/disable, enable/destroy); objects another replica destroys between a search and a read, and a
 * generation the token refuses while it is being changed. Each race runs in a loop; after each one the
 * token must hold one consistent key (one metadata object, exactly the key objects it lists) and every
 * loser must have a clear error, never INTERNAL.
 */
import { createCipheriv, createPublicKey, verify } from 'node:crypto';
import { pino } from 'pino';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pkcs11BackendFactory } from '../../../adapters/pkcs11/index.js';
import { writeMetadata } from '../../../adapters/pkcs11/keyObjects.js';
import { TokenMechanisms } from '../../../adapters/pkcs11/mechanisms.js';
import { KeyOperations } from '../../../adapters/pkcs11/worker/keyOperations.js';
import { isConflictResult } from '../../../adapters/pkcs11/worker/protocol.js';
import { CONFLICT, KeyChanges } from '../../../src/backend/keyChanges.js';
import type { Backend, KeyRef } from '../../../src/backend/port.js';
import { HsmBridgeError } from '../../../src/errors.js';
import { parseKeyName, type KeyName, type KeyVersion } from '../../../src/keys/names.js';
import type { KeyMetadata, KeyType } from '../../../src/keys/types.js';
import { KeyService } from '../../../src/operations/keyService.js';
import { createSoftHsmToken, type SoftHsmToken } from '../../helpers/softhsm.js';
import { TokenInspector } from './tokenInspector.js';

const logger = pino({ level: process.env.HSMB_TEST_LOG ?? 'silent' });
const A = pkcs11js;
let token: SoftHsmToken;
let one: Backend;
let two: Backend;
let inspector: TokenInspector;
let seq = 0;
const fresh = (stem: string) => parseKeyName(`${stem}-${process.pid}-${seq++}`);
const ref = (name: KeyName, type: KeyType, version: number): KeyRef => ({ name, type, version: version as KeyVersion });
/** A pause of 0-2 ms, so that the two sides of a race start in either order across iterations. */
const jitter = () => new Promise((r) => setTimeout(r, Math.floor(Math.random() * 3)));

beforeAll(async () => {
  token = await createSoftHsmToken();
  one = await pkcs11BackendFactory.create(token.backendConfig(), { logger });
  two = await pkcs11BackendFactory.create(token.backendConfig(), { logger });
  inspector = new TokenInspector(token.library, token.tokenLabel, token.pin);
});
afterAll(async () => {
  await one?.close();
  await two?.close();
  await token?.cleanup();
});

/** Every rejection is one of `codes`: a clear answer, never INTERNAL. */
function expectOnly(results: PromiseSettledResult<unknown>[], codes: readonly string[]): void {
  for (const r of results) {
    if (r.status === 'rejected') {
      expect(r.reason).toBeInstanceOf(HsmBridgeError);
      expect(codes, (r.reason as Error).message).toContain((r.reason as HsmBridgeError).code);
    }
  }
}

/**
 * The token holds the name's current metadata revision, at most the one it was built on besides, and
 * exactly one object per class per listed version.
 */
function expectConsistent(name: KeyName, meta: KeyMetadata, keyClass: number): void {
  const revisions = inspector.metadataRevisions(name);
  expect(revisions.length).toBeGreaterThan(0);
  expect(revisions.slice(1)).toEqual(revisions.length > 1 ? [revisions[0]! - 1] : []);
  const ids = inspector.objects(name, keyClass, []).map((o) => o.id.toString('hex'));
  expect(ids).toHaveLength(meta.versions.length);
  expect(new Set(ids).size).toBe(ids.length);
}

describe('enable racing destroy', () => {
  it('through the core on one backend: never both succeed', async () => {
    const service = new KeyService(one, { limits: { maxDataBytes: 1024, maxRandomBytes: 64 }, metadataCacheTtlMs: 1000 });
    let enabledWon = 0;
    let destroyWon = 0;
    for (let i = 0; i < 25; i++) {
      const name = fresh('race-ed');
      await one.createKey({ name, type: 'AES_128', purpose: 'encrypt' });
      await one.setKeyState(name, 'disabled');
      // destroy's check in the core, then enable, then destroy in the backend: the window of the race
      const destroying = service.destroyKey(name);
      const [enable, destroy] = await Promise.allSettled([i % 2 === 0 ? service.enableKey(name) : jitter().then(() => service.enableKey(name)), destroying]);
      expect(enable.status === 'fulfilled' && destroy.status === 'fulfilled', `iteration ${i}`).toBe(false);
      expectOnly([enable, destroy], ['KEY_NOT_FOUND', 'KEY_NOT_DISABLED']);
      if (destroy.status === 'fulfilled') {
        destroyWon++;
        await expect(one.describeKey(name)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
      } else {
        enabledWon++;
        expect((await one.describeKey(name)).state).toBe('enabled');
        await one.encrypt(ref(name, 'AES_128', 1), 'AES_GCM', Buffer.from('still usable'));
      }
    }
    expect(enabledWon + destroyWon).toBe(25);
  });

  it('the backend itself refuses to destroy an enabled key', async () => {
    const name = fresh('enabled');
    await one.createKey({ name, type: 'HMAC_256', purpose: 'mac' });
    await expect(one.destroyKey(name)).rejects.toMatchObject({ code: 'KEY_NOT_DISABLED' });
    await expect(two.destroyKey(name)).rejects.toMatchObject({ code: 'KEY_NOT_DISABLED' });
    expect((await two.describeKey(name)).state).toBe('enabled');
  });

  it('on two replicas: never both succeed', async () => {
    for (let i = 0; i < 20; i++) {
      const name = fresh('race-ed2');
      await one.createKey({ name, type: 'AES_128', purpose: 'encrypt' });
      await one.setKeyState(name, 'disabled');
      const [enable, destroy] = await Promise.allSettled([jitter().then(() => one.setKeyState(name, 'enabled')), jitter().then(() => two.destroyKey(name))]);
      expect(enable.status === 'fulfilled' && destroy.status === 'fulfilled', `iteration ${i}`).toBe(false);
      expectOnly([enable, destroy], ['KEY_NOT_FOUND', 'KEY_NOT_DISABLED']);
      if (destroy.status === 'fulfilled') {
        await expect(one.describeKey(name)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
        for (const cls of [A.CKO_DATA, A.CKO_SECRET_KEY]) expect(inspector.objects(name, cls, [])).toHaveLength(0);
      } else {
        const meta = await two.describeKey(name);
        expect(meta.state).toBe('enabled');
        expectConsistent(name, meta, A.CKO_SECRET_KEY);
      }
    }
  });
});

describe('the core on a replica whose cached metadata another replica made stale', () => {
  it('signs with the primary version the key has now, after the other replica destroyed and made the key again', async () => {
    const service = new KeyService(one, { limits: { maxDataBytes: 1024, maxRandomBytes: 64 }, metadataCacheTtlMs: 60_000 });
    const name = fresh('remade');
    await service.createKey({ name, type: 'EC_P256', purpose: 'sign' });
    await service.rotateKey(name);
    const message = Buffer.from('before');
    expect((await service.sign({ name, algorithm: 'ES256', message })).keyVersion).toBe(2);
    // The other replica replaces the key; this replica's cache still says version 2 is primary.
    await two.setKeyState(name, 'disabled');
    await two.destroyKey(name);
    await two.createKey({ name, type: 'EC_P256', purpose: 'sign' });
    const after = Buffer.from('after');
    const signed = await service.sign({ name, algorithm: 'ES256', message: after });
    expect(signed.keyVersion).toBe(1);
    const spki = (await two.describeKey(name)).versions[0]!.publicKeySpki!;
    expect(verify('sha256', after, { key: createPublicKey({ key: spki, format: 'der', type: 'spki' }), dsaEncoding: 'ieee-p1363' }, signed.signature)).toBe(true);
    // A version the key no longer has, asked for by number, is still not found after the second look.
    await expect(service.sign({ name, algorithm: 'ES256', message: after, keyVersion: 2 })).rejects.toMatchObject({ code: 'KEY_VERSION_NOT_FOUND' });
  });
});

describe('two replicas changing one key at the same moment', () => {
  it('create/create: one key, the loser gets KEY_ALREADY_EXISTS, both replicas use the same key', async () => {
    for (let i = 0; i < 20; i++) {
      const name = fresh('race-cc');
      const results = await Promise.allSettled([one, two].map((b) => jitter().then(() => b.createKey({ name, type: 'AES_128', purpose: 'encrypt' }))));
      expect(results.filter((r) => r.status === 'fulfilled'), `iteration ${i}`).toHaveLength(1);
      expectOnly(results, ['KEY_ALREADY_EXISTS']);
      const meta = (results.find((r) => r.status === 'fulfilled') as PromiseFulfilledResult<KeyMetadata>).value;
      expectConsistent(name, meta, A.CKO_SECRET_KEY);
      // whichever replica encrypts, the other decrypts: there is one key behind the name
      const ct = await one.encrypt(ref(name, 'AES_128', 1), 'AES_GCM', Buffer.from(`payment ${i}`));
      expect((await two.decrypt(ref(name, 'AES_128', 1), 'AES_GCM', ct)).toString()).toBe(`payment ${i}`);
    }
  });

  it('rotate/rotate: both succeed as two new versions, no duplicate objects', async () => {
    for (let i = 0; i < 10; i++) {
      const name = fresh('race-rr');
      await one.createKey({ name, type: 'EC_P256', purpose: 'sign' });
      const results = await Promise.allSettled([one, two].map((b) => jitter().then(() => b.rotateKey(name))));
      expectOnly(results, []);
      const meta = await one.describeKey(name);
      expect(meta.versions.map((v) => v.version)).toEqual([1, 2, 3]);
      expectConsistent(name, meta, A.CKO_PRIVATE_KEY);
      expect(inspector.objects(name, A.CKO_PUBLIC_KEY, [])).toHaveLength(3);
      for (const v of [2, 3]) await two.sign(ref(name, 'EC_P256', v), 'ES256', { kind: 'message', data: Buffer.from('x') });
    }
  });

  it('rotate/disable: both changes land, in one metadata object', async () => {
    for (let i = 0; i < 15; i++) {
      const name = fresh('race-rd');
      await one.createKey({ name, type: 'AES_256', purpose: 'encrypt' });
      const results = await Promise.allSettled([jitter().then(() => one.rotateKey(name)), jitter().then(() => two.setKeyState(name, 'disabled'))]);
      expectOnly(results, []);
      const meta = await two.describeKey(name);
      expect(meta.state).toBe('disabled');
      expect(meta.primaryVersion).toBe(2);
      expectConsistent(name, meta, A.CKO_SECRET_KEY);
    }
  });

  it('enable/disable from both replicas many times: one metadata object, state is one of the two', async () => {
    const name = fresh('race-flip');
    await one.createKey({ name, type: 'HMAC_256', purpose: 'mac' });
    for (let i = 0; i < 15; i++) {
      const results = await Promise.allSettled([jitter().then(() => one.setKeyState(name, 'disabled')), jitter().then(() => two.setKeyState(name, 'enabled'))]);
      expectOnly(results, []);
      expectConsistent(name, await one.describeKey(name), A.CKO_SECRET_KEY);
    }
  });
});

describe('objects another replica is still creating', () => {
  it('a create does not remove unlisted objects younger than the grace period, and ignores them', async () => {
    const name = fresh('young-orphan');
    // What a create on another replica looks like between generating the key and writing the metadata.
    const ourId = Buffer.alloc(20);
    Buffer.from('hsmb').copy(ourId);
    ourId.writeUInt32BE(1, 4);
    ourId.writeUInt32BE(Math.floor(Date.now() / 1000), 8);
    inspector.withSession((api, session) =>
      api.C_CreateObject(session, [
        { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_KEY_TYPE, value: A.CKK_AES }, { type: A.CKA_TOKEN, value: true },
        { type: A.CKA_PRIVATE, value: true }, { type: A.CKA_LABEL, value: name }, { type: A.CKA_ID, value: ourId }, { type: A.CKA_VALUE, value: Buffer.alloc(16, 7) },
        { type: A.CKA_ENCRYPT, value: true }, { type: A.CKA_DECRYPT, value: true },
      ]),
    );
    const meta = await one.createKey({ name, type: 'AES_128', purpose: 'encrypt' });
    expect(inspector.objects(name, A.CKO_SECRET_KEY, [])).toHaveLength(2);
    // the key is the one the metadata lists, not the unlisted object with the same version number
    const ct = await one.encrypt(ref(name, 'AES_128', meta.primaryVersion), 'AES_GCM', Buffer.from('abc'));
    const c = createCipheriv('aes-128-gcm', Buffer.alloc(16, 7), ct.iv!);
    const withOrphan = Buffer.concat([c.update('abc'), c.final(), c.getAuthTag()]);
    expect(ct.data.equals(withOrphan)).toBe(false);
  });
});

describe('objects another replica destroys between our search and our read', () => {
  /** Another replica's young, unlisted version-1 object of `name` (its create is under way). */
  const othersKeyObject = (name: KeyName): Buffer => {
    const id = Buffer.alloc(20);
    Buffer.from('hsmb').copy(id);
    id.writeUInt32BE(1, 4);
    id.writeUInt32BE(Math.floor(Date.now() / 1000), 8);
    return inspector.withSession((api, session) =>
      api.C_CreateObject(session, [
        { type: A.CKA_CLASS, value: A.CKO_SECRET_KEY }, { type: A.CKA_KEY_TYPE, value: A.CKK_AES }, { type: A.CKA_TOKEN, value: true },
        { type: A.CKA_PRIVATE, value: true }, { type: A.CKA_LABEL, value: name }, { type: A.CKA_ID, value: id }, { type: A.CKA_VALUE, value: Buffer.alloc(16, 9) },
      ]),
    );
  };
  /** Another replica's revision 0 of `name`, which it is about to withdraw (it lost the create). */
  const othersRevision = (name: KeyName): Buffer =>
    inspector.withSession((api, session) => {
      const at = new Date().toISOString();
      return writeMetadata(api, session, name, { revision: 0, type: 'AES_128', purpose: 'encrypt', state: 'enabled', createdAt: at, versions: {}, writtenAt: at, nonce: 'ab' }).handle;
    });

  /**
   * Creates `name` as a token worker does (worker/keyOperations.ts, retried on conflict as the backend
   * does), here in the test's thread, with the token destroying `handle` just before the first read of
   * one of its attributes.
   */
  async function createWhileVanishing(handle: Buffer, name: KeyName): Promise<KeyMetadata> {
    let destroyed = false;
    const meta = await createInTestThread(name, (api) => {
      const read = api.C_GetAttributeValue.bind(api);
      return {
        C_GetAttributeValue: ((session: Buffer, h: Buffer, template: pkcs11js.Template) => {
          if (!destroyed && h.equals(handle)) {
            destroyed = true;
            inspector.withSession((raw, s) => raw.C_DestroyObject(s, handle));
          }
          return read(session, h, template);
        }) as typeof api.C_GetAttributeValue,
      };
    });
    expect(destroyed).toBe(true);
    return meta;
  }

  it('a key object of a create that gave up: the create goes on', async () => {
    const name = fresh('vanishing-key');
    const meta = await createWhileVanishing(othersKeyObject(name), name);
    expectConsistent(name, meta, A.CKO_SECRET_KEY);
    const ct = await two.encrypt(ref(name, 'AES_128', 1), 'AES_GCM', Buffer.from('abc'));
    expect((await one.decrypt(ref(name, 'AES_128', 1), 'AES_GCM', ct)).toString()).toBe('abc');
  });

  it('a withdrawn revision: the create goes on', async () => {
    const name = fresh('vanishing-meta');
    const meta = await createWhileVanishing(othersRevision(name), name);
    expect(meta.primaryVersion).toBe(1);
    expectConsistent(name, meta, A.CKO_SECRET_KEY);
  });
});

describe('a token that will not copy a session key into the token', () => {
  it('generates the key in the token instead (for the rest of that module instance)', async () => {
    let offToken = 0;
    const name = fresh('no-copy');
    // SoftHSM refuses to copy an object whose CKA_COPYABLE is false (CKR_ACTION_PROHIBITED): a real refusal.
    const meta = await createInTestThread(name, (api) => {
      const generate = api.C_GenerateKey.bind(api);
      return {
        C_GenerateKey: ((session: Buffer, mechanism: pkcs11js.Mechanism, template: pkcs11js.Template) => {
          if (!template.some((a) => a.type === A.CKA_TOKEN && a.value === false)) return generate(session, mechanism, template);
          offToken++;
          return generate(session, mechanism, [...template, { type: A.CKA_COPYABLE, value: false }]);
        }) as typeof api.C_GenerateKey,
      };
    });
    expect(offToken).toBe(1);
    expectConsistent(name, meta, A.CKO_SECRET_KEY);
    const rotated = await two.rotateKey(name);
    expectConsistent(name, rotated, A.CKO_SECRET_KEY);
    const ct = await two.encrypt(ref(name, 'AES_128', 2), 'AES_GCM', Buffer.from('abc'));
    expect((await one.decrypt(ref(name, 'AES_128', 2), 'AES_GCM', ct)).toString()).toBe('abc');
  });
});

/**
 * An AES-128 encryption key `name` created by a worker's KeyOperations run in the test's thread on its own
 * session, through a PKCS#11 API whose methods `intercept` replaces; attempts that lose are retried as
 * the backend retries them (KeyChanges).
 */
async function createInTestThread(name: KeyName, intercept: (api: pkcs11js.PKCS11) => Partial<pkcs11js.PKCS11>): Promise<KeyMetadata> {
  const { api, slot, session, close } = inspector.openSession();
  try {
    const overrides: Partial<pkcs11js.PKCS11> = intercept(api);
    // Native methods need the real object as `this`: every other method is bound to it.
    const intercepted = new Proxy(api, {
      get: (target, key) => (Object.hasOwn(overrides, key) ? overrides[key as keyof pkcs11js.PKCS11] : (Reflect.get(target, key) as (...a: unknown[]) => unknown).bind(target)),
    });
    const profile = { ...TokenMechanisms.discover(api, slot).profile(), traits: { rawRsaDecrypt: false, singleDes: false }, oaepSha256Native: false, unwrapsInside: [] };
    const log = { info: () => undefined, warn: () => undefined, error: () => undefined };
    const operations = new KeyOperations(intercepted, () => session, profile, log);
    return await new KeyChanges().run(name, async () => {
      const outcome = await operations.create({ name, type: 'AES_128', purpose: 'encrypt' }, undefined);
      return isConflictResult(outcome) ? CONFLICT : outcome;
    });
  } finally {
    close();
  }
}
