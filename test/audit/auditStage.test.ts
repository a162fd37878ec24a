/**
 * The audit stage on both transports, on the software backend: every audited call leaves exactly one
 * record with the caller the identity stage established, the operation, each key with its version, and
 * the outcome; operations that name no key leave none; the audit key's name is reserved; and no
 * plaintext, signature input, PIN block, PIN or PAN reaches the audit file or the logs.
 */
import { generateKeyPairSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OperationRecord } from '../../src/audit/record.js';
import { format0, plantKeys, tdesEncrypt, zpkTdesMaterial, type PlantedKeys } from '../transports/paymentSupport.js';
import { AUDIT_KEY, callerOf, openSoftware, startAudited, type AuditedService, type BackendHarness } from './auditFixture.js';

const PLAINTEXT = 'audit-test plaintext 5b1c0e77';
const MESSAGE = 'audit-test signature input 9d2f4a61';
const PAN = '5555555551234567';
const PIN = '4821';

type Expected = Pick<OperationRecord, 'operation' | 'outcome' | 'keys'> & { participants?: string[] };

/** The calls of one transport, each with the record it must leave (undefined: none). */
interface Transport {
  readonly name: 'rest' | 'grpc';
  createKey(name: string, type: string, purpose?: string): Promise<unknown>;
  sign(name: string): Promise<{ signature: Buffer }>;
  verify(name: string, signature: Buffer, keyVersion: number): Promise<unknown>;
  rotate(name: string): Promise<unknown>;
  encrypt(name: string): Promise<{ ciphertext: Buffer }>;
  decrypt(name: string, ciphertext: Buffer): Promise<unknown>;
  getKey(name: string): Promise<unknown>;
  listKeys(): Promise<unknown>;
  disable(name: string): Promise<unknown>;
  destroy(name: string): Promise<unknown>;
  translate(incoming: string, outgoing: string, pinBlock: string): Promise<unknown>;
  addParticipantKey(id: string, publicKeyPem: string): Promise<unknown>;
  fspiopSign(key: string, source: string): Promise<unknown>;
}

describe('the audit stage over REST and gRPC (software backend)', () => {
  let env: BackendHarness;
  let svc: AuditedService;
  let keys: PlantedKeys;
  const seen = new Set<string>();

  beforeAll(async () => {
    env = await openSoftware();
    svc = await startAudited(env);
    keys = await plantKeys(env.keys);
  });
  afterAll(async () => {
    await svc?.close();
    await env?.close();
  });

  const operationRecords = async (): Promise<OperationRecord[]> => {
    await svc.trail.flush();
    const text = await readFile(env.auditFile, 'utf8');
    return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as OperationRecord).filter((r) => r.type === 'operation');
  };

  /** Runs `call` (which may fail) and checks the one record it left, or that it left none. */
  async function expectRecord<T>(transport: Transport['name'], call: () => Promise<T>, expected: Expected | undefined): Promise<T | undefined> {
    const before = (await operationRecords()).length;
    const result = await call().catch(() => undefined);
    const added = (await operationRecords()).slice(before);
    if (expected === undefined) {
      expect(added).toEqual([]);
      return result;
    }
    expect(added, `${transport} ${expected.operation}`).toHaveLength(1);
    const record = added[0]!;
    expect(record).toMatchObject({ ...expected, participants: expected.participants ?? [], transport, caller: { id: callerOf(transport), authenticatedBy: 'certificate' } });
    expect(record.keys).toEqual(expected.keys);
    expect(typeof record.requestId).toBe('string');
    expect(seen.has(record.requestId), 'request ids are distinct').toBe(false);
    seen.add(record.requestId);
    expect(record.remoteAddress).toMatch(/127\.0\.0\.1/);
    return result;
  }

  const rest = (): Transport => {
    const call = async (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object) => {
      const r = await svc.rest.inject({ method, url, ...(payload === undefined ? {} : { payload }) });
      if (r.statusCode >= 400) throw new Error(r.body);
      return r.body === '' ? undefined : (JSON.parse(r.body) as Record<string, any>);
    };
    const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
    return {
      name: 'rest',
      createKey: (name, type, purpose) => call('POST', '/v1/keys', { name, type, ...(purpose ? { purpose } : {}) }),
      sign: async (name) => ({ signature: Buffer.from((await call('POST', `/v1/keys/${name}/sign`, { message: b64(MESSAGE) }))!.signature, 'base64') }),
      verify: (name, signature, keyVersion) => call('POST', `/v1/keys/${name}/verify`, { message: b64(MESSAGE), signature: b64(signature), keyVersion }),
      rotate: (name) => call('POST', `/v1/keys/${name}/rotate`),
      encrypt: async (name) => ({ ciphertext: Buffer.from((await call('POST', `/v1/keys/${name}/encrypt`, { plaintext: b64(PLAINTEXT) }))!.ciphertext, 'base64') }),
      decrypt: (name, ciphertext) => call('POST', `/v1/keys/${name}/decrypt`, { ciphertext: b64(ciphertext) }),
      getKey: (name) => call('GET', `/v1/keys/${name}`),
      listKeys: () => call('GET', '/v1/keys'),
      disable: (name) => call('POST', `/v1/keys/${name}/disable`),
      destroy: (name) => call('DELETE', `/v1/keys/${name}`),
      translate: (incoming, outgoing, pinBlock) =>
        call('POST', '/v1/pin/translate', { incoming: { keyName: incoming, format: 'ISO_FORMAT_0', pan: PAN }, outgoing: { keyName: outgoing, format: 'ISO_FORMAT_0' }, pinBlock }),
      addParticipantKey: (id, publicKeyPem) => call('POST', '/v1/fspiop/participants', { id, publicKeyPem }),
      fspiopSign: (key, source) => call('POST', '/v1/fspiop/sign', { key, method: 'put', uri: '/transfers/1', source, body: { note: MESSAGE } }),
    };
  };

  const grpc = (): Transport => {
    const c = svc.client;
    return {
      name: 'grpc',
      createKey: (name, type, purpose) => c.call('CreateKey', { name, type, ...(purpose ? { purpose } : {}) }),
      sign: (name) => c.call('Sign', { name, message: Buffer.from(MESSAGE) }) as Promise<{ signature: Buffer }>,
      verify: (name, signature, keyVersion) => c.call('Verify', { name, message: Buffer.from(MESSAGE), signature, keyVersion }),
      rotate: (name) => c.call('RotateKey', { name }),
      encrypt: (name) => c.call('Encrypt', { name, plaintext: Buffer.from(PLAINTEXT) }) as Promise<{ ciphertext: Buffer }>,
      decrypt: (name, ciphertext) => c.call('Decrypt', { name, ciphertext }),
      getKey: (name) => c.call('GetKey', { name }),
      listKeys: () => c.call('ListKeys', {}),
      disable: (name) => c.call('DisableKey', { name }),
      destroy: (name) => c.call('DestroyKey', { name }),
      translate: (incoming, outgoing, pinBlock) =>
        c.callPayment('TranslatePin', { incoming: { keyName: incoming, format: 'ISO_FORMAT_0', pan: PAN }, outgoing: { keyName: outgoing, format: 'ISO_FORMAT_0' }, pinBlock }),
      addParticipantKey: (id, publicKeyPem) => c.callFspiop('AddParticipantKey', { id, publicKeyPem }),
      fspiopSign: (key, source) => c.callFspiop('Sign', { key, method: 'put', uri: '/transfers/1', source, body: Buffer.from(JSON.stringify({ note: MESSAGE })) }),
    };
  };

  const pinBlock = () => tdesEncrypt(zpkTdesMaterial, format0(PIN, PAN)).toString('hex').toUpperCase();

  it.each([['rest'], ['grpc']] as const)('%s: one record per audited call, with the caller, every key version and the outcome', async (which) => {
    const t = which === 'rest' ? rest() : grpc();
    const ec = `audit-ec-${t.name}`;
    const aes = `audit-aes-${t.name}`;
    const v = (name: string, version: number) => ({ name, version });
    await expectRecord(t.name, () => t.createKey(ec, 'EC_P256'), { operation: 'keys.create', outcome: 'ok', keys: [v(ec, 1)] });
    await expectRecord(t.name, () => t.createKey(ec, 'EC_P256'), { operation: 'keys.create', outcome: 'KEY_ALREADY_EXISTS', keys: [{ name: ec }] });
    const signed = await expectRecord(t.name, () => t.sign(ec), { operation: 'keys.sign', outcome: 'ok', keys: [v(ec, 1)] });
    await expectRecord(t.name, () => t.rotate(ec), { operation: 'keys.rotate', outcome: 'ok', keys: [v(ec, 2)] });
    await expectRecord(t.name, () => t.sign(ec), { operation: 'keys.sign', outcome: 'ok', keys: [v(ec, 2)] });
    await expectRecord(t.name, () => t.verify(ec, signed!.signature, 1), { operation: 'keys.verify', outcome: 'ok', keys: [v(ec, 1)] });
    await expectRecord(t.name, () => t.createKey(aes, 'AES_256', 'encrypt'), { operation: 'keys.create', outcome: 'ok', keys: [v(aes, 1)] });
    const encrypted = await expectRecord(t.name, () => t.encrypt(aes), { operation: 'keys.encrypt', outcome: 'ok', keys: [v(aes, 1)] });
    await expectRecord(t.name, () => t.decrypt(aes, encrypted!.ciphertext), { operation: 'keys.decrypt', outcome: 'ok', keys: [v(aes, 1)] });
    await expectRecord(t.name, () => t.getKey(`audit-missing-${t.name}`), { operation: 'keys.get', outcome: 'KEY_NOT_FOUND', keys: [{ name: `audit-missing-${t.name}` }] });
    await expectRecord(t.name, () => t.listKeys(), undefined);
    await expectRecord(t.name, () => t.sign(AUDIT_KEY), { operation: 'keys.sign', outcome: 'INVALID_ARGUMENT', keys: [{ name: AUDIT_KEY }] });
    await expectRecord(t.name, () => t.disable(AUDIT_KEY), { operation: 'keys.disable', outcome: 'INVALID_ARGUMENT', keys: [{ name: AUDIT_KEY }] });
    await expectRecord(t.name, () => t.translate(keys.zpkTdes, keys.zpkTdes2, pinBlock()), { operation: 'pin.translate', outcome: 'ok', keys: [v(keys.zpkTdes, 1), v(keys.zpkTdes2, 1)] });
    await expectRecord(t.name, () => t.translate(keys.zpkTdes, keys.macTdes, pinBlock()), { operation: 'pin.translate', outcome: 'INCOMPATIBLE_KEY', keys: [{ name: keys.zpkTdes }, { name: keys.macTdes }] });
    const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'pem', type: 'spki' }).toString();
    await expectRecord(t.name, () => t.addParticipantKey(`dfsp-${t.name}`, pem), { operation: 'fspiop.participants.write', outcome: 'ok', keys: [], participants: [`dfsp-${t.name}`] });
    await expectRecord(t.name, () => t.fspiopSign(ec, 'payerfsp'), { operation: 'fspiop.sign', outcome: 'ok', keys: [v(ec, 2)], participants: ['payerfsp'] });
    await expectRecord(t.name, () => t.disable(ec), { operation: 'keys.disable', outcome: 'ok', keys: [v(ec, 2)] });
    await expectRecord(t.name, () => t.destroy(ec), { operation: 'keys.destroy', outcome: 'ok', keys: [{ name: ec }] });
    // The audit key is still usable for checkpoints: no caller could disable it.
    expect((await env.keys.getKey(AUDIT_KEY)).state).toBe('enabled');
  });

  it('no plaintext, signature input, PIN block, PIN or PAN in the audit file or the logs', async () => {
    await svc.trail.flush();
    const audit = await readFile(env.auditFile, 'utf8');
    expect(audit.length).toBeGreaterThan(0);
    const block = pinBlock();
    const secrets = [PLAINTEXT, MESSAGE, PAN, block, block.toLowerCase(), Buffer.from(PLAINTEXT).toString('base64'), Buffer.from(MESSAGE).toString('base64'), Buffer.from(block, 'hex').toString('base64'), `"${PIN}"`];
    for (const secret of secrets) {
      expect(audit.includes(secret), `audit file holds ${secret}`).toBe(false);
      expect(svc.logText().includes(secret), `logs hold ${secret}`).toBe(false);
    }
  });
});
