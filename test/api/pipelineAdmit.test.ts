/**
 * The pipeline's admit stage and the keys-used field (pure logic, no backend): admit runs after
 * authorize and before the operation, and its refusal keeps the operation from running and is audited;
 * the audit stage sees the key versions the operation's keysUsed reads from its result.
 */
import { describe, expect, it } from 'vitest';
import { keyUse, operation, type ServicesFor } from '../../src/api/declaration.js';
import { Pipeline, RequestContext } from '../../src/api/pipeline.js';
import { openStages, type Outcome, type PipelineStages } from '../../src/api/stages.js';
import { HsmBridgeError } from '../../src/errors.js';

const services = {} as ServicesFor;

function recordingStages(admit?: () => void) {
  const steps: string[] = [];
  const outcomes: Outcome[] = [];
  const stages: PipelineStages = {
    ...openStages,
    authorize: () => void steps.push('authorize'),
    admit: () => {
      steps.push('admit');
      admit?.();
    },
    audit: async (o) => void outcomes.push(o),
  };
  const op = operation<{ name: string }, { keyVersion: number }>({
    name: 'test.versioned',
    tag: 'keys',
    summary: 'a made-up operation on one key',
    description: 'for the pipeline tests',
    errors: [],
    keys: (i) => [i.name],
    keysUsed: (r, i) => keyUse(i.name, r.keyVersion),
    run: async () => {
      steps.push('run');
      return { keyVersion: 3 };
    },
    rest: { method: 'POST', path: '/versioned', decode: () => ({ name: 'k1' }), encode: () => ({}) },
    grpc: { service: 'KeyService', method: 'Versioned', decode: () => ({ name: 'k1' }), encode: () => ({}) },
  });
  const run = () => new Pipeline(services, stages).run(op, new RequestContext(op, 'rest'), {}, () => ({ name: 'k1' }), () => ({}));
  return { steps, outcomes, run };
}

describe('the admit stage and keysUsed', () => {
  it('admit runs after authorize and before the operation; the audit stage sees the key version used', async () => {
    const { steps, outcomes, run } = recordingStages();
    await run();
    expect(steps).toEqual(['authorize', 'admit', 'run']);
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0]).toMatchObject({ keyNames: ['k1'], keysUsed: [{ name: 'k1', version: 3 }] });
    expect(outcomes[0]!.code).toBeUndefined();
  });

  it('a refusal by admit keeps the operation from running, and is audited with its code and no version', async () => {
    const { steps, outcomes, run } = recordingStages(() => {
      throw new HsmBridgeError('AUDIT_UNAVAILABLE', 'the audit trail cannot be written; retry later');
    });
    await expect(run()).rejects.toMatchObject({ code: 'AUDIT_UNAVAILABLE', httpStatus: 503, grpcStatus: 14 });
    expect(steps).toEqual(['authorize', 'admit']);
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0]).toMatchObject({ keyNames: ['k1'], code: 'AUDIT_UNAVAILABLE' });
    expect(outcomes[0]!.keysUsed).toBeUndefined();
  });
});
