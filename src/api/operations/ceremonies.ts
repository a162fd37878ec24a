/**
 * Key ceremonies: start one, enter components (each by another custodian), read its progress, cancel it.
 * Every rule (types, parity, KCVs, dual control, expiry) is CeremonyService's; components are hex on both
 * transports and are zeroed once the operation has run.
 */
import { invalid, type AuditDetails, type ErrorCode } from '../../errors.js';
import type { CeremonyView, EnterResult } from '../../ceremonies/ceremonyService.js';
import { keyUse, operation, type Operation, type ServicesFor } from '../declaration.js';
import type * as msg from '../grpcMessages.js';
import { keyMessage, keyView, type KeyView } from '../keyView.js';
import * as schemas from '../schemas.js';
import { grpcKeyService } from './keys.js';
import { given } from '../wire.js';

const ceremonyErrors: ErrorCode[] = ['CEREMONY_NOT_FOUND', 'CEREMONY_EXPIRED', 'UNSUPPORTED_BY_BACKEND', 'BACKEND_UNAVAILABLE'];
const COMPONENT_HEX = new RegExp(schemas.COMPONENT_HEX_PATTERN);

/** The component as the service takes it: bytes, from hex that REST's schema (or this check, on gRPC) has vetted. */
function componentBytes(hex: unknown): Buffer {
  if (typeof hex !== 'string' || !COMPONENT_HEX.test(hex)) throw invalid('component is 32, 48 or 64 hex digits');
  // Unpooled (Buffer.from would use Node's shared pool slab), so that zeroing it leaves no copy behind.
  const component = Buffer.alloc(hex.length / 2);
  component.write(hex, 'hex');
  return component;
}

function ceremonyMessage(view: CeremonyView): msg.CeremonyMessage {
  return { ...view, entries: [...view.entries] };
}

interface Entered {
  readonly result: EnterResult;
  /** The new key after the last component. */
  readonly key?: KeyView;
}

/** The ceremony id for the audit record, when well formed (the record never quotes input that failed its check). */
const idDetail = (id: unknown): AuditDetails => (typeof id === 'string' && /^[0-9a-f]{32}$/.test(id) ? { ceremony: id } : {});

/** The key a ceremony forms: the access policy's key globs govern its ceremony too. */
const ceremonyKey = async (s: ServicesFor, i: { id: unknown }) => {
  const name = await s.keys.ceremonies.keyNameOf(i.id);
  return name === undefined ? [] : [name];
};

const progress = ({ result }: Entered) => ({ received: result.received, of: result.of });

export const ceremonyOperations: Operation[] = [
  operation({
    name: 'ceremonies.create',
    tag: 'ceremonies',
    summary: 'Start a key ceremony: a payment key formed from 2 or 3 components',
    description:
      'Plans the key (TDES_2KEY, TDES_3KEY, AES_128 or AES_256; purpose pin, bdk, kbpk or mac). Each component is then entered by a different identified custodian; the ceremony expires after ceremonies.ttlMs.',
    errors: ['UNSUPPORTED_BY_BACKEND', 'INCOMPATIBLE_KEY', 'KEY_ALREADY_EXISTS', 'DUAL_CONTROL', 'BACKEND_UNAVAILABLE'],
    keys: (i) => [i.name],
    changesState: true,
    auditDetails: (_i, out): AuditDetails => (out ? { ceremony: out.id, components: out.components } : {}),
    run: (s, i: { name: unknown; type: unknown; purpose: unknown; keyUsage?: unknown; exportable?: unknown; components: unknown; expectedKcv?: unknown }, caller) => s.keys.ceremonies.start(i, caller),
    rest: { method: 'POST', path: '/v1/ceremonies', body: schemas.startCeremonyBody, response: schemas.ceremonySchema, status: 201, decode: (r) => r.body, encode: (v) => v },
    grpc: {
      ...grpcKeyService('StartCeremony'),
      decode: (m: msg.StartCeremonyRequest) => ({
        name: m.name,
        type: m.type,
        purpose: m.purpose,
        keyUsage: given(m.keyUsage),
        exportable: m.exportable,
        components: m.components,
        expectedKcv: given(m.expectedKcv),
      }),
      encode: ceremonyMessage,
    },
  }),
  operation({
    name: 'ceremonies.enterComponent',
    tag: 'ceremonies',
    summary: 'Enter one component of a key ceremony',
    description:
      'The component (hex) is checked against its KCV (and, TDES, for odd parity) and staged in the backend; the same identity never enters two components. After the last one the key is formed and the answer is the new key with its keyCheckValue.',
    errors: [...ceremonyErrors, 'KCV_MISMATCH', 'DUAL_CONTROL', 'CEREMONY_CONFLICT', 'INCOMPATIBLE_KEY', 'KEY_ALREADY_EXISTS'],
    resolveKeys: ceremonyKey,
    changesState: true,
    secrets: { input: ['component'] },
    keysUsed: (out) => (out.result.completed ? keyUse(out.result.key.name, out.result.key.primaryVersion) : []),
    auditDetails: (i, out): AuditDetails => ({
      ...idDetail(i.id),
      ...(out ? { component: out.result.number, kcvMatched: true, completed: out.result.completed } : {}),
    }),
    run: async (s, i: { id: unknown; component: Buffer; kcv: unknown }, caller): Promise<Entered> => {
      const result = await s.keys.ceremonies.enter(i, caller);
      return result.completed ? { result, key: await keyView(s.keys, result.key) } : { result };
    },
    rest: {
      method: 'POST',
      path: '/v1/ceremonies/:id/components',
      params: schemas.ceremonyIdParams,
      body: schemas.enterComponentBody,
      response: schemas.enterComponentResult,
      decode: ({ params, body }) => ({ id: params.id, component: componentBytes(body.component), kcv: body.kcv }),
      encode: (out) => (out.result.completed ? { ...progress(out), ...out.key, keyCheckValue: out.result.keyCheckValue } : progress(out)),
    },
    grpc: {
      ...grpcKeyService('EnterComponent'),
      decode: (m: msg.EnterComponentRequest) => ({ id: m.id, component: componentBytes(m.component), kcv: m.kcv }),
      encode: (out): msg.EnterComponentResponse =>
        out.result.completed ? { ...progress(out), key: keyMessage(out.key!), keyCheckValue: out.result.keyCheckValue } : progress(out),
    },
  }),
  operation({
    name: 'ceremonies.get',
    tag: 'ceremonies',
    summary: 'Read a key ceremony\'s progress',
    description: 'Its plan, how many components are entered, by whom and when, with their KCVs; never a component.',
    errors: ceremonyErrors,
    resolveKeys: ceremonyKey,
    run: (s, i: { id: unknown }) => s.keys.ceremonies.describe(i.id),
    rest: { method: 'GET', path: '/v1/ceremonies/:id', params: schemas.ceremonyIdParams, response: schemas.ceremonySchema, decode: (r) => ({ id: r.params.id }), encode: (v) => v },
    grpc: { ...grpcKeyService('GetCeremony'), decode: (m: msg.CeremonyIdRequest) => ({ id: m.id }), encode: ceremonyMessage },
  }),
  operation({
    name: 'ceremonies.cancel',
    tag: 'ceremonies',
    summary: 'Cancel a key ceremony',
    description: 'Ends it and destroys the components staged so far.',
    errors: ceremonyErrors,
    resolveKeys: ceremonyKey,
    changesState: true,
    auditDetails: (i) => idDetail(i.id),
    run: (s, i: { id: unknown }) => s.keys.ceremonies.cancel(i.id),
    rest: { method: 'DELETE', path: '/v1/ceremonies/:id', params: schemas.ceremonyIdParams, status: 204, decode: (r) => ({ id: r.params.id }), encode: () => undefined },
    grpc: { ...grpcKeyService('CancelCeremony'), decode: (m: msg.CeremonyIdRequest) => ({ id: m.id }), encode: (): Record<string, never> => ({}) },
  }),
];
