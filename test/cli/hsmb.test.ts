/**
 * hsmb in a real shell against a running service (software backend, REST over TLS, an access policy): an
 * operator and two custodians, each with a bearer token (HSMB_TOKEN), and a second service that takes
 * client certificates (--ca/--cert/--key). What it prints is parsed (--json) and checked independently: signatures with node:crypto,
 * the translated PIN block deciphered with node:crypto under the zone key's known value, KCVs against the
 * published TR-31 vector. Exit codes: 0 ok, 1 refused or not found, 2 bad usage, 3 unavailable.
 * hsmb is bundled once from the sources with esbuild (a tsx start per call would cost seconds each).
 */
import { spawn } from 'node:child_process';
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../../src/app.js';
import { loadServiceConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { cmacWithKey } from '../../src/payment/crypto/cmac.js';
import { setOddParity } from '../../src/payment/crypto/parity.js';
import { deriveKeyBlockKeys, sealKeyBlock } from '../../src/payment/tr31/keyBlock.js';
import { nodeEcb, nodeKcv } from '../../src/conformance/reference/nodeBlockCiphers.js';
import { createTestPki, type TestPki } from '../helpers/pykmip.js';
import { createSoftwareBackendConfig } from '../helpers/software.js';
import { AUDIENCE, ISSUER, tempDir, tokenIssuer } from '../identity/accessSupport.js';
import { BDK, CLEAR_PIN_BLOCK, KSN_PREFIX, initialSequence } from '../payment/dukpt/tdesVectors.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const hex = (s: string) => Buffer.from(s, 'hex');
const toHex = (b: Buffer) => b.toString('hex').toUpperCase();
/** TR-31:2018 A.7.2.2: the KBPK and a block under it whose key has KCV 57C409. */
const KBPK = hex('DD7515F2BFC17F85CE48F3CA25CB21F6');
const A722_BLOCK = 'B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E';
const PAN = '4012345678909';

const files = tempDir();
const policy = `
principals:
  operator: { jwtSubject: operator }
  alice: { jwtSubject: alice }
  bob: { jwtSubject: bob }
rules:
  - principal: operator
    allow: ["*"]
    keys: ["*"]
${['alice', 'bob'].map((p) => `  - principal: ${p}\n    allow: [ceremonies.enterComponent, ceremonies.get, system.whoami]\n    keys: ["*"]\n`).join('')}`;

let app: RunningApp;
/** The same, with mutual TLS and no policy. */
let mtlsApp: RunningApp;
let pki: TestPki;
const backends: Array<() => Promise<void>> = [];
const tokens: Record<'operator' | 'alice' | 'bob', string> = { operator: '', alice: '', bob: '' };
let bin: string;
/** Where the bundle goes: beside node_modules, so that its imports resolve. */
const bundleDir = `${ROOT}node_modules/.cache/hsmb-test-${process.pid}`;

beforeAll(async () => {
  pki = await createTestPki(files.at('pki'), 'cli-operator');
  const issuer = await tokenIssuer();
  writeFileSync(files.at('jwks.json'), JSON.stringify(issuer.jwks));
  for (const who of ['operator', 'alice', 'bob'] as const) tokens[who] = await issuer.token(who);
  writeFileSync(files.at('policy.yaml'), policy);
  const start = async (name: string, requireClientCert: boolean, access: Record<string, unknown>) => {
    const h = await createSoftwareBackendConfig();
    backends.push(() => h.cleanup());
    writeFileSync(files.at(`${name}.json`), JSON.stringify({
      rest: { host: '127.0.0.1', port: 0, tls: { certFile: pki.serverCertPath, keyFile: pki.serverKeyPath, caFile: pki.caPath, requireClientCert } },
      grpc: { enabled: false },
      ops: { enabled: false },
      access,
      backend: { type: 'software', software: h.config },
    }));
    return startApp(loadServiceConfig({ file: files.at(`${name}.json`), env: {} }), createLogger('silent'));
  };
  app = await start('tokens', false, { policyFile: files.at('policy.yaml'), jwt: { jwksFile: files.at('jwks.json'), issuer: ISSUER, audience: AUDIENCE } });
  mtlsApp = await start('mtls', true, {});

  // hsmb on PATH, as an operator would have it.
  await build({ entryPoints: [`${ROOT}src/cli/hsmb.ts`], bundle: true, platform: 'node', format: 'esm', packages: 'external', outfile: `${bundleDir}/hsmb.mjs`, logLevel: 'warning' });
  bin = files.at('bin');
  mkdirSync(bin);
  writeFileSync(`${bin}/hsmb`, `#!/bin/sh\nexec "${process.execPath}" "${bundleDir}/hsmb.mjs" "$@"\n`);
  chmodSync(`${bin}/hsmb`, 0o755);
}, 60_000);

afterAll(async () => {
  await app?.close();
  await mtlsApp?.close();
  for (const cleanup of backends) await cleanup();
  files.remove();
  rmSync(bundleDir, { recursive: true, force: true });
});

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout as JSON (for --json runs). */
  json(): any;
}

type Who = 'operator' | 'alice' | 'bob' | 'nobody';

/** Runs a command line in bash as `who` (with its token; `nobody` has none), the service's CA in HSMB_CA. */
function sh(who: Who, line: string, options: { input?: string; env?: Record<string, string> } = {}): Promise<Run> {
  const credentials: Record<string, string> = who === 'nobody' ? {} : { HSMB_TOKEN: tokens[who] };
  const env = { PATH: `${bin}:${process.env.PATH}`, HOME: files.dir, HSMB_URL: app.restUrl!, HSMB_CA: pki.caPath, ...credentials, ...options.env };
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', line], { cwd: files.dir, env, stdio: ['pipe', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => stdout.push(d));
    child.stderr.on('data', (d: Buffer) => stderr.push(d));
    child.on('error', reject);
    child.on('close', (code) => {
      const run = { code: code ?? -1, stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() };
      resolve({ ...run, json: () => JSON.parse(run.stdout) });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** A run that must succeed; its JSON output. */
async function ok(who: Who, line: string, options?: { input?: string }): Promise<any> {
  const run = await sh(who, `${line} --json`, options);
  expect(run.code, `${line}\n${run.stderr}`).toBe(0);
  return run.json();
}

/** `parts` TDES components with odd parity whose XOR is `key` (up to parity bits, which DES ignores). */
function componentsOf(key: Buffer, parts: number): Buffer[] {
  const out = Array.from({ length: parts - 1 }, () => setOddParity(randomBytes(key.length)));
  const last = Buffer.from(key);
  for (const c of out) for (let i = 0; i < last.length; i++) last[i]! ^= c[i]!;
  return [...out, setOddParity(last)];
}

/** Forms `name` from two components: alice enters hers on standard input, bob his from a file. */
async function ceremony(name: string, key: Buffer, flags: string): Promise<any> {
  const started = await ok('operator', `hsmb ceremony start ${name} ${flags} --components 2`);
  expect(started).toMatchObject({ name, components: 2, received: 0 });
  const [first, second] = componentsOf(key, 2) as [Buffer, Buffer];
  expect(await ok('alice', `hsmb ceremony enter ${started.id} --kcv ${nodeKcv('tdes', first)}`, { input: `${toHex(first)}\n` })).toMatchObject({ received: 1, of: 2 });
  expect((await ok('bob', `hsmb ceremony status ${started.id}`)).entries).toMatchObject([{ number: 1, enteredBy: 'token:alice', kcv: nodeKcv('tdes', first) }]);
  writeFileSync(files.at(`${name}.component`), toHex(second));
  const made = await ok('bob', `hsmb ceremony enter ${started.id} --kcv ${nodeKcv('tdes', second)} --component-file ${name}.component`);
  expect(made).toMatchObject({ name, keyCheckValue: nodeKcv('tdes', key), received: 2, of: 2 });
  return started;
}

describe('hsmb against a running service', () => {
  it('whoami: a token names its caller, and so does a client certificate given by --ca/--cert/--key', async () => {
    expect(await ok('alice', 'hsmb whoami')).toMatchObject({ id: 'alice', authenticatedBy: 'token', principals: ['alice'] });
    const table = await sh('bob', 'hsmb whoami');
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/bob/);
    const flags = `--url ${mtlsApp.restUrl} --ca ${pki.caPath} --cert ${pki.clientCertPath} --key ${pki.clientKeyPath}`;
    expect(await ok('nobody', `hsmb whoami ${flags}`)).toMatchObject({ id: 'cli-operator', authenticatedBy: 'certificate' });
    // without a client certificate the TLS handshake fails: no answer, so "unavailable"
    expect((await sh('nobody', `hsmb whoami --url ${mtlsApp.restUrl}`)).code).toBe(3);
  });

  it('keys and signatures: create, list, sign to a file that node:crypto verifies, verify (exit 1 when invalid), rotate, disable, destroy', async () => {
    const created = await ok('operator', 'hsmb keys create cli-signer --type EC_P256 --purpose sign');
    expect(created).toMatchObject({ name: 'cli-signer', type: 'EC_P256', purpose: 'sign', state: 'enabled', primaryVersion: 1 });
    const list = await sh('operator', 'hsmb keys list');
    expect(list.stdout.split('\n')[0]).toMatch(/^NAME\s+TYPE\s+PURPOSE\s+STATE\s+PRIMARY$/);
    expect(list.stdout).toMatch(/^cli-signer\s+EC_P256\s+sign\s+enabled\s+1$/m);
    expect((await ok('operator', 'hsmb keys list')).keys.map((k: { name: string }) => k.name)).toContain('cli-signer');

    const message = randomBytes(300);
    writeFileSync(files.at('message.bin'), message);
    const signed = await ok('operator', 'hsmb sign cli-signer --message-file message.bin --out signature.bin');
    expect(signed).toMatchObject({ keyVersion: 1, algorithm: 'ES256' });
    const pem = (await ok('operator', 'hsmb keys get cli-signer')).versions[0].publicKeyPem;
    const signature = Buffer.from(signed.signature, 'base64');
    expect(verify('sha256', message, { key: createPublicKey(pem), dsaEncoding: 'ieee-p1363' }, signature)).toBe(true);
    expect((await sh('operator', 'hsmb verify cli-signer --message-file message.bin --signature-file signature.bin')).code).toBe(0);
    // the message from standard input, the signature from the command line
    expect((await sh('operator', `hsmb verify cli-signer --message-file - --signature ${signed.signature}`, { input: 'another message' })).code).toBe(1);

    expect((await ok('operator', 'hsmb keys rotate cli-signer')).primaryVersion).toBe(2);
    expect((await ok('operator', 'hsmb sign cli-signer --message-file message.bin')).keyVersion).toBe(2);
    expect((await ok('operator', 'hsmb keys disable cli-signer')).state).toBe('disabled');
    const refused = await sh('operator', 'hsmb sign cli-signer --message-file message.bin --json');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^KEY_DISABLED: /);
    expect(refused.json().error).toMatchObject({ code: 'KEY_DISABLED', requestId: expect.any(String) });
    expect(await ok('operator', 'hsmb keys destroy cli-signer')).toEqual({ destroyed: 'cli-signer' });
    expect((await sh('operator', 'hsmb keys get cli-signer')).code).toBe(1);
  });

  it('random: N bytes in hex or base64', async () => {
    expect((await sh('operator', 'hsmb random 32 --encoding hex')).stdout.trim()).toMatch(/^[0-9a-f]{64}$/);
    expect(Buffer.from((await ok('operator', 'hsmb random 48')).random, 'base64')).toHaveLength(48);
  });

  it('key loading: a KBPK by ceremony, the TR-31 vector imported under it, a BDK too, DUKPT PIN blocks translated to a zone key from another ceremony, and a TR-31 export that imports back', async () => {
    await ceremony('cli-zmk', KBPK, `--type TDES_2KEY --purpose kbpk --key-usage K1 --expected-kcv ${nodeKcv('tdes', KBPK)}`);
    expect((await sh('operator', 'hsmb keys get cli-zmk')).stdout).toMatch(/^state: enabled$/m);

    const imported = await ok('operator', `hsmb tr31 import cli-tpk --block ${A722_BLOCK} --kbpk cli-zmk`);
    expect(imported).toMatchObject({ key: { name: 'cli-tpk' }, keyCheckValue: '57C409' });

    const zpk = setOddParity(randomBytes(16));
    await ceremony('cli-zpk', zpk, '--type TDES_2KEY --purpose pin --exportable');

    const blockKeys = await deriveKeyBlockKeys('B', KBPK.length, async (input) => cmacWithKey('tdes', KBPK, input));
    const bdkBlock = await sealKeyBlock({ version: 'B', keyUsage: 'B0', algorithm: 'T', modeOfUse: 'X', keyVersionNumber: '00', exportability: 'N', optionalBlocks: [] } as never, BDK, blockKeys);
    writeFileSync(files.at('bdk.tr31'), bdkBlock);
    expect(await ok('operator', 'hsmb tr31 import cli-bdk --block-file bdk.tr31 --kbpk cli-zmk')).toMatchObject({ keyCheckValue: '08D7B4' });
    for (const [suffix, , encrypted] of initialSequence.slice(0, 2)) {
      const translated = await ok('operator', `hsmb pin translate --pin-block ${encrypted} --in-key cli-bdk --in-format ISO_FORMAT_0 --pan ${PAN} --ksn ${KSN_PREFIX + suffix} --out-key cli-zpk --out-format ISO_FORMAT_0`);
      expect(toHex(nodeEcb('tdes', 'decrypt', zpk, hex(translated.pinBlock)))).toBe(toHex(CLEAR_PIN_BLOCK));
    }

    const exported = await ok('operator', 'hsmb tr31 export cli-zpk --kbpk cli-zmk');
    expect(exported.keyBlock).toMatch(/^B\d{4}P0T/);
    expect((await ok('operator', `hsmb tr31 import cli-zpk-copy --block ${exported.keyBlock} --kbpk cli-zmk`)).keyCheckValue).toBe(nodeKcv('tdes', zpk));
  });

  it('a ceremony refuses one custodian twice and the operator cancels it', async () => {
    const started = await ok('operator', 'hsmb ceremony start cli-dual --type TDES_2KEY --purpose pin --components 2');
    const [first, second] = componentsOf(setOddParity(randomBytes(16)), 2) as [Buffer, Buffer];
    await ok('alice', `hsmb ceremony enter ${started.id} --kcv ${nodeKcv('tdes', first)}`, { input: toHex(first) });
    const again = await sh('alice', `hsmb ceremony enter ${started.id} --kcv ${nodeKcv('tdes', second)}`, { input: toHex(second) });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^DUAL_CONTROL: /);
    // the component is in neither output
    expect(again.stdout + again.stderr).not.toContain(toHex(second));
    expect(await ok('operator', `hsmb ceremony cancel ${started.id}`)).toEqual({ cancelled: started.id });
    expect((await sh('operator', `hsmb ceremony status ${started.id}`)).stderr).toMatch(/^CEREMONY_NOT_FOUND: /);
  });

  it('exit codes: 1 refused or not found, 2 bad usage or a malformed request, 3 unavailable; the code and message on stderr and in --json', async () => {
    const notFound = await sh('operator', 'hsmb keys get no-such-key --json');
    expect(notFound).toMatchObject({ code: 1, stderr: expect.stringMatching(/^KEY_NOT_FOUND: /) });
    expect(notFound.json().error.code).toBe('KEY_NOT_FOUND');
    const denied = await sh('alice', 'hsmb keys create alice-key --type EC_P256 --json');
    expect(denied.code).toBe(1);
    expect(denied.json().error.code).toMatch(/^(PERMISSION_DENIED|FORBIDDEN)$/);
    expect((await sh('nobody', 'hsmb keys list')).code).toBe(1);

    for (const line of [
      'hsmb',
      'hsmb nonsense',
      'hsmb keys nonsense',
      'hsmb keys create cli-x',
      'hsmb keys get',
      'hsmb keys list --no-such-flag',
      'hsmb random',
      'hsmb sign cli-x',
      'hsmb ceremony start cli-x --type TDES_2KEY --purpose pin --components 5',
    ]) {
      const run = await sh('operator', line);
      expect(run.code, line).toBe(2);
      expect(run.stderr, line).toMatch(/usage/);
    }
    expect((await sh('operator', 'hsmb keys list', { env: { HSMB_URL: '' } })).stderr).toMatch(/HSMB_URL/);
    // well-formed on the command line, refused by the service's validation
    const malformed = await sh('operator', "hsmb keys create 'not a name!' --type EC_P256 --json");
    expect(malformed.code).toBe(2);
    expect(malformed.json().error.code).toBe('INVALID_ARGUMENT');
    // no component on standard input: refused before the call
    expect((await sh('alice', 'hsmb ceremony enter 0123456789abcdef0123456789abcdef --kcv 000000')).code).toBe(2);

    const closed = await closedPort();
    const unavailable = await sh('operator', `hsmb keys list --url https://127.0.0.1:${closed} --json`);
    expect(unavailable.code).toBe(3);
    expect(unavailable.json().error.code).toBe('NETWORK_ERROR');
  });
});

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}
