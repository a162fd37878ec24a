/**
 * /openapi.json: an OpenAPI 3 document of exactly the contract's routes, generated from the schemas the
 * server validates with, listing each route's error codes. Served by the real server on the software backend
 * (the document does not depend on the backend).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorCodes, httpStatusOf } from '../../../src/errors.js';
import { fspiopValidateBody, signBody, signJwsBody } from '../../../src/api/schemas.js';
import { restTargets, startRest, type RestFixture } from './restFixture.js';

/** The wire contract's routes, written out independently of the server. */
const contract: Array<[string, string]> = [
  ['post', '/v1/keys'], ['get', '/v1/keys'], ['get', '/v1/keys/{name}'], ['post', '/v1/keys/{name}/rotate'],
  ['post', '/v1/keys/{name}/enable'], ['post', '/v1/keys/{name}/disable'], ['delete', '/v1/keys/{name}'],
  ['post', '/v1/keys/{name}/sign'], ['post', '/v1/keys/{name}/verify'], ['post', '/v1/keys/{name}/encrypt'],
  ['post', '/v1/keys/{name}/decrypt'], ['post', '/v1/keys/{name}/mac'], ['post', '/v1/keys/{name}/mac/verify'],
  ['post', '/v1/random'], ['get', '/v1/capabilities'], ['get', '/health/live'], ['get', '/health/ready'], ['get', '/openapi.json'],
  // Issue 3: JOSE and FSPIOP.
  ['post', '/v1/jws/sign'], ['post', '/v1/jws/verify'], ['post', '/v1/jwe/encrypt'], ['post', '/v1/jwe/decrypt'],
  ['get', '/.well-known/jwks.json'], ['post', '/v1/fspiop/sign'], ['post', '/v1/fspiop/validate'],
  ['get', '/v1/fspiop/participants'], ['post', '/v1/fspiop/participants'],
  ['get', '/v1/fspiop/participants/{id}/keys/{keyId}'], ['delete', '/v1/fspiop/participants/{id}/keys/{keyId}'],
  // Issue 4: payments.
  ['post', '/v1/pin/translate'], ['post', '/v1/pin/to-jwe'], ['post', '/v1/keys/import/tr31'], ['post', '/v1/keys/{name}/export/tr31'],
  // Issue 10: who the caller is.
  ['get', '/v1/whoami'],
  // Issue 12: bringing keys in.
  ['get', '/v1/wrapping-key'], ['post', '/v1/wrapping-key/rotate'], ['post', '/v1/keys/import'], ['post', '/v1/keys/{name}/import'],
  ['post', '/v1/ceremonies'], ['post', '/v1/ceremonies/{id}/components'], ['get', '/v1/ceremonies/{id}'], ['delete', '/v1/ceremonies/{id}'],
  // Issue 13: batches.
  ['post', '/v1/keys/{name}/sign/batch'], ['post', '/v1/keys/{name}/verify/batch'], ['post', '/v1/keys/{name}/encrypt/batch'],
  ['post', '/v1/keys/{name}/decrypt/batch'], ['post', '/v1/keys/{name}/mac/batch'], ['post', '/v1/keys/{name}/mac/verify/batch'],
  ['post', '/v1/fspiop/sign/batch'], ['post', '/v1/fspiop/validate/batch'],
  // Issue 14: personal-data protection.
  ['patch', '/v1/keys/{name}'], ['post', '/v1/keys/{name}/trim'], ['post', '/v1/keys/{name}/datakey'], ['post', '/v1/keys/{name}/rewrap'],
  ['post', '/v1/keys/{name}/datakey/batch'], ['post', '/v1/keys/{name}/rewrap/batch'], ['post', '/v1/keys/{name}/tokenize'],
  ['post', '/v1/keys/{name}/fpe/encrypt'], ['post', '/v1/keys/{name}/fpe/decrypt'],
];

/** The operationIds clients generate code from, pinned: a rename breaks them. */
const operationIds: Record<string, string> = {
  'post /v1/keys': 'createKey', 'get /v1/keys': 'listKeys', 'get /v1/keys/{name}': 'getKey', 'post /v1/keys/{name}/rotate': 'rotateKey',
  'post /v1/keys/{name}/enable': 'enableKey', 'post /v1/keys/{name}/disable': 'disableKey', 'delete /v1/keys/{name}': 'destroyKey',
  'post /v1/keys/{name}/sign': 'sign', 'post /v1/keys/{name}/verify': 'verify', 'post /v1/keys/{name}/encrypt': 'encrypt',
  'post /v1/keys/{name}/decrypt': 'decrypt', 'post /v1/keys/{name}/mac': 'generateMac', 'post /v1/keys/{name}/mac/verify': 'verifyMac',
  'post /v1/random': 'generateRandom', 'get /v1/capabilities': 'getCapabilities', 'get /health/live': 'live', 'get /health/ready': 'ready',
  'get /openapi.json': 'openapi', 'post /v1/jws/sign': 'signJws', 'post /v1/jws/verify': 'verifyJws', 'post /v1/jwe/encrypt': 'encryptJwe',
  'post /v1/jwe/decrypt': 'decryptJwe', 'get /.well-known/jwks.json': 'getJwks', 'post /v1/fspiop/sign': 'fspiopSign',
  'post /v1/fspiop/validate': 'fspiopValidate', 'get /v1/fspiop/participants': 'listParticipants', 'post /v1/fspiop/participants': 'addParticipantKey',
  'get /v1/fspiop/participants/{id}/keys/{keyId}': 'getParticipantKey', 'delete /v1/fspiop/participants/{id}/keys/{keyId}': 'deleteParticipantKey',
  'post /v1/pin/translate': 'translatePin', 'post /v1/pin/to-jwe': 'pinToJwe', 'post /v1/keys/import/tr31': 'importTr31',
  'post /v1/keys/{name}/export/tr31': 'exportTr31', 'get /v1/whoami': 'whoAmI',
  'get /v1/wrapping-key': 'getWrappingKey', 'post /v1/wrapping-key/rotate': 'rotateWrappingKey', 'post /v1/keys/import': 'importKey',
  'post /v1/keys/{name}/import': 'importKeyVersion', 'post /v1/ceremonies': 'startCeremony', 'post /v1/ceremonies/{id}/components': 'enterComponent',
  'get /v1/ceremonies/{id}': 'getCeremony', 'delete /v1/ceremonies/{id}': 'cancelCeremony',
  'post /v1/keys/{name}/sign/batch': 'signBatch', 'post /v1/keys/{name}/verify/batch': 'verifyBatch', 'post /v1/keys/{name}/encrypt/batch': 'encryptBatch',
  'post /v1/keys/{name}/decrypt/batch': 'decryptBatch', 'post /v1/keys/{name}/mac/batch': 'generateMacBatch', 'post /v1/keys/{name}/mac/verify/batch': 'verifyMacBatch',
  'post /v1/fspiop/sign/batch': 'fspiopSignBatch', 'post /v1/fspiop/validate/batch': 'fspiopValidateBatch',
  'patch /v1/keys/{name}': 'updateKey', 'post /v1/keys/{name}/trim': 'trimKey', 'post /v1/keys/{name}/datakey': 'generateDataKey',
  'post /v1/keys/{name}/rewrap': 'rewrap', 'post /v1/keys/{name}/datakey/batch': 'generateDataKeyBatch', 'post /v1/keys/{name}/rewrap/batch': 'rewrapBatch',
  'post /v1/keys/{name}/tokenize': 'tokenize', 'post /v1/keys/{name}/fpe/encrypt': 'fpeEncrypt', 'post /v1/keys/{name}/fpe/decrypt': 'fpeDecrypt',
};

type Json = Record<string, any>;

const redoclyCli = resolve(dirname(fileURLToPath(import.meta.url)), '../../../node_modules/@redocly/cli/bin/cli.js');

function collectRefs(value: unknown, into: string[] = []): string[] {
  if (Array.isArray(value)) value.forEach((v) => collectRefs(v, into));
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === '$ref') into.push(v as string);
      else collectRefs(v, into);
    }
  }
  return into;
}

describe('OpenAPI document', () => {
  let rest: RestFixture;
  let doc: Json;
  const op = (method: string, path: string): Json => doc.paths[path][method];
  const codesAt = (o: Json, status: number): string[] => o.responses[String(status)].content['application/json'].schema.properties.error.properties.code.enum;

  beforeAll(async () => {
    rest = await startRest(restTargets.find((t) => t.label === 'software')!);
    const r = await rest.call('GET', '/openapi.json');
    expect(r.status).toBe(200);
    doc = r.body;
  });
  afterAll(async () => {
    await rest?.close();
  });

  it('is an OpenAPI 3 document listing exactly the contract routes, each with a unique operationId', () => {
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);
    expect(doc.info).toMatchObject({ title: 'hsm-bridge', version: expect.any(String) });
    const listed = Object.entries(doc.paths as Json).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`));
    expect(listed.sort()).toEqual(contract.map(([m, p]) => `${m} ${p}`).sort());
    const ids = listed.map((l) => { const [m, p] = l.split(' '); return op(m!, p!).operationId; });
    expect(new Set(ids).size).toBe(ids.length);
    expect(Object.fromEntries(listed.map((l) => { const [m, p] = l.split(' '); return [l, op(m!, p!).operationId]; }))).toEqual(operationIds);
  });

  it('every $ref resolves inside the document', () => {
    const refs = collectRefs(doc);
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of refs) {
      const target = ref.replace(/^#\//, '').split('/').reduce<any>((node, part) => node?.[part], doc);
      expect(target, ref).toBeTypeOf('object');
    }
  });

  it('publishes the same request schema the server validates with', () => {
    expect(op('post', '/v1/keys/{name}/sign').requestBody.content['application/json'].schema).toEqual(signBody);
    expect(op('post', '/v1/keys/{name}/sign').requestBody.content['application/json'].schema.properties.message.format).toBe('byte');
    expect(op('post', '/v1/keys/{name}/sign').parameters).toEqual([expect.objectContaining({ name: 'name', in: 'path', required: true })]);
  });

  it('documents a batch route with the single body as its item, and each result as the single answer or {error}', () => {
    const batch = op('post', '/v1/keys/{name}/sign/batch');
    expect(batch.requestBody.content['application/json'].schema).toEqual({ type: 'object', additionalProperties: false, required: ['items'], properties: { items: { type: 'array', minItems: 1, items: signBody } } });
    expect(op('post', '/v1/fspiop/validate/batch').requestBody.content['application/json'].schema.properties.items.items).toEqual(fspiopValidateBody);
    const single = op('post', '/v1/keys/{name}/sign').responses['200'].content['application/json'].schema;
    const result = batch.responses['200'].content['application/json'].schema.properties.results.items;
    expect(Object.keys(result.properties).sort()).toEqual([...Object.keys(single.properties), 'error'].sort());
    expect(result.required).toBeUndefined();
    expect(codesAt(batch, 413)).toEqual(['PAYLOAD_TOO_LARGE']);
    expect(codesAt(batch, 404)).toEqual(['KEY_NOT_FOUND']);
    expect(codesAt(batch, 409)).toEqual(['KEY_DISABLED']);
  });

  it('lists each route\'s error codes under their HTTP status, in the error envelope', () => {
    for (const [method, path] of contract) {
      const o = op(method, path);
      expect(codesAt(o, 500), `${method} ${path}`).toEqual(['INTERNAL']);
      for (const [status, response] of Object.entries(o.responses as Json)) {
        if (Number(status) < 400 || (path === '/health/ready' && status === '503')) continue;
        for (const code of codesAt(o, Number(status))) {
          expect(errorCodes).toContain(code);
          expect(httpStatusOf(code as never), `${code} under ${status}`).toBe(Number(status));
        }
        expect(response.description).toBeTruthy();
      }
      if (o.requestBody) {
        expect(codesAt(o, 400)).toContain('INVALID_ARGUMENT');
        expect(codesAt(o, 413)).toEqual(['PAYLOAD_TOO_LARGE']);
        expect(codesAt(o, 415)).toEqual(['UNSUPPORTED_MEDIA_TYPE']);
        expect(o.requestBody.content['application/json'].schema.additionalProperties).toBe(false);
      }
    }
    const sign = op('post', '/v1/keys/{name}/sign');
    expect(codesAt(sign, 400)).toEqual(expect.arrayContaining(['UNSUPPORTED_ALGORITHM', 'INCOMPATIBLE_KEY', 'INVALID_ARGUMENT']));
    expect(codesAt(sign, 404)).toEqual(['KEY_NOT_FOUND']);
    expect(codesAt(sign, 409)).toEqual(['KEY_DISABLED']);
    expect(codesAt(op('post', '/v1/keys/{name}/decrypt'), 400)).toContain('DECRYPTION_FAILED');
    expect(codesAt(op('post', '/v1/keys/{name}/verify'), 404)).toEqual(['KEY_NOT_FOUND', 'KEY_VERSION_NOT_FOUND']);
    expect(codesAt(op('post', '/v1/keys'), 409)).toEqual(['KEY_ALREADY_EXISTS']);
    const destroy = op('delete', '/v1/keys/{name}');
    expect(destroy.responses['204']).toBeDefined();
    expect(codesAt(destroy, 409)).toEqual(['KEY_NOT_DISABLED']);
  });

  it('describes the Key and the success responses', () => {
    expect(doc.components.schemas.Key.properties).toHaveProperty('versions');
    expect(doc.components.schemas.Error.properties.error.properties.code.enum).toEqual(errorCodes);
    expect(op('get', '/v1/keys/{name}').responses['200'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/Key' });
    expect(op('post', '/v1/keys').responses['201'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/Key' });
    expect(op('get', '/health/ready').responses['503']).toBeDefined();
  });

  it('documents the JOSE and FSPIOP routes from their schemas, with their error codes', () => {
    expect(op('post', '/v1/jws/sign').requestBody.content['application/json'].schema).toEqual(signJwsBody);
    expect(op('post', '/v1/fspiop/validate').requestBody.content['application/json'].schema).toEqual(fspiopValidateBody);
    // A JWS is a string (compact) or an object (JSON serializations).
    expect(op('post', '/v1/jws/verify').requestBody.content['application/json'].schema.properties.jws.oneOf).toEqual([
      { type: 'string' },
      { type: 'object', additionalProperties: true },
    ]);
    expect(codesAt(op('post', '/v1/jws/sign'), 409)).toEqual(['KEY_DISABLED']);
    expect(codesAt(op('post', '/v1/jwe/decrypt'), 400)).toEqual(expect.arrayContaining(['DECRYPTION_FAILED', 'INVALID_ARGUMENT']));
    expect(codesAt(op('post', '/v1/fspiop/participants'), 409)).toEqual(['KEY_ALREADY_EXISTS']);
    expect(op('post', '/v1/fspiop/participants').responses['201'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/ParticipantKey' });
    expect(op('delete', '/v1/fspiop/participants/{id}/keys/{keyId}').responses['204']).toBeDefined();
    expect(op('get', '/v1/fspiop/participants/{id}/keys/{keyId}').parameters.map((p: Json) => p.name)).toEqual(['id', 'keyId']);
    expect(op('get', '/.well-known/jwks.json').responses['200'].content['application/json'].schema.required).toEqual(['keys']);
  });

  it('declares mutual TLS and bearer JWT security, required everywhere but on the open routes, with 401 and 403', () => {
    expect(doc.components.securitySchemes).toEqual({
      mutualTLS: expect.objectContaining({ type: 'mutualTLS' }),
      bearerAuth: expect.objectContaining({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' }),
    });
    expect(doc.security).toEqual([{ mutualTLS: [] }, { bearerAuth: [] }]);
    const open = ['get /health/live', 'get /health/ready', 'get /openapi.json', 'get /.well-known/jwks.json'];
    for (const [method, path] of contract) {
      const o = op(method, path);
      const key = `${method} ${path}`;
      if (open.includes(key)) {
        expect(o.security, key).toEqual([]);
        expect(o.responses['401'], key).toBeUndefined();
        continue;
      }
      expect(o.security, key).toBeUndefined();
      expect(codesAt(o, 401), key).toEqual(['UNAUTHENTICATED']);
      if (key === 'get /v1/whoami') expect(o.responses['403']).toBeUndefined();
      // Dual control is a refusal of its own in a key ceremony.
      else if (key === 'post /v1/ceremonies' || key === 'post /v1/ceremonies/{id}/components') expect(codesAt(o, 403), key).toEqual(['PERMISSION_DENIED', 'DUAL_CONTROL']);
      else expect(codesAt(o, 403), key).toEqual(['PERMISSION_DENIED']);
    }
  });

  it('passes the Redocly linter (recommended rules) with no error', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hsmb-openapi-'));
    try {
      const file = join(dir, 'openapi.json');
      await writeFile(file, JSON.stringify(doc));
      // redocly exits 1 when it finds errors; its JSON report is on stdout either way.
      const run = promisify(execFile)(process.execPath, [redoclyCli, 'lint', file, '--format=json'], {
        env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_UPDATE_NOTIFIER: '1' },
        maxBuffer: 64 * 1024 * 1024,
      }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
      const report = JSON.parse((await run).stdout) as { problems: Array<{ ruleId: string; severity: string; message: string }> };
      const errors = report.problems.filter((p) => p.severity === 'error');
      expect(errors).toEqual([]);
      // The linter ran on this document: it reports its warnings, if any, as problems too.
      expect(Array.isArray(report.problems)).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
