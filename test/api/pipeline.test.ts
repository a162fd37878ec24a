/**
 * The pipeline's own stages on a made-up operation (pure logic, no backend): secret buffers are zeroed
 * on every path, errors leave with a stable code and a bounded message, and only well-formed key names
 * reach the log fields.
 */
import { describe, expect, it } from 'vitest';
import { operation, type ServicesFor } from '../../src/api/declaration.js';
import { Pipeline, RequestContext } from '../../src/api/pipeline.js';
import { openStages, type Outcome, type PipelineStages, type Transport } from '../../src/api/stages.js';
import { HsmBridgeError, MAX_ERROR_MESSAGE_CHARS } from '../../src/errors.js';

interface In { name: string; plaintext: Buffer }
interface Out { secret: Buffer }

const services = {} as ServicesFor;
const zeroed = (b: Buffer) => b.every((x) => x === 0);

/** An operation whose decode, run and encode can each be made to fail. */
function fakeOperation(fail: { decode?: boolean; run?: Error; encode?: boolean } = {}) {
  const answers: Buffer[] = [];
  const op = operation<In, Out>({
    name: 'test.fake',
    tag: 'system',
    summary: 'a made-up operation',
    description: 'for the pipeline tests',
    errors: [],
    keys: (i) => [i.name],
    secrets: { input: ['plaintext'], output: ['secret'] },
    run: async () => {
      if (fail.run) throw fail.run;
      const secret = Buffer.from('answer secret');
      answers.push(secret);
      return { secret };
    },
    rest: { method: 'POST', path: '/fake', decode: () => ({}) as In, encode: () => ({}) },
    grpc: { service: 'KeyService', method: 'Fake', decode: () => ({}) as In, encode: () => ({}) },
  });
  const decode = (r: { name: string; plaintext: Buffer }): In => {
    if (fail.decode) throw new HsmBridgeError('INVALID_ARGUMENT', 'cannot decode');
    return { name: r.name, plaintext: Buffer.from(r.plaintext) };
  };
  const encode = (out: Out) => {
    if (fail.encode) throw new Error('encoder broke');
    return { secret: out.secret };
  };
  return { op, decode, encode, answers };
}

const run = (transport: Transport, fake: ReturnType<typeof fakeOperation>, request = { name: 'k1', plaintext: Buffer.from('clear text') }, stages: PipelineStages = openStages) => {
  const context = new RequestContext(fake.op, transport);
  return { context, request, result: new Pipeline(services, stages).run(fake.op, context, request, fake.decode, fake.encode) };
};

describe('runOperation', () => {
  it('zeroes the request\'s secret input even when decoding fails, and sets the error code', async () => {
    const fake = fakeOperation({ decode: true });
    const { context, request, result } = run('grpc', fake);
    await expect(result).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(zeroed(request.plaintext)).toBe(true);
    expect(context.code).toBe('INVALID_ARGUMENT');
  });

  it('REST: zeroes the secret answer once encoded; gRPC leaves it to the serializer', async () => {
    const rest = fakeOperation();
    await run('rest', rest).result;
    expect(zeroed(rest.answers[0]!)).toBe(true);
    const grpc = fakeOperation();
    const answer = (await run('grpc', grpc).result) as Out;
    expect(answer.secret.toString()).toBe('answer secret');
  });

  it('zeroes the secret answer when encoding fails, on either transport, and hides the cause', async () => {
    for (const transport of ['rest', 'grpc'] as const) {
      const fake = fakeOperation({ encode: true });
      const { request, result } = run(transport, fake);
      await expect(result).rejects.toMatchObject({ code: 'INTERNAL', message: 'internal error' });
      expect(zeroed(fake.answers[0]!)).toBe(true);
      expect(zeroed(request.plaintext)).toBe(true);
    }
  });

  it('cuts an error message built from input, keeping its code', async () => {
    const fake = fakeOperation({ run: new HsmBridgeError('KEY_NOT_FOUND', `no key ${'"'.repeat(100_000)}`) });
    const error = (await run('grpc', fake).result.catch((e: unknown) => e)) as HsmBridgeError;
    expect(error.code).toBe('KEY_NOT_FOUND');
    expect(error.message.length).toBeLessThanOrEqual(MAX_ERROR_MESSAGE_CHARS + 1);
  });

  it('keeps only well-formed key names for the log', async () => {
    const good = run('rest', fakeOperation());
    await good.result;
    expect(good.context.logFields()).toEqual({ keyName: 'k1' });
    const bad = run('grpc', fakeOperation(), { name: 'pin=1234 pan=4111111111111111', plaintext: Buffer.from('x') });
    await bad.result;
    expect(bad.context.logFields()).toEqual({});
  });

  it('asks the policy with the caller, the operation and the well-formed names, before the operation runs', async () => {
    const asked: unknown[] = [];
    const outcomes: Outcome[] = [];
    const stages: PipelineStages = {
      ...openStages,
      authorize: (caller, op, keys) => {
        asked.push([caller.id, op.name, keys]);
        throw new HsmBridgeError('INVALID_ARGUMENT', 'denied for the test');
      },
      observe: (o) => outcomes.push(o),
    };
    const fake = fakeOperation();
    const { request, result } = run('rest', fake, undefined, stages);
    await expect(result).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: 'denied for the test' });
    expect(asked).toEqual([['anonymous', 'test.fake', ['k1']]]);
    expect(fake.answers).toHaveLength(0); // never ran
    expect(zeroed(request.plaintext)).toBe(true);
    expect(outcomes).toMatchObject([{ code: 'INVALID_ARGUMENT', keyNames: ['k1'], caller: { id: 'anonymous' } }]);
  });

  it('hands each outcome, with its request id, to the audit stage before the answer leaves', async () => {
    const audited: Outcome[] = [];
    const fake = fakeOperation();
    const { context, result } = run('grpc', fake, undefined, { ...openStages, audit: async (o) => void audited.push(o) });
    await result;
    expect(audited).toEqual([expect.objectContaining({ requestId: context.requestId, keyNames: ['k1'], transport: 'grpc' })]);
    expect(audited[0]!.code).toBeUndefined();
  });
});
