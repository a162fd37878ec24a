/**
 * The deployment stages as startApp composes them from the configuration, on the software backend: the
 * audit trail's admit stage is in force (the reserved audit key cannot be used or changed through the
 * API, whichever transport), every call leaves its record, the request id reaches the record, and the
 * metrics count the audit records. A stage lost in the composition (as happened once, inside the
 * PIN-failure limit) fails here.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../../src/app.js';
import { loadServiceConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../helpers/software.js';
import { connect, expectGrpcError, type TestClients } from '../transports/grpc/grpcClient.js';

describe('startApp: the composed pipeline stages', () => {
  let harness: SoftwareBackendHarness;
  let app: RunningApp;
  let grpc: TestClients;
  let auditFile: string;

  beforeAll(async () => {
    harness = await createSoftwareBackendConfig();
    auditFile = join(harness.dir, 'audit.jsonl');
    const file = join(harness.dir, 'config.json');
    await writeFile(file, JSON.stringify({
      rest: { port: 0 },
      grpc: { port: 0 },
      ops: { port: 0 },
      audit: { file: auditFile, flushMs: 10 },
      backend: { type: 'software', software: harness.config },
    }));
    app = await startApp(loadServiceConfig({ file, env: {} }), createLogger('silent'));
    grpc = connect(app.grpcPort!);
  });
  afterAll(async () => {
    grpc?.close();
    await app?.close();
    await harness?.cleanup();
  });

  const rest = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(`${app.restUrl}${path}`, { method, headers: { 'content-type': 'application/json', ...headers }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });

  it('refuses the reserved audit key on every route and rpc that would use or change it', async () => {
    const mac = await rest('POST', '/v1/keys/hsmb-audit/mac', { data: Buffer.from('hsmb-audit-checkpoint:v1:1:00').toString('base64') });
    expect(mac.status).toBe(400);
    expect(((await mac.json()) as { error: { code: string } }).error.code).toBe('INVALID_ARGUMENT');
    expect((await rest('POST', '/v1/keys/hsmb-audit/disable')).status).toBe(400);
    await expectGrpcError(grpc.call('GenerateMac', { name: 'hsmb-audit', data: Buffer.from('x') }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    await expectGrpcError(grpc.call('DisableKey', { name: 'hsmb-audit' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    // Still enabled: checkpoints can be sealed.
    expect((await app.service.getKey('hsmb-audit')).state).toBe('enabled');
  });

  it('records each call with its request id, and the metrics count the records written', async () => {
    const created = await rest('POST', '/v1/keys', { name: 'wired-ec', type: 'EC_P256' }, { 'x-request-id': 'wiring-create-1' });
    expect(created.status).toBe(201);
    expect(created.headers.get('x-request-id')).toBe('wiring-create-1');
    // The create was flushed before its answer (a state change); the records are on disk.
    const records = (await readFile(auditFile, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    expect(records.filter((r) => r.requestId === 'wiring-create-1')).toEqual([
      expect.objectContaining({ operation: 'keys.create', outcome: 'ok', keys: [{ name: 'wired-ec', version: 1 }] }),
    ]);
    const metrics = await (await fetch(`${app.opsUrl}/metrics`)).text();
    const written = Number(/^hsmb_audit_records_total (\d+)/m.exec(metrics)?.[1]);
    expect(written).toBeGreaterThanOrEqual(records.filter((r) => r.type === 'operation').length);
    expect(metrics).toMatch(/hsmb_operation_duration_seconds_count\{operation="keys.create",transport="rest",code="OK"\} 1/);
  });
});
