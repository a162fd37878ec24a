/**
 * The trail itself on the software backend: the chain continues across a restart, checkpoints carry
 * HMACs by the audit key that `hsmb audit verify` checks in the backend; verify catches an edited, a
 * removed and a reordered record, a truncated file and a chain rewritten after an edit; the service
 * does not start without its file; and a failing file makes state changes fail with AUDIT_UNAVAILABLE.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditStartError, openAuditTrail } from '../../src/audit/open.js';
import { GENESIS, hashLine } from '../../src/audit/record.js';
import { AuditTrail, FileSink } from '../../src/audit/trail.js';
import { AUDIT_KEY, openSoftware, rewriteAfterEdit, startAudited, trailOptions, verify, type BackendHarness } from './auditFixture.js';
import { expectGrpcError } from '../transports/grpc/grpcClient.js';
import { pino } from 'pino';
import type { KeyMetadata } from '../../src/keys/types.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('the audit trail file (software backend)', () => {
  let env: BackendHarness;
  let lines: string[];
  let auditKey: KeyMetadata;

  beforeAll(async () => {
    env = await openSoftware();
    // Two runs of the service on one file: 6 + 5 audited calls, a checkpoint every 4 records and at each close.
    for (const run of [1, 2]) {
      const svc = await startAudited(env, { checkpointRecords: 4 });
      const call = (method: 'POST' | 'GET', url: string, payload?: object) => svc.rest.inject({ method, url, ...(payload ? { payload } : {}) });
      if (run === 1) expect((await call('POST', '/v1/keys', { name: 'chain-ec', type: 'EC_P256' })).statusCode).toBe(201);
      for (let i = 0; i < 5; i++) expect((await call('POST', '/v1/keys/chain-ec/sign', { message: b64(`m${i}`) })).statusCode).toBe(200);
      await svc.close();
    }
    lines = (await readFile(env.auditFile, 'utf8')).split('\n').filter(Boolean);
    auditKey = await env.keys.getKey(AUDIT_KEY);
    await expect(openAuditTrail(trailOptions(join(env.dir, 'no-such-dir', 'audit.jsonl')), env.keys, pino({ level: 'silent' }))).rejects.toThrow(AuditStartError);
    await env.stopBackend(); // hsmb opens the keystore next
  });
  afterAll(async () => {
    await env?.close();
  });

  const variant = async (name: string, content: string, extra: readonly string[] = []) => {
    const file = join(env.dir, name);
    await writeFile(file, content);
    return verify(env, file, extra);
  };
  const joined = (ls: string[]) => `${ls.join('\n')}\n`;
  /** The index of an operation record with outcome ok in the first run, not the first line. */
  const okRecordAt = () => lines.findIndex((l, i) => i > 1 && l.includes('"type":"operation"') && l.includes('"outcome":"ok"'));

  it('continues the chain across a restart; every record chains to the one before; checkpoints seal it', () => {
    const records = lines.map((l) => JSON.parse(l) as { seq: number; prev: string; type: string; covers?: { seq: number }; key?: { name: string } });
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));
    expect(records[0]!.prev).toBe(GENESIS);
    for (let i = 1; i < lines.length; i++) expect(records[i]!.prev).toBe(hashLine(lines[i - 1]!));
    expect(records.filter((r) => r.type === 'operation')).toHaveLength(11);
    const checkpoints = records.filter((r) => r.type === 'checkpoint');
    expect(checkpoints.length).toBeGreaterThanOrEqual(3);
    expect(checkpoints.every((c) => c.key?.name === AUDIT_KEY)).toBe(true);
    // Each run ends sealed: its last record is the checkpoint its close() wrote.
    expect(records.at(-1)!.type).toBe('checkpoint');
  });

  it('the audit key was created once, in the backend: HMAC_256 for MACs', () => {
    expect({ type: auditKey.type, purpose: auditKey.purpose, versions: auditKey.versions.length }).toEqual({ type: 'HMAC_256', purpose: 'mac', versions: 1 });
  });

  it('hsmb audit verify passes the intact trail (exit 0)', async () => {
    const r = await verify(env, env.auditFile);
    expect(r.out).toMatch(/intact: \d+ records, \d+ checkpoints verified with key hsmb-audit/);
    expect(r.out).not.toContain('after the last checkpoint'); // closed: sealed
    expect(r.code).toBe(0);
  });

  it('a cut at a record boundary that removes the closing checkpoint fails as not sealed; --live (a running service) reports it', async () => {
    const r = await variant('unsealed.jsonl', joined(lines.slice(0, -1)));
    expect(r.out).toMatch(/NOT SEALED: the last [1-9]\d* records come after the last checkpoint/);
    expect(r.code).toBe(1);
    const live = await variant('unsealed-live.jsonl', joined(lines.slice(0, -1)), ['--live']);
    expect(live.out).toMatch(/the last [1-9]\d* records come after the last checkpoint/);
    expect(live.code).toBe(0);
  });

  it('catches an old checkpoint copied further down as if it sealed the records after it', async () => {
    const checkpointAt = lines.findIndex((l) => l.includes('"type":"checkpoint"'));
    expect(checkpointAt).toBeGreaterThan(0);
    // Appended after the closing checkpoint, re-chained as someone without the key would.
    const copy = JSON.parse(lines[checkpointAt]!) as Record<string, unknown>;
    const last = lines.at(-1)!;
    const appended = JSON.stringify({ ...copy, seq: lines.length + 1, prev: createHash('sha256').update(last).digest('hex') });
    const r = await variant('replayed.jsonl', joined([...lines, appended]));
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/seals no record after the previous checkpoint/);
  });

  it('catches an edited record', async () => {
    const at = okRecordAt();
    const edited = [...lines];
    edited[at] = edited[at]!.replace('"outcome":"ok"', '"outcome":"KEY_NOT_FOUND"');
    const r = await variant('edited.jsonl', joined(edited));
    expect(r.code).toBe(1);
    expect(r.out).toContain(`record ${at + 1} (line ${at + 1}) was changed`);
  });

  it('catches a removed record', async () => {
    const at = okRecordAt();
    const r = await variant('removed.jsonl', joined(lines.filter((_, i) => i !== at)));
    expect(r.code).toBe(1);
    expect(r.out).toContain(`record ${at + 1} was removed`);
  });

  it('catches reordered records', async () => {
    const at = okRecordAt();
    const swapped = [...lines];
    [swapped[at], swapped[at + 1]] = [swapped[at + 1]!, swapped[at]!];
    const r = await variant('reordered.jsonl', joined(swapped));
    expect(r.code).toBe(1);
    expect(r.out).toContain(`out of order: line ${at + 1} holds record ${at + 2}`);
  });

  it('catches a truncated file', async () => {
    const text = joined(lines);
    const r = await variant('truncated.jsonl', text.slice(0, text.length - 20));
    expect(r.code).toBe(1);
    expect(r.out).toContain('truncated');
  });

  it('catches an edit whose chain was rewritten after it: the next checkpoint HMAC does not verify', async () => {
    const at = okRecordAt();
    const rewritten = rewriteAfterEdit(lines, at);
    const r = await variant('rewritten.jsonl', joined(rewritten));
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/checkpoint \d+ \(line \d+\) has an HMAC that does not verify/);
  });

  it('refuses to start when the audit file cannot be opened (in beforeAll, while the backend is open), or ends inside a record', async () => {
    const cut = join(env.dir, 'cut.jsonl');
    await writeFile(cut, joined(lines).slice(0, -20));
    await expect(openAuditTrail(trailOptions(cut), env.keys, pino({ level: 'silent' }))).rejects.toThrow(/ends inside a record/);
  });
});

describe('a failing audit file (software backend)', () => {
  let env: BackendHarness;
  beforeAll(async () => {
    env = await openSoftware();
  });
  afterAll(async () => {
    await env?.close();
  });

  it('state changes fail with 503 AUDIT_UNAVAILABLE (refused before they run once the failure is known); data-plane calls go on', async () => {
    const sink = await FileSink.open(env.auditFile);
    const signer = { keyName: AUDIT_KEY, mac: async (data: Buffer) => ({ version: 1, mac: data }) };
    const svc = await startAudited(env, {}, (logger) => new AuditTrail(sink, { seq: 0, hash: GENESIS }, signer, trailOptions(env.auditFile), logger));
    const call = (method: 'POST' | 'GET', url: string, payload?: object) => svc.rest.inject({ method, url, ...(payload ? { payload } : {}) });
    try {
      expect((await call('POST', '/v1/keys', { name: 'sink-ec', type: 'EC_P256' })).statusCode).toBe(201);
      await sink.handle.close(); // the file descriptor is gone: every write fails from now on

      // The failure is found when the record is written, after the change ran: the caller hears of it.
      const first = await call('POST', '/v1/keys', { name: 'sink-b', type: 'EC_P256' });
      expect({ status: first.statusCode, code: JSON.parse(first.body).error.code }).toEqual({ status: 503, code: 'AUDIT_UNAVAILABLE' });
      expect(svc.trail.failing).toBe(true);

      // Now known: a state change is refused before it runs.
      const second = await call('POST', '/v1/keys', { name: 'sink-c', type: 'EC_P256' });
      expect({ status: second.statusCode, code: JSON.parse(second.body).error.code }).toEqual({ status: 503, code: 'AUDIT_UNAVAILABLE' });
      await expect(env.keys.getKey('sink-c')).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
      await expectGrpcError(svc.client.call('DisableKey', { name: 'sink-ec' }), 14, 'AUDIT_UNAVAILABLE');
      expect((await env.keys.getKey('sink-ec')).state).toBe('enabled');
      expect(svc.logText()).toContain('the audit trail cannot be written');

      // Data-plane records wait in memory (bounded by maxPendingRecords) while the file fails.
      expect((await call('POST', '/v1/keys/sink-ec/sign', { message: b64('m') })).statusCode).toBe(200);
    } finally {
      await svc.close().catch(() => undefined); // its file is closed already
    }
  });
});
