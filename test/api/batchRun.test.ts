/**
 * How a batch sorts its items' failures, on a made-up single operation (pure logic: the batch semantics
 * on real backends are in test/transports/batch*.test.ts): an item's own error is its result; a failure
 * that is nobody's input (a bug while reading an item, an HSM that is gone) fails the whole request.
 */
import { describe, expect, it } from 'vitest';
import { batchOf } from '../../src/api/batch.js';
import { operation, type ServicesFor } from '../../src/api/declaration.js';
import { ANONYMOUS } from '../../src/api/stages.js';
import { HsmBridgeError, invalid } from '../../src/errors.js';
import { ConcurrencyLimit } from '../../src/operations/concurrencyLimit.js';

interface In { readonly name: string; readonly n: number }

const single = operation({
  name: 'keys.echo',
  tag: 'keys',
  summary: 'echo',
  description: 'echo',
  errors: [],
  keys: (i: In) => [i.name],
  run: async (_s, i: In) => {
    if (i.n === 503) throw new HsmBridgeError('BACKEND_UNAVAILABLE', 'the HSM is gone (test)');
    if (i.n < 0) throw invalid('n must not be negative');
    return { n: i.n };
  },
  rest: {
    method: 'POST',
    path: '/v1/keys/:name/echo',
    params: { type: 'object', properties: { name: { type: 'string' } } },
    body: { type: 'object', additionalProperties: false, required: ['n'], properties: { n: { type: 'integer' } } },
    response: { type: 'object', properties: { n: { type: 'integer' } } },
    decode: ({ params, body }): In => {
      if (body.n === 13) throw new TypeError('a bug while reading this item');
      return { name: params.name, n: body.n };
    },
    encode: (out) => out,
  },
  grpc: { service: 'KeyService', method: 'Echo', decode: (m: In) => m, encode: (out) => out },
});

const batch = batchOf(single, { name: 'keys.echoBatch', grpcMethod: 'EchoBatch', summary: 'echo many', checkKey: async () => undefined });
const services = { keys: { maxBatchItems: 10, batchItems: new ConcurrencyLimit(() => 2) } } as unknown as ServicesFor;
const run = (items: unknown[]) => batch.run(services, batch.rest.decode({ params: { name: 'k1' }, body: { items } }, services), ANONYMOUS);

describe('a batch sorts its items\' failures', () => {
  it('an item\'s bad input is its own result, in its place', async () => {
    const out = await run([{ n: 1 }, { n: -1 }, { n: 'x' }, { n: 2 }]);
    expect(out.results.map((r) => ('ok' in r ? r.ok : r.failed.code))).toEqual([{ n: 1 }, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', { n: 2 }]);
  });

  it('a bug while reading an item fails the whole request with INTERNAL, as it would a single request', async () => {
    await expect(run([{ n: 1 }, { n: 13 }, { n: 2 }])).rejects.toMatchObject({ code: 'INTERNAL' });
  });

  it('an HSM that is gone fails the whole request, and the record says how far it got', async () => {
    const failure = await run([{ n: 503 }, { n: 1 }, { n: 2 }, { n: 3 }]).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(HsmBridgeError);
    expect(failure).toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    const details = (failure as HsmBridgeError).details!;
    expect(details.items).toBe(4);
    expect(details.failed).toBe(1);
    expect((details.succeeded as number) + (details.notRun as number)).toBe(3);
  });

  it('more items than limits.maxBatchItems are refused before any is read', () => {
    expect(() => batch.rest.decode({ params: { name: 'k1' }, body: { items: Array(11).fill({ n: 13 }) } }, services)).toThrow(expect.objectContaining({ code: 'PAYLOAD_TOO_LARGE' }));
  });
});
