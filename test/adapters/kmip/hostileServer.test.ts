/**
 * KmipClient and KmipConnection against a fake KMIP server that misbehaves on purpose: garbage, a huge
 * length, half a message, silence, extra or unsolicited bytes, wrong answers. Every case must end in a
 * clean HsmBridgeError (never a crash, a hang or an unbounded buffer), and the client must stay usable.
 * The fake speaks real mutual TLS with certificates from the test PKI; its correct answers are encoded
 * with the TTLV codec, so only the misbehaviour is hand-made.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, createServer, type Server, type TlsOptions, type TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KmipClient, type KmipClientOptions } from '../../../adapters/kmip/client.js';
import { KmipConnection, kmipTlsContext } from '../../../adapters/kmip/connection.js';
import { protocolVersion, type ProtocolVersion } from '../../../adapters/kmip/messages.js';
import { Enum, Tag } from '../../../adapters/kmip/tags.js';
import { dateTime, decodeTtlv, encodeTtlv, enm, enumOf, int, messageLength, struct, structOf, text, type Ttlv } from '../../../adapters/kmip/ttlv.js';
import { HsmBridgeError } from '../../../src/errors.js';
import { createTestPki, type TestPki } from '../../helpers/pykmip.js';

const logger = pino({ level: 'silent' });
let pki: TestPki;
let pkiDir: string;

beforeAll(async () => {
  pkiDir = await mkdtemp(join(tmpdir(), 'hsmb-kmip-fake-'));
  pki = await createTestPki(pkiDir);
});
afterAll(async () => {
  await rm(pkiDir, { recursive: true, force: true });
});

interface Response {
  operation: number;
  status?: number;
  reason?: number;
  payload?: Ttlv[];
  version?: ProtocolVersion;
}

function encodeResponse(r: Response): Buffer {
  const item: Ttlv[] = [enm(Tag.Operation, r.operation), enm(Tag.ResultStatus, r.status ?? Enum.ResultStatus.Success)];
  if (r.reason !== undefined) item.push(enm(Tag.ResultReason, r.reason));
  if (r.payload) item.push(struct(Tag.ResponsePayload, ...r.payload));
  return encodeTtlv(
    struct(
      Tag.ResponseMessage,
      struct(Tag.ResponseHeader, protocolVersion(r.version ?? { major: 1, minor: 4 }), dateTime(Tag.TimeStamp, BigInt(Math.floor(Date.now() / 1000))), int(Tag.BatchCount, 1)),
      struct(Tag.BatchItem, ...item),
    ),
  );
}

const versions14 = [protocolVersion({ major: 1, minor: 4 })];
const discoverOk = encodeResponse({ operation: Enum.Operation.DiscoverVersions, payload: versions14 });
const queryPayload = struct(Tag.RequestPayload, enm(Tag.QueryFunction, Enum.QueryFunction.QueryOperations));
const queryOk = encodeResponse({ operation: Enum.Operation.Query, payload: [enm(Tag.Operation, Enum.Operation.Query)] });

/** What the fake does with one request: its socket, the operation asked for, and how many requests came before on any connection. */
type Behaviour = (socket: TLSSocket, operation: number, index: number) => void;

interface FakeServer {
  readonly port: number;
  /** Connections accepted so far, and how many were open at once at most. */
  readonly stats: { connections: number; open: number; maxOpen: number; requests: number[] };
  /** Resolves when the server has seen a connection close (from either side). */
  closedConnections(): number;
  close(): Promise<void>;
}

let servers: FakeServer[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

/** A mutual-TLS server that frames requests and lets `behaviour` answer (DiscoverVersions succeeds unless it says otherwise). */
async function fakeKmip(behaviour: Behaviour, tls?: TlsOptions): Promise<FakeServer> {
  const stats = { connections: 0, open: 0, maxOpen: 0, requests: [] as number[] };
  let closed = 0;
  const sockets = new Set<TLSSocket>();
  const server: Server = createServer({ cert: await readFile(pki.serverCertPath), key: await readFile(pki.serverKeyPath), ca: pki.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2', ...tls }, (socket) => {
    sockets.add(socket);
    stats.connections++;
    stats.maxOpen = Math.max(stats.maxOpen, ++stats.open);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      stats.open--;
      closed++;
      sockets.delete(socket);
    });
    let buffered = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      while (buffered.length >= 8) {
        const length = messageLength(buffered.subarray(0, 8), 1 << 20);
        if (buffered.length < length) return;
        const request = decodeTtlv(buffered.subarray(0, length));
        buffered = buffered.subarray(length);
        const operation = enumOf(structOf(request, Tag.BatchItem), Tag.Operation);
        stats.requests.push(operation);
        behaviour(socket, operation, stats.requests.length - 1);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const fake: FakeServer = {
    port: (server.address() as { port: number }).port,
    stats,
    closedConnections: () => closed,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
  servers.push(fake);
  return fake;
}

/** Answers DiscoverVersions properly and everything else with `misbehave`. */
const afterOpen =
  (misbehave: Behaviour): Behaviour =>
  (socket, operation, index) => {
    if (operation === Enum.Operation.DiscoverVersions) socket.write(discoverOk);
    else misbehave(socket, operation, index);
  };

const answerQueries: Behaviour = (socket, operation) => socket.write(operation === Enum.Operation.Query ? queryOk : discoverOk);

function options(port: number, overrides?: Partial<KmipClientOptions>): KmipClientOptions {
  return {
    host: '127.0.0.1',
    port,
    ca: pki.ca,
    cert: pki.clientCert,
    key: pki.clientKey,
    connectTimeoutMs: 5_000,
    requestTimeoutMs: 5_000,
    poolSize: 2,
    maxResponseBytes: 64 * 1024,
    ...overrides,
  };
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, 'expected a rejection').toBeInstanceOf(HsmBridgeError);
  return (e as HsmBridgeError).code;
}

/** Opens a client on a fake that misbehaves after the handshake, checks the outcome of one call, and that the client still works after. */
async function misbehaviourGives(misbehave: Behaviour, expected: string, overrides?: Partial<KmipClientOptions>): Promise<FakeServer> {
  let misbehaved = false;
  const fake = await fakeKmip(
    afterOpen((socket, operation, index) => {
      if (misbehaved) return answerQueries(socket, operation, index);
      misbehaved = true;
      misbehave(socket, operation, index);
    }),
  );
  const client = await KmipClient.open(options(fake.port, overrides), logger);
  try {
    expect(await codeOf(client.call(Enum.Operation.Query, queryPayload))).toBe(expected);
    // The bad connection was dropped; the next call gets a fresh one and works.
    const payload = await client.call(Enum.Operation.Query, queryPayload);
    expect(enumOf(payload!, Tag.Operation)).toBe(Enum.Operation.Query);
    expect(fake.stats.connections).toBe(2);
  } finally {
    await client.close();
  }
  return fake;
}

describe('a hostile or broken KMIP server', () => {
  it('garbage instead of TTLV: INTERNAL', async () => {
    await misbehaviourGives((socket) => socket.write(Buffer.concat([Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'), randomBytes(64)])), 'INTERNAL');
  });

  it('a header announcing 1 GiB: refused at once, before the body (INTERNAL, not a timeout)', async () => {
    const header = Buffer.from([0x42, 0x00, 0x7b, 0x01, 0x40, 0x00, 0x00, 0x00]); // ResponseMessage, Structure, 1 GiB
    await misbehaviourGives((socket) => socket.write(header), 'INTERNAL', { requestTimeoutMs: 60_000 });
  });

  it('a response just over maxResponseBytes is refused on its header; one at the limit is read', async () => {
    const big = (size: number) =>
      encodeResponse({ operation: Enum.Operation.Query, payload: [enm(Tag.Operation, Enum.Operation.Query), text(Tag.VendorIdentification, 'x'.repeat(size))] });
    // Find the padding that makes the message exactly `limit` bytes.
    const limit = 4096;
    const base = big(8).length;
    const atLimit = big(8 + (limit - base));
    expect(atLimit.length).toBe(limit);
    const overLimit = big(16 + (limit - base));
    expect(overLimit.length).toBe(limit + 8);
    // Only the header of the large one: it must be refused on the header alone (not time out waiting for the rest).
    const fake = await fakeKmip(afterOpen((socket, _op, index) => socket.write(index === 1 ? overLimit.subarray(0, 8) : atLimit)));
    const client = await KmipClient.open(options(fake.port, { maxResponseBytes: limit, requestTimeoutMs: 60_000 }), logger);
    try {
      expect(await codeOf(client.call(Enum.Operation.Query, queryPayload))).toBe('INTERNAL');
      expect(await client.call(Enum.Operation.Query, queryPayload)).toBeDefined();
    } finally {
      await client.close();
    }
  });

  it('half a message, then the connection closes: BACKEND_UNAVAILABLE', async () => {
    await misbehaviourGives((socket) => socket.end(queryOk.subarray(0, queryOk.length / 2)), 'BACKEND_UNAVAILABLE');
  });

  it('silence: the request times out as BACKEND_UNAVAILABLE and the connection is closed', async () => {
    const fake = await misbehaviourGives(() => undefined, 'BACKEND_UNAVAILABLE', { requestTimeoutMs: 300 });
    await expect.poll(() => fake.closedConnections(), { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
  });

  it('two responses to one request: INTERNAL', async () => {
    await misbehaviourGives((socket) => socket.write(Buffer.concat([queryOk, queryOk])), 'INTERNAL');
  });

  it('an answer for another operation: INTERNAL', async () => {
    await misbehaviourGives((socket) => socket.write(encodeResponse({ operation: Enum.Operation.Get })), 'INTERNAL');
  });

  it('well-formed TTLV that is not a response message: INTERNAL', async () => {
    await misbehaviourGives((socket) => socket.write(encodeTtlv(struct(Tag.RequestMessage, int(Tag.BatchCount, 1)))), 'INTERNAL');
  });

  it('an asynchronous (pending) result we never asked for: INTERNAL', async () => {
    await misbehaviourGives((socket) => socket.write(encodeResponse({ operation: Enum.Operation.Query, status: Enum.ResultStatus.OperationPending })), 'INTERNAL');
  });

  it('bytes sent while no request is in flight end that connection, not the client', async () => {
    const fake = await fakeKmip((socket, operation, index) => {
      answerQueries(socket, operation, index);
      if (index === 1) setTimeout(() => socket.write(queryOk), 20); // unsolicited, after the answer
    });
    const client = await KmipClient.open(options(fake.port, { poolSize: 1 }), logger);
    try {
      await client.call(Enum.Operation.Query, queryPayload);
      await expect.poll(() => fake.closedConnections(), { timeout: 10_000 }).toBe(1);
      expect(await client.call(Enum.Operation.Query, queryPayload)).toBeDefined();
      expect(fake.stats.connections).toBe(2);
    } finally {
      await client.close();
    }
  });

  it('a plain TCP server that talks nonsense, or closes at once, or says nothing: open fails as BACKEND_UNAVAILABLE', async () => {
    const behaviours: ((s: Socket) => void)[] = [(s) => s.end('SSH-2.0-OpenSSH_9.2\r\n'), (s) => s.destroy(), () => undefined];
    for (const behave of behaviours) {
      const tcp: TcpServer = createTcpServer((s) => {
        s.on('error', () => undefined);
        behave(s);
      });
      await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
      try {
        const port = (tcp.address() as { port: number }).port;
        expect(await codeOf(KmipClient.open(options(port, { connectTimeoutMs: 300 }), logger))).toBe('BACKEND_UNAVAILABLE');
      } finally {
        tcp.close();
        // A silent server's socket is still open on our side of the test: closing the listener is enough.
      }
    }
  });

  it('nothing listening: open fails as BACKEND_UNAVAILABLE', async () => {
    const tcp = createTcpServer();
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    const port = (tcp.address() as { port: number }).port;
    await new Promise((r) => tcp.close(r));
    expect(await codeOf(KmipClient.open(options(port), logger))).toBe('BACKEND_UNAVAILABLE');
  });
});

describe('version negotiation', () => {
  it('falls back to 1.2 when the server does not support DiscoverVersions', async () => {
    const fake = await fakeKmip((socket, operation) =>
      socket.write(
        operation === Enum.Operation.DiscoverVersions
          ? encodeResponse({ operation, status: Enum.ResultStatus.OperationFailed, reason: Enum.ResultReason.OperationNotSupported, version: { major: 1, minor: 2 } })
          : queryOk,
      ),
    );
    const client = await KmipClient.open(options(fake.port), logger);
    expect(client.version).toEqual({ major: 1, minor: 2 });
    await client.close();
  });

  it('refuses a server that offers none of our versions', async () => {
    const fake = await fakeKmip((socket, operation) => socket.write(encodeResponse({ operation, payload: [protocolVersion({ major: 1, minor: 1 })] })));
    await expect(KmipClient.open(options(fake.port), logger)).rejects.toThrow(/supports none of the versions 1\.4, 1\.3, 1\.2 \(it offered 1\.1\)/);
  });

  it('picks our most preferred version among those offered', async () => {
    const offered = [protocolVersion({ major: 1, minor: 2 }), protocolVersion({ major: 1, minor: 3 })];
    const fake = await fakeKmip((socket, operation) => socket.write(encodeResponse({ operation, payload: offered })));
    const client = await KmipClient.open(options(fake.port), logger);
    expect(client.version).toEqual({ major: 1, minor: 3 });
    await client.close();
  });
});

describe('the pool', () => {
  it('never holds more than poolSize connections, however many calls are made at once', async () => {
    const fake = await fakeKmip((socket, operation, index) => setTimeout(() => answerQueries(socket, operation, index), 10));
    const client = await KmipClient.open(options(fake.port, { poolSize: 3 }), logger);
    try {
      await Promise.all(Array.from({ length: 40 }, () => client.call(Enum.Operation.Query, queryPayload)));
      expect(fake.stats.maxOpen).toBe(3);
      expect(fake.stats.connections).toBe(3);
    } finally {
      await client.close();
    }
  });

  it('retries once on a fresh connection when asked to, and only then', async () => {
    let dropNext = false;
    const fake = await fakeKmip((socket, operation, index) => {
      if (operation === Enum.Operation.Query && dropNext) {
        dropNext = false;
        socket.destroy(); // the request reached the server, the answer never comes
        return;
      }
      answerQueries(socket, operation, index);
    });
    const client = await KmipClient.open(options(fake.port, { poolSize: 1 }), logger);
    try {
      dropNext = true;
      expect(await codeOf(client.call(Enum.Operation.Query, queryPayload))).toBe('BACKEND_UNAVAILABLE');
      dropNext = true;
      expect(await client.call(Enum.Operation.Query, queryPayload, { retry: true })).toBeDefined();
      expect(fake.stats.requests.filter((op) => op === Enum.Operation.Query)).toHaveLength(3);
    } finally {
      await client.close();
    }
  });

  it('bounds the wait for a connection by the request timeout', async () => {
    const fake = await fakeKmip(afterOpen(() => undefined)); // never answers after open
    const client = await KmipClient.open(options(fake.port, { poolSize: 1, requestTimeoutMs: 300 }), logger);
    try {
      const codes = await Promise.all(Array.from({ length: 3 }, () => codeOf(client.call(Enum.Operation.Query, queryPayload))));
      expect(codes).toEqual(['BACKEND_UNAVAILABLE', 'BACKEND_UNAVAILABLE', 'BACKEND_UNAVAILABLE']);
    } finally {
      await client.close();
    }
  });

  it('close() fails the calls in flight and waiting, cleanly', async () => {
    const fake = await fakeKmip(afterOpen(() => undefined));
    const client = await KmipClient.open(options(fake.port, { poolSize: 1, requestTimeoutMs: 60_000 }), logger);
    const calls = Array.from({ length: 3 }, () => codeOf(client.call(Enum.Operation.Query, queryPayload)));
    await expect.poll(() => fake.stats.requests.length, { timeout: 10_000 }).toBe(2);
    await client.close();
    expect(await Promise.all(calls)).toEqual(['BACKEND_UNAVAILABLE', 'BACKEND_UNAVAILABLE', 'BACKEND_UNAVAILABLE']);
  });
});

describe('health', () => {
  it('coalesces concurrent probes into one DiscoverVersions on a connection of its own', async () => {
    const fake = await fakeKmip(answerQueries);
    const client = await KmipClient.open(options(fake.port, { poolSize: 1 }), logger);
    try {
      const results = await Promise.all(Array.from({ length: 20 }, () => client.health()));
      expect(results.every((r) => r.ready)).toBe(true);
      expect(fake.stats.requests.filter((op) => op === Enum.Operation.DiscoverVersions)).toHaveLength(2); // open + one probe
      expect(fake.stats.connections).toBe(2); // the pooled one + the probe's
    } finally {
      await client.close();
    }
  });

  it('is false, with a reason, when the server does not answer the probe', async () => {
    let opened = false;
    const fake = await fakeKmip((socket, operation, index) => {
      if (!opened) {
        opened = true;
        return answerQueries(socket, operation, index);
      }
      // silent from now on
    });
    const client = await KmipClient.open(options(fake.port, { requestTimeoutMs: 300 }), logger);
    try {
      const h = await client.health();
      expect(h.ready).toBe(false);
      // A fixed text for callers: the socket's own words stay in the log.
      expect(h.detail).toBe('KMIP server timed out');
    } finally {
      await client.close();
    }
  });
});

describe('TLS policy', () => {
  it('refuses a server that offers only a non-AEAD suite (ECDHE, CBC), which a default TLS client accepts', async () => {
    const cbcOnly = await fakeKmip(answerQueries, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA256' });
    // The control: Node's default client list agrees to it, so the refusal is the adapter's policy.
    const suite = await new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port: cbcOnly.port, ca: pki.ca, cert: pki.clientCert, key: pki.clientKey, servername: 'localhost' });
      s.once('secureConnect', () => {
        resolve(s.getCipher().standardName);
        s.destroy();
      });
      s.once('error', reject);
    });
    expect(suite).toBe('TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256');
    expect(await codeOf(KmipClient.open(options(cbcOnly.port), logger))).toBe('BACKEND_UNAVAILABLE');
  });

  it('agrees on ECDHE with AES-GCM over TLS 1.2', async () => {
    const gcm = await fakeKmip(answerQueries, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA256' });
    const client = await KmipClient.open(options(gcm.port), logger);
    await client.close();
  });
});

describe('KmipConnection', () => {
  it('refuses a second request while one is in flight (one request per connection)', async () => {
    const fake = await fakeKmip((socket, operation, index) => setTimeout(() => answerQueries(socket, operation, index), 20));
    const connection = await KmipConnection.connect({ ...options(fake.port), tls: kmipTlsContext({ ca: pki.ca, cert: pki.clientCert, key: pki.clientKey }) });
    try {
      const request = encodeTtlv(struct(Tag.RequestMessage, struct(Tag.RequestHeader, protocolVersion({ major: 1, minor: 4 }), int(Tag.BatchCount, 1)), struct(Tag.BatchItem, enm(Tag.Operation, Enum.Operation.Query), queryPayload)));
      const first = connection.request(request, 5_000);
      await expect(connection.request(request, 5_000)).rejects.toThrow(/already in flight/);
      expect(messageLength((await first).subarray(0, 8), 1 << 20)).toBe(queryOk.length);
    } finally {
      connection.close();
    }
    expect(connection.alive).toBe(false);
  });
});
