/**
 * scripts/audit-gate.mjs with a stand-in `npm` first on PATH that prints a stored `npm audit --json`
 * answer: test/fixtures/audit/no-endpoint.json is what this machine's registry answers (HTTP 405); the
 * two reports are written in npm's report format (auditReportVersion 2).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const repo = join(__dirname, '..', '..');
const bin = mkdtempSync(join(tmpdir(), 'audit-gate-'));
// npm as the gate must call it, production dependencies only: any other arguments fail the test.
writeFileSync(join(bin, 'npm'), '#!/bin/sh\n[ "$*" = "audit --omit=dev --json" ] || { echo "unexpected npm $*" >&2; exit 3; }\ncat "$AUDIT_ANSWER"\nexit 1\n');
chmodSync(join(bin, 'npm'), 0o755);

function gate(answer: string) {
  const env = { ...process.env, PATH: `${bin}${delimiter}${process.env.PATH}`, AUDIT_ANSWER: join(repo, 'test', 'fixtures', 'audit', answer) };
  const run = spawnSync(process.execPath, [join(repo, 'scripts', 'audit-gate.mjs')], { encoding: 'utf8', env });
  return { status: run.status, out: run.stdout + run.stderr };
}

describe('audit-gate', () => {
  afterAll(() => rmSync(bin, { recursive: true, force: true }));

  it('fails on high advisories and names them', () => {
    const { status, out } = gate('high.json');
    expect(status).toBe(1);
    expect(out).toContain('FAILED');
    expect(out).toContain('hub (high, <1.0.1): Prototype pollution in hub');
    expect(out).toContain('alpha (high, 1.0.0)');
    expect(out).not.toContain('util (');
  });

  it('passes with only a moderate advisory', () => {
    const { status, out } = gate('moderate.json');
    expect(status).toBe(0);
    expect(out).toContain('passed, no high or critical advisory in the production dependencies (0 critical, 0 high, 1 moderate, 0 low, 0 info)');
  });

  it('reports that it did not run when the registry has no audit endpoint', () => {
    const { status, out } = gate('no-endpoint.json');
    expect(status).toBe(2);
    expect(out).toContain('npm audit: DID NOT RUN: the registry has no audit endpoint (405 Method Not Allowed');
  });

  it('fails, not skips, when a registry that has the endpoint does not answer it (an outage, here 503)', () => {
    const { status, out } = gate('unavailable.json');
    expect(status).toBe(1);
    expect(out).toContain('HTTP 503');
    expect(out).not.toContain('DID NOT RUN');
  });

  it('fails when npm answers something that is not a report', () => {
    const { status, out } = gate('../licences/missing/package.json');
    expect(status).toBe(1);
    expect(out).toContain('npm audit: no report');
  });
});
