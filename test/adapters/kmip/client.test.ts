/**
 * KmipClient against a real PyKMIP server (test/helpers/pykmip.ts): version negotiation, raw operations,
 * mutual TLS and the server-name check, and the server dying and coming back. Key bytes read through our
 * client are compared with what PyKMIP's own Python client reads, an implementation independent of ours.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmipClient, KmipOperationError } from '../../../adapters/kmip/client.js';
import { Enum, Tag } from '../../../adapters/kmip/tags.js';
import { bytesOf, children, enm, enumOf, int, struct, structOf, text, textOf, type Ttlv } from '../../../adapters/kmip/ttlv.js';
import { HsmBridgeError } from '../../../src/errors.js';
import { createTestPki, startPyKmip, type PyKmipServer, type TestPki } from '../../helpers/pykmip.js';

const logger = pino({ level: 'silent' });

const attribute = (name: string, value: Ttlv) => struct(Tag.Attribute, text(Tag.AttributeName, name), value);

const createAes256 = (name: string) =>
  struct(
    Tag.RequestPayload,
    enm(Tag.ObjectType, Enum.ObjectType.SymmetricKey),
    struct(
      Tag.TemplateAttribute,
      attribute('Cryptographic Algorithm', enm(Tag.AttributeValue, Enum.CryptographicAlgorithm.AES)),
      attribute('Cryptographic Length', int(Tag.AttributeValue, 256)),
      attribute('Cryptographic Usage Mask', int(Tag.AttributeValue, Enum.CryptographicUsageMask.Encrypt | Enum.CryptographicUsageMask.Decrypt)),
      attribute('Name', struct(Tag.AttributeValue, text(Tag.NameValue, name), enm(Tag.NameType, Enum.NameType.UninterpretedTextString))),
    ),
  );

const byId = (uid: string) => struct(Tag.RequestPayload, text(Tag.UniqueIdentifier, uid));

async function createKey(client: KmipClient, name: string): Promise<string> {
  const payload = await client.call(Enum.Operation.Create, createAes256(name));
  expect(payload).toBeDefined();
  expect(enumOf(payload!, Tag.ObjectType)).toBe(Enum.ObjectType.SymmetricKey);
  return textOf(payload!, Tag.UniqueIdentifier);
}

async function keyBytes(client: KmipClient, uid: string): Promise<Buffer> {
  const payload = (await client.call(Enum.Operation.Get, byId(uid), { retry: true }))!;
  expect(textOf(payload, Tag.UniqueIdentifier)).toBe(uid);
  const keyBlock = structOf(structOf(payload, Tag.SymmetricKey), Tag.KeyBlock);
  expect(enumOf(keyBlock, Tag.KeyFormatType)).toBe(Enum.KeyFormatType.Raw);
  expect(enumOf(keyBlock, Tag.CryptographicAlgorithm)).toBe(Enum.CryptographicAlgorithm.AES);
  return bytesOf(structOf(keyBlock, Tag.KeyValue), Tag.KeyMaterial);
}

/** Resolves with the HsmBridgeError code a promise rejects with; fails the test if it resolves or throws something else. */
async function codeOf(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, 'expected a rejection').toBeInstanceOf(HsmBridgeError);
  return (e as HsmBridgeError).code;
}

const pyGetKey = `
key = client.get(args)
print(json.dumps(key.value.hex()))
`;

describe('KmipClient against PyKMIP', () => {
  let server: PyKmipServer;
  let client: KmipClient;

  beforeAll(async () => {
    server = await startPyKmip();
    client = await KmipClient.open(server.clientOptions(), logger);
  });
  afterAll(async () => {
    await client?.close();
    await server?.stop();
  });

  it('negotiates KMIP 1.4, the highest version both speak', () => {
    expect(client.version).toEqual({ major: 1, minor: 4 });
  });

  it('negotiates the highest version of a narrower list', async () => {
    const c = await KmipClient.open(server.clientOptions({ versions: [{ major: 1, minor: 2 }, { major: 1, minor: 3 }] }), logger);
    try {
      expect(c.version).toEqual({ major: 1, minor: 2 }); // our preference order wins, not the number
    } finally {
      await c.close();
    }
    const d = await KmipClient.open(server.clientOptions({ versions: [{ major: 1, minor: 3 }, { major: 1, minor: 2 }] }), logger);
    try {
      expect(d.version).toEqual({ major: 1, minor: 3 });
      // The negotiated version is the one requests carry: the server answers in kind.
      expect(await d.call(Enum.Operation.Query, struct(Tag.RequestPayload, enm(Tag.QueryFunction, Enum.QueryFunction.QueryOperations)))).toBeDefined();
    } finally {
      await d.close();
    }
  });

  it('refuses to open when the server refuses every version we offer', async () => {
    // PyKMIP rejects a request header of a version it does not know (InvalidMessage), DiscoverVersions included.
    const open = KmipClient.open(server.clientOptions({ versions: [{ major: 9, minor: 9 }] }), logger);
    await expect(open).rejects.toThrow(/version negotiation/);
    expect(await codeOf(open)).toBe('BACKEND_UNAVAILABLE');
  });

  it('queries the operations the server supports', async () => {
    const payload = await client.call(Enum.Operation.Query, struct(Tag.RequestPayload, enm(Tag.QueryFunction, Enum.QueryFunction.QueryOperations)));
    const operations = children(payload!, Tag.Operation).map((o) => (o.type === 'Enumeration' ? o.value : -1));
    for (const op of ['Create', 'CreateKeyPair', 'Register', 'Locate', 'Get', 'Activate', 'Revoke', 'Destroy', 'Encrypt', 'Sign', 'MAC'] as const) {
      expect(operations).toContain(Enum.Operation[op]);
    }
  });

  it('creates an AES-256 key and gets the same 32 bytes that PyKMIP’s own client reads', async () => {
    const uid = await createKey(client, 'k2-client-test-aes');
    const material = await keyBytes(client, uid);
    expect(material).toHaveLength(32);
    expect(await server.pyClient(pyGetKey, uid)).toBe(material.toString('hex'));
  });

  it('reads a key PyKMIP’s client created', async () => {
    const created = (await server.pyClient(
      `
uid = client.create(enums.CryptographicAlgorithm.AES, 256, name='k2-from-python')
print(json.dumps([uid, client.get(uid).value.hex()]))
`,
    )) as [string, string];
    expect((await keyBytes(client, created[0])).toString('hex')).toBe(created[1]);
  });

  it('maps a failed result to KmipOperationError with the reason', async () => {
    const e = await client.call(Enum.Operation.Get, byId('no-such-object')).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(KmipOperationError);
    expect((e as KmipOperationError).reason).toBe(Enum.ResultReason.ItemNotFound);
    expect((e as KmipOperationError).message).toMatch(/Get failed: ItemNotFound/);
  });

  it('keeps concurrent calls apart on a small pool', async () => {
    const small = await KmipClient.open(server.clientOptions({ poolSize: 2 }), logger);
    try {
      const uids = await Promise.all(Array.from({ length: 6 }, (_, i) => createKey(small, `k2-pool-${i}`)));
      expect(new Set(uids).size).toBe(6);
      const keys = await Promise.all(uids.map((uid) => keyBytes(small, uid)));
      // Each response went to the call that asked: Get answers carry their own identifier (checked in
      // keyBytes) and the keys are distinct.
      expect(new Set(keys.map((k) => k.toString('hex'))).size).toBe(6);
      // The pool's counts for the metrics listener: everything returned.
      expect(small.poolCounts()).toEqual({ size: 2, inUse: 0, waiting: 0 });
    } finally {
      await small.close();
    }
  });

  it('reports health', async () => {
    expect(await client.health()).toEqual({ ready: true });
  });

  it('rejects calls after close', async () => {
    const c = await KmipClient.open(server.clientOptions(), logger);
    await c.close();
    expect(await codeOf(c.call(Enum.Operation.Get, byId('1')))).toBe('BACKEND_UNAVAILABLE');
    expect((await c.health()).ready).toBe(false);
  });

  describe('mutual TLS', () => {
    let foreign: TestPki;
    let foreignDir: string;
    beforeAll(async () => {
      foreignDir = await mkdtemp(join(tmpdir(), 'hsmb-kmip-foreign-'));
      foreign = await createTestPki(foreignDir);
    });
    afterAll(async () => {
      await rm(foreignDir, { recursive: true, force: true });
    });

    it('the server refuses a client that presents no certificate', async () => {
      // A raw TLS client: ours always presents its certificate.
      const outcome = await new Promise<string>((resolve) => {
        const socket = tlsConnect({ host: '127.0.0.1', port: server.port, ca: server.ca, minVersion: 'TLSv1.2' });
        socket.once('secureConnect', () => resolve('handshake completed'));
        socket.once('error', (e) => resolve(`error: ${e.message}`));
        socket.once('close', () => resolve('closed'));
      });
      expect(outcome).not.toBe('handshake completed');
    });

    it('the server refuses a client certificate from another CA', async () => {
      const open = KmipClient.open(server.clientOptions({ cert: foreign.clientCert, key: foreign.clientKey }), logger);
      expect(await codeOf(open)).toBe('BACKEND_UNAVAILABLE');
    });

    it('the client refuses a server whose certificate another CA issued', async () => {
      const open = KmipClient.open(server.clientOptions({ ca: foreign.ca }), logger);
      await expect(open).rejects.toThrow(/certificate/i);
      expect(await codeOf(open)).toBe('BACKEND_UNAVAILABLE');
    });

    it('the client refuses a server certificate for another name', async () => {
      const open = KmipClient.open(server.clientOptions({ serverName: 'kmip.example.com' }), logger);
      await expect(open).rejects.toThrow(/kmip\.example\.com/);
      expect(await codeOf(open)).toBe('BACKEND_UNAVAILABLE');
    });

    it('the client accepts the names the server certificate carries', async () => {
      for (const options of [{ serverName: 'localhost' }, { host: 'localhost' }]) {
        const c = await KmipClient.open(server.clientOptions(options), logger);
        await c.close();
      }
    });
  });
});

describe('KmipClient when the server dies and comes back', () => {
  let server: PyKmipServer;
  let client: KmipClient;

  beforeAll(async () => {
    server = await startPyKmip();
    client = await KmipClient.open(server.clientOptions({ poolSize: 3, requestTimeoutMs: 10_000 }), logger);
  });
  afterAll(async () => {
    await client?.close();
    await server?.stop();
  });

  /** Polls health (cached for about a second) until it says `ready`, within a generous deadline. */
  async function healthBecomes(ready: boolean): Promise<void> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const h = await client.health();
      if (h.ready === ready) return;
      if (Date.now() > deadline) throw new Error(`health stayed ${JSON.stringify(h)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  it('fails calls with BACKEND_UNAVAILABLE while the server is gone, and recovers by itself', async () => {
    const uid = await createKey(client, 'k2-survives-restart');
    const before = await keyBytes(client, uid);
    await healthBecomes(true);

    // Calls in flight when the server is SIGKILLed either completed or fail as unavailable; none hangs or crashes.
    const inFlight = Array.from({ length: 8 }, () => keyBytes(client, uid).then((k) => k.toString('hex'), (e: unknown) => e));
    await server.kill();
    for (const outcome of await Promise.all(inFlight)) {
      if (typeof outcome === 'string') expect(outcome).toBe(before.toString('hex'));
      else expect((outcome as HsmBridgeError).code).toBe('BACKEND_UNAVAILABLE');
    }

    for (const retry of [false, true]) {
      expect(await codeOf(client.call(Enum.Operation.Get, byId(uid), { retry }))).toBe('BACKEND_UNAVAILABLE');
    }
    expect(await codeOf(client.call(Enum.Operation.Create, createAes256('k2-while-down')))).toBe('BACKEND_UNAVAILABLE');
    await healthBecomes(false);
    expect((await client.health()).detail).toBeTruthy();

    await server.restart();
    // The same client, no reopen: dead connections were dropped, new ones are made on demand.
    expect(await keyBytes(client, uid)).toEqual(before);
    const again = await createKey(client, 'k2-after-restart');
    expect(await keyBytes(client, again)).toHaveLength(32);
    await healthBecomes(true);
  });

  it('a call that never reaches a live server fails within its timeouts, not forever', async () => {
    await server.kill();
    try {
      const started = Date.now();
      expect(await codeOf(client.call(Enum.Operation.Get, byId('1'), { retry: true }))).toBe('BACKEND_UNAVAILABLE');
      // Connection refused is immediate; the bound is the configured timeouts (generous, not a benchmark).
      expect(Date.now() - started).toBeLessThan(2 * (5_000 + 10_000));
    } finally {
      await server.restart();
    }
    expect(await client.call(Enum.Operation.Query, struct(Tag.RequestPayload, enm(Tag.QueryFunction, Enum.QueryFunction.QueryOperations)))).toBeDefined();
  });
});
