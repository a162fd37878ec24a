/**
 * `hsmb conformance` as an implementer runs it: a backend configuration file in the service's format,
 * the capability matrix and results on stdout, the Markdown and JSON reports, and the exit code. Against
 * the software backend, a real SoftHSM token and a real PyKMIP server (all must pass), and against an
 * adapter module that lies about what it does (it must fail, on exactly the lies).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { runHsmb } from '../../src/cli/commands.js';
import type { ConformanceReport } from '../../src/conformance/report.js';
import { kmipConfigFor } from '../helpers/kmipBackend.js';
import { startPyKmip, type PyKmipServer } from '../helpers/pykmip.js';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm.js';

let dir: string;
const env: NodeJS.ProcessEnv = { CONF_MASTER_KEY: randomBytes(32).toString('base64') };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hsmb-conformance-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function conformance(backend: Record<string, unknown>, name: string, extra: string[] = []) {
  const config = join(dir, `${name}.yaml`);
  await writeFile(config, stringify({ backend }));
  const out: string[] = [];
  const err: string[] = [];
  const report = join(dir, `${name}.md`);
  const json = join(dir, `${name}.json`);
  const code = await runHsmb(['conformance', '--backend-config', config, '--report', report, '--json', json, ...extra], {
    env: { ...process.env, ...env },
    out: (l) => out.push(l),
    err: (l) => err.push(l),
  });
  const parsed = code <= 1 ? (JSON.parse(await readFile(json, 'utf8')) as ConformanceReport) : undefined;
  return { code, out: out.join('\n'), err: err.join('\n'), report: code <= 1 ? await readFile(report, 'utf8') : '', json: parsed! };
}

const software = (name: string) => ({ keystorePath: join(dir, `${name}-keystore.json`), masterKeyEnv: 'CONF_MASTER_KEY' });
const failures = (r: ConformanceReport) => r.checks.filter((c) => c.status === 'fail').map((c) => `${c.path.join(' › ')}: ${c.error}`);
const suitesOf = (r: ConformanceReport) => [...new Set(r.checks.map((c) => c.path[0]!.split(':')[0]))];

describe('hsmb conformance', () => {
  it('passes on the software backend, with the capability matrix, every suite, and both reports', async () => {
    const run = await conformance({ type: 'software', software: software('software') }, 'software');
    expect(failures(run.json)).toEqual([]);
    expect(run.code).toBe(0);
    expect(suitesOf(run.json)).toEqual(['backend conformance', 'key import conformance', 'data protection conformance', 'payment conformance']);
    expect(run.json.summary.pass).toBeGreaterThan(100);
    expect(run.json.summary.pass + run.json.summary.refused).toBe(run.json.checks.length);
    expect(run.json.backend.kind).toBe('software');
    expect(run.json.capabilities.find((r) => r.capability === 'sign')?.offered).toContain('ES256');
    expect(run.out).toMatch(/^Capabilities of the software backend/);
    expect(run.out).toMatch(/^pass {4}backend conformance: software › key creation › EC_P256: /m);
    expect(run.out).toMatch(/PASSED: \d+ pass, \d+ refused as the capabilities say, 0 fail$/);
    expect(run.report).toContain('# hsm-bridge conformance report: software');
    expect(run.report).toContain('| sign | RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA | - |');
    expect(run.report).toMatch(/Result: \*\*PASSED\*\*/);
  }, 180_000);

  it('fails an adapter module that offers what it does not do, on the checks that meet the lies, and exits 1', async () => {
    const run = await conformance({ type: 'module', module: { path: resolve('test/fixtures/adapters/lyingAdapter.ts'), config: software('lying') } }, 'lying');
    expect(run.code).toBe(1);
    expect(run.json.backend.kind).toBe('lying-vendor');
    const failed = failures(run.json);
    expect(failed.some((f) => f.startsWith('backend conformance: lying-vendor › sign and verify › ES256: signatures verify with node:crypto'))).toBe(true);
    expect(failed.some((f) => f.startsWith('backend conformance: lying-vendor › random › '))).toBe(true);
    // The lies fail checks; they stop nothing else: no set-up failed, and the other checks ran and passed.
    expect(failed.filter((f) => f.includes('set-up failed'))).toEqual([]);
    expect(run.json.summary.pass).toBeGreaterThan(100);
    expect(run.out).toMatch(/FAILED: \d+ pass, \d+ refused as the capabilities say, [1-9]\d* fail$/);
    expect(run.report).toMatch(/Result: \*\*FAILED\*\*/);
    expect(run.report).toMatch(/\| backend conformance: lying-vendor › random › [^|]+ \| fail \| /);
  }, 180_000);

  describe('on a real SoftHSM token', () => {
    let token: SoftHsmToken;
    beforeAll(async () => {
      token = await createSoftHsmToken();
    });
    afterAll(async () => token?.cleanup());

    it('passes every suite (SoftHSM offers all that the suites check, so nothing is refused)', async () => {
      const run = await conformance({ type: 'pkcs11', pkcs11: token.backendConfig() }, 'softhsm');
      expect(failures(run.json)).toEqual([]);
      expect(run.code).toBe(0);
      expect(run.json.backend.kind).toBe('pkcs11');
      expect(suitesOf(run.json)).toHaveLength(4);
      expect(run.json.summary).toMatchObject({ fail: 0, refused: 0 });
      expect(run.json.summary.pass).toBeGreaterThan(100);
    }, 300_000);
  });

  describe('on a real PyKMIP server', () => {
    let server: PyKmipServer;
    beforeAll(async () => {
      server = await startPyKmip();
    }, 60_000);
    afterAll(async () => server?.stop());

    it('passes; the payment checks a KMIP server cannot do are refused as its capabilities say', async () => {
      const run = await conformance({ type: 'kmip', kmip: kmipConfigFor(server) }, 'kmip', ['--suite', 'backend', '--suite', 'payment']);
      expect(failures(run.json)).toEqual([]);
      expect(run.code).toBe(0);
      expect(suitesOf(run.json)).toEqual(['backend conformance', 'payment conformance']);
      expect(run.json.summary.refused).toBeGreaterThan(0);
      const refusedPayment = run.json.checks.filter((c) => c.status === 'refused' && c.path[0]!.startsWith('payment'));
      expect(refusedPayment.length).toBeGreaterThan(0);
      expect(run.report).toMatch(/\| payment conformance: kmip › [^|]+ \| refused \| not offered: /);
    }, 300_000);
  });

  describe('bad usage', () => {
    const io = () => {
      const err: string[] = [];
      return { err, io: { env: process.env, out: () => undefined, err: (l: string) => err.push(l) } };
    };
    it('no --backend-config, an unknown suite, or a stray argument: exit 2 with the usage', async () => {
      for (const args of [['conformance'], ['conformance', '--backend-config', 'x.yaml', '--suite', 'nope'], ['conformance', '--backend-config', 'x.yaml', 'extra']]) {
        const { err, io: streams } = io();
        expect(await runHsmb(args, streams)).toBe(2);
        expect(err.join('\n')).toContain('usage: hsmb conformance --backend-config FILE');
      }
    });
    it('a configuration that is not valid: exit 2, naming the field', async () => {
      const config = join(dir, 'bad.yaml');
      await writeFile(config, stringify({ backend: { type: 'software', software: { nope: 1 } } }));
      const { err, io: streams } = io();
      expect(await runHsmb(['conformance', '--backend-config', config], streams)).toBe(2);
      expect(err.join('\n')).toContain('/backend/software/nope is not a known field');
    });
    it('a backend that does not open (no such PKCS#11 library): exit 3', async () => {
      const config = join(dir, 'nolib.yaml');
      await writeFile(config, stringify({ backend: { type: 'pkcs11', pkcs11: { library: join(dir, 'no-such-lib.so'), tokenLabel: 'x', pinEnv: 'NO_SUCH_PIN' } } }));
      const { err, io: streams } = io();
      expect(await runHsmb(['conformance', '--backend-config', config], streams)).toBe(3);
      expect(err.join('\n')).toMatch(/the pkcs11 backend did not open: /);
    });
  });
});
