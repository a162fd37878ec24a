/**
 * Personal-data protection (issue #14) under an access policy and a file audit trail, over REST, on the
 * software backend and SoftHSM: retiring and trimming versions are lifecycle changes a caller needs
 * keys.update / keys.trim for, each leaving a record that says what changed; tokens, FF1 and data keys
 * leave a record with counts only. No value, token input, token, FF1 result or data key reaches the audit
 * trail or the log, in clear or base64. (Every new operation's allow/deny cells are in
 * test/identity/policyMatrix.test.ts.)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OperationRecord } from '../../src/audit/record.js';
import { capturedLogger, startAccessServers, tempDir, tokenIssuer, writeJson, AUDIENCE, ISSUER, type AccessServers, type TokenIssuer } from '../identity/accessSupport.js';
import { operationRecordsIn, trailOptions } from './auditFixture.js';

const policyText = `
principals:
  steward: { jwtSubject: d-steward }
  app: { jwtSubject: d-app }
rules:
  - principal: steward
    allow: [keys.update, keys.trim, keys.rotate, keys.encrypt, keys.decrypt, keys.rewrap, keys.datakey, keys.tokenize, keys.fpeEncrypt, keys.fpeDecrypt]
    keys: ["d-*"]
  - principal: app
    allow: [keys.tokenize, keys.fpeEncrypt, keys.datakey]
    keys: ["d-*"]
`;

const MSISDN = '255787654321';
const NAME = 'Neema Mwakyusa';

const files = tempDir();
let issuer: TokenIssuer;
const tokens = { steward: '', app: '' };
let seq = 0;

beforeAll(async () => {
  issuer = await tokenIssuer();
  writeJson(files.at('jwks.json'), issuer.jwks);
  writeFileSync(files.at('policy.yaml'), policyText);
  tokens.steward = await issuer.token('d-steward');
  tokens.app = await issuer.token('d-app');
}, 60_000);
afterAll(() => files.remove());

describe.each(['software', 'SoftHSM'] as const)('data protection on %s, with a policy and an audit trail', (backend) => {
  let servers: AccessServers;
  const log = capturedLogger();
  const auditFile = files.at(`audit-dp-${backend}.jsonl`);
  /** Everything the service answered with that is secret or personal: none of it may be in the trail or the log. */
  const answered: string[] = [];

  beforeAll(async () => {
    const access = { policyFile: files.at('policy.yaml'), allowUnauthenticated: false, jwt: { jwksFile: files.at('jwks.json'), jwksCacheSeconds: 300, issuer: ISSUER, audience: AUDIENCE, algorithms: ['ES256'], clockToleranceSeconds: 30 } };
    servers = await startAccessServers(access, log.logger, undefined, backend, trailOptions(auditFile));
    for (const [name, type, purpose] of [['d-aes', 'AES_256', 'encrypt'], ['d-tok', 'HMAC_256', 'tokenize'], ['d-fpe', 'AES_128', 'fpe']] as const) {
      await servers.service.createKey({ name, type, purpose });
    }
  }, 120_000);
  afterAll(async () => {
    await servers?.close();
  });

  async function call(method: 'POST' | 'PATCH', url: string, body: object | undefined, token: string): Promise<{ status: number; body: any; record: OperationRecord }> {
    const requestId = `dp-${backend}-${seq++}`;
    const r = await servers.rest.inject({ method, url, ...(body ? { payload: body } : {}), headers: { authorization: `Bearer ${token}`, 'x-request-id': requestId } });
    const mine = (await operationRecordsIn(servers.audit!.trail, auditFile)).filter((rec) => rec.requestId === requestId);
    expect(mine, `one record for ${requestId}`).toHaveLength(1);
    return { status: r.statusCode, body: r.body === '' ? undefined : JSON.parse(r.body), record: mine[0]! };
  }

  it('retiring needs keys.update and trimming keys.trim; each record says what changed', async () => {
    const sealed = await call('POST', '/v1/keys/d-aes/encrypt', { plaintext: Buffer.from(NAME).toString('base64') }, tokens.steward);
    await call('POST', '/v1/keys/d-aes/rotate', undefined, tokens.steward);
    // A rewrap used two versions: the one that decrypted and the primary that encrypted.
    const rewrapped = await call('POST', '/v1/keys/d-aes/rewrap', { ciphertext: sealed.body.ciphertext }, tokens.steward);
    expect(rewrapped.record).toMatchObject({ operation: 'keys.rewrap', outcome: 'ok', keys: [{ name: 'd-aes', version: 1 }, { name: 'd-aes', version: 2 }] });

    const refused = await call('PATCH', '/v1/keys/d-aes', { minDecryptionVersion: 2 }, tokens.app);
    expect(refused.status).toBe(403);
    expect(refused.record).toMatchObject({ operation: 'keys.update', outcome: 'PERMISSION_DENIED' });
    expect((await servers.service.getKey('d-aes')).minDecryptionVersion ?? 1).toBe(1);

    const retired = await call('PATCH', '/v1/keys/d-aes', { minDecryptionVersion: 2 }, tokens.steward);
    expect(retired.status).toBe(200);
    expect(retired.record).toMatchObject({ operation: 'keys.update', outcome: 'ok', caller: { id: 'd-steward' }, keys: [{ name: 'd-aes', version: 2 }], details: { minDecryptionVersion: 2 } });

    const old = await call('POST', '/v1/keys/d-aes/decrypt', { ciphertext: sealed.body.ciphertext }, tokens.steward);
    expect(old.status).toBe(409);
    expect(old.record).toMatchObject({ operation: 'keys.decrypt', outcome: 'KEY_VERSION_RETIRED' });

    expect((await call('POST', '/v1/keys/d-aes/trim', undefined, tokens.app)).status).toBe(403);
    const trimmed = await call('POST', '/v1/keys/d-aes/trim', undefined, tokens.steward);
    expect(trimmed.status).toBe(200);
    expect(trimmed.record).toMatchObject({ operation: 'keys.trim', outcome: 'ok', details: { destroyedVersions: '1' } });
    const again = await call('POST', '/v1/keys/d-aes/trim', undefined, tokens.steward);
    expect(again.record.details).toEqual({ destroyedVersions: 'none' });
  });

  it('tokens, FF1 and data keys: records with counts, never a value', async () => {
    const t = await call('POST', '/v1/keys/d-tok/tokenize', { values: [MSISDN, NAME, 'x'.repeat(2000)], context: 'als.msisdn' }, tokens.app);
    expect(t.status).toBe(200);
    expect(t.record).toMatchObject({ operation: 'keys.tokenize', outcome: 'ok', keys: [{ name: 'd-tok', version: 1 }], details: { values: 3, failed: 1, errorCodes: 'INVALID_ARGUMENT' } });
    answered.push(t.body.tokens[0], t.body.tokens[1]);

    const f = await call('POST', '/v1/keys/d-fpe/fpe/encrypt', { values: [MSISDN, '123'], radix: 10 }, tokens.app);
    expect(f.record).toMatchObject({ operation: 'keys.fpeEncrypt', outcome: 'ok', details: { values: 2, failed: 1 } });
    answered.push(f.body.values[0]);
    // The app may encrypt but not decrypt.
    const d = await call('POST', '/v1/keys/d-fpe/fpe/decrypt', { values: [f.body.values[0]], radix: 10 }, tokens.app);
    expect(d.status).toBe(403);

    const k = await call('POST', '/v1/keys/d-aes/datakey', { bits: 256 }, tokens.app);
    expect(k.status).toBe(200);
    expect(k.record).toMatchObject({ operation: 'keys.datakey', outcome: 'ok', keys: [{ name: 'd-aes', version: 2 }] });
    answered.push(k.body.plaintext, Buffer.from(k.body.plaintext, 'base64').toString('hex'));

    const rewrap = await call('POST', '/v1/keys/d-aes/rewrap', { ciphertext: k.body.wrapped }, tokens.app);
    expect(rewrap.status).toBe(403);
  });

  it('no value, token, FF1 result or data key is in the audit trail or the log', async () => {
    await servers.audit!.trail.flush();
    const trail = readFileSync(auditFile, 'utf8');
    const logText = JSON.stringify(log.lines());
    const secrets = [MSISDN, NAME, Buffer.from(NAME).toString('base64'), ...answered];
    expect(answered.length).toBeGreaterThanOrEqual(5);
    for (const secret of secrets) {
      expect(trail, 'audit trail').not.toContain(secret);
      expect(logText, 'log').not.toContain(secret);
    }
  });
});
