/**
 * The README's worked example of "Protecting personal data" (an MSISDN column), run as written with curl
 * and jq against a service on the software backend: the keys are made, the MSISDN encrypts to as many
 * digits and decrypts back, in the example and here, and the token is the one the service gives for the
 * same value and context. Only the service's address is replaced.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReadmeService, type ReadmeService } from './readmeService.js';

const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');

describe('README: Protecting personal data', () => {
  let service: ReadmeService;

  beforeAll(async () => {
    service = await startReadmeService();
  });
  afterAll(async () => {
    await service?.close();
  });

  it('the MSISDN column example: same-format encryption that decrypts back, and a token for look-ups', async () => {
    const start = readme.indexOf('**Worked example: an MSISDN column.**');
    expect(start).toBeGreaterThan(0);
    const script = service.pointedHere(/```sh\n([\s\S]*?)```/.exec(readme.slice(start))![1]!);
    const { app, dir } = service;
    const { stdout } = await promisify(execFile)('bash', ['-euo', 'pipefail', '-c', script], { cwd: dir.dir, encoding: 'utf8' });
    const [fpeKey, tokenKey, encrypted, readBack, tokens] = stdout.trim().split('\n').map((line) => JSON.parse(line));
    expect(fpeKey).toMatchObject({ name: 'als-msisdn', type: 'AES_256', purpose: 'fpe' });
    expect(tokenKey).toMatchObject({ name: 'als-lookup', type: 'HMAC_256', purpose: 'tokenize' });
    expect(encrypted).toMatchObject({ keyName: 'als-msisdn', keyVersion: 1 });
    expect(encrypted.values[0]).toMatch(/^\d{12}$/);
    expect(encrypted.values[0]).not.toBe('255712345678');
    expect(readBack).toEqual({ keyName: 'als-msisdn', keyVersion: 1, values: ['255712345678'] });

    const post = async (path: string, body: object) =>
      (await fetch(`${app.restUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Promise<any>;
    const decrypted = await post('/v1/keys/als-msisdn/fpe/decrypt', { values: encrypted.values, radix: 10, tweak: '616c732e6d736973646e', keyVersion: 1 });
    expect(decrypted.values).toEqual(['255712345678']);
    expect(tokens.tokens[0]).toMatch(/^v1:[A-Za-z0-9_-]{43}$/);
    expect((await post('/v1/keys/als-lookup/tokenize', { values: ['255712345678'], context: 'als.participants.msisdn' })).tokens).toEqual(tokens.tokens);
  });
});
