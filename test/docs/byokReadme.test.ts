/**
 * The README's BYOK example, run as written: its shell block ("Wrapped import (BYOK)") with openssl, od,
 * base64, jq and curl against a service on the software backend, for a P-256 key made with openssl. The
 * imported key must then sign what the original public key verifies. Only the service's address is
 * replaced.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReadmeService, type ReadmeService } from './readmeService.js';

const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');

/** The first ```sh block after `heading`. */
function shellBlockAfter(heading: string): string {
  const start = readme.indexOf(heading);
  expect(start, heading).toBeGreaterThan(0);
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(start));
  return block![1]!;
}

describe('README: Bringing your own keys', () => {
  let service: ReadmeService;

  beforeAll(async () => {
    service = await startReadmeService();
  });
  afterAll(async () => {
    await service?.close();
  });

  it('the openssl wrapping example imports a key that signs as the original', async () => {
    const script = service.pointedHere(shellBlockAfter('### Wrapped import (BYOK)'));
    const { app, dir } = service;
    execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'signing-key.pem'], { cwd: dir.dir });
    // Asynchronously: the service answering curl runs in this process.
    const { stdout: out } = await promisify(execFile)('bash', ['-euo', 'pipefail', '-c', script], { cwd: dir.dir, encoding: 'utf8' });
    expect(JSON.parse(out.trim().split('\n').at(-1)!)).toMatchObject({ name: 'payerfsp-jws', type: 'EC_P256', purpose: 'sign', primaryVersion: 1 });
    expect(() => readFileSync(dir.at('transport.key'))).toThrow(); // the example removes the clear transport key

    const message = Buffer.from('a quote');
    const signed = await fetch(`${app.restUrl}/v1/keys/payerfsp-jws/sign`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: message.toString('base64') }) });
    const { signature } = (await signed.json()) as { signature: string };
    const original = createPublicKey(readFileSync(dir.at('signing-key.pem')));
    expect(verify('sha256', message, { key: original, dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64'))).toBe(true);
  });
});
