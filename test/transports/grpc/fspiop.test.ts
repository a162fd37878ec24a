/**
 * hsmbridge.v1.FspiopService end to end over a real gRPC connection, on the software backend and on
 * SoftHSM: what Sign returns validates with the Mojaloop reference JwsValidator, what the reference
 * JwsSigner signs validates through Validate (bodies as the exact bytes), the participants rpcs
 * round-trip, and bad input is INVALID_ARGUMENT (or its own status) with its code; a malformed body is
 * refused (valid false), never INTERNAL.
 */
import { createPublicKey } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { calculateJwkThumbprint } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateTestKeyPair, referenceAccepts, referenceSigner, safeStableStringify, transferBody } from '../../fspiop/support.js';
import { restTargets } from '../rest/restFixture.js';
import { expectGrpcError } from './grpcClient.js';
import { startGrpc, type GrpcFixture } from './issue3Fixture.js';

const thumbprint = (pem: string) => calculateJwkThumbprint(createPublicKey(pem).export({ format: 'jwk' }) as never);

for (const target of restTargets) {
  describe(`FspiopService over gRPC (${target.label})`, () => {
    let f: GrpcFixture;
    const ours = { RS256: { key: '', source: 'grpc-hsmb-rs', pem: '' }, ES256: { key: '', source: 'grpc-hsmb-es', pem: '' } };
    const peer = { RS256: generateTestKeyPair('RSA'), ES256: generateTestKeyPair('EC') };
    const peerId = { RS256: 'grpc-peer-rs', ES256: 'grpc-peer-es' };

    beforeAll(async () => {
      f = await startGrpc(target);
      for (const [alg, type] of [['RS256', 'RSA_2048'], ['ES256', 'EC_P256']] as const) {
        const key = `grpc-fspiop-${alg.toLowerCase()}-${process.pid}`;
        const created = await f.client.call('CreateKey', { name: key, type });
        ours[alg] = { ...ours[alg], key, pem: created.versions[0].publicKeyPem };
        await f.client.callFspiop('AddParticipantKey', { id: ours[alg].source, publicKeyPem: ours[alg].pem });
        await f.client.callFspiop('AddParticipantKey', { id: peerId[alg], publicKeyPem: peer[alg].publicPem, use: 'sig' });
      }
    });
    afterAll(async () => {
      await f?.close();
    });

    for (const alg of ['RS256', 'ES256'] as const) {
      it(`${alg}: Sign's headers and body validate with the reference JwsValidator and with Validate; tampering is refused`, async () => {
        const r = await f.client.callFspiop('Sign', {
          key: ours[alg].key,
          method: 'PUT',
          uri: '/transfers/0a3c5d2e-7f3b-4a4e-9b8e-6f0f3f1b2c3d',
          source: ours[alg].source,
          destination: 'payeefsp',
          date: 'Tue, 24 Nov 2026 21:30:00 GMT',
          body: Buffer.from(JSON.stringify(transferBody())),
        });
        expect(r.body.toString()).toBe(safeStableStringify(transferBody()));
        expect(Object.keys(r.headers).sort()).toEqual(['fspiop-http-method', 'fspiop-signature', 'fspiop-uri']);
        const headers = { 'fspiop-source': ours[alg].source, 'fspiop-destination': 'payeefsp', date: 'Tue, 24 Nov 2026 21:30:00 GMT', ...r.headers };
        expect(referenceAccepts({ [ours[alg].source]: ours[alg].pem }, { headers, body: JSON.parse(r.body.toString()) })).toBe(true);
        const v = await f.client.callFspiop('Validate', { headers, body: r.body });
        expect(v).toMatchObject({ valid: true, participant: ours[alg].source, keyId: await thumbprint(ours[alg].pem), algorithm: alg, errorCode: '' });

        const tampered = Buffer.from(r.body.toString().replace('123.45', '999.45'));
        expect(await f.client.callFspiop('Validate', { headers, body: tampered })).toMatchObject({ valid: false, errorCode: '3105', reason: expect.any(String) });
        expect(await f.client.callFspiop('Validate', { headers: { ...headers, 'fspiop-uri': '/transfers/x' }, body: r.body })).toMatchObject({ valid: false, errorCode: '3105' });
      });

      it(`${alg}: what the reference JwsSigner signs validates through Validate, from the exact bytes`, async () => {
        const req = { method: 'post', uri: 'http://switch/quotes', headers: { 'fspiop-source': peerId[alg] } as Record<string, string>, body: { quoteId: 'q-1', amount: { currency: 'EUR', amount: '5' } } };
        referenceSigner(peer[alg].privatePem).sign(req);
        const v = await f.client.callFspiop('Validate', { headers: req.headers, body: Buffer.from(req.body as unknown as string) });
        expect(v).toMatchObject({ valid: true, participant: peerId[alg], keyId: await thumbprint(peer[alg].publicPem), algorithm: alg });
      });
    }

    it('participants rpcs round-trip: list, get, delete; 404 and 409 where they belong', async () => {
      const pair = generateTestKeyPair('EC');
      const added = await f.client.callFspiop('AddParticipantKey', { id: 'grpc-roundtrip', publicKeyPem: pair.publicPem });
      expect(added).toMatchObject({ participant: 'grpc-roundtrip', keyId: await thumbprint(pair.publicPem), use: 'sig', kty: 'EC', bits: 256, source: 'api' });
      const list = await f.client.callFspiop('ListParticipants');
      expect(list.participants).toEqual(expect.arrayContaining([{ id: 'grpc-roundtrip', keys: [added] }]));
      expect(await f.client.callFspiop('GetParticipantKey', { id: 'grpc-roundtrip', keyId: added.keyId })).toEqual(added);
      await expectGrpcError(f.client.callFspiop('AddParticipantKey', { id: 'grpc-roundtrip', publicKeyPem: pair.publicPem }), status.ALREADY_EXISTS, 'KEY_ALREADY_EXISTS');
      expect(await f.client.callFspiop('DeleteParticipantKey', { id: 'grpc-roundtrip', keyId: added.keyId })).toEqual({});
      await expectGrpcError(f.client.callFspiop('GetParticipantKey', { id: 'grpc-roundtrip', keyId: added.keyId }), status.NOT_FOUND, 'KEY_NOT_FOUND');
      await expectGrpcError(f.client.callFspiop('DeleteParticipantKey', { id: 'grpc-roundtrip', keyId: added.keyId }), status.NOT_FOUND, 'KEY_NOT_FOUND');
    });

    it('bad input is INVALID_ARGUMENT (or its own status) with the stable code, never INTERNAL', async () => {
      const sign = (o: Record<string, unknown>) =>
        f.client.callFspiop('Sign', { key: ours.RS256.key, method: 'PUT', uri: '/transfers/1', source: 'payerfsp', body: Buffer.from('{"a":1}'), ...o });
      // Thunks, called one at a time: a call started early could fail before its check attaches (an unhandled rejection).
      const cases: Array<[() => Promise<unknown>, number, string]> = [
        [() => sign({ body: Buffer.alloc(0) }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        [() => sign({ body: Buffer.from('{oops') }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        [() => sign({ method: '' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        [() => sign({ source: '' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        [() => sign({ date: 'a\nb' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        [() => sign({ key: 'no-such-key' }), status.NOT_FOUND, 'KEY_NOT_FOUND'],
        [() => sign({ encryptFields: { fields: ['a'], recipient: 'nobody' } }), status.NOT_FOUND, 'KEY_NOT_FOUND'],
        [() => f.client.callFspiop('Validate', { headers: {}, body: Buffer.from('{}'), decryptWith: 'bad name!' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        [() => f.client.callFspiop('AddParticipantKey', { id: 'fsp', publicKeyPem: 'nope' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        [() => f.client.callFspiop('AddParticipantKey', { id: '', publicKeyPem: peer.ES256.publicPem }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        [() => f.client.callFspiop('AddParticipantKey', { id: 'fsp', publicKeyPem: peer.ES256.publicPem, use: 'enc' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
        [() => f.client.callFspiop('GetParticipantKey', { id: '../x', keyId: 'k' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
      ];
      for (const [call, grpcStatus, code] of cases) await expectGrpcError(call(), grpcStatus, code);
      // A refused signature is an answer, not an error.
      expect(await f.client.callFspiop('Validate', { headers: {}, body: Buffer.from('{}') })).toMatchObject({ valid: false, errorCode: '3105' });
      // So is a body nested 30,000 levels deep (a real signature over other bytes sends validate to the canonical form).
      const req = { method: 'post', uri: '/quotes', headers: { 'fspiop-source': peerId.RS256 } as Record<string, string>, body: { quoteId: 'q' } };
      referenceSigner(peer.RS256.privatePem).sign(req);
      const deep = Buffer.from('['.repeat(30_000) + ']'.repeat(30_000));
      expect(await f.client.callFspiop('Validate', { headers: req.headers, body: deep })).toMatchObject({ valid: false, errorCode: '3105', reason: expect.stringContaining('nested too deeply') });
    });

    it('logs one line per call, with the signing key name and never a body', async () => {
      await f.client.callFspiop('Sign', { key: ours.ES256.key, method: 'PUT', uri: '/transfers/2', source: ours.ES256.source, body: Buffer.from('{"note":"NEVER-LOGGED-77"}') });
      expect(f.logs().filter((l) => l.method === 'hsmbridge.v1.FspiopService/Sign').at(-1)).toMatchObject({ status: 'OK', keyName: ours.ES256.key });
      expect(f.logText()).not.toContain('NEVER-LOGGED-77');
    });
  });
}
