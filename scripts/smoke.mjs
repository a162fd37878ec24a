#!/usr/bin/env node
// Runs what the README's first command runs (the built service on the embedded default backend), the
// way a person would: start it, wait for readiness, create a key, sign with it over REST, check the
// signature with node:crypto, stop it with SIGTERM. Needs `npm run build` first.
import { spawn } from 'node:child_process';
import { createPublicKey, verify } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'hsmb-smoke-'));
const port = 18080 + Math.floor(Math.random() * 1000);
const base = `http://127.0.0.1:${port}`;
const child = spawn(process.execPath, ['dist/src/main.js'], {
  env: { ...process.env, NODE_ENV: 'development', HSMB_REST__PORT: String(port), HSMB_GRPC__PORT: '0', HSMB_OPS__PORT: '0', HSMB_BACKEND__SOFTWARE__KEYSTORE_PATH: join(dir, 'keystore.json') },
  stdio: ['ignore', 'pipe', 'pipe'],
});
let output = '';
child.stdout.on('data', (d) => (output += d));
child.stderr.on('data', (d) => (output += d));

const fail = (why) => {
  console.error(`smoke: ${why}\n--- service output ---\n${output}`);
  child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
  process.exit(1);
};
const call = async (method, path, body) => {
  const res = await fetch(base + path, { method, headers: body ? { 'content-type': 'application/json' } : {}, body: body && JSON.stringify(body) });
  const json = res.status === 204 ? undefined : await res.json();
  if (!res.ok) fail(`${method} ${path} -> ${res.status} ${JSON.stringify(json)}`);
  return json;
};

const deadline = Date.now() + 20_000;
for (;;) {
  if (child.exitCode !== null) fail(`service exited with ${child.exitCode}`);
  try {
    if ((await fetch(`${base}/health/ready`)).ok) break;
  } catch { /* not listening yet */ }
  if (Date.now() > deadline) fail('service not ready within 20 s');
  await new Promise((r) => setTimeout(r, 200));
}

const key = await call('POST', '/v1/keys', { name: 'smoke', type: 'EC_P256' });
const message = Buffer.from('hello from the smoke test');
const signed = await call('POST', '/v1/keys/smoke/sign', { message: message.toString('base64') });
const pub = createPublicKey(key.versions[0].publicKeyPem);
if (!verify('sha256', message, { key: pub, dsaEncoding: 'ieee-p1363' }, Buffer.from(signed.signature, 'base64'))) fail('signature does not verify with node:crypto');
if (!/software backend/i.test(output)) fail('the software backend did not log its warning');

child.kill('SIGTERM');
const code = await new Promise((r) => child.on('exit', r));
rmSync(dir, { recursive: true, force: true });
if (code !== 0) fail(`service exited with ${code} on SIGTERM`);
console.log('smoke: the service started on the embedded default, signed over REST (verified by node:crypto) and stopped cleanly');
