/**
 * Request ids round-trip on both transports: the caller's x-request-id (or its traceparent's trace id)
 * is the id of the request's log line, of the outcome the audit and metrics stages see, and comes back
 * in the x-request-id response header (REST) or trailing metadata (gRPC), on success and on error.
 */
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStages, type Outcome, type PipelineStages } from '../../src/api/stages.js';
import { MAX_REQUEST_ID_CHARS, requestIdFrom } from '../../src/ops/requestId.js';
import { startGrpc, type GrpcFixture } from '../transports/grpc/issue3Fixture.js';
import { restTargets, startRest, type RestFixture } from '../transports/rest/restFixture.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;

describe('requestIdFrom', () => {
  it('takes a short printable x-request-id as is', () => {
    expect(requestIdFrom('abc-123_XYZ.7', undefined)).toBe('abc-123_XYZ.7');
    expect(requestIdFrom(['only-one'], undefined)).toBe('only-one');
    expect(requestIdFrom('x'.repeat(MAX_REQUEST_ID_CHARS), undefined)).toBe('x'.repeat(MAX_REQUEST_ID_CHARS));
  });

  it('ignores an over-long, unprintable, empty or repeated x-request-id', () => {
    for (const bad of ['x'.repeat(MAX_REQUEST_ID_CHARS + 1), 'a b', 'a\nb', 'a\u0000', '', 'é', ['a', 'b'], 42]) {
      expect(requestIdFrom(bad, undefined)).toMatch(UUID);
      expect(requestIdFrom(bad, TRACEPARENT)).toBe(TRACE_ID);
    }
  });

  it("takes a valid traceparent's trace id, and nothing from an invalid one", () => {
    expect(requestIdFrom(undefined, TRACEPARENT)).toBe(TRACE_ID);
    expect(requestIdFrom(undefined, `01-${TRACE_ID}-00f067aa0ba902b7-01-future`)).toBe(TRACE_ID);
    for (const bad of [
      `ff-${TRACE_ID}-00f067aa0ba902b7-01`,
      `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`,
      `00-${TRACE_ID}-${'0'.repeat(16)}-01`,
      `00-${TRACE_ID.toUpperCase()}-00f067aa0ba902b7-01`,
      `00-${TRACE_ID}-00f067aa0ba902b7-01-extra`,
      `00-${TRACE_ID}-00f067aa0ba902b7`,
      'garbage',
    ]) {
      expect(requestIdFrom(undefined, bad)).toMatch(UUID);
    }
  });

  it('makes a fresh id for each request without one', () => {
    expect(requestIdFrom(undefined, undefined)).not.toBe(requestIdFrom(undefined, undefined));
  });
});

/** Open stages that keep every outcome. */
function recording(): { stages: PipelineStages; outcomes: Outcome[] } {
  const outcomes: Outcome[] = [];
  return { outcomes, stages: { ...openStages, observe: (o) => void outcomes.push(o) } };
}

describe('request ids over REST', () => {
  const { stages, outcomes } = recording();
  let rest: RestFixture;
  beforeAll(async () => {
    rest = await startRest(restTargets[0]!, { stages });
  });
  afterAll(async () => {
    await rest?.close();
  });

  const lineOf = (id: string) => rest.logs.filter((l) => l.msg === 'request' && l.reqId === id);

  it("answers with the caller's x-request-id, logs it as reqId and hands it to the stages", async () => {
    const ok = await rest.send('POST', '/v1/random', '{"length":8}', { 'content-type': 'application/json', 'x-request-id': 'caller-id-1' });
    expect(ok.status).toBe(200);
    expect(ok.headers['x-request-id']).toBe('caller-id-1');
    expect(lineOf('caller-id-1')).toHaveLength(1);
    expect(outcomes.at(-1)).toMatchObject({ requestId: 'caller-id-1', operation: { name: 'system.random' } });

    const failed = await rest.send('POST', '/v1/keys/no-such-key/sign', '{"message":"AA=="}', { 'content-type': 'application/json', 'x-request-id': 'caller-id-2' });
    expect(failed.status).toBe(404);
    expect(failed.headers['x-request-id']).toBe('caller-id-2');
    expect(lineOf('caller-id-2')).toHaveLength(1);
    expect(outcomes.at(-1)).toMatchObject({ requestId: 'caller-id-2', code: 'KEY_NOT_FOUND' });

    const unmatched = await rest.send('GET', '/no/such/route', '', { 'x-request-id': 'caller-id-3' });
    expect(unmatched.headers['x-request-id']).toBe('caller-id-3');
    // A URL refused before routing (a bad %-escape).
    const malformed = await rest.send('GET', '/v1/keys/%zz', '', { 'x-request-id': 'caller-id-4' });
    expect(malformed.status).toBe(400);
    expect(malformed.headers['x-request-id']).toBe('caller-id-4');
  });

  it("takes a traceparent's trace id, else makes one", async () => {
    const traced = await rest.send('POST', '/v1/random', '{"length":8}', { 'content-type': 'application/json', traceparent: TRACEPARENT });
    expect(traced.headers['x-request-id']).toBe(TRACE_ID);
    expect(lineOf(TRACE_ID)).toHaveLength(1);

    const bad = await rest.send('POST', '/v1/random', '{"length":8}', { 'content-type': 'application/json', 'x-request-id': 'x'.repeat(MAX_REQUEST_ID_CHARS + 1) });
    const made = bad.headers['x-request-id'] as string;
    expect(made).toMatch(UUID);
    expect(lineOf(made)).toHaveLength(1);
    expect(outcomes.at(-1)?.requestId).toBe(made);
  });
});

describe('request ids over gRPC', () => {
  const { stages, outcomes } = recording();
  let grpc: GrpcFixture;
  beforeAll(async () => {
    grpc = await startGrpc(restTargets[0]!, 64 * 1024, stages);
  });
  afterAll(async () => {
    await grpc?.close();
  });

  /** A KeyService call with this metadata: its error (if any) and trailing metadata. */
  function call(method: string, request: object, headers: Record<string, string>): Promise<{ error: ServiceError | null; trailers: Metadata }> {
    const metadata = new Metadata();
    for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
    return new Promise((resolve) => {
      let error: ServiceError | null = null;
      const c = grpc.client.keyService[method](request, metadata, { deadline: Date.now() + 30_000 }, (e: ServiceError | null) => {
        error = e;
      });
      c.on('status', (s: { metadata: Metadata }) => setImmediate(() => resolve({ error, trailers: s.metadata })));
    });
  }
  const linesOf = (id: string) => grpc.logs().filter((l) => l.msg === 'grpc call' && l.requestId === id);

  it("answers with the caller's x-request-id in the trailers, success or error, and logs it", async () => {
    const ok = await call('GenerateRandom', { length: 8 }, { 'x-request-id': 'grpc-id-1' });
    expect(ok.error).toBeNull();
    expect(ok.trailers.get('x-request-id')).toEqual(['grpc-id-1']);
    expect(linesOf('grpc-id-1')).toHaveLength(1);
    expect(outcomes.at(-1)).toMatchObject({ requestId: 'grpc-id-1', transport: 'grpc' });

    const failed = await call('GetKey', { name: 'no-such-key' }, { 'x-request-id': 'grpc-id-2' });
    expect(failed.error?.metadata.get('hsmbridge-error-code')).toEqual(['KEY_NOT_FOUND']);
    expect(failed.trailers.get('x-request-id')).toEqual(['grpc-id-2']);
    expect(linesOf('grpc-id-2')).toHaveLength(1);
    expect(outcomes.at(-1)).toMatchObject({ requestId: 'grpc-id-2', code: 'KEY_NOT_FOUND' });
  });

  it("takes a traceparent's trace id, else makes one", async () => {
    const traced = await call('GenerateRandom', { length: 8 }, { traceparent: TRACEPARENT });
    expect(traced.trailers.get('x-request-id')).toEqual([TRACE_ID]);
    expect(linesOf(TRACE_ID)).toHaveLength(1);

    const none = await call('GenerateRandom', { length: 8 }, { 'x-request-id': 'bad id' });
    const [made] = none.trailers.get('x-request-id') as string[];
    expect(made).toMatch(UUID);
    expect(linesOf(made!)).toHaveLength(1);
    expect(outcomes.at(-1)?.requestId).toBe(made);
  });
});
