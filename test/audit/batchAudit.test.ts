/**
 * Batch operations (issue #13) under an access policy and a file audit trail, over REST and gRPC, on the
 * software backend and on SoftHSM: a batch needs the single operation's permission (keys.sign for
 * keys.signBatch), is refused as a whole when the policy denies its key or any FSPIOP item's participant,
 * and leaves exactly one audit record per request, named after the batch, with the caller, the key(s),
 * the outcome and the item counts (items, succeeded, failed; valid/invalid for verify-like batches;
 * errorCodes and failedItems when some failed), and never an input value.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OperationRecord } from '../../src/audit/record.js';
import { publicPemOf } from '../fspiop/support.js';
import { capturedLogger, grpcCaller, startAccessServers, tempDir, tokenIssuer, writeJson, AUDIENCE, ISSUER, type AccessServers, type BackendName, type GrpcCaller, type TokenIssuer } from '../identity/accessSupport.js';
import { toRest, type Item } from '../transports/batchFixture.js';
import { operationRecordsIn, trailOptions } from './auditFixture.js';

const policyText = `
principals:
  signer: { jwtSubject: b-signer }
  verifier: { jwtSubject: b-verifier }
  fsp: { jwtSubject: b-fsp }
rules:
  - principal: signer
    allow: [keys.sign, keys.verify, keys.encrypt, keys.decrypt, keys.mac, keys.verifyMac]
    keys: ["b-*"]
  - principal: verifier
    allow: [keys.verify]
    keys: ["b-*"]
  - principal: fsp
    allow: [fspiop.sign, fspiop.validate]
    keys: ["b-*"]
    participants: ["bfsp*"]
`;

/** Input values that must never reach the trail (nor their base64). */
const SECRET_MESSAGE = 'batch-audit signature input 61c0';
const SECRET_PLAINTEXT = 'batch-audit plaintext 7e2a';
const secrets = [SECRET_MESSAGE, SECRET_PLAINTEXT].flatMap((s) => [s, Buffer.from(s).toString('base64')]);

type KeyRpc = 'SignBatch' | 'VerifyBatch' | 'EncryptBatch' | 'DecryptBatch' | 'GenerateMacBatch' | 'VerifyMacBatch';
const restPath: Record<KeyRpc, string> = { SignBatch: 'sign', VerifyBatch: 'verify', EncryptBatch: 'encrypt', DecryptBatch: 'decrypt', GenerateMacBatch: 'mac', VerifyMacBatch: 'mac/verify' };

interface Answer {
  /** HTTP status, or gRPC status (0: OK). */
  readonly status: number;
  readonly code?: string;
  readonly message?: string;
  readonly results?: any[];
}

interface Target {
  readonly backend: BackendName;
  readonly servers: AccessServers;
  readonly grpc: GrpcCaller;
  readonly auditFile: string;
}

const files = tempDir();
const targets: Target[] = [];
let issuer: TokenIssuer;
const tokens = { signer: '', verifier: '', fsp: '' };
let seq = 0;

beforeAll(async () => {
  issuer = await tokenIssuer();
  writeJson(files.at('jwks.json'), issuer.jwks);
  writeFileSync(files.at('policy.yaml'), policyText);
  const access = { policyFile: files.at('policy.yaml'), allowUnauthenticated: false, jwt: { jwksFile: files.at('jwks.json'), jwksCacheSeconds: 300, issuer: ISSUER, audience: AUDIENCE, algorithms: ['ES256'], clockToleranceSeconds: 30 } };
  for (const backend of ['software', 'SoftHSM'] as const) {
    const auditFile = files.at(`audit-${backend}.jsonl`);
    const servers = await startAccessServers(access, capturedLogger().logger, undefined, backend, trailOptions(auditFile));
    for (const [name, type] of [['b-ec', 'EC_P256'], ['b-rsa', 'RSA_2048'], ['b-aes', 'AES_256'], ['b-hmac', 'HMAC_256'], ['zz-ec', 'EC_P256']] as const) {
      await servers.service.createKey({ name, type });
    }
    await servers.participants.addKey('bfsp-es', await publicPemOf(servers.service, 'b-ec'));
    await servers.participants.addKey('bfsp-rs', await publicPemOf(servers.service, 'b-rsa'));
    targets.push({ backend, servers, grpc: grpcCaller(servers.grpc.port), auditFile });
  }
  tokens.signer = await issuer.token('b-signer');
  tokens.verifier = await issuer.token('b-verifier');
  tokens.fsp = await issuer.token('b-fsp');
}, 120_000);

afterAll(async () => {
  for (const t of targets) {
    t.grpc.close();
    await t.servers.close();
  }
  files.remove();
});

const operationRecords = (target: Target) => operationRecordsIn(target.servers.audit!.trail, target.auditFile);

for (const wire of ['rest', 'grpc'] as const) {
  describe.each(['software', 'SoftHSM'] as const)(`batches over ${wire === 'rest' ? 'REST' : 'gRPC'} on %s, with a policy and an audit trail`, (backend) => {
    const target = () => targets.find((t) => t.backend === backend)!;

    /** A batch on a key of ours, with a request id of its own; its answer and the one record it left. */
    async function keyBatch(rpc: KeyRpc, name: string, items: readonly Item[], token?: string): Promise<{ answer: Answer; record: OperationRecord }> {
      const requestId = `batch-${backend}-${wire}-${seq++}`;
      let answer: Answer;
      if (wire === 'rest') {
        const r = await target().servers.rest.inject({
          method: 'POST',
          url: `/v1/keys/${name}/${restPath[rpc]}/batch`,
          payload: { items: items.map(toRest) },
          headers: { 'x-request-id': requestId, ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
        });
        const body = JSON.parse(r.body);
        answer = { status: r.statusCode, code: body.error?.code, message: body.error?.message, results: body.results };
      } else {
        const r = await target().grpc.call('KeyService', rpc, { name, items }, token, requestId);
        answer = { status: r.status, ...(r.code === undefined ? {} : { code: r.code }), ...(r.message === undefined ? {} : { message: r.message }), results: r.answer?.results };
      }
      return { answer, record: await onlyRecord(requestId) };
    }

    async function fspiopBatch(op: 'sign' | 'validate', items: ReadonlyArray<Record<string, unknown> & { body: string }>, token: string): Promise<{ answer: Answer; record: OperationRecord }> {
      const requestId = `batch-${backend}-${wire}-${seq++}`;
      let answer: Answer;
      if (wire === 'rest') {
        const r = await target().servers.rest.inject({ method: 'POST', url: `/v1/fspiop/${op}/batch`, payload: { items }, headers: { 'x-request-id': requestId, authorization: `Bearer ${token}` } });
        const body = JSON.parse(r.body);
        answer = { status: r.statusCode, code: body.error?.code, message: body.error?.message, results: body.results };
      } else {
        const grpcItems = items.map((i) => ({ ...i, body: Buffer.from(i.body) }));
        const r = await target().grpc.call('FspiopService', op === 'sign' ? 'SignBatch' : 'ValidateBatch', { items: grpcItems }, token, requestId);
        answer = { status: r.status, ...(r.code === undefined ? {} : { code: r.code }), ...(r.message === undefined ? {} : { message: r.message }), results: r.answer?.results };
      }
      return { answer, record: await onlyRecord(requestId) };
    }

    async function onlyRecord(requestId: string): Promise<OperationRecord> {
      const mine = (await operationRecords(target())).filter((r) => r.requestId === requestId);
      expect(mine, `exactly one audit record for ${requestId}`).toHaveLength(1);
      return mine[0]!;
    }

    const okStatus = wire === 'rest' ? 200 : 0;
    const denied = wire === 'rest' ? 403 : 7;
    const byToken = (id: string) => ({ id, authenticatedBy: 'token' });
    const namesOf = (record: OperationRecord) => record.keys.map((k) => k.name).sort();
    const m = (text: string) => Buffer.from(text);

    it('sign batch: allowed by keys.sign; one record keys.signBatch with the counts, the error codes and the failed items', async () => {
      const items: Item[] = [
        { message: m(`${SECRET_MESSAGE} 0`) },
        {},
        { message: m(`${SECRET_MESSAGE} 2`) },
        { algorithm: 'XS999', message: m(`${SECRET_MESSAGE} 3`) },
        {},
      ];
      const { answer, record } = await keyBatch('SignBatch', 'b-ec', items, tokens.signer);
      expect(answer.status).toBe(okStatus);
      expect(answer.results).toHaveLength(5);
      expect(record).toMatchObject({ operation: 'keys.signBatch', outcome: 'ok', transport: wire, caller: byToken('b-signer') });
      expect(namesOf(record)).toEqual(['b-ec']);
      expect(record.details).toEqual({
        items: 5,
        succeeded: 2,
        failed: 3,
        errorCodes: 'INVALID_ARGUMENT:2,UNSUPPORTED_ALGORITHM:1',
        failedItems: '1:INVALID_ARGUMENT,3:UNSUPPORTED_ALGORITHM,4:INVALID_ARGUMENT',
      });
    });

    it('verify and mac-verify batches count valid and invalid results; a batch where nothing failed has no errorCodes or failedItems', async () => {
      const messages = [0, 1, 2].map((i) => m(`${SECRET_MESSAGE} v${i}`));
      const signed = await keyBatch('SignBatch', 'b-ec', messages.map((message) => ({ message })), tokens.signer);
      expect(signed.record.details).toEqual({ items: 3, succeeded: 3, failed: 0 });
      const signatures = signed.answer.results!.map((r) => (wire === 'rest' ? Buffer.from(r.signature, 'base64') : (r.ok.signature as Buffer)));

      // The verifier may verify (keys.verify) but not sign.
      const verify = await keyBatch('VerifyBatch', 'b-ec', [
        { message: messages[0], signature: signatures[0] },
        { message: messages[1], signature: signatures[0] },
        { message: messages[2], signature: signatures[2] },
        { algorithm: 'XS999', message: messages[2], signature: signatures[2] },
      ], tokens.verifier);
      expect(verify.answer.status).toBe(okStatus);
      expect(verify.record).toMatchObject({ operation: 'keys.verifyBatch', outcome: 'ok', caller: byToken('b-verifier') });
      expect(verify.record.details).toEqual({ items: 4, succeeded: 3, failed: 1, valid: 2, invalid: 1, errorCodes: 'UNSUPPORTED_ALGORITHM:1', failedItems: '3:UNSUPPORTED_ALGORITHM' });

      const data = [0, 1, 2].map((i) => m(`mac data ${i}`));
      const macs = await keyBatch('GenerateMacBatch', 'b-hmac', data.map((d) => ({ data: d })), tokens.signer);
      expect(macs.record).toMatchObject({ operation: 'keys.macBatch', outcome: 'ok' });
      expect(macs.record.details).toEqual({ items: 3, succeeded: 3, failed: 0 });
      const macOf = (r: any) => (wire === 'rest' ? Buffer.from(r.mac, 'base64') : (r.ok.mac as Buffer));
      const macList = macs.answer.results!.map(macOf);
      const checks = [{ data: data[0], mac: macList[0] }, { data: data[1], mac: macList[2] }, { data: data[2], mac: macList[0] }];
      const checked = await keyBatch('VerifyMacBatch', 'b-hmac', checks, tokens.signer);
      expect(checked.record).toMatchObject({ operation: 'keys.verifyMacBatch', outcome: 'ok' });
      expect(checked.record.details).toEqual({ items: 3, succeeded: 3, failed: 0, valid: 1, invalid: 2 });
    });

    it('encrypt and decrypt batches: a tampered ciphertext is a failed item of the decrypt record', async () => {
      const encrypted = await keyBatch('EncryptBatch', 'b-aes', [0, 1, 2].map((i) => ({ plaintext: m(`${SECRET_PLAINTEXT} ${i}`) })), tokens.signer);
      expect(encrypted.record).toMatchObject({ operation: 'keys.encryptBatch', outcome: 'ok' });
      expect(encrypted.record.details).toEqual({ items: 3, succeeded: 3, failed: 0 });
      const ciphertexts = encrypted.answer.results!.map((r) => (wire === 'rest' ? Buffer.from(r.ciphertext, 'base64') : Buffer.from(r.ok.ciphertext as Buffer)));
      const tampered = ciphertexts[1]!;
      tampered[tampered.length - 1] = (tampered[tampered.length - 1] as number) ^ 0x01;
      const decrypted = await keyBatch('DecryptBatch', 'b-aes', ciphertexts.map((ciphertext) => ({ ciphertext })), tokens.signer);
      expect(decrypted.answer.status).toBe(okStatus);
      expect(decrypted.record).toMatchObject({ operation: 'keys.decryptBatch', outcome: 'ok', caller: byToken('b-signer') });
      expect(namesOf(decrypted.record)).toEqual(['b-aes']);
      expect(decrypted.record.details).toEqual({ items: 3, succeeded: 2, failed: 1, errorCodes: 'DECRYPTION_FAILED:1', failedItems: '1:DECRYPTION_FAILED' });
    });

    it('refused as a whole, with one record each: a permission the caller lacks, a key outside its rules, no credentials, an unknown key', async () => {
      const items = [{ message: m(`${SECRET_MESSAGE} r`) }, { message: m(`${SECRET_MESSAGE} s`) }];
      const lacking = await keyBatch('SignBatch', 'b-ec', items, tokens.verifier);
      expect({ status: lacking.answer.status, code: lacking.answer.code, results: lacking.answer.results }).toEqual({ status: denied, code: 'PERMISSION_DENIED', results: undefined });
      // The permission named is the single operation's.
      expect(lacking.answer.message).toMatch(/keys\.sign\b/);
      expect(lacking.record).toMatchObject({ operation: 'keys.signBatch', outcome: 'PERMISSION_DENIED', caller: byToken('b-verifier') });

      const otherKey = await keyBatch('SignBatch', 'zz-ec', items, tokens.signer);
      expect({ status: otherKey.answer.status, code: otherKey.answer.code }).toEqual({ status: denied, code: 'PERMISSION_DENIED' });
      expect(otherKey.answer.message).toContain('"zz-ec"');
      expect(otherKey.record).toMatchObject({ operation: 'keys.signBatch', outcome: 'PERMISSION_DENIED' });

      const anonymous = await keyBatch('SignBatch', 'b-ec', items);
      expect({ status: anonymous.answer.status, code: anonymous.answer.code }).toEqual({ status: wire === 'rest' ? 401 : 16, code: 'UNAUTHENTICATED' });
      expect(anonymous.record).toMatchObject({ operation: 'keys.signBatch', outcome: 'UNAUTHENTICATED', caller: { id: 'anonymous', authenticatedBy: 'none' } });

      const missing = await keyBatch('SignBatch', 'b-missing', items, tokens.signer);
      expect({ status: missing.answer.status, code: missing.answer.code }).toEqual({ status: wire === 'rest' ? 404 : 5, code: 'KEY_NOT_FOUND' });
      expect(missing.record).toMatchObject({ operation: 'keys.signBatch', outcome: 'KEY_NOT_FOUND', caller: byToken('b-signer') });
      expect(namesOf(missing.record)).toEqual(['b-missing']);
    });

    it('FSPIOP batches: the policy is checked on every item\'s key and participants together; one record names them all', async () => {
      const item = (key: string, source: string, i: number, destination?: string) => ({
        key,
        method: 'PUT',
        uri: `/transfers/${i}`,
        source,
        ...(destination ? { destination } : {}),
        body: JSON.stringify({ transferId: `t-${i}`, note: SECRET_MESSAGE }),
      });
      const items = [item('b-ec', 'bfsp-es', 1, 'bfsp-rs'), item('b-rsa', 'bfsp-rs', 2), item('b-ec', 'bfsp-es', 3), { ...item('b-rsa', 'bfsp-rs', 4), body: '{oops' }];
      const signed = await fspiopBatch('sign', items, tokens.fsp);
      expect(signed.answer.status).toBe(okStatus);
      expect(signed.record).toMatchObject({ operation: 'fspiop.signBatch', outcome: 'ok', caller: byToken('b-fsp') });
      expect(namesOf(signed.record)).toEqual(['b-ec', 'b-rsa']);
      expect([...new Set(signed.record.participants)].sort()).toEqual(['bfsp-es', 'bfsp-rs']);
      expect(signed.record.details).toEqual({ items: 4, succeeded: 3, failed: 1, errorCodes: 'INVALID_ARGUMENT:1', failedItems: '3:INVALID_ARGUMENT' });

      // One participant the caller may not sign for, in the last item: the whole request is refused.
      const refused = await fspiopBatch('sign', [item('b-ec', 'bfsp-es', 5), item('b-ec', 'bfsp-es', 6, 'zzfsp')], tokens.fsp);
      expect({ status: refused.answer.status, code: refused.answer.code, results: refused.answer.results }).toEqual({ status: denied, code: 'PERMISSION_DENIED', results: undefined });
      expect(refused.answer.message).toContain('"zzfsp"');
      expect(refused.record).toMatchObject({ operation: 'fspiop.signBatch', outcome: 'PERMISSION_DENIED' });
      // So is one key outside the caller's rules.
      const otherKey = await fspiopBatch('sign', [item('b-ec', 'bfsp-es', 7), item('zz-ec', 'bfsp-es', 8)], tokens.fsp);
      expect({ status: otherKey.answer.status, code: otherKey.answer.code, results: otherKey.answer.results }).toEqual({ status: denied, code: 'PERMISSION_DENIED', results: undefined });
      expect(otherKey.answer.message).toContain('"zz-ec"');
      expect(namesOf(otherKey.record)).toEqual(['b-ec', 'zz-ec']);

      // Validate: the signed answers as received, one of them tampered.
      const received = signed.answer.results!.slice(0, 3).map((r, i) => {
        const answer = wire === 'rest' ? r : { headers: r.ok.headers, body: (r.ok.body as Buffer).toString('utf8') };
        const sent = items[i]!;
        return { headers: { 'fspiop-source': sent.source, ...(sent.destination ? { 'fspiop-destination': sent.destination } : {}), ...answer.headers }, body: answer.body as string };
      });
      received[1] = { ...received[1]!, body: received[1]!.body.replace('t-2', 't-9') };
      const validated = await fspiopBatch('validate', received, tokens.fsp);
      expect(validated.answer.status).toBe(okStatus);
      expect(validated.record).toMatchObject({ operation: 'fspiop.validateBatch', outcome: 'ok', caller: byToken('b-fsp') });
      expect([...new Set(validated.record.participants)].sort()).toEqual(['bfsp-es', 'bfsp-rs']);
      expect(validated.record.details).toEqual({ items: 3, succeeded: 3, failed: 0, valid: 2, invalid: 1 });
      const denyValidate = await fspiopBatch('validate', [received[0]!, { ...received[2]!, headers: { ...received[2]!.headers, 'fspiop-source': 'zzfsp' } }], tokens.fsp);
      expect({ status: denyValidate.answer.status, code: denyValidate.answer.code }).toEqual({ status: denied, code: 'PERMISSION_DENIED' });
      expect(denyValidate.record).toMatchObject({ operation: 'fspiop.validateBatch', outcome: 'PERMISSION_DENIED' });
      // An empty FSPIOP-Source ahead of another casing of it: validation reads the one that is not empty, and so does the policy.
      const { 'fspiop-source': _source, ...others } = received[2]!.headers as Record<string, string>;
      const hidden = await fspiopBatch('validate', [{ ...received[2]!, headers: { 'FSPIOP-Source': '', ...others, 'fspiop-source': 'zzfsp' } }], tokens.fsp);
      expect({ status: hidden.answer.status, code: hidden.answer.code }).toEqual({ status: denied, code: 'PERMISSION_DENIED' });
      expect(hidden.record.participants).toEqual(['zzfsp']);
    });

    it('no input value reaches the audit trail', async () => {
      await target().servers.audit!.trail.flush();
      const trail = readFileSync(target().auditFile, 'utf8');
      expect(trail).toContain('keys.signBatch');
      for (const secret of secrets) expect(trail.includes(secret), secret).toBe(false);
    });
  });
}
