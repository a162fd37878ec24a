/**
 * The package as an implementer or a Mojaloop service gets it: `npm pack`, installed into an empty
 * folder outside the repository (so nothing of the repository leaks in: no sources, no dev
 * dependencies, no tsx), then used there. `hsmb conformance` runs from the installed bin; the three
 * entry points import from plain Node and type-check under TypeScript's nodenext resolution.
 */
import { execFile } from 'node:child_process';
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { startApp, type RunningApp } from '../../src/app.js';
import { loadServiceConfig } from '../../src/config/load.js';
import type { ConformanceReport } from '../../src/conformance/report.js';
import { createLogger } from '../../src/log.js';
import { referenceValidator } from '../fspiop/support.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../helpers/software.js';

const run = promisify(execFile);
const repo = resolve('.');
const typesNodeVersion = (JSON.parse(await readFile(join(repo, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version: string }> }).packages['node_modules/@types/node']!.version;

let dir: string;
let app: string;
/** The environment of a command run in the install folder: none of the repository's paths. */
const env = (extra: Record<string, string> = {}) => ({ PATH: process.env.PATH!, HOME: process.env.HOME!, ...extra });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hsmb-packed-'));
  app = join(dir, 'app');
  // prepack builds dist/ first, so the tarball holds what the sources say now.
  const { stdout } = await run('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: repo, maxBuffer: 16 << 20 });
  const tarball = join(dir, stdout.trim().split('\n').at(-1)!);
  await run('mkdir', ['-p', app]);
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'packed-consumer', private: true, type: 'module' }));
  // Scripts off: the native PKCS#11 module is not built, and nothing here loads it (adapters load lazily).
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', tarball, `@types/node@${typesNodeVersion}`], { cwd: app, env: env(), maxBuffer: 16 << 20 });
}, 300_000);
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the packed package, installed elsewhere', () => {
  it('ships the built runner, suites and bin, and no sources or tests', async () => {
    const installed = join(app, 'node_modules/hsm-bridge');
    const { stdout } = await run('find', ['.', '-type', 'f'], { cwd: installed, maxBuffer: 16 << 20 });
    const files = stdout.split('\n').filter(Boolean);
    expect(files).toContain('./dist/src/conformance/runner.js');
    expect(files).toContain('./dist/src/conformance/suites/payment.js');
    expect(files).toContain('./dist/src/cli/hsmb.js');
    expect(files).toContain('./proto/hsmbridge/v1/key_service.proto');
    expect(files.filter((f) => /\.ts$/.test(f) && !f.endsWith('.d.ts'))).toEqual([]);
    expect(files.filter((f) => f.startsWith('./test/') || f.startsWith('./src/') || f.includes('vitest'))).toEqual([]);
  });

  it('hsmb conformance runs from the installed bin against the software backend and passes', async () => {
    const config = join(dir, 'software.yaml');
    await writeFile(config, stringify({ backend: { type: 'software', software: { keystorePath: join(dir, 'keystore.json'), masterKeyEnv: 'PACKED_MASTER_KEY' } } }));
    const { stdout } = await run(join(app, 'node_modules/.bin/hsmb'), ['conformance', '--backend-config', config, '--report', join(dir, 'report.md'), '--json', join(dir, 'report.json')], {
      cwd: app,
      env: env({ PACKED_MASTER_KEY: randomBytes(32).toString('base64') }),
      maxBuffer: 16 << 20,
    });
    expect(stdout).toMatch(/PASSED: \d+ pass, \d+ refused as the capabilities say, 0 fail\n$/);
    const report = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as ConformanceReport;
    expect(report.tool).toBe(`hsm-bridge ${(JSON.parse(await readFile('package.json', 'utf8')) as { version: string }).version}`);
    expect(report.summary.fail).toBe(0);
    expect(new Set(report.checks.map((c) => c.path[0]!.split(':')[0])).size).toBe(4);
    expect(await readFile(join(dir, 'report.md'), 'utf8')).toContain('Result: **PASSED**');
  }, 300_000);

  describe('the entry points, against a running service', () => {
    let service: RunningApp;
    let harness: SoftwareBackendHarness;
    beforeAll(async () => {
      harness = await createSoftwareBackendConfig();
      const file = join(dir, 'service.json');
      await writeFile(file, JSON.stringify({ rest: { port: 0 }, grpc: { enabled: false }, ops: { enabled: false }, backend: { type: 'software', software: harness.config } }));
      service = await startApp(loadServiceConfig({ file, env: {} }), createLogger('silent'));
    });
    afterAll(async () => {
      await service?.close();
      await harness?.cleanup();
    });

    const consumer = `
import { HsmBridgeClient, HsmBridgeClientError } from 'hsm-bridge/client';
import { JwsSigner } from 'hsm-bridge/mojaloop';
import { HsmBridgeError, wrappingSchemes } from 'hsm-bridge/backend';

const client = new HsmBridgeClient({ url: process.argv[2] });
await client.createKey({ name: 'packed-signer', type: 'EC_P256', purpose: 'sign' });
const message = Buffer.from('from the packed client');
const signed = await client.sign('packed-signer', { message, algorithm: 'ES256' });
const pem = (await client.getKey('packed-signer')).versions[0].publicKeyPem;
const request = { method: 'post', uri: 'http://peer/quotes', headers: { 'fspiop-source': 'dfsp' }, body: { amount: '10' } };
await new JwsSigner({ client, keyName: 'packed-signer' }).sign(request);
const refusal = await client.getKey('no-such-key').catch((e) => e);
client.close();
console.log(JSON.stringify({
  signature: signed.signature.toString('base64'), isBuffer: Buffer.isBuffer(signed.signature), pem, request,
  refusal: refusal instanceof HsmBridgeClientError ? refusal.code : String(refusal),
  backend: typeof HsmBridgeError === 'function' && wrappingSchemes.length,
}));
`;

    it('hsm-bridge/client, hsm-bridge/mojaloop and hsm-bridge/backend import from plain Node and work', async () => {
      await writeFile(join(app, 'consumer.mjs'), consumer);
      const { stdout } = await run('node', ['consumer.mjs', service.restUrl!], { cwd: app, env: env() });
      // One line: the drop-in writes nothing of its own without a logger.
      const out = JSON.parse(stdout) as { signature: string; isBuffer: boolean; pem: string; request: { headers: Record<string, string>; body: string }; refusal: string; backend: number };
      expect(out.isBuffer).toBe(true);
      expect(verify('sha256', Buffer.from('from the packed client'), { key: createPublicKey(out.pem), dsaEncoding: 'ieee-p1363' }, Buffer.from(out.signature, 'base64'))).toBe(true);
      expect(out.request.headers['fspiop-signature']).toBeDefined();
      expect(() => referenceValidator({ dfsp: out.pem }).validate({ headers: out.request.headers, body: JSON.parse(out.request.body) as unknown } as never)).not.toThrow();
      expect(out.refusal).toBe('KEY_NOT_FOUND');
      expect(out.backend).toBe(2);
    }, 60_000);

    it('and type-check under nodenext resolution, with the declared types', async () => {
      await writeFile(join(app, 'consumer.ts'), `${consumer}
const typed: Buffer = (await new HsmBridgeClient({ url: 'http://x' }).sign('k', { message: Buffer.from('m') })).signature;
void typed;
`);
      const tsc = join(repo, 'node_modules/typescript/bin/tsc');
      const failed = await run('node', [tsc, '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', 'consumer.ts'], { cwd: app, env: env() }).then(
        () => undefined,
        (e: { stdout?: string }) => e.stdout ?? String(e),
      );
      expect(failed).toBeUndefined();
    }, 60_000);
  });
});
