/**
 * The access policy over both transports, for every declared operation: a caller the policy allows, a
 * caller with no rules, a caller allowed every operation but only on other keys and participants, and a
 * caller without credentials. Callers are bearer JWTs signed by a test key (JWK Set in a file). The same
 * well-formed request goes to every caller: the 403 of the caller without rules shows that it decoded and
 * reached the policy, so the allowed caller's answer (anything but 401/403, often KEY_NOT_FOUND since
 * the keys need not exist) shows that the policy let it through. Every call of the matrix leaves exactly
 * one audit record, with its operation, caller and outcome, when its operation is audited (it names a
 * key or participant, or changes state), and none otherwise. Then: the policy can't be bypassed through kids, whoami,
 * reloads.
 */
import { writeFileSync } from 'node:fs';
import { CompactEncrypt, CompactSign, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { permissionOf } from '../../src/api/declaration.js';
import { operations } from '../../src/api/operations/index.js';
import { isAudited } from '../../src/audit/stage.js';
import { operationRecordsIn, trailOptions } from '../audit/auditFixture.js';
import { capturedLogger, grpcCaller, startAccessServers, tempDir, tokenIssuer, writeJson, AUDIENCE, ISSUER, type AccessServers, type BackendName, type GrpcCaller, type GrpcServiceName, type TokenIssuer } from './accessSupport.js';

const policyText = `
principals:
  allowed: { jwtSubject: mx-allowed }
  other-keys: { jwtClaim: { roles: other-keys } }
  nobody: { jwtSubject: mx-nobody }
rules:
  - principal: allowed
    allow: ["*"]
    keys: ["mx-*"]
    participants: ["mxfsp*"]
  - principal: other-keys
    allow: ["*"]
    keys: ["zz-*"]
    participants: ["zzfsp"]
`;

const b64 = (text: string) => Buffer.from(text).toString('base64');
const pinSide = (keyName: string) => ({ keyName, format: 'ISO_FORMAT_0', pan: '4111111111111111' });

interface Cell {
  /** Names a key or participant (the other-keys caller is refused), or names none (it is allowed). */
  readonly bound: boolean;
  readonly rest: { method: 'GET' | 'POST' | 'PATCH' | 'DELETE'; url: string; body?: unknown };
  readonly grpc: { service: GrpcServiceName; method: string; request: Record<string, unknown> };
}

/** One well-formed request per operation; the JWS and JWE name their keys only by kid. */
function requests(jws: string, jwe: string): Record<string, Cell> {
  const k = (method: string, request: Record<string, unknown> = {}) => ({ service: 'KeyService' as const, method, request });
  const j = (method: string, request: Record<string, unknown> = {}) => ({ service: 'JoseService' as const, method, request });
  const f = (method: string, request: Record<string, unknown> = {}) => ({ service: 'FspiopService' as const, method, request });
  const p = (method: string, request: Record<string, unknown> = {}) => ({ service: 'PaymentService' as const, method, request });
  const named = { name: 'mx-key' };
  return {
    'keys.create': { bound: true, rest: { method: 'POST', url: '/v1/keys', body: { name: 'mx-new', type: 'EC_P256' } }, grpc: k('CreateKey', { name: 'mx-new', type: 'EC_P256' }) },
    'keys.list': { bound: false, rest: { method: 'GET', url: '/v1/keys' }, grpc: k('ListKeys') },
    'keys.get': { bound: true, rest: { method: 'GET', url: '/v1/keys/mx-key' }, grpc: k('GetKey', named) },
    'keys.rotate': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/rotate' }, grpc: k('RotateKey', named) },
    'keys.enable': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/enable' }, grpc: k('EnableKey', named) },
    'keys.disable': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/disable' }, grpc: k('DisableKey', named) },
    'keys.destroy': { bound: true, rest: { method: 'DELETE', url: '/v1/keys/mx-key' }, grpc: k('DestroyKey', named) },
    'keys.sign': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/sign', body: { message: b64('m') } }, grpc: k('Sign', { ...named, message: Buffer.from('m') }) },
    'keys.verify': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/verify', body: { message: b64('m'), signature: b64('s') } }, grpc: k('Verify', { ...named, message: Buffer.from('m'), signature: Buffer.from('s') }) },
    'keys.encrypt': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/encrypt', body: { plaintext: b64('p') } }, grpc: k('Encrypt', { ...named, plaintext: Buffer.from('p') }) },
    'keys.decrypt': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/decrypt', body: { ciphertext: b64('c') } }, grpc: k('Decrypt', { ...named, ciphertext: Buffer.from('c') }) },
    'keys.mac': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/mac', body: { data: b64('d') } }, grpc: k('GenerateMac', { ...named, data: Buffer.from('d') }) },
    'keys.verifyMac': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/mac/verify', body: { data: b64('d'), mac: b64('m') } }, grpc: k('VerifyMac', { ...named, data: Buffer.from('d'), mac: Buffer.from('m') }) },
    'system.random': { bound: false, rest: { method: 'POST', url: '/v1/random', body: { length: 16 } }, grpc: k('GenerateRandom', { length: 16 }) },
    'system.capabilities': { bound: false, rest: { method: 'GET', url: '/v1/capabilities' }, grpc: k('GetCapabilities') },
    'jws.sign': { bound: true, rest: { method: 'POST', url: '/v1/jws/sign', body: { key: 'mx-key', payload: b64('p') } }, grpc: j('SignJws', { key: 'mx-key', payload: Buffer.from('p') }) },
    'jws.verify': { bound: true, rest: { method: 'POST', url: '/v1/jws/verify', body: { jws } }, grpc: j('VerifyJws', { jws }) },
    'jwe.encrypt': {
      bound: true,
      rest: { method: 'POST', url: '/v1/jwe/encrypt', body: { recipient: { key: 'mx-key' }, alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext: b64('p') } },
      grpc: j('EncryptJwe', { key: 'mx-key', alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext: Buffer.from('p') }),
    },
    'jwe.decrypt': { bound: true, rest: { method: 'POST', url: '/v1/jwe/decrypt', body: { jwe } }, grpc: j('DecryptJwe', { jwe }) },
    'fspiop.sign': {
      bound: true,
      rest: { method: 'POST', url: '/v1/fspiop/sign', body: { key: 'mx-key', method: 'POST', uri: '/quotes', source: 'mxfsp1', destination: 'mxfsp2', body: '{}' } },
      grpc: f('Sign', { key: 'mx-key', method: 'POST', uri: '/quotes', source: 'mxfsp1', destination: 'mxfsp2', body: Buffer.from('{}') }),
    },
    'fspiop.validate': {
      bound: true,
      rest: { method: 'POST', url: '/v1/fspiop/validate', body: { headers: { 'fspiop-source': 'mxfsp1' }, body: '{}', decryptWith: 'mx-key' } },
      grpc: f('Validate', { headers: { 'fspiop-source': 'mxfsp1' }, body: Buffer.from('{}'), decryptWith: 'mx-key' }),
    },
    'fspiop.participants.list': { bound: false, rest: { method: 'GET', url: '/v1/fspiop/participants' }, grpc: f('ListParticipants') },
    'fspiop.participants.write': {
      bound: true,
      rest: { method: 'POST', url: '/v1/fspiop/participants', body: { id: 'mxfsp1', publicKeyPem: 'not a key' } },
      grpc: f('AddParticipantKey', { id: 'mxfsp1', publicKeyPem: 'not a key' }),
    },
    'fspiop.participants.get': { bound: true, rest: { method: 'GET', url: '/v1/fspiop/participants/mxfsp1/keys/k1' }, grpc: f('GetParticipantKey', { id: 'mxfsp1', keyId: 'k1' }) },
    'fspiop.participants.delete': { bound: true, rest: { method: 'DELETE', url: '/v1/fspiop/participants/mxfsp1/keys/k1' }, grpc: f('DeleteParticipantKey', { id: 'mxfsp1', keyId: 'k1' }) },
    'pin.translate': {
      bound: true,
      rest: { method: 'POST', url: '/v1/pin/translate', body: { incoming: pinSide('mx-pin-in'), outgoing: pinSide('mx-pin-out'), pinBlock: '0123456789ABCDEF' } },
      grpc: p('TranslatePin', { incoming: pinSide('mx-pin-in'), outgoing: pinSide('mx-pin-out'), pinBlock: '0123456789ABCDEF' }),
    },
    'pin.toJwe': {
      bound: true,
      rest: { method: 'POST', url: '/v1/pin/to-jwe', body: { incoming: pinSide('mx-pin-in'), pinBlock: '0123456789ABCDEF', recipient: { participant: 'mxfsp1' } } },
      grpc: p('PinToJwe', { incoming: pinSide('mx-pin-in'), pinBlock: '0123456789ABCDEF', participant: { participant: 'mxfsp1' } }),
    },
    'keys.importTr31': {
      bound: true,
      rest: { method: 'POST', url: '/v1/keys/import/tr31', body: { name: 'mx-imported', keyBlock: 'D0112P0AE00E0000ABCDEF', kbpk: { keyName: 'mx-kbpk' } } },
      grpc: p('ImportTr31', { name: 'mx-imported', keyBlock: 'D0112P0AE00E0000ABCDEF', kbpk: { keyName: 'mx-kbpk' } }),
    },
    'wrapping.getKey': { bound: false, rest: { method: 'GET', url: '/v1/wrapping-key' }, grpc: k('GetWrappingKey') },
    'wrapping.rotateKey': { bound: false, rest: { method: 'POST', url: '/v1/wrapping-key/rotate' }, grpc: k('RotateWrappingKey') },
    'keys.import': {
      bound: true,
      rest: { method: 'POST', url: '/v1/keys/import', body: { name: 'mx-imported', type: 'AES_256', wrappedKey: b64('w'.repeat(400)), wrapping: 'RSA_OAEP_SHA1_AES_KWP' } },
      grpc: k('ImportKey', { name: 'mx-imported', type: 'AES_256', wrappedKey: Buffer.from('w'.repeat(400)), wrapping: 'RSA_OAEP_SHA1_AES_KWP' }),
    },
    'keys.importVersion': {
      bound: true,
      rest: { method: 'POST', url: '/v1/keys/mx-key/import', body: { wrappedKey: b64('w'.repeat(400)), wrapping: 'RSA_OAEP_SHA1_AES_KWP' } },
      grpc: k('ImportKeyVersion', { ...named, wrappedKey: Buffer.from('w'.repeat(400)), wrapping: 'RSA_OAEP_SHA1_AES_KWP' }),
    },
    'ceremonies.create': {
      bound: true,
      rest: { method: 'POST', url: '/v1/ceremonies', body: { name: 'mx-zmk', type: 'TDES_2KEY', purpose: 'kbpk', components: 2 } },
      grpc: k('StartCeremony', { name: 'mx-zmk', type: 'TDES_2KEY', purpose: 'kbpk', components: 2 }),
    },
    'ceremonies.enterComponent': {
      bound: false,
      rest: { method: 'POST', url: `/v1/ceremonies/${'0'.repeat(32)}/components`, body: { component: '01'.repeat(16), kcv: '000000' } },
      grpc: k('EnterComponent', { id: '0'.repeat(32), component: '01'.repeat(16), kcv: '000000' }),
    },
    'ceremonies.get': { bound: false, rest: { method: 'GET', url: `/v1/ceremonies/${'0'.repeat(32)}` }, grpc: k('GetCeremony', { id: '0'.repeat(32) }) },
    'ceremonies.cancel': { bound: false, rest: { method: 'DELETE', url: `/v1/ceremonies/${'0'.repeat(32)}` }, grpc: k('CancelCeremony', { id: '0'.repeat(32) }) },
    // Issue 13: batches, each governed by its single operation's permission.
    'keys.signBatch': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/sign/batch', body: { items: [{ message: b64('m') }] } }, grpc: k('SignBatch', { ...named, items: [{ message: Buffer.from('m') }] }) },
    'keys.verifyBatch': {
      bound: true,
      rest: { method: 'POST', url: '/v1/keys/mx-key/verify/batch', body: { items: [{ message: b64('m'), signature: b64('s') }] } },
      grpc: k('VerifyBatch', { ...named, items: [{ message: Buffer.from('m'), signature: Buffer.from('s') }] }),
    },
    'keys.encryptBatch': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/encrypt/batch', body: { items: [{ plaintext: b64('p') }] } }, grpc: k('EncryptBatch', { ...named, items: [{ plaintext: Buffer.from('p') }] }) },
    'keys.decryptBatch': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/decrypt/batch', body: { items: [{ ciphertext: b64('c') }] } }, grpc: k('DecryptBatch', { ...named, items: [{ ciphertext: Buffer.from('c') }] }) },
    'keys.macBatch': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/mac/batch', body: { items: [{ data: b64('d') }] } }, grpc: k('GenerateMacBatch', { ...named, items: [{ data: Buffer.from('d') }] }) },
    'keys.verifyMacBatch': {
      bound: true,
      rest: { method: 'POST', url: '/v1/keys/mx-key/mac/verify/batch', body: { items: [{ data: b64('d'), mac: b64('m') }] } },
      grpc: k('VerifyMacBatch', { ...named, items: [{ data: Buffer.from('d'), mac: Buffer.from('m') }] }),
    },
    'fspiop.signBatch': {
      bound: true,
      rest: { method: 'POST', url: '/v1/fspiop/sign/batch', body: { items: [{ key: 'mx-key', method: 'POST', uri: '/quotes', source: 'mxfsp1', destination: 'mxfsp2', body: '{}' }] } },
      grpc: f('SignBatch', { items: [{ key: 'mx-key', method: 'POST', uri: '/quotes', source: 'mxfsp1', destination: 'mxfsp2', body: Buffer.from('{}') }] }),
    },
    'fspiop.validateBatch': {
      bound: true,
      rest: { method: 'POST', url: '/v1/fspiop/validate/batch', body: { items: [{ headers: { 'fspiop-source': 'mxfsp1' }, body: '{}', decryptWith: 'mx-key' }] } },
      grpc: f('ValidateBatch', { items: [{ headers: { 'fspiop-source': 'mxfsp1' }, body: Buffer.from('{}'), decryptWith: 'mx-key' }] }),
    },
    'keys.update': { bound: true, rest: { method: 'PATCH', url: '/v1/keys/mx-key', body: { minDecryptionVersion: 1 } }, grpc: k('UpdateKey', { ...named, minDecryptionVersion: 1 }) },
    'keys.trim': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/trim' }, grpc: k('TrimKey', named) },
    'keys.datakey': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/datakey', body: { bits: 256 } }, grpc: k('GenerateDataKey', { ...named, bits: 256 }) },
    'keys.rewrap': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/rewrap', body: { ciphertext: b64('c') } }, grpc: k('Rewrap', { ...named, ciphertext: Buffer.from('c') }) },
    'keys.datakeyBatch': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/datakey/batch', body: { items: [{ bits: 256 }] } }, grpc: k('GenerateDataKeyBatch', { ...named, items: [{ bits: 256 }] }) },
    'keys.rewrapBatch': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/rewrap/batch', body: { items: [{ ciphertext: b64('c') }] } }, grpc: k('RewrapBatch', { ...named, items: [{ ciphertext: Buffer.from('c') }] }) },
    'keys.tokenize': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/tokenize', body: { values: ['v'], context: 'c' } }, grpc: k('Tokenize', { ...named, values: ['v'], context: 'c' }) },
    'keys.fpeEncrypt': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/fpe/encrypt', body: { values: ['0123456789'], radix: 10 } }, grpc: k('FpeEncrypt', { ...named, values: ['0123456789'], radix: 10 }) },
    'keys.fpeDecrypt': { bound: true, rest: { method: 'POST', url: '/v1/keys/mx-key/fpe/decrypt', body: { values: ['0123456789'], radix: 10 } }, grpc: k('FpeDecrypt', { ...named, values: ['0123456789'], radix: 10 }) },
    'keys.exportTr31': {
      bound: true,
      rest: { method: 'POST', url: '/v1/keys/mx-key/export/tr31', body: { kbpk: { keyName: 'mx-kbpk' } } },
      grpc: p('ExportTr31', { name: 'mx-key', kbpk: { keyName: 'mx-kbpk' } }),
    },
  };
}

const files = tempDir();
let issuer: TokenIssuer;
let servers: AccessServers;
let grpc: GrpcCaller;
let log: ReturnType<typeof capturedLogger>;
let cells: Record<string, Cell>;
const tokens: Record<'allowed' | 'nobody' | 'otherKeys', string> = { allowed: '', nobody: '', otherKeys: '' };
/** Every cell checked, for the README's figure. */
let checkedCells = 0;
/** Audit records checked against the cell that left them. */
let checkedRecords = 0;

type Answer = { status: number; code?: string; message?: string; body?: any };

interface Target {
  readonly backend: BackendName;
  readonly servers: AccessServers;
  readonly grpc: GrpcCaller;
  readonly auditFile: string;
}
/** The matrix runs on each backend: the software one, and SoftHSM. */
const targets: Target[] = [];

async function viaRest(target: Target, cell: Cell, token?: string, requestId?: string): Promise<Answer> {
  const r = await target.servers.rest.inject({
    method: cell.rest.method,
    url: cell.rest.url,
    ...(cell.rest.body === undefined ? {} : { payload: cell.rest.body as object }),
    headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(requestId === undefined ? {} : { 'x-request-id': requestId }) },
  });
  const body = r.body === '' ? undefined : JSON.parse(r.body);
  return { status: r.statusCode, code: body?.error?.code, message: body?.error?.message, body };
}

async function viaGrpc(target: Target, cell: Cell, token?: string, requestId?: string): Promise<Answer> {
  const r = await target.grpc.call(cell.grpc.service, cell.grpc.method, cell.grpc.request, token, requestId);
  return { status: r.status, ...(r.code === undefined ? {} : { code: r.code }), ...(r.message === undefined ? {} : { message: r.message }), body: r.answer };
}

const transports = [
  { name: 'REST', wire: 'rest', call: viaRest, denied: 403, unauthenticated: 401 },
  { name: 'gRPC', wire: 'grpc', call: viaGrpc, denied: 7, unauthenticated: 16 },
] as const;

/** The operation records of a target's audit trail, once every queued record is written. */
const operationRecords = (target: Target) => operationRecordsIn(target.servers.audit!.trail, target.auditFile);

/** What one call of the matrix must have left in the trail. */
interface Expected {
  readonly requestId: string;
  readonly operation: string;
  readonly caller: { id: string; authenticatedBy: string };
  readonly outcome: string;
  /** Whether its operation is audited: it names a key or participant, or changes state (src/audit/stage.ts isAudited). */
  readonly audited: boolean;
}

beforeAll(async () => {
  issuer = await tokenIssuer();
  writeJson(files.at('jwks.json'), issuer.jwks);
  writeFileSync(files.at('policy.yaml'), policyText);
  log = capturedLogger();
  const access = { policyFile: files.at('policy.yaml'), allowUnauthenticated: false, jwt: { jwksFile: files.at('jwks.json'), jwksCacheSeconds: 300, issuer: ISSUER, audience: AUDIENCE, algorithms: ['ES256'], clockToleranceSeconds: 30 } };
  // The trails are written when the test flushes them, not on a timer: the test reads them after each run.
  servers = await startAccessServers(access, log.logger, undefined, 'software', trailOptions(files.at('audit-software.jsonl')));
  grpc = grpcCaller(servers.grpc.port);
  targets.push({ backend: 'software', servers, grpc, auditFile: files.at('audit-software.jsonl') });
  const softhsm = await startAccessServers(access, capturedLogger().logger, undefined, 'SoftHSM', trailOptions(files.at('audit-softhsm.jsonl')));
  targets.push({ backend: 'SoftHSM', servers: softhsm, grpc: grpcCaller(softhsm.grpc.port), auditFile: files.at('audit-softhsm.jsonl') });
  tokens.allowed = await issuer.token('mx-allowed');
  tokens.nobody = await issuer.token('mx-nobody');
  tokens.otherKeys = await issuer.token('someone', { roles: ['other-keys', 'unrelated'] });
  // A JWS and a JWE that name the key mx-key only through their kid.
  const ec = await generateKeyPair('ES256');
  const jws = await new CompactSign(Buffer.from('payload')).setProtectedHeader({ alg: 'ES256', kid: 'mx-key:1' }).sign(ec.privateKey);
  const rsa = await generateKeyPair('RSA-OAEP-256');
  const jwe = await new CompactEncrypt(Buffer.from('secret')).setProtectedHeader({ alg: 'RSA-OAEP-256', enc: 'A256GCM', kid: 'mx-key:1' }).encrypt(rsa.publicKey);
  cells = requests(jws, jwe);
}, 60_000);

afterAll(async () => {
  for (const t of targets) {
    t.grpc.close();
    await t.servers.close();
  }
  files.remove();
  // The figure the README reports.
  console.log(`policy matrix: ${checkedCells} cells; ${checkedRecords} audit records checked`);
});

describe('the policy matrix: every declared operation, on REST and gRPC, on the software backend and SoftHSM', () => {
  it('has a request for every operation the policy governs', () => {
    const governed = operations.filter((op) => op.access === undefined).map((op) => op.name);
    expect(Object.keys(cells).sort()).toEqual(governed.sort());
  });

  for (const transport of transports) {
    it.each(['software', 'SoftHSM'] as const)(`${transport.name} on %s: each caller gets what the policy says, and each call leaves its audit record`, async (backend) => {
      const target = targets.find((t) => t.backend === backend)!;
      const recordsBefore = (await operationRecords(target)).length;
      const expected: Expected[] = [];
      /** Calls `cell` as a caller with a request id of its own, and notes the record it must leave. */
      const call = async (name: string, cell: Cell, as: string, caller: Expected['caller'], token?: string): Promise<Answer> => {
        const requestId = `mx-${backend}-${transport.wire}-${name}-${as}`;
        const answer = await transport.call(target, cell, token, requestId);
        const failed = transport.wire === 'rest' ? answer.status >= 400 : answer.status !== 0;
        expect(failed ? answer.code : 'ok', `${requestId}: the error code of status ${answer.status}`).toBeDefined();
        expected.push({ requestId, operation: name, caller, outcome: failed ? answer.code! : 'ok', audited: isAudited(operations.find((op) => op.name === name)!) });
        return answer;
      };
      const byToken = (id: string) => ({ id, authenticatedBy: 'token' });
      for (const [name, cell] of Object.entries(cells)) {
        const nobody = await call(name, cell, 'nobody', byToken('mx-nobody'), tokens.nobody);
        expect({ op: name, status: nobody.status, code: nobody.code }).toEqual({ op: name, status: transport.denied, code: 'PERMISSION_DENIED' });
        expect(nobody.message, name).toContain(permissionOf(operations.find((op) => op.name === name)!));

        const allowed = await call(name, cell, 'allowed', byToken('mx-allowed'), tokens.allowed);
        expect(['PERMISSION_DENIED', 'UNAUTHENTICATED'], `${name}: ${allowed.message}`).not.toContain(allowed.code);
        expect([transport.denied, transport.unauthenticated], name).not.toContain(allowed.status);

        const other = await call(name, cell, 'other-keys', byToken('someone'), tokens.otherKeys);
        if (cell.bound) {
          expect({ op: name, code: other.code }).toEqual({ op: name, code: 'PERMISSION_DENIED' });
          // It names the key or participant refused, and nothing about the rules.
          expect(other.message, name).toMatch(/on key "mx-[a-z-]+"|for participant "mxfsp\d"/);
          expect(other.message, name).not.toMatch(/zz|other-keys|rule/);
        } else {
          expect(['PERMISSION_DENIED', 'UNAUTHENTICATED'], `${name}: ${other.message}`).not.toContain(other.code);
        }

        // Refused before its request is read, so the record names no key: the caller is anonymous.
        const anonymous = await call(name, cell, 'anonymous', { id: 'anonymous', authenticatedBy: 'none' });
        expect({ op: name, status: anonymous.status, code: anonymous.code, message: anonymous.message }).toEqual({ op: name, status: transport.unauthenticated, code: 'UNAUTHENTICATED', message: 'credentials missing' });
        checkedCells += 4;
      }

      // Exactly one record per audited call, with its operation, caller and outcome; none for the others,
      // and no record that no call of this run explains.
      const records = (await operationRecords(target)).slice(recordsBefore);
      for (const call of expected) {
        const mine = records.filter((r) => r.requestId === call.requestId);
        if (!call.audited) {
          expect(mine, call.requestId).toEqual([]);
          continue;
        }
        expect(mine.length, call.requestId).toBe(1);
        expect({ requestId: call.requestId, transport: mine[0]!.transport, operation: mine[0]!.operation, caller: mine[0]!.caller, outcome: mine[0]!.outcome }).toEqual({
          requestId: call.requestId,
          transport: transport.wire,
          operation: call.operation,
          caller: call.caller,
          outcome: call.outcome,
        });
        checkedRecords++;
      }
      expect(records.length).toBe(expected.filter((c) => c.audited).length);
    }, 180_000);

    it(`${transport.name}: whoami needs only credentials; the JWKS needs none`, async () => {
      const whoami: Cell = { bound: false, rest: { method: 'GET', url: '/v1/whoami' }, grpc: { service: 'KeyService', method: 'WhoAmI', request: {} } };
      const jwks: Cell = { bound: false, rest: { method: 'GET', url: '/.well-known/jwks.json' }, grpc: { service: 'JoseService', method: 'GetJwks', request: {} } };
      const target = targets[0]!;
      for (const token of Object.values(tokens)) {
        expect((await transport.call(target, whoami, token)).status).toBe(transport.name === 'REST' ? 200 : 0);
        expect((await transport.call(target, jwks, token)).status).toBe(transport.name === 'REST' ? 200 : 0);
      }
      expect((await transport.call(target, whoami)).code).toBe('UNAUTHENTICATED');
      expect((await transport.call(target, jwks)).status).toBe(transport.name === 'REST' ? 200 : 0);
      checkedCells += 8;
    });
  }
});

describe('the policy on real keys', () => {
  const rest = async (method: 'GET' | 'POST', url: string, token: string, body?: unknown): Promise<Answer> => {
    const r = await servers.rest.inject({ method, url, ...(body === undefined ? {} : { payload: body as object }), headers: { authorization: `Bearer ${token}` } });
    const parsed = r.body === '' ? undefined : JSON.parse(r.body);
    return { status: r.statusCode, code: parsed?.error?.code, message: parsed?.error?.message, body: parsed };
  };

  it('an allowed caller signs, and a JWS verified without "key" is authorized on the key its kid names', async () => {
    await servers.service.createKey({ name: 'mx-signer', type: 'EC_P256' });
    await servers.service.createKey({ name: 'zz-signer', type: 'EC_P256' });
    const signed = await rest('POST', '/v1/jws/sign', tokens.allowed, { key: 'mx-signer', payload: b64('hello') });
    expect(signed.status).toBe(200);
    expect((await rest('POST', '/v1/jws/verify', tokens.allowed, { jws: signed.body.jws })).body).toMatchObject({ valid: true, keyName: 'mx-signer' });
    // The other-keys caller may verify with zz-* keys only: the kid names mx-signer, so it is refused ...
    const refused = await rest('POST', '/v1/jws/verify', tokens.otherKeys, { jws: signed.body.jws });
    expect({ status: refused.status, message: refused.message }).toEqual({ status: 403, message: 'permission denied: jws.verify on key "mx-signer"' });
    // ... and naming a key it may use does not reach mx-signer either: the service then uses that key only.
    const own = await rest('POST', '/v1/jws/verify', tokens.otherKeys, { jws: signed.body.jws, key: 'zz-signer' });
    expect(own.status).toBe(400);
    expect(own.body).not.toHaveProperty('valid');
  });

  it('a JWE decrypted without "key" is authorized on every key its recipients\' kids name', async () => {
    await servers.service.createKey({ name: 'mx-rsa', type: 'RSA_2048', purpose: 'encrypt' });
    const encrypted = await rest('POST', '/v1/jwe/encrypt', tokens.allowed, { recipient: { key: 'mx-rsa' }, alg: 'RSA-OAEP-256', enc: 'A256GCM', plaintext: b64('otp 123456') });
    expect(encrypted.status).toBe(200);
    expect(Buffer.from((await rest('POST', '/v1/jwe/decrypt', tokens.allowed, { jwe: encrypted.body.jwe })).body.plaintext, 'base64').toString()).toBe('otp 123456');
    const refused = await rest('POST', '/v1/jwe/decrypt', tokens.otherKeys, { jwe: encrypted.body.jwe });
    expect({ status: refused.status, message: refused.message }).toEqual({ status: 403, message: 'permission denied: jwe.decrypt on key "mx-rsa"' });
    expect(JSON.stringify(refused.body)).not.toContain('otp');
  });

  it('PIN translation needs both keys: one key of the caller\'s is not enough', async () => {
    const body = { incoming: pinSide('mx-pin-in'), outgoing: pinSide('zz-pin-out'), pinBlock: '0123456789ABCDEF' };
    const r1 = await rest('POST', '/v1/pin/translate', tokens.allowed, body);
    expect({ status: r1.status, message: r1.message }).toEqual({ status: 403, message: 'permission denied: pin.translate on key "zz-pin-out"' });
    const r2 = await rest('POST', '/v1/pin/translate', tokens.otherKeys, body);
    expect({ status: r2.status, message: r2.message }).toEqual({ status: 403, message: 'permission denied: pin.translate on key "mx-pin-in"' });
  });

  it('OTP to JWE needs the incoming key and the recipient key or participant', async () => {
    const toKey = { incoming: pinSide('mx-pin-in'), pinBlock: '0123456789ABCDEF', recipient: { key: 'zz-rsa' } };
    expect((await rest('POST', '/v1/pin/to-jwe', tokens.allowed, toKey)).message).toBe('permission denied: pin.toJwe on key "zz-rsa"');
    const toParticipant = { incoming: pinSide('mx-pin-in'), pinBlock: '0123456789ABCDEF', recipient: { participant: 'zzfsp' } };
    expect((await rest('POST', '/v1/pin/to-jwe', tokens.allowed, toParticipant)).message).toBe('permission denied: pin.toJwe for participant "zzfsp"');
  });

  it('whoami answers the caller\'s identity and its rules, on both transports', async () => {
    const r = await rest('GET', '/v1/whoami', tokens.otherKeys);
    expect(r.body).toEqual({
      id: 'someone',
      authenticatedBy: 'token',
      certSans: [],
      jwtClaims: expect.objectContaining({ sub: 'someone', iss: ISSUER, aud: AUDIENCE, roles: ['other-keys', 'unrelated'] }),
      policy: true,
      principals: ['other-keys'],
      rules: [{ principal: 'other-keys', allow: ['*'], keys: ['zz-*'], participants: ['zzfsp'] }],
    });
    const g = await grpc.call('KeyService', 'WhoAmI', {}, tokens.nobody);
    expect(g.answer).toMatchObject({ id: 'mx-nobody', authenticatedBy: 'token', policy: true, principals: ['nobody'], rules: [] });
    expect(JSON.parse(g.answer!.jwtClaims)).toMatchObject({ sub: 'mx-nobody' });
  });
});

describe('policy reload', () => {
  const sign = async (token: string) => (await servers.rest.inject({ method: 'POST', url: '/v1/keys/mx-signer/sign', payload: { message: b64('m') }, headers: { authorization: `Bearer ${token}` } })).statusCode;
  /** Waits for the watcher or the poll to see the file (no timing is asserted: only the end state). */
  const until = async (condition: () => Promise<boolean> | boolean) => {
    for (let i = 0; i < 200 && !(await condition()); i++) await new Promise((r) => setTimeout(r, 50));
  };

  it('a valid new file takes effect; an invalid one is refused with a log line and the old policy stays', async () => {
    const freshNobody = await issuer.token('mx-nobody');
    expect(await sign(freshNobody)).toBe(403);
    writeFileSync(files.at('policy.yaml'), `${policyText}\n  - principal: nobody\n    allow: [keys.sign]\n    keys: ["mx-signer"]\n`);
    await until(async () => (await sign(freshNobody)) === 200);
    expect(await sign(freshNobody)).toBe(200);
    expect(await sign(tokens.allowed)).toBe(200);

    // An operation that does not exist: the whole file is refused.
    writeFileSync(files.at('policy.yaml'), `${policyText}\n  - principal: nobody\n    allow: [keys.sgin]\n    keys: ["*"]\n`);
    await until(() => log.lines().some((l) => String(l.msg).includes('policy file is refused')));
    const refusal = log.lines().find((l) => String(l.msg).includes('policy file is refused'))!;
    expect(refusal).toMatchObject({ level: 50, reason: expect.stringContaining('"keys.sgin" matches no operation') });
    expect(await sign(freshNobody)).toBe(200);
    expect(servers.stages.policy!.reload('test')).toBe(false);

    // Not YAML at all: refused too; the policy before it is still in force.
    writeFileSync(files.at('policy.yaml'), 'rules: [unclosed');
    expect(servers.stages.policy!.reload('test')).toBe(false);
    expect(await sign(freshNobody)).toBe(200);
    expect(await sign(tokens.otherKeys)).toBe(403);
  });
});
