/**
 * The audit trail on SoftHSM: the audit MAC key is created in the token, checkpoints are HMACs the
 * token computed, and `hsmb audit verify` with the PKCS#11 configuration checks them in the token;
 * a chain rewritten after an edit fails at the next checkpoint.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIT_KEY, openSoftHsm, rewriteAfterEdit, startAudited, verify, type BackendHarness } from './auditFixture.js';

describe('the audit trail on SoftHSM', () => {
  let env: BackendHarness;
  let lines: string[];

  beforeAll(async () => {
    env = await openSoftHsm();
    const svc = await startAudited(env, { checkpointRecords: 3 });
    await svc.client.call('CreateKey', { name: 'hsm-ec', type: 'EC_P256' });
    for (let i = 0; i < 6; i++) await svc.client.call('Sign', { name: 'hsm-ec', message: Buffer.from(`m${i}`) });
    await svc.close();
    const key = await env.keys.getKey(AUDIT_KEY);
    expect({ type: key.type, purpose: key.purpose }).toEqual({ type: 'HMAC_256', purpose: 'mac' });
    await env.stopBackend();
    lines = (await readFile(env.auditFile, 'utf8')).split('\n').filter(Boolean);
  }, 60_000);
  afterAll(async () => {
    await env?.close();
  });

  it('hsmb audit verify checks the checkpoints in the token and passes the intact trail', async () => {
    expect(lines.filter((l) => l.includes('"type":"checkpoint"')).length).toBeGreaterThanOrEqual(2);
    const r = await verify(env, env.auditFile);
    expect(r.out).toMatch(/intact: \d+ records, [2-9]\d* checkpoints verified with key hsmb-audit/);
    expect(r.code).toBe(0);
  });

  it('a chain rewritten after an edit fails at the next checkpoint', async () => {
    const file = join(env.dir, 'rewritten.jsonl');
    await writeFile(file, `${rewriteAfterEdit(lines, 1).join('\n')}\n`);
    const r = await verify(env, file);
    expect(r.out).toMatch(/checkpoint \d+ \(line \d+\) has an HMAC that does not verify/);
    expect(r.code).toBe(1);
  });
});
