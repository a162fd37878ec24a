/**
 * The operation declarations against the hand-written contract and what the transports derive from them:
 * every rpc of every hsmbridge.v1 service (read from the .proto files here, independently of the server)
 * has exactly one declaration and the reverse; the REST server has each declared route and no other API
 * route; the OpenAPI document lists each operation with its tag and description; and the request fields
 * of REST and gRPC agree, up to the wire differences written out below.
 */
import { loadSync } from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grpcServices, operationId, operations, operationTags, type Operation } from '../../src/api/index.js';
import { findProtoRoot } from '../../src/transports/grpc/protos.js';
import { restTargets, startRest, type RestFixture } from '../transports/rest/restFixture.js';

interface Field { name: string; oneofIndex?: number }
interface MessageType { field: Field[]; oneofDecl: Array<{ name: string }> }
interface Rpc { requestType: { type: MessageType } }

const definitions = loadSync(
  ['hsmbridge/v1/key_service.proto', 'hsmbridge/v1/jose_service.proto', 'hsmbridge/v1/fspiop_service.proto', 'hsmbridge/v1/payment_service.proto'],
  { includeDirs: [findProtoRoot()], keepCase: false, defaults: true, oneofs: true },
);
const rpcsOf = (service: string) => definitions[service] as unknown as Record<string, Rpc>;

/** The request fields of an rpc, with each oneof's name (a proto3 `optional` is a synthetic oneof "_field"). */
function protoFields(rpc: Rpc): Set<string> {
  const { field, oneofDecl } = rpc.requestType.type;
  return new Set([...field.map((f) => f.name), ...oneofDecl.map((o) => o.name).filter((n) => !n.startsWith('_'))]);
}

function restFields(op: Operation): Set<string> {
  const props = (schema: unknown) => Object.keys(((schema as { properties?: object } | undefined)?.properties ?? {}) as object);
  return new Set([...props(op.rest.params), ...props(op.rest.body)]);
}

/**
 * Where the two wire forms differ on purpose: REST-only fields, and gRPC fields that REST nests in an
 * object (a oneof on gRPC). Anything else that differs is drift.
 */
const wireDifferences: Record<string, { restOnly?: string[]; grpcOnly?: string[] }> = {
  // gRPC names the oneof around message | digest.
  'keys.sign': { grpcOnly: ['input'] },
  'keys.verify': { grpcOnly: ['input'] },
  'keys.verifyMac': { restOnly: ['macHex'] },
  'jwe.encrypt': { grpcOnly: ['key', 'jwk', 'keyVersion'] },
  'pin.toJwe': { grpcOnly: ['key', 'participant'] },
};

describe('operation declarations', () => {
  it('have unique, well-formed names that start with a group, a known tag, a summary and a description', () => {
    const names = operations.map((op) => op.name);
    expect(new Set(names).size).toBe(names.length);
    for (const op of operations) {
      expect(op.name, op.name).toMatch(/^[a-z]+(\.[a-z][A-Za-z0-9]*)+$/);
      expect(Object.keys(operationTags), op.name).toContain(op.tag);
      expect(op.summary.length, op.name).toBeGreaterThan(10);
      expect(op.description.length, op.name).toBeGreaterThan(10);
    }
    const ids = operations.map(operationId);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('cover every rpc of every hsmbridge.v1 service exactly once, and name no rpc the contract lacks', () => {
    const declared = operations.map((op) => `${grpcServices[op.grpc.service]}/${op.grpc.method}`).sort();
    const contract = Object.values(grpcServices).flatMap((service) => Object.keys(rpcsOf(service)).map((method) => `${service}/${method}`)).sort();
    expect(declared).toEqual(contract);
  });

  it('take the same request fields on REST as the rpc does on gRPC, but for the declared wire differences', () => {
    for (const op of operations) {
      const grpc = protoFields(rpcsOf(grpcServices[op.grpc.service])[op.grpc.method]!);
      const rest = restFields(op);
      const restOnly = [...rest].filter((f) => !grpc.has(f)).sort();
      const grpcOnly = [...grpc].filter((f) => !rest.has(f)).sort();
      const expected = wireDifferences[op.name] ?? {};
      expect({ op: op.name, restOnly, grpcOnly }).toEqual({
        op: op.name,
        restOnly: (expected.restOnly ?? []).sort(),
        grpcOnly: (expected.grpcOnly ?? []).sort(),
      });
    }
  });

  it('say which fields name keys, on the decoded input of an operation that takes one', () => {
    const byName = new Map(operations.map((op) => [op.name, op]));
    expect(byName.get('keys.sign')!.keys!({ name: 'k1' })).toEqual(['k1']);
    expect(byName.get('pin.translate')!.keys!({ incoming: { keyName: 'in' }, outgoing: { keyName: 'out' } })).toEqual(['in', 'out', undefined]);
    expect(byName.get('jwe.encrypt')!.keys!({ recipient: { jwk: {} } })).toEqual([undefined]);
    expect(byName.get('fspiop.participants.write')!.participants!({ id: 'payerfsp' })).toEqual(['payerfsp']);
    expect(byName.get('pin.toJwe')!.participants!({ incoming: { keyName: 'in' }, recipient: { participant: 'payeefsp' } })).toEqual(['payeefsp']);
    // Operations that name no key say so.
    for (const name of ['keys.list', 'system.random', 'system.capabilities', 'jose.jwks', 'fspiop.participants.list']) expect(byName.get(name)!.keys).toBeUndefined();
  });
});

describe('what the REST transport and the OpenAPI document derive from the declarations', () => {
  let rest: RestFixture;
  let doc: any;

  beforeAll(async () => {
    rest = await startRest(restTargets.find((t) => t.label === 'software')!);
    doc = (await rest.call('GET', '/openapi.json')).body;
  });
  afterAll(async () => {
    await rest?.close();
  });

  it('registers each declared route, and documents it with its operationId, tag and description', () => {
    for (const op of operations) {
      expect(rest.app.hasRoute({ method: op.rest.method, url: op.rest.path }), `${op.rest.method} ${op.rest.path}`).toBe(true);
      const documented = doc.paths[op.rest.path.replace(/:([A-Za-z]+)/g, '{$1}')]?.[op.rest.method.toLowerCase()];
      expect(documented, op.name).toMatchObject({ operationId: operationId(op), tags: [op.tag], summary: op.summary, description: op.description });
    }
  });

  it('has no API route without a declaration: the rest are the transport\'s own (health, this document)', () => {
    const declared = new Set(operations.map((op) => `${op.rest.method.toLowerCase()} ${op.rest.path.replace(/:([A-Za-z]+)/g, '{$1}')}`));
    const documented = Object.entries(doc.paths as Record<string, object>).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`));
    expect(documented.filter((route) => !declared.has(route)).sort()).toEqual(['get /health/live', 'get /health/ready', 'get /openapi.json']);
    for (const route of documented) {
      const [method, path] = route.split(' ') as [string, string];
      expect(doc.paths[path][method].tags.length, route).toBeGreaterThan(0);
      expect(doc.paths[path][method].description, route).toBeTruthy();
    }
    expect(doc.tags.map((t: { name: string }) => t.name)).toEqual([...Object.keys(operationTags), 'service']);
  });
});
