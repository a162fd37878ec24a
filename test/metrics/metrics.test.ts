/**
 * Metrics: REST and gRPC calls on the software backend, then a scrape of the ops listener over HTTP,
 * parsed: the operation histogram by operation, transport and code, backend call latency, backend up,
 * the counters the audit and identity stages call, no key label unless configured; the PKCS#11 pool
 * gauges on SoftHSM; /metrics only on the ops listener, the health probes on both.
 */
import type { ServiceError } from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStages, type Outcome } from '../../src/api/stages.js';
import type { Backend } from '../../src/backend/port.js';
import { createMetrics, type Metrics } from '../../src/metrics/metrics.js';
import { timedBackend } from '../../src/metrics/timedBackend.js';
import { startOpsServer, type RunningOpsServer } from '../../src/ops/opsServer.js';
import { startGrpc, type GrpcFixture } from '../transports/grpc/issue3Fixture.js';
import { b64, freshName, restTargets, startRest, type RestFixture, type RestTarget } from '../transports/rest/restFixture.js';
import { scrape, valueOf, type Sample } from './exposition.js';

const silent = pino({ level: 'silent' });

/** The target's backend, timed and watched by these metrics. */
function metered(target: RestTarget, metrics: Metrics): RestTarget {
  return {
    label: target.label,
    async open() {
      const opened = await target.open();
      const backend = timedBackend(opened.backend, metrics);
      metrics.watchBackend(backend);
      return { backend, cleanup: opened.cleanup };
    },
  };
}

describe('metrics on the ops listener after REST and gRPC calls (software backend)', () => {
  const metrics = createMetrics({ keyLabels: false });
  const stages = { ...openStages, observe: metrics.observe };
  let rest: RestFixture;
  let grpc: GrpcFixture;
  let ops: RunningOpsServer;
  let samples: Sample[];
  const key = freshName('metrics-signer');

  beforeAll(async () => {
    rest = await startRest(metered(restTargets[0]!, metrics), { stages });
    grpc = await startGrpc(metered(restTargets[0]!, metrics), 64 * 1024, stages);
    ops = await startOpsServer({ host: '127.0.0.1', port: 0, metrics, health: () => grpc.service.health(), logger: silent });

    expect((await rest.call('POST', '/v1/keys', { name: key, type: 'EC_P256' })).status).toBe(201);
    for (let i = 0; i < 3; i++) expect((await rest.call('POST', `/v1/keys/${key}/sign`, { message: b64(`m${i}`) })).status).toBe(200);
    expect((await rest.call('POST', '/v1/keys/no-such-key/sign', { message: b64('m') })).status).toBe(404);
    await grpc.client.call('GenerateRandom', { length: 16 });
    await grpc.client.call('GenerateRandom', { length: 16 });
    const notFound = await grpc.client.call('GetKey', { name: 'no-such-key' }).catch((e: ServiceError) => e);
    expect((notFound as ServiceError).metadata?.get('hsmbridge-error-code')).toEqual(['KEY_NOT_FOUND']);
    // The counters the audit and identity stages call (their stages are wired by the composition root).
    metrics.auditRecordsWritten(1);
    metrics.auditRecordsWritten(1);
    metrics.auditSinkFailed();
    metrics.authenticationFailed('expired');

    const scraped = await scrape(ops.url);
    expect(scraped.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    samples = scraped.samples;
  });
  afterAll(async () => {
    await ops?.close();
    await grpc?.close();
    await rest?.close();
  });

  it('counts each operation by operation, transport and code', () => {
    const count = (labels: Record<string, string>) => valueOf(samples, 'hsmb_operation_duration_seconds_count', labels);
    expect(count({ operation: 'keys.create', transport: 'rest', code: 'OK' })).toBe(1);
    expect(count({ operation: 'keys.sign', transport: 'rest', code: 'OK' })).toBe(3);
    expect(count({ operation: 'keys.sign', transport: 'rest', code: 'KEY_NOT_FOUND' })).toBe(1);
    expect(count({ operation: 'system.random', transport: 'grpc', code: 'OK' })).toBe(2);
    expect(count({ operation: 'keys.get', transport: 'grpc', code: 'KEY_NOT_FOUND' })).toBe(1);
    const sum = valueOf(samples, 'hsmb_operation_duration_seconds_sum', { operation: 'keys.sign', transport: 'rest', code: 'OK' })!;
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThan(60);
    const inf = valueOf(samples, 'hsmb_operation_duration_seconds_bucket', { operation: 'keys.sign', transport: 'rest', code: 'OK', le: '+Inf' });
    expect(inf).toBe(3);
  });

  it('times backend calls by backend and primitive', () => {
    expect(valueOf(samples, 'hsmb_backend_call_duration_seconds_count', { backend: 'software', primitive: 'sign' })).toBe(3);
    expect(valueOf(samples, 'hsmb_backend_call_duration_seconds_count', { backend: 'software', primitive: 'createKey' })).toBe(1);
    expect(valueOf(samples, 'hsmb_backend_call_duration_seconds_count', { backend: 'software', primitive: 'randomBytes' })).toBe(2);
  });

  it('reports the backend up, and no pool for a backend without one', () => {
    expect(valueOf(samples, 'hsmb_backend_up', { backend: 'software' })).toBe(1);
    expect(samples.filter((s) => s.name.startsWith('hsmb_backend_pool_'))).toEqual([]);
  });

  it('counts audit records, sink failures and authentication failures by reason', () => {
    expect(valueOf(samples, 'hsmb_audit_records_total')).toBe(2);
    expect(valueOf(samples, 'hsmb_audit_sink_failures_total')).toBe(1);
    expect(valueOf(samples, 'hsmb_authentication_failures_total', { reason: 'expired' })).toBe(1);
    expect(valueOf(samples, 'hsmb_authentication_failures_total', { reason: 'missing' })).toBe(0);
  });

  it('never labels a series with a key name unless keyLabels is on', () => {
    expect(samples.some((s) => 'key' in s.labels || Object.values(s.labels).includes(key))).toBe(false);
  });

  it('serves /metrics only on the ops listener, and the health probes on both', async () => {
    expect((await rest.call('GET', '/metrics')).status).toBe(404);
    expect(await (await fetch(`${ops.url}/health/live`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${ops.url}/health/ready`);
    expect({ status: ready.status, body: await ready.json() }).toEqual({ status: 200, body: { status: 'ready' } });
    expect((await rest.call('GET', '/health/ready')).status).toBe(200);
    expect((await fetch(`${ops.url}/v1/random`)).status).toBe(404);
    expect((await fetch(`${ops.url}/metrics`, { method: 'POST' })).status).toBe(405);
  });
});

describe('metrics with keyLabels: true', () => {
  it('labels the operation series with the key an authorized call used, and never with a key a caller merely named', async () => {
    const metrics = createMetrics({ keyLabels: true });
    const operation = { name: 'keys.sign' } as Outcome['operation'];
    const caller = { authenticatedBy: 'none', id: 'a' } as const;
    metrics.observe({ operation, transport: 'rest', requestId: 'r', caller, keyNames: ['payer-1'], keysUsed: [{ name: 'payer-1', version: 1 }], authorized: true, participants: [], durationMs: 2 });
    metrics.observe({ operation, transport: 'rest', requestId: 'r2', caller, keyNames: ['made-up-1'], participants: [], code: 'PERMISSION_DENIED', durationMs: 1 });
    metrics.observe({ operation, transport: 'rest', requestId: 'r3', caller, keyNames: ['made-up-2'], authorized: true, participants: [], code: 'KEY_NOT_FOUND', durationMs: 1 });
    const text = (await metrics.exposition()).text;
    expect(text).toContain('hsmb_operation_duration_seconds_count{operation="keys.sign",transport="rest",code="OK",key="payer-1"} 1');
    expect(text).not.toContain('made-up');
    expect(text).toContain('hsmb_operation_duration_seconds_count{operation="keys.sign",transport="rest",code="KEY_NOT_FOUND",key=""} 1');
  });
});

describe('PKCS#11 session pool gauges (SoftHSM)', () => {
  let backend: Backend | undefined;
  let cleanup: (() => Promise<void>) | undefined;
  let ops: RunningOpsServer | undefined;
  afterAll(async () => {
    await ops?.close();
    await backend?.close();
    await cleanup?.();
  });

  it('reports the pool size, sessions in use and callers waiting, and the backend up', async () => {
    const { pkcs11BackendFactory } = await import('../../adapters/pkcs11/index.js');
    const { createSoftHsmToken } = await import('../helpers/softhsm.js');
    const token = await createSoftHsmToken();
    cleanup = () => token.cleanup();
    const metrics = createMetrics({ keyLabels: false });
    backend = timedBackend(await pkcs11BackendFactory.create(token.backendConfig({ sessionPoolSize: 3 }), { logger: silent }), metrics);
    metrics.watchBackend(backend);
    ops = await startOpsServer({ host: '127.0.0.1', port: 0, metrics, health: () => backend!.health(), logger: silent });
    await backend.randomBytes(8);
    const { samples } = await scrape(ops.url);
    expect(valueOf(samples, 'hsmb_backend_pool_size', { backend: 'pkcs11' })).toBe(3);
    expect(valueOf(samples, 'hsmb_backend_pool_in_use', { backend: 'pkcs11' })).toBe(0);
    expect(valueOf(samples, 'hsmb_backend_pool_waiting', { backend: 'pkcs11' })).toBe(0);
    expect(valueOf(samples, 'hsmb_backend_up', { backend: 'pkcs11' })).toBe(1);
    expect(valueOf(samples, 'hsmb_backend_call_duration_seconds_count', { backend: 'pkcs11', primitive: 'randomBytes' })).toBe(1);
  });
});

describe('the ops listener while the backend is not ready', () => {
  it('answers /health/ready with 503 and reports the backend down', async () => {
    const metrics = createMetrics({ keyLabels: false });
    let health: () => Promise<{ ready: boolean; detail?: string }> = async () => ({ ready: false, detail: 'token not present' });
    metrics.watchBackend({ kind: 'pkcs11', health: () => health(), gauges: () => ({}) } as unknown as Backend);
    const ops = await startOpsServer({ host: '127.0.0.1', port: 0, metrics, health: () => health(), logger: silent });
    try {
      const notReady = await fetch(`${ops.url}/health/ready`);
      expect({ status: notReady.status, body: await notReady.json() }).toEqual({ status: 503, body: { status: 'unavailable', detail: 'token not present' } });
      expect(valueOf((await scrape(ops.url)).samples, 'hsmb_backend_up', { backend: 'pkcs11' })).toBe(0);
      health = () => Promise.reject(new Error('probe crashed'));
      const failed = await fetch(`${ops.url}/health/ready`);
      expect({ status: failed.status, body: await failed.json() }).toEqual({ status: 503, body: { status: 'unavailable', detail: 'backend health check failed' } });
      expect(valueOf((await scrape(ops.url)).samples, 'hsmb_backend_up', { backend: 'pkcs11' })).toBe(0);
      health = async () => ({ ready: true });
      expect(valueOf((await scrape(ops.url)).samples, 'hsmb_backend_up', { backend: 'pkcs11' })).toBe(1);
      expect((await fetch(`${ops.url}/health/live`)).status).toBe(200);
    } finally {
      await ops.close();
    }
  });
});
