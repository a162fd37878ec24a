/**
 * The PIN-failure limit on the software backend, over REST and gRPC: the 31st undecodable PIN block from
 * one caller under one key in a minute is refused with 429 RATE_LIMITED (gRPC RESOURCE_EXHAUSTED), and so
 * is every PIN call of that caller on that key for the rest of the minute; other callers and other keys
 * are unaffected; each refusal is audited and counted. Two callers come from a fake identify stage (the
 * bearer token is the caller's name); the clock is the test's.
 */
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStages, type Outcome, type PipelineStages } from '../../src/api/stages.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { PinFailureLimiter, WINDOW_MS, withPinFailureLimit } from '../../src/ops/pinFailureLimit.js';
import { expectGrpcError } from '../transports/grpc/grpcClient.js';
import { startGrpc, type GrpcFixture } from '../transports/grpc/issue3Fixture.js';
import { format0, plantKeys, tdesEncrypt, zpkTdes2Material, zpkTdesMaterial, type PlantedKeys } from '../transports/paymentSupport.js';
import { restTargets, startRest, type RestFixture } from '../transports/rest/restFixture.js';

const MAX = 30;
const pan = '5555555551234567';
const goodBlock = (material: string) => tdesEncrypt(material, format0('1234', pan)).toString('hex').toUpperCase();
/** Enciphered under the right key, but its clear block is no ISO format 0 block (format nibble F). */
const badBlock = (material: string) => tdesEncrypt(material, Buffer.alloc(8, 0xff)).toString('hex').toUpperCase();

/** Callers named by their bearer token; every outcome kept as audited; the limiter on a test clock. */
function setup() {
  const clock = { now: 5_000_000 };
  const audited: Outcome[] = [];
  const metrics = createMetrics({ keyLabels: false });
  const inner: PipelineStages = {
    ...openStages,
    identify: async (c) => ({ authenticatedBy: 'token', id: c.bearerToken ?? 'anonymous' }),
    audit: async (o) => void audited.push(o),
    observe: metrics.observe,
  };
  const stages = withPinFailureLimit(inner, new PinFailureLimiter({ maxPerMinute: MAX, now: () => clock.now }));
  const refusals = () => audited.filter((o) => o.code === 'RATE_LIMITED').map((o) => [o.caller.id, o.operation.name, o.keyNames[0]]);
  return { clock, audited, metrics, stages, refusals };
}

describe('PIN-failure limit over REST (software backend)', () => {
  const { clock, metrics, stages, refusals } = setup();
  let rest: RestFixture;
  let keys: PlantedKeys;
  beforeAll(async () => {
    rest = await startRest(restTargets[0]!, { stages });
    keys = await plantKeys(rest.service);
  });
  afterAll(async () => {
    await rest?.close();
  });

  const translate = async (caller: string, keyName: string, material: string, block: (m: string) => string) => {
    const body = { incoming: { keyName, format: 'ISO_FORMAT_0', pan }, outgoing: { keyName: keys.zpkAes, format: 'ISO_FORMAT_4' }, pinBlock: block(material) };
    const r = await rest.send('POST', '/v1/pin/translate', JSON.stringify(body), { 'content-type': 'application/json', authorization: `Bearer ${caller}` });
    return { status: r.status, code: r.body?.error?.code as string | undefined };
  };

  it('refuses the 31st bad block of a caller on a key, and its PIN calls on that key for the rest of the minute', async () => {
    for (let i = 0; i < MAX; i++) expect(await translate('alice', keys.zpkTdes, zpkTdesMaterial, badBlock)).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
    expect(await translate('alice', keys.zpkTdes, zpkTdesMaterial, badBlock)).toEqual({ status: 429, code: 'RATE_LIMITED' });
    expect(await translate('alice', keys.zpkTdes, zpkTdesMaterial, goodBlock)).toEqual({ status: 429, code: 'RATE_LIMITED' });
    const toJwe = await rest.send(
      'POST',
      '/v1/pin/to-jwe',
      JSON.stringify({ incoming: { keyName: keys.zpkTdes, format: 'ISO_FORMAT_0', pan }, pinBlock: goodBlock(zpkTdesMaterial), recipient: { key: keys.zpkAes } }),
      { 'content-type': 'application/json', authorization: 'Bearer alice' },
    );
    expect({ status: toJwe.status, code: toJwe.body?.error?.code }).toEqual({ status: 429, code: 'RATE_LIMITED' });
  });

  it('leaves other callers and other keys alone', async () => {
    expect(await translate('bob', keys.zpkTdes, zpkTdesMaterial, goodBlock)).toEqual({ status: 200, code: undefined });
    expect(await translate('bob', keys.zpkTdes, zpkTdesMaterial, badBlock)).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
    expect(await translate('alice', keys.zpkTdes2, zpkTdes2Material, goodBlock)).toEqual({ status: 200, code: undefined });
  });

  it('audits and counts every refusal, and counts the undecodable blocks', async () => {
    expect(refusals()).toEqual([
      ['alice', 'pin.translate', keys.zpkTdes],
      ['alice', 'pin.translate', keys.zpkTdes],
      ['alice', 'pin.toJwe', keys.zpkTdes],
    ]);
    const text = (await metrics.exposition()).text;
    expect(text).toContain('hsmb_pin_decode_failures_total{operation="pin.translate"} 31');
    expect(text).toContain('hsmb_rate_limit_refusals_total{operation="pin.translate"} 2');
    expect(text).toContain('hsmb_rate_limit_refusals_total{operation="pin.toJwe"} 1');
    expect(text).toContain('hsmb_operation_duration_seconds_count{operation="pin.translate",transport="rest",code="RATE_LIMITED"} 2');
  });

  it('serves the caller again once the minute is over', async () => {
    clock.now += WINDOW_MS - 1;
    expect(await translate('alice', keys.zpkTdes, zpkTdesMaterial, goodBlock)).toEqual({ status: 429, code: 'RATE_LIMITED' });
    clock.now += 1;
    expect(await translate('alice', keys.zpkTdes, zpkTdesMaterial, goodBlock)).toEqual({ status: 200, code: undefined });
  });
});

describe('PIN-failure limit over gRPC (software backend)', () => {
  const { stages, refusals } = setup();
  let grpc: GrpcFixture;
  let keys: PlantedKeys;
  beforeAll(async () => {
    grpc = await startGrpc(restTargets[0]!, 64 * 1024, stages);
    keys = await plantKeys(grpc.service);
  });
  afterAll(async () => {
    await grpc?.close();
  });

  const translate = (caller: string, keyName: string, material: string, block: (m: string) => string) => {
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${caller}`);
    const request = { incoming: { keyName, format: 'ISO_FORMAT_0', pan }, outgoing: { keyName: keys.zpkAes, format: 'ISO_FORMAT_4' }, pinBlock: block(material) };
    return grpc.client.callPayment('TranslatePin', request, metadata);
  };

  it('refuses the 31st bad block with RESOURCE_EXHAUSTED, other callers and keys unaffected', async () => {
    for (let i = 0; i < MAX; i++) await expectGrpcError(translate('alice', keys.zpkTdes, zpkTdesMaterial, badBlock), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    const refused: ServiceError = await expectGrpcError(translate('alice', keys.zpkTdes, zpkTdesMaterial, badBlock), status.RESOURCE_EXHAUSTED, 'RATE_LIMITED');
    expect(refused.details).toMatch(/too many PIN blocks that do not decode under key/);
    await expectGrpcError(translate('alice', keys.zpkTdes, zpkTdesMaterial, goodBlock), status.RESOURCE_EXHAUSTED, 'RATE_LIMITED');
    expect((await translate('bob', keys.zpkTdes, zpkTdesMaterial, goodBlock)).pinBlock).toMatch(/^[0-9A-F]{32}$/);
    expect((await translate('alice', keys.zpkTdes2, zpkTdes2Material, goodBlock)).pinBlock).toMatch(/^[0-9A-F]{32}$/);
    expect(refusals()).toEqual([
      ['alice', 'pin.translate', keys.zpkTdes],
      ['alice', 'pin.translate', keys.zpkTdes],
    ]);
  });
});

describe('PinFailureLimiter', () => {
  it('keeps callers and keys apart even when a caller id holds odd characters', () => {
    const limiter = new PinFailureLimiter({ maxPerMinute: 1, now: () => 0 });
    limiter.recordFailure('a","b', 'k');
    expect(() => limiter.begin('a","b', 'k')).toThrow(/too many PIN blocks/);
    expect(() => limiter.begin('a', 'b","k')).not.toThrow();
    expect(() => limiter.begin('a","b', 'k2')).not.toThrow();
  });

  it('counts calls still running as failures to come: a burst cannot pass the limit together, and slots come back', () => {
    const limiter = new PinFailureLimiter({ maxPerMinute: 3, now: () => 0 });
    for (let i = 0; i < 3; i++) limiter.begin('alice', 'k');
    expect(() => limiter.begin('alice', 'k')).toThrow(/too many PIN blocks/);
    expect(() => limiter.begin('bob', 'k')).not.toThrow();
    limiter.finish('alice', 'k', false); // decoded: its slot is free again
    expect(() => limiter.begin('alice', 'k')).not.toThrow();
    for (let i = 0; i < 3; i++) limiter.finish('alice', 'k', true);
    expect(() => limiter.begin('alice', 'k')).toThrow(/too many PIN blocks/);
  });
});

describe('withPinFailureLimit', () => {
  it('passes every other stage through, the audit\'s admit among them', () => {
    const admit = () => undefined;
    const wrapped = withPinFailureLimit({ ...openStages, admit }, new PinFailureLimiter({ maxPerMinute: 1 }));
    expect(wrapped.admit).toBe(admit);
  });
});
