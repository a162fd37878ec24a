/**
 * The KMIP backend against a real PyKMIP server seen through a TLS proxy that can rewrite its answers:
 * an answer about another object, a ciphertext under another IV or a signature that does not verify is
 * refused (INTERNAL) rather than passed on. Also, against PyKMIP directly through the proxy's request log:
 * what is offered for the negotiated version, which (type, purpose) keys are made at all, where HMAC keys
 * come from, Locate paging, and a key destroyed while it is listed.
 */
import { createHmac, createPublicKey, verify as nodeVerify } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect as tlsConnect, createServer, type Server, type TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KmipBackend } from '../../../adapters/kmip/backend.js';
import { KmipClient, type KmipClientOptions } from '../../../adapters/kmip/client.js';
import { KmipOperations } from '../../../adapters/kmip/operations.js';
import { Enum, Tag } from '../../../adapters/kmip/tags.js';
import { bytes, child, decodeTtlv, encodeTtlv, enm, enumOf, messageLength, struct, structOf, text, type Ttlv } from '../../../adapters/kmip/ttlv.js';
import type { KeyRef } from '../../../src/backend/port.js';
import { HsmBridgeError } from '../../../src/errors.js';
import type { KeyName, KeyVersion } from '../../../src/keys/names.js';
import type { KeyPurpose, KeyType } from '../../../src/keys/types.js';
import { startPyKmip, type PyKmipServer } from '../../helpers/pykmip.js';

const Op = Enum.Operation;

/** What the proxy saw: each request's operation and payload. */
interface Seen {
  readonly operation: number;
  readonly payload: Ttlv;
}

/** Rewrites the response payload to a request, or leaves it (undefined); a ResultReason item makes the answer a failure. */
type Tamper = (request: Seen, response: Ttlv) => Ttlv | undefined;

interface Proxy {
  readonly port: number;
  readonly seen: Seen[];
  tamper: Tamper | undefined;
  close(): Promise<void>;
}

/** A TLS proxy with the server's own certificate in front of PyKMIP: frames each message, lets `tamper` rewrite answers. */
async function proxyTo(server: PyKmipServer): Promise<Proxy> {
  const sockets = new Set<TLSSocket>();
  const proxy: Proxy = { port: 0, seen: [], tamper: undefined, close: async () => undefined };
  const framed = (socket: TLSSocket, onMessage: (m: Buffer) => void) => {
    let buffered = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      while (buffered.length >= 8) {
        const length = messageLength(buffered.subarray(0, 8), 1 << 22);
        if (buffered.length < length) return;
        onMessage(buffered.subarray(0, length));
        buffered = buffered.subarray(length);
      }
    });
  };
  const tls: Server = createServer(
    { cert: await readFile(server.pki.serverCertPath), key: await readFile(server.pki.serverKeyPath), ca: server.ca, requestCert: true, rejectUnauthorized: true },
    (front) => {
      sockets.add(front);
      const back = tlsConnect({ host: server.host, port: server.port, ca: server.ca, cert: server.clientCert, key: server.clientKey, servername: 'localhost' });
      sockets.add(back);
      const asked: Seen[] = [];
      for (const s of [front, back]) {
        s.on('error', () => undefined);
        s.on('close', () => {
          front.destroy();
          back.destroy();
        });
      }
      framed(front, (m) => {
        const item = structOf(decodeTtlv(m), Tag.BatchItem);
        const seen = { operation: enumOf(item, Tag.Operation), payload: structOf(item, Tag.RequestPayload) };
        proxy.seen.push(seen);
        asked.push(seen);
        back.write(m);
      });
      framed(back, (m) => {
        const request = asked.shift()!;
        const message = decodeTtlv(m);
        const item = structOf(message, Tag.BatchItem);
        const payload = child(item, Tag.ResponsePayload);
        const rewritten = payload && proxy.tamper?.(request, payload);
        if (!rewritten) return void front.write(m);
        if (rewritten.tag !== Tag.ResultReason) return void front.write(encodeTtlv(replace(message, payload, rewritten)));
        // A failure instead of the answer.
        const failed = struct(Tag.BatchItem, enm(Tag.Operation, request.operation), enm(Tag.ResultStatus, Enum.ResultStatus.OperationFailed), rewritten, text(Tag.ResultMessage, 'rewritten by the test proxy'));
        front.write(encodeTtlv(replace(message, item, failed)));
      });
    },
  );
  await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
  return Object.assign(proxy, {
    port: (tls.address() as { port: number }).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => tls.close(r));
    },
  });
}

/** `item` with `from` (found by identity) replaced by `to`. */
function replace(item: Ttlv, from: Ttlv, to: Ttlv): Ttlv {
  if (item === from) return to;
  return item.type === 'Structure' ? { ...item, value: item.value.map((c) => replace(c, from, to)) } : item;
}

/** The payload with each child of `tag` mapped by `fn`. */
function mapChild(payload: Ttlv, tag: number, fn: (c: Ttlv) => Ttlv): Ttlv {
  if (payload.type !== 'Structure') throw new Error('not a structure');
  return { ...payload, value: payload.value.map((c) => (c.tag === tag ? fn(c) : c)) };
}

const otherObject = (payload: Ttlv) => mapChild(payload, Tag.UniqueIdentifier, (c) => text(Tag.UniqueIdentifier, `${(c as { value: string }).value}9`));

let server: PyKmipServer;
let proxy: Proxy;
const clients: KmipClient[] = [];
let seq = 0;
const fresh = (stem: string) => `bind-${stem}-${Date.now().toString(36)}-${seq++}` as KeyName;
/** Log lines of the backends and clients opened here. */
const logLines: Array<Record<string, unknown>> = [];
const logger = pino({ level: 'info' }, { write: (line: string) => void logLines.push(JSON.parse(line) as Record<string, unknown>) });

async function openBackend(overrides?: Partial<KmipClientOptions>): Promise<{ backend: KmipBackend; client: KmipClient }> {
  const client = await KmipClient.open(server.clientOptions({ port: proxy.port, serverName: '127.0.0.1', ...overrides }), logger);
  clients.push(client);
  return { backend: await KmipBackend.open(client, logger), client };
}

const ref = (name: KeyName, type: KeyType): KeyRef => ({ name, type, version: 1 as KeyVersion });

async function codeOf(p: Promise<unknown>): Promise<string> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e, 'expected a rejection').toBeInstanceOf(HsmBridgeError);
  return (e as HsmBridgeError).code;
}

beforeAll(async () => {
  server = await startPyKmip();
  proxy = await proxyTo(server);
}, 60_000);
afterEach(() => {
  proxy.tamper = undefined;
});
afterAll(async () => {
  for (const c of clients) await c.close();
  await proxy?.close();
  await server?.stop();
});

describe('answers are bound to their requests', () => {
  let backend: KmipBackend;
  const rsa = fresh('rsa');
  const aes = fresh('aes');
  const hmac = fresh('hmac');
  const fpe = fresh('fpe');

  beforeAll(async () => {
    ({ backend } = await openBackend());
    await backend.createKey({ name: fpe, type: 'AES_256', purpose: 'fpe' });
    await backend.createKey({ name: rsa, type: 'RSA_2048', purpose: 'sign' });
    await backend.createKey({ name: aes, type: 'AES_256', purpose: 'encrypt' });
    await backend.createKey({ name: hmac, type: 'HMAC_256', purpose: 'mac' });
  }, 60_000);

  const message = Buffer.from('pacs.008 settlement 42');

  it('an answer about another object is refused for Sign, Encrypt, Decrypt, MAC and Get (INTERNAL, logged)', async () => {
    const sealed = await backend.encrypt(ref(aes, 'AES_256'), 'AES_GCM', message);
    const cases: Array<[number, () => Promise<unknown>]> = [
      [Op.Sign, () => backend.sign(ref(rsa, 'RSA_2048'), 'RS256', { kind: 'message', data: message })],
      [Op.Encrypt, () => backend.encrypt(ref(aes, 'AES_256'), 'AES_GCM', message)],
      [Op.Encrypt, () => backend.encryptBlocks(ref(fpe, 'AES_256'), Buffer.alloc(32))],
      [Op.Decrypt, () => backend.decrypt(ref(aes, 'AES_256'), 'AES_GCM', sealed)],
      [Op.MAC, () => backend.mac(ref(hmac, 'HMAC_256'), 'HMAC_SHA256', message)],
      // A fresh backend reads the key's head with Get.
      [Op.Get, async () => (await openBackend()).backend.describeKey(rsa)],
    ];
    for (const [operation, call] of cases) {
      proxy.tamper = (request, response) => (request.operation === operation ? otherObject(response) : undefined);
      const before = logLines.length;
      expect(await codeOf(call()), `operation ${operation}`).toBe('INTERNAL');
      expect(logLines.slice(before).some((l) => l.msg === 'KMIP server answered something other than what was asked' && String(l.detail).includes('asked about object'))).toBe(true);
      proxy.tamper = undefined;
      await call(); // untouched, the same call works
    }
  });

  it('a ciphertext under an IV other than ours is refused, not stored in an envelope', async () => {
    proxy.tamper = (request, response) =>
      request.operation === Op.Encrypt && response.type === 'Structure'
        ? { ...response, value: [...response.value, bytes(Tag.IVCounterNonce, Buffer.alloc(16, 7))] }
        : undefined;
    expect(await codeOf(backend.encrypt(ref(aes, 'AES_256'), 'AES_GCM', message))).toBe('INTERNAL');
    // Our own IV echoed back is fine.
    proxy.tamper = (request, response) => {
      if (request.operation !== Op.Encrypt || response.type !== 'Structure') return undefined;
      const iv = child(request.payload, Tag.IVCounterNonce)!;
      return { ...response, value: [...response.value, iv] };
    };
    const sealed = await backend.encrypt(ref(aes, 'AES_256'), 'AES_GCM', message);
    proxy.tamper = undefined;
    expect(await backend.decrypt(ref(aes, 'AES_256'), 'AES_GCM', sealed)).toEqual(message);
  });

  it('fpe blocks: ECB with PKCS5 and no IV is asked; an answer other than one padding block longer, or with an IV, is refused (INTERNAL, logged)', async () => {
    const blocks = Buffer.alloc(48, 3);
    const from = proxy.seen.length;
    const good = await backend.encryptBlocks(ref(fpe, 'AES_256'), blocks);
    expect(good).toHaveLength(48);
    const asked = proxy.seen.slice(from).find((s) => s.operation === Op.Encrypt)!.payload;
    const params = child(asked, Tag.CryptographicParameters)!;
    expect(enumOf(params, Tag.BlockCipherMode)).toBe(Enum.BlockCipherMode.ECB);
    expect(enumOf(params, Tag.PaddingMethod)).toBe(Enum.PaddingMethod.PKCS5);
    expect(child(asked, Tag.IVCounterNonce)).toBeUndefined();
    const rewrites: Array<[string, (data: Buffer) => Ttlv[]]> = [
      ['no padding block (whole blocks left unpadded)', (d) => [bytes(Tag.Data, d.subarray(0, 48))]],
      ['two padding blocks', (d) => [bytes(Tag.Data, Buffer.concat([d, d.subarray(0, 16)]))]],
      ['an IV', (d) => [bytes(Tag.Data, d), bytes(Tag.IVCounterNonce, Buffer.alloc(16))]],
    ];
    for (const [what, rewrite] of rewrites) {
      proxy.tamper = (request, response) =>
        request.operation === Op.Encrypt && response.type === 'Structure'
          ? { ...response, value: response.value.flatMap((c) => (c.tag === Tag.Data ? rewrite((c as { value: Buffer }).value) : [c])) }
          : undefined;
      const before = logLines.length;
      expect(await codeOf(backend.encryptBlocks(ref(fpe, 'AES_256'), blocks)), what).toBe('INTERNAL');
      expect(logLines.slice(before).some((l) => l.msg === 'KMIP server answered something other than what was asked'), what).toBe(true);
    }
    proxy.tamper = undefined;
    expect(await backend.encryptBlocks(ref(fpe, 'AES_256'), blocks)).toEqual(good);
  });

  it('a signature that does not verify under the version public key is refused; a good one verifies with node:crypto', async () => {
    proxy.tamper = (request, response) =>
      request.operation === Op.Sign
        ? mapChild(response, Tag.SignatureData, (c) => {
          const sig = Buffer.from((c as { value: Buffer }).value);
          sig[10]! ^= 1;
          return bytes(Tag.SignatureData, sig);
        })
        : undefined;
    const before = logLines.length;
    expect(await codeOf(backend.sign(ref(rsa, 'RSA_2048'), 'RS256', { kind: 'message', data: message }))).toBe('INTERNAL');
    expect(logLines.slice(before).map((l) => l.msg)).toContain("kmip: the server returned a signature that does not verify under the key version's public key");
    proxy.tamper = undefined;
    const signature = await backend.sign(ref(rsa, 'RSA_2048'), 'RS384', { kind: 'message', data: message });
    const spki = (await backend.describeKey(rsa)).versions[0]!.publicKeySpki!;
    expect(nodeVerify('sha384', message, createPublicKey({ key: spki, format: 'der', type: 'spki' }), signature)).toBe(true);
  });

  it('verify() is local: no SignatureVerify reaches the server, and it tells good from bad', async () => {
    const signature = await backend.sign(ref(rsa, 'RSA_2048'), 'RS256', { kind: 'message', data: message });
    const from = proxy.seen.length;
    const key = ref(rsa, 'RSA_2048');
    expect(await backend.verify(key, 'RS256', { kind: 'message', data: message }, signature)).toBe(true);
    expect(await backend.verify(key, 'RS256', { kind: 'message', data: Buffer.from('pacs.008 settlement 43') }, signature)).toBe(false);
    expect(await backend.verify(key, 'RS384', { kind: 'message', data: message }, signature)).toBe(false);
    expect(await backend.verify(key, 'RS256', { kind: 'message', data: message }, signature.subarray(1))).toBe(false);
    expect(proxy.seen.slice(from).map((s) => s.operation)).not.toContain(Op.SignatureVerify);
  });
});

describe('capabilities and key creation', () => {
  it('offers AES_GCM only from KMIP 1.4 (its tag and AAD fields): a client limited to 1.3 offers none and makes no AES data key, but does fpe', async () => {
    const { backend, client } = await openBackend({ versions: [{ major: 1, minor: 3 }] });
    expect(client.version).toEqual({ major: 1, minor: 3 });
    expect(backend.capabilities().encrypt).toEqual([]);
    expect(backend.capabilities().keyTypes).toContain('AES_256');
    expect(await codeOf(backend.createKey({ name: fresh('aes13'), type: 'AES_256', purpose: 'encrypt' }))).toBe('UNSUPPORTED_BY_BACKEND');
    // ECB needs no 1.4 field: fpe keys are made and used on 1.3.
    expect(backend.capabilities().fpe).toBe(true);
    const fpe = await backend.createKey({ name: fresh('fpe13'), type: 'AES_192', purpose: 'fpe' });
    expect(await backend.encryptBlocks(ref(fpe.name, 'AES_192'), Buffer.alloc(16))).toHaveLength(16);
    const { backend: b14 } = await openBackend();
    expect(b14.capabilities().encrypt).toEqual(['AES_GCM']);
  });

  it('refuses, before touching the server, keys no offered algorithm can use: AES wrap, RSA encrypt', async () => {
    const { backend } = await openBackend();
    const cases: Array<[KeyType, KeyPurpose]> = [['AES_128', 'wrap'], ['AES_256', 'wrap'], ['RSA_2048', 'encrypt']];
    const from = proxy.seen.length;
    for (const [type, purpose] of cases) {
      expect(await codeOf(backend.createKey({ name: fresh('useless'), type, purpose })), `${type} ${purpose}`).toBe('UNSUPPORTED_BY_BACKEND');
    }
    expect(proxy.seen.length).toBe(from);
  });

  it('derives HMAC keys in the server (DeriveKey from an AES key it made, then destroyed); no key material is registered', async () => {
    const { backend } = await openBackend();
    const name = fresh('hmac');
    const from = proxy.seen.length;
    const before = logLines.length;
    await backend.createKey({ name, type: 'HMAC_256', purpose: 'mac' });
    const seen = proxy.seen.slice(from);
    const registered = seen.filter((s) => s.operation === Op.Register).map((s) => enumOf(s.payload, Tag.ObjectType));
    expect(registered).not.toContain(Enum.ObjectType.SymmetricKey);
    const derive = seen.find((s) => s.operation === Op.DeriveKey);
    expect(derive, 'a DeriveKey request').toBeDefined();
    const base = (child(derive!.payload, Tag.UniqueIdentifier) as { value: string }).value;
    expect(seen.some((s) => s.operation === Op.Destroy && (child(s.payload, Tag.UniqueIdentifier) as { value: string }).value === base)).toBe(true);
    expect(logLines.slice(before).filter((l) => l.level === 40)).toEqual([]); // the in-process fallback (warn) was not taken

    // The key works, and its MAC is HMAC-SHA256 under the bytes the server holds for it.
    const client = clients.at(-1)!;
    const ops = new KmipOperations(client);
    const [uid] = await ops.locate([{ name: 'Name', value: `hsmb/${name}/v1` }]);
    const material = (await ops.get(uid!)).material;
    expect(material).toHaveLength(32);
    const data = Buffer.from('a MAC over this');
    expect(await backend.mac(ref(name, 'HMAC_256'), 'HMAC_SHA256', data)).toEqual(createHmac('sha256', material).update(data).digest());
  });
});

describe('Locate and listing', () => {
  it('pages Locate (Maximum Items / Offset Items) so each answer fits maxResponseBytes, and finds every object', async () => {
    const { client } = await openBackend({ maxResponseBytes: 4096 });
    const ops = new KmipOperations(client);
    const group = `bind-page-${Date.now().toString(36)}`;
    const made: string[] = [];
    for (let i = 0; i < 130; i++) made.push(await ops.registerSecretData(Buffer.from([i]), [{ name: 'Object Group', value: group }]));
    const from = proxy.seen.length;
    const found = await ops.locate([{ name: 'Object Group', value: group }]);
    expect([...found].sort()).toEqual([...made].sort());
    const locates = proxy.seen.slice(from).filter((s) => s.operation === Op.Locate);
    expect(locates.length).toBe(3); // 56 + 56 + 18
    expect(locates.map((s) => child(s.payload, Tag.OffsetItems)?.value)).toEqual([0, 56, 112]);
    expect(locates.every((s) => child(s.payload, Tag.MaximumItems)?.value === 56)).toBe(true);

    // KMIP 1.2 has no Offset Items: one Locate, unpaged.
    const { client: old } = await openBackend({ versions: [{ major: 1, minor: 2 }] });
    const at = proxy.seen.length;
    expect((await new KmipOperations(old).locate([{ name: 'Object Group', value: group }])).length).toBe(130);
    expect(proxy.seen.slice(at).filter((s) => s.operation === Op.Locate).map((s) => child(s.payload, Tag.MaximumItems))).toEqual([undefined]);
  });

  it('a key whose public key is gone (destroyed meanwhile) is left out of listKeys and is KEY_NOT_FOUND to describeKey', async () => {
    const { backend } = await openBackend();
    const gone = fresh('gone');
    const kept = fresh('kept');
    await backend.createKey({ name: gone, type: 'RSA_2048', purpose: 'sign' });
    await backend.createKey({ name: kept, type: 'RSA_2048', purpose: 'sign' });
    // Another replica's view: the public key of `gone` answers Item Not Found, as after a concurrent destroy.
    const ops = new KmipOperations(clients.at(-1)!);
    const [publicUid] = await ops.locate([{ name: 'Name', value: `hsmb/${gone}/v1` }, { name: 'Object Type', value: Enum.ObjectType.PublicKey }]);
    expect(publicUid).toBeDefined();
    const { backend: replica } = await openBackend();
    proxy.tamper = (request) =>
      request.operation === Op.Get && (child(request.payload, Tag.UniqueIdentifier) as { value: string }).value === publicUid ? itemNotFound : undefined;
    const names = (await replica.listKeys()).map((k) => k.name);
    expect(names).toContain(kept);
    expect(names).not.toContain(gone);
    expect(await codeOf(replica.describeKey(gone))).toBe('KEY_NOT_FOUND');
  });
});

/** A tamper result that turns the answer into an Item Not Found failure. */
const itemNotFound: Ttlv = enm(Tag.ResultReason, Enum.ResultReason.ItemNotFound);
