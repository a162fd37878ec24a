/**
 * Batch operations (issue #13), apart from any one transport: each batch is declared with its route and
 * rpc, the single operation's permission, tag and audit; and its secrets are zeroed as the single
 * operation's are: an encrypt batch's plaintexts once used, a decrypt batch's plaintexts once the answer
 * is encoded (REST) or serialized (gRPC). Secrets are watched at the backend on the software adapter: the
 * single operations show what the watch sees, and the batches must match them; a batch that an HSM
 * failure stops part-way zeroes what it had decrypted. Then: one metrics sample per batch, under its
 * name; and startApp's wiring of limits.maxBatchItems.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp } from '../../src/app.js';
import { loadServiceConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { openStages, type Outcome, type PipelineStages } from '../../src/api/stages.js';
import { createSoftwareBackendConfig } from '../helpers/software.js';
import { connect, expectGrpcError } from '../transports/grpc/grpcClient.js';
import { permissionOf } from '../../src/api/declaration.js';
import { operations } from '../../src/api/index.js';
import { isAudited } from '../../src/audit/stage.js';
import { HsmBridgeError } from '../../src/errors.js';
import type { Backend } from '../../src/backend/port.js';
import { resultsOf, serve, type KeyOp, type Served } from '../transports/batchFixture.js';
import { restTargets } from '../transports/rest/restFixture.js';

const batches = {
  'keys.signBatch': { single: 'keys.sign', rest: '/v1/keys/:name/sign/batch', grpc: ['KeyService', 'SignBatch'] },
  'keys.verifyBatch': { single: 'keys.verify', rest: '/v1/keys/:name/verify/batch', grpc: ['KeyService', 'VerifyBatch'] },
  'keys.encryptBatch': { single: 'keys.encrypt', rest: '/v1/keys/:name/encrypt/batch', grpc: ['KeyService', 'EncryptBatch'] },
  'keys.decryptBatch': { single: 'keys.decrypt', rest: '/v1/keys/:name/decrypt/batch', grpc: ['KeyService', 'DecryptBatch'] },
  'keys.macBatch': { single: 'keys.mac', rest: '/v1/keys/:name/mac/batch', grpc: ['KeyService', 'GenerateMacBatch'] },
  'keys.verifyMacBatch': { single: 'keys.verifyMac', rest: '/v1/keys/:name/mac/verify/batch', grpc: ['KeyService', 'VerifyMacBatch'] },
  'fspiop.signBatch': { single: 'fspiop.sign', rest: '/v1/fspiop/sign/batch', grpc: ['FspiopService', 'SignBatch'] },
  'fspiop.validateBatch': { single: 'fspiop.validate', rest: '/v1/fspiop/validate/batch', grpc: ['FspiopService', 'ValidateBatch'] },
} as const;

describe('batch declarations', () => {
  const byName = new Map(operations.map((op) => [op.name, op]));

  it.each(Object.entries(batches))('%s: its POST route and rpc; the single operation\'s permission, tag and audit', (name, expected) => {
    const op = byName.get(name);
    expect(op, name).toBeDefined();
    const single = byName.get(expected.single)!;
    expect({ method: op!.rest.method, path: op!.rest.path }).toEqual({ method: 'POST', path: expected.rest });
    expect([op!.grpc.service, op!.grpc.method]).toEqual(expected.grpc);
    expect(permissionOf(op!)).toBe(permissionOf(single));
    expect(op!.tag).toBe(single.tag);
    expect(op!.access).toBe(single.access);
    expect(isAudited(op!)).toBe(true);
    expect(op!.needs).toBe(single.needs);
  });

  it('a batch names its key as the single operation does, and each FSPIOP item\'s key and participants (of the items that decoded)', () => {
    // Decoded items are {input} (the single operation's input) or {failed} (the item's error).
    const failed = { failed: new HsmBridgeError('INVALID_ARGUMENT', 'bad item') };
    expect(byName.get('keys.signBatch')!.keys!({ name: 'k1', items: [{ input: { name: 'k1' } }, failed] })).toEqual(['k1']);
    const items = [{ input: { key: 'k1', source: 'a' } }, failed, { input: { key: 'k2', source: 'b', destination: 'c' } }, { input: { key: 'k1', source: 'a' } }];
    expect([...byName.get('fspiop.signBatch')!.keys!({ items })].sort()).toEqual(['k1', 'k2']);
    expect([...byName.get('fspiop.signBatch')!.participants!({ items })].filter((p) => p !== undefined).sort()).toEqual(['a', 'b', 'c']);
    const validations = [{ input: { headers: { 'fspiop-source': 'a' } } }, { input: { headers: { 'FSPIOP-Source': 'b' }, decryptWith: 'k3' } }, failed];
    expect([...byName.get('fspiop.validateBatch')!.participants!({ items: validations })].sort()).toEqual(['a', 'b']);
    expect([...byName.get('fspiop.validateBatch')!.keys!({ items: validations })].filter((k) => k !== undefined)).toEqual(['k3']);
  });
});

/** The software backend, recording every plaintext buffer it is given to encrypt and every one it returns from decrypt. */
function watching(backend: Backend): { backend: Backend; seen: Buffer[] } {
  const seen: Buffer[] = [];
  const wrapped = new Proxy(backend, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      if (property === 'encrypt') {
        return (key: unknown, algorithm: unknown, plaintext: Buffer, aad?: Buffer) => {
          seen.push(plaintext);
          return target.encrypt(key as never, algorithm as never, plaintext, aad);
        };
      }
      if (property === 'decrypt') {
        return async (...args: Parameters<Backend['decrypt']>) => {
          const plaintext = await target.decrypt(...args);
          seen.push(plaintext);
          return plaintext;
        };
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  });
  return { backend: wrapped, seen };
}

describe('secrets of batches are zeroed as the single operation\'s are (software backend)', () => {
  let opened: Awaited<ReturnType<(typeof restTargets)[number]['open']>>;
  let watch: ReturnType<typeof watching>;
  let served: Served;
  const key = 'batch-secrets-aes';

  beforeAll(async () => {
    opened = await restTargets.find((t) => t.label === 'software')!.open();
    watch = watching(opened.backend);
    served = await serve(watch.backend, { limits: { maxDataBytes: 4096, maxRandomBytes: 256 }, maxRequestBytes: 64 * 1024 });
    await served.service.createKey({ name: key, type: 'AES_256' });
  });
  afterAll(async () => {
    await served?.close();
    await opened?.backend.close();
    await opened?.cleanup();
  });

  const zeroed = (b: Buffer) => b.length > 0 && b.every((x) => x === 0);
  const plaintexts = [0, 1, 2].map((i) => Buffer.from(`zero me ${i}`));

  for (const which of [0, 1] as const) {
    it(`${which === 0 ? 'REST' : 'gRPC'}: the encrypt batch's plaintexts, and the decrypt batch's, once answered; the answers hold them`, async () => {
      const wire = served.wires[which];
      /** What the backend saw during `call`. */
      const during = async <T>(call: () => Promise<T>): Promise<{ value: T; seen: Buffer[] }> => {
        const from = watch.seen.length;
        const value = await call();
        return { value, seen: watch.seen.slice(from) };
      };
      const expectZeroed = (seen: Buffer[], count: number, what: string) => {
        expect(seen, what).toHaveLength(count);
        for (const [i, b] of seen.entries()) expect(zeroed(b), `${what}: buffer ${i}`).toBe(true);
      };
      const run = (op: KeyOp, items: Array<Record<string, unknown>>) => wire.batch(op, key, items);

      // The single operations first: what the watch sees of them.
      const single = await during(() => wire.single('encrypt', key, { plaintext: Buffer.from(plaintexts[0]!) }));
      expectZeroed(single.seen, 1, 'single encrypt');
      const singleCiphertext = wire.bytes((single.value as { answer: any }).answer.ciphertext);
      const singleDecrypt = await during(() => wire.single('decrypt', key, { ciphertext: singleCiphertext }));
      expectZeroed(singleDecrypt.seen, 1, 'single decrypt');

      const encrypted = await during(() => run('encrypt', plaintexts.map((p) => ({ plaintext: Buffer.from(p) }))));
      expectZeroed(encrypted.seen, 3, 'encrypt batch');
      const ciphertexts = resultsOf(wire, encrypted.value).map((r) => wire.bytes((r as { ok: any }).ok.ciphertext));
      const decrypted = await during(() => run('decrypt', ciphertexts.map((ciphertext) => ({ ciphertext }))));
      expectZeroed(decrypted.seen, 3, 'decrypt batch');
      // Zeroed after the answer took its copy.
      expect(resultsOf(wire, decrypted.value).map((r) => wire.bytes((r as { ok: any }).ok.plaintext))).toEqual(plaintexts);
    });
  }
});

/** REST and gRPC on a fresh software backend (seen through `wrap`, if given) with `stages`, for `use`; all closed after. */
async function onSoftware(stages: Partial<PipelineStages>, use: (served: Served) => Promise<void>, wrap: (backend: Backend) => Backend = (b) => b): Promise<void> {
  const opened = await restTargets.find((t) => t.label === 'software')!.open();
  const served = await serve(wrap(opened.backend), { limits: { maxDataBytes: 4096, maxRandomBytes: 256 }, maxRequestBytes: 64 * 1024, stages: { ...openStages, ...stages } });
  try {
    await use(served);
  } finally {
    await served.close();
    await opened.backend.close();
    await opened.cleanup();
  }
}

describe('a batch stopped by an HSM that goes away mid-way (software backend)', () => {
  it('fails as a whole with BACKEND_UNAVAILABLE, and the plaintexts already decrypted are zeroed', async () => {
    let watch!: ReturnType<typeof watching>;
    // The first two decrypts succeed; every later one meets an HSM that is gone.
    let decrypts = 0;
    const failing = (backend: Backend) => {
      watch = watching(backend);
      return new Proxy(watch.backend, {
        get(target, property) {
          const value: unknown = Reflect.get(target, property, target);
          if (property !== 'decrypt') return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
          return (...args: Parameters<Backend['decrypt']>) =>
            ++decrypts <= 2 ? target.decrypt(...args) : Promise.reject(new HsmBridgeError('BACKEND_UNAVAILABLE', 'the HSM is gone (test)'));
        },
      });
    };
    const outcomes: Outcome[] = [];
    await onSoftware({ audit: async (o) => void outcomes.push(o) }, async (served) => {
      await served.service.createKey({ name: 'midway-aes', type: 'AES_256' });
      for (const wire of served.wires) {
        decrypts = 0;
        const plaintexts = Array.from({ length: 12 }, (_, i) => Buffer.from(`mid-way ${i}`));
        const ciphertexts = resultsOf(wire, await wire.batch('encrypt', 'midway-aes', plaintexts.map((plaintext) => ({ plaintext })))).map((r) => wire.bytes((r as { ok: any }).ok.ciphertext));
        const from = watch.seen.length;
        const r = await wire.batch('decrypt', 'midway-aes', ciphertexts.map((ciphertext) => ({ ciphertext })));
        expect(r.ok ? 'answered' : r.code, wire.name).toBe('BACKEND_UNAVAILABLE');
        expect((r as { answer?: unknown }).answer, wire.name).toBeUndefined();
        const decrypted = watch.seen.slice(from);
        expect(decrypted, `${wire.name}: the two decrypts that ran`).toHaveLength(2);
        for (const b of decrypted) expect(b.every((x) => x === 0), `${wire.name}: zeroed`).toBe(true);
        // Its audit record says how far it got: two decrypted, the ones that met the HSM gone, the rest never run.
        const details = outcomes.at(-1)!.details as Record<string, number | string>;
        expect(outcomes.at(-1)).toMatchObject({ code: 'BACKEND_UNAVAILABLE', operation: { name: 'keys.decryptBatch' } });
        expect(details).toMatchObject({ items: 12, succeeded: 2 });
        expect(details.failed).toBeGreaterThan(0);
        expect(details.notRun).toBeGreaterThan(0);
        expect((details.succeeded as number) + (details.failed as number) + (details.notRun as number)).toBe(12);
        expect(details.errorCodes).toBe(`BACKEND_UNAVAILABLE:${details.failed}`);
      }
    }, failing);
  });
});

describe('whole-request refusals and audit details (software backend)', () => {
  it('a batch on a malformed key name is INVALID_ARGUMENT as a whole; an audit record lists 64 failed items, then how many more', async () => {
    const outcomes: Outcome[] = [];
    await onSoftware({ audit: async (o) => void outcomes.push(o) }, async (served) => {
      await served.service.createKey({ name: 'details-ec', type: 'EC_P256' });
      for (const wire of served.wires) {
        const malformed = await wire.batch('sign', 'bad name!', [{ message: Buffer.from('a') }]);
        expect(malformed.ok ? 'answered' : malformed.code, wire.name).toBe('INVALID_ARGUMENT');
        const items = Array.from({ length: 70 }, (_, i) => ({ message: Buffer.from(`m${i}`), algorithm: 'XS999' }));
        expect(resultsOf(wire, await wire.batch('sign', 'details-ec', items))).toHaveLength(70);
        const details = outcomes.at(-1)!.details as Record<string, number | string>;
        expect(details).toMatchObject({ items: 70, succeeded: 0, failed: 70, errorCodes: 'UNSUPPORTED_ALGORITHM:70' });
        const listed = String(details.failedItems).split(',');
        expect(listed).toHaveLength(65);
        expect(listed.slice(0, 2)).toEqual(['0:UNSUPPORTED_ALGORITHM', '1:UNSUPPORTED_ALGORITHM']);
        expect(listed.at(-1)).toBe('+6');
      }
    });
  });
});

describe('metrics of batches (software backend)', () => {
  it('one operation sample per batch request, under the batch\'s name, never one per item', async () => {
    const metrics = createMetrics({ keyLabels: false });
    await onSoftware({ observe: metrics.observe }, async (served) => {
      await served.service.createKey({ name: 'metrics-ec', type: 'EC_P256' });
      await served.service.createKey({ name: 'metrics-hmac', type: 'HMAC_256' });
      const [rest, grpc] = served.wires;
      const signItems = [{ message: Buffer.from('a') }, { algorithm: 'XS999', message: Buffer.from('b') }, { message: Buffer.from('c') }];
      expect(resultsOf(rest, await rest.batch('sign', 'metrics-ec', signItems))).toHaveLength(3);
      expect((await rest.batch('sign', 'metrics-missing', signItems)).ok).toBe(false);
      expect(resultsOf(grpc, await grpc.batch('mac', 'metrics-hmac', [{ data: Buffer.from('d') }, { data: Buffer.from('e') }]))).toHaveLength(2);
      const text = (await metrics.exposition()).text;
      expect(text).toContain('hsmb_operation_duration_seconds_count{operation="keys.signBatch",transport="rest",code="OK"} 1');
      expect(text).toContain('hsmb_operation_duration_seconds_count{operation="keys.signBatch",transport="rest",code="KEY_NOT_FOUND"} 1');
      expect(text).toContain('hsmb_operation_duration_seconds_count{operation="keys.macBatch",transport="grpc",code="OK"} 1');
      expect(text).not.toMatch(/operation="keys\.(sign|mac)"/);
    });
  });
});

describe('startApp takes limits.maxBatchItems from the configuration', () => {
  it('default 256; HSMB_LIMITS__MAX_BATCH_ITEMS=3 lets 3 items through and refuses 4 with 413, on REST and gRPC', async () => {
    expect(loadServiceConfig({ env: {} }).limits.maxBatchItems).toBe(256);
    const soft = await createSoftwareBackendConfig();
    const file = join(soft.dir, 'config.json');
    await writeFile(file, JSON.stringify({ rest: { port: 0 }, grpc: { port: 0 }, ops: { enabled: false }, log: { level: 'silent' }, backend: { type: 'software', software: soft.config } }));
    const app = await startApp(loadServiceConfig({ file, env: { HSMB_LIMITS__MAX_BATCH_ITEMS: '3' } }), createLogger('silent'));
    const client = connect(app.grpcPort!);
    try {
      await app.service.createKey({ name: 'app-hmac', type: 'HMAC_256' });
      const items = (n: number) => Array.from({ length: n }, (_, i) => ({ data: Buffer.from(`d${i}`) }));
      const rest = async (n: number) => {
        const r = await fetch(`${app.restUrl}/v1/keys/app-hmac/mac/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ items: items(n).map((i) => ({ data: i.data.toString('base64') })) }) });
        return { status: r.status, body: (await r.json()) as any };
      };
      expect((await rest(3)).body.results).toHaveLength(3);
      expect(await rest(4)).toMatchObject({ status: 413, body: { error: { code: 'PAYLOAD_TOO_LARGE' } } });
      expect((await client.call('GenerateMacBatch', { name: 'app-hmac', items: items(3) })).results).toHaveLength(3);
      await expectGrpcError(client.call('GenerateMacBatch', { name: 'app-hmac', items: items(4) }), 8, 'PAYLOAD_TOO_LARGE');
    } finally {
      client.close();
      await app.close();
      await soft.cleanup();
    }
  });
});
