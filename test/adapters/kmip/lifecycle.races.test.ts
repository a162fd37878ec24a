/**
 * The KMIP lifecycle protocol under the interleavings that break it, against a real PyKMIP server: racing
 * creators, a creator stalled past the settle time, writers that stop mid-change (crash recovery), and a
 * destroy that must stay a destroy. Ordering hooks wrap the backends' typed operations so that each test
 * runs one exact interleaving; a "crash" is an operation that throws and leaves the server as it is.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmipBackend } from '../../../adapters/kmip/backend.js';
import { KmipClient } from '../../../adapters/kmip/client.js';
import { resolveConfig } from '../../../adapters/kmip/config.js';
import { KmipOperations, type Attribute } from '../../../adapters/kmip/operations.js';
import { Enum } from '../../../adapters/kmip/tags.js';
import type { Backend } from '../../../src/backend/port.js';
import { HsmBridgeError } from '../../../src/errors.js';
import { kmipConfigFor } from '../../helpers/kmipBackend.js';
import { startPyKmip, type PyKmipServer } from '../../helpers/pykmip.js';

/** Short enough for a test, long enough that a head registered just now is young (Initial Date has whole seconds). */
const SETTLE_MS = 4000;
const PAST_SETTLE_MS = SETTLE_MS + 3000;

const log = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
};
const crash = () => new Error('simulated crash');
const isHeadCheck = (attrs: readonly Attribute[], name: string) =>
  attrs.some((a) => a.name === 'Name' && a.value === `hsmb/${name}`) && !attrs.some((a) => a.name === 'State');
const codeOf = (r: PromiseSettledResult<unknown>) => (r.status === 'rejected' && r.reason instanceof HsmBridgeError ? r.reason.code : r.status);

/** The backend's typed operations, for hooks (a test reaches into the instance on purpose). */
type Hooked = Backend & { ops: KmipOperations };

describe('kmip lifecycle races and crash recovery (PyKMIP)', () => {
  let server: PyKmipServer;
  let raw: KmipOperations;
  let rawClient: KmipClient;
  const opened: Backend[] = [];
  let seq = 0;
  const fresh = (stem: string) => `race-${stem}-${Date.now().toString(36)}-${seq++}`;

  const backend = async (): Promise<Hooked> => {
    const client = await KmipClient.open(await resolveConfig(kmipConfigFor(server)), log);
    const b = await KmipBackend.open(client, log, { settleMs: SETTLE_MS });
    opened.push(b);
    return b as unknown as Hooked;
  };
  const heads = (name: string, state?: number) => raw.locate([
    { name: 'Name', value: `hsmb/${name}` },
    { name: 'Object Type', value: Enum.ObjectType.SecretData },
    ...(state === undefined ? [] : [{ name: 'State', value: state } as const]),
  ]);
  const exists = (uid: string) => raw.get(uid).then(() => true, () => false);
  /** Encrypts and decrypts with a key version: the key is usable, and its objects are there. */
  const roundTrip = async (b: Backend, name: string, version = 1) => {
    const ref = { name, version } as never;
    const plaintext = Buffer.from(`hello ${name}`);
    const ciphertext = await b.encrypt(ref, 'AES_GCM', plaintext);
    expect(await b.decrypt(ref, 'AES_GCM', ciphertext)).toEqual(plaintext);
  };
  const create = (b: Backend, name: string) => b.createKey({ name, type: 'AES_256', purpose: 'encrypt' } as never);

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

  it('two creators: a head activated while the other checks is seen (one Locate, every state)', async () => {
    const A = await backend();
    const B = await backend();
    const name = fresh('create');
    // Both pass their preconditions with no head about; B registers and checks before A registers;
    // A checks, and B activates right after A's check Locate (the old check was an Active Locate then a
    // Pre-Active one, and B activating between them left both creators thinking they were alone).
    const aAtRegister = deferred(), bChecked = deferred(), aChecked = deferred(), aSettled = deferred(), bActivated = deferred();
    let aHead: string | undefined;
    let bHead: string | undefined;
    const bRegister = B.ops.registerSecretData.bind(B.ops);
    B.ops.registerSecretData = async (...args) => {
      await aAtRegister.promise;
      return (bHead = await bRegister(...args));
    };
    const bLocate = B.ops.locate.bind(B.ops);
    B.ops.locate = async (attrs) => {
      const found = await bLocate(attrs);
      if (bHead && isHeadCheck(attrs, name)) {
        bChecked.resolve();
        await Promise.race([aChecked.promise, aSettled.promise]);
      }
      return found;
    };
    const bActivate = B.ops.activate.bind(B.ops);
    B.ops.activate = async (uid) => {
      await bActivate(uid);
      if (uid === bHead) bActivated.resolve();
    };
    const aRegister = A.ops.registerSecretData.bind(A.ops);
    A.ops.registerSecretData = async (...args) => {
      aAtRegister.resolve();
      await bChecked.promise;
      return (aHead = await aRegister(...args));
    };
    const aLocate = A.ops.locate.bind(A.ops);
    A.ops.locate = async (attrs) => {
      const found = await aLocate(attrs);
      if (aHead && isHeadCheck(attrs, name)) {
        aChecked.resolve();
        await bActivated.promise;
      }
      return found;
    };

    const results = await Promise.allSettled([create(A, name).finally(() => aSettled.resolve()), create(B, name)]);

    expect(results[1].status).toBe('fulfilled');
    expect(codeOf(results[0])).toBe('KEY_ALREADY_EXISTS');
    expect(await heads(name, Enum.State.Active)).toEqual([bHead]);
    expect(await heads(name)).toEqual([bHead]); // A withdrew its head
    expect(await exists(aHead!)).toBe(false);
    await roundTrip(A, name);
  });

  it('creators racing without hooks: one key, one Active head', async () => {
    const backends = [await backend(), await backend(), await backend()];
    const name = fresh('many');
    const results = await Promise.allSettled(backends.map((b) => create(b, name)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) expect(['fulfilled', 'KEY_ALREADY_EXISTS', 'BACKEND_UNAVAILABLE']).toContain(codeOf(r));
    expect(await heads(name, Enum.State.Active)).toHaveLength(1);
    for (const b of backends) await roundTrip(b, name);
  });

  it("a creator's head is judged young by the server's clock, not by the writer's writtenAt", async () => {
    const A = await backend();
    const B = await backend();
    const name = fresh('clock');
    const aRegistered = deferred(), bDone = deferred();
    const aRegister = A.ops.registerSecretData.bind(A.ops);
    A.ops.registerSecretData = async (value, attrs) => {
      const record = JSON.parse(value.toString('utf8')) as Record<string, unknown>;
      record.writtenAt = new Date(Date.now() - 120_000).toISOString(); // A's clock two minutes behind
      const uid = await aRegister(Buffer.from(JSON.stringify(record)), attrs);
      aRegistered.resolve();
      await bDone.promise; // B tries to create the same name while A's head is Pre-Active
      return uid;
    };
    const pA = create(A, name);
    await aRegistered.promise;
    const rB = await create(B, name).then(() => 'fulfilled', (e: unknown) => (e instanceof HsmBridgeError ? e.code : String(e)));
    bDone.resolve();
    const keyA = await pA;
    expect(rB).toBe('BACKEND_UNAVAILABLE'); // it waited for A's young head, it removed nothing
    expect(keyA.versions).toHaveLength(1);
    await roundTrip(A, name);
    await roundTrip(B, name);
    await expect(create(B, name)).rejects.toMatchObject({ code: 'KEY_ALREADY_EXISTS' });
  });

  it('a stalled creator that activates while another removes its head as a leftover keeps its key', async () => {
    const A = await backend();
    const B = await backend();
    const name = fresh('stall');
    const aReady = deferred(), bDestroying = deferred(), aActivated = deferred();
    let aHead: string | undefined;
    const aRegister = A.ops.registerSecretData.bind(A.ops);
    A.ops.registerSecretData = async (...args) => (aHead = await aRegister(...args));
    const aActivate = A.ops.activate.bind(A.ops);
    A.ops.activate = async (uid) => {
      if (uid === aHead) {
        aReady.resolve();
        await bDestroying.promise; // stalled past the settle time, then activates just before B's Destroy
      }
      await aActivate(uid);
      if (uid === aHead) aActivated.resolve();
    };
    const bDestroy = B.ops.destroy.bind(B.ops);
    B.ops.destroy = async (uid) => {
      if (uid === aHead) {
        bDestroying.resolve();
        await aActivated.promise;
      }
      return bDestroy(uid);
    };
    const pA = create(A, name);
    await aReady.promise;
    await sleep(PAST_SETTLE_MS);
    const rB = await create(B, name).then(() => 'fulfilled', (e: unknown) => (e instanceof HsmBridgeError ? e.code : String(e)));
    const keyA = await pA;
    expect(rB).toBe('KEY_ALREADY_EXISTS'); // B's plain Destroy was refused: the head had gone live
    expect(keyA.versions).toHaveLength(1);
    expect(await heads(name, Enum.State.Active)).toEqual([aHead]);
    await roundTrip(A, name);
  });

  it('a creator stalled past the settle time whose head was removed is not reported created', async () => {
    const A = await backend();
    const B = await backend();
    const name = fresh('removed');
    const aReady = deferred(), bDone = deferred();
    let aHead: string | undefined;
    let aVersion: string | undefined;
    const aRegister = A.ops.registerSecretData.bind(A.ops);
    A.ops.registerSecretData = async (value, attrs) => {
      aVersion = (JSON.parse(value.toString('utf8')) as { versions: Record<string, { uid: string }> }).versions['1']!.uid;
      return (aHead = await aRegister(value, attrs));
    };
    const aActivate = A.ops.activate.bind(A.ops);
    A.ops.activate = async (uid) => {
      if (uid === aHead) {
        aReady.resolve();
        await bDone.promise;
      }
      return aActivate(uid);
    };
    const pA = create(A, name);
    await aReady.promise;
    await sleep(PAST_SETTLE_MS);
    const keyB = await create(B, name); // A's head is a leftover now: removed, with its version
    bDone.resolve();
    await expect(pA).rejects.toMatchObject({ code: 'KEY_ALREADY_EXISTS' });
    expect(keyB.versions).toHaveLength(1);
    expect(await exists(aHead!)).toBe(false);
    expect(await exists(aVersion!)).toBe(false);
    await roundTrip(A, name);
  });

  it('crash recovery: a successor left Pre-Active after the revoke is activated once it has settled', async () => {
    const A = await backend();
    const reader = await backend();
    const name = fresh('orphan');
    await create(A, name);
    let next: string | undefined;
    const aRegister = A.ops.registerSecretData.bind(A.ops);
    A.ops.registerSecretData = async (...args) => (next = await aRegister(...args));
    const aActivate = A.ops.activate.bind(A.ops);
    A.ops.activate = async (uid) => {
      if (uid === next) throw crash(); // stops between revoke and activate
      return aActivate(uid);
    };
    await expect(A.rotateKey(name as never)).rejects.toThrow();
    expect(await heads(name, Enum.State.Active)).toEqual([]);
    await expect(reader.describeKey(name as never)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' }); // young: its writer may be at work
    await sleep(PAST_SETTLE_MS);
    const key = await reader.describeKey(name as never);
    expect(key.versions.map((v) => v.version)).toEqual([1, 2]);
    expect(await heads(name, Enum.State.Active)).toEqual([next]);
    await roundTrip(reader, name, 2);
    await roundTrip(reader, name, 1);
  });

  it('a destroyed key does not come back through a successor another writer left behind', async () => {
    const R = await backend();
    const D = await backend();
    const reader = await backend();
    const name = fresh('destroyed');
    const created = await create(D, name);
    await D.setKeyState(name as never, 'disabled');
    // R registers its next head (a rotation) and stops before its revoke.
    const rRevoke = R.ops.revoke.bind(R.ops);
    R.ops.revoke = async () => {
      throw crash();
    };
    await expect(R.rotateKey(name as never)).rejects.toThrow();
    R.ops.revoke = rRevoke;
    // D commits the destroy (its revoke wins) and stops before removing anything.
    const dDestroy = D.ops.destroy.bind(D.ops);
    D.ops.destroy = async () => {
      throw crash();
    };
    await expect(D.destroyKey(name as never)).rejects.toThrow();
    D.ops.destroy = dDestroy;
    expect(await heads(name, Enum.State.Active)).toEqual([]);

    await sleep(PAST_SETTLE_MS); // both writers' heads have settled: the old rule activated R's successor
    await expect(reader.describeKey(name as never)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    expect(await heads(name, Enum.State.Active)).toEqual([]);

    // A new key of that name clears what the stopped writers left: every head and every version object.
    const leftovers = await heads(name);
    expect(leftovers.length).toBe(3); // the revoked head, R's successor, D's tombstone
    const again = await create(reader, name);
    expect(again.versions).toHaveLength(1);
    for (const uid of leftovers) expect(await exists(uid)).toBe(false);
    expect(created.versions).toHaveLength(1);
    expect(await raw.locate([{ name: 'Name', value: `hsmb/${name}/v2` }])).toEqual([]); // R's rotated version went too
    await roundTrip(reader, name);
  });

  it('a destroy that stopped after its commit reads as destroyed at once, and a create finishes it', async () => {
    const D = await backend();
    const reader = await backend();
    const name = fresh('halfdestroyed');
    await create(D, name);
    await D.setKeyState(name as never, 'disabled');
    const v1 = (await raw.locate([{ name: 'Name', value: `hsmb/${name}/v1` }]))[0]!;
    const dDestroy = D.ops.destroy.bind(D.ops);
    D.ops.destroy = async () => {
      throw crash();
    };
    await expect(D.destroyKey(name as never)).rejects.toThrow();
    D.ops.destroy = dDestroy;
    await expect(reader.describeKey(name as never)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    expect(await exists(v1)).toBe(true); // its objects wait for the settle time
    await expect(create(reader, name)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    await sleep(PAST_SETTLE_MS);
    await create(reader, name);
    expect(await exists(v1)).toBe(false);
    await roundTrip(reader, name);
  });

  it('a creator that stopped after registering its head leaves nothing behind once another creates the key', async () => {
    const A = await backend();
    const B = await backend();
    const name = fresh('crashedcreate');
    let aVersion: string | undefined;
    let aHead: string | undefined;
    const aRegister = A.ops.registerSecretData.bind(A.ops);
    A.ops.registerSecretData = async (value, attrs) => {
      aVersion = (JSON.parse(value.toString('utf8')) as { versions: Record<string, { uid: string }> }).versions['1']!.uid;
      aHead = await aRegister(value, attrs);
      A.ops.destroy = async () => {
        throw crash(); // stopped: nothing of its own clean-up runs
      };
      throw crash();
    };
    await expect(create(A, name)).rejects.toThrow();
    expect(await exists(aHead!)).toBe(true);
    await expect(B.describeKey(name as never)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    await sleep(PAST_SETTLE_MS);
    await create(B, name);
    expect(await exists(aHead!)).toBe(false);
    expect(await exists(aVersion!)).toBe(false);
    await roundTrip(B, name);
  });

  it('refuses to start on a server where a revoked object can be revoked again, and removes its probe', async () => {
    const client = await KmipClient.open(await resolveConfig(kmipConfigFor(server)), log);
    try {
      // This server's Revoke, made idempotent the way another server's might be.
      const call = client.call.bind(client);
      let revoked: Awaited<ReturnType<KmipClient['call']>>;
      client.call = async (operation, payload, options) => {
        try {
          const answer = await call(operation, payload, options);
          if (operation === Enum.Operation.Revoke) revoked = answer;
          return answer;
        } catch (e) {
          if (operation === Enum.Operation.Revoke && revoked) return revoked;
          throw e;
        }
      };
      await expect(KmipBackend.open(client, log)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringContaining('second Revoke') });
      expect(await raw.locate([{ name: 'Name', value: 'hsmb-probe' }])).toEqual([]);
    } finally {
      await client.close();
    }
  });
});
