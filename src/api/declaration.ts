/**
 * What an API operation is, declared once: its name (which is also the permission it needs), its REST
 * route and gRPC rpc with the wire mapping of each, the fields that name keys or participants, the fields
 * that hold secrets, and the function that does the work. The transports build their routes and rpcs
 * from these declarations (src/transports/), the OpenAPI document lists them, and the request pipeline
 * (./pipeline.ts) runs every one of them through the same stages.
 */
import type { AuditDetails, ErrorCode } from '../errors.js';
import type { FspiopService, ParticipantRegistry } from '../fspiop/index.js';
import type { JoseService } from '../jose/joseService.js';
import type { KeyService } from '../operations/keyService.js';
import type { PaymentServices } from '../payment/index.js';
import type { Caller } from './stages.js';

/** The core services operations run on. Only KeyService is always there; a transport built without the others leaves their operations out. */
export interface Services {
  readonly keys: KeyService;
  /** JWS, JWE and the JWKS document. */
  readonly jose?: JoseService;
  /** FSPIOP signatures and the participant key registry they validate with. */
  readonly fspiop?: FspiopServices;
  /** PIN translation, the OTP-to-JWE flow and TR-31 key exchange. */
  readonly payment?: PaymentServices;
}

export interface FspiopServices {
  readonly service: FspiopService;
  readonly participants: ParticipantRegistry;
}

/** A service an operation needs beside KeyService. */
export type OptionalService = 'jose' | 'fspiop' | 'payment';

/** The services an operation's `run` sees: the one it `needs` is there (the transports register it only then). */
export type ServicesFor = Services & Required<Pick<Services, OptionalService>>;

/** Groups of operations: an OpenAPI tag, and the first part of the operation's name. */
export const operationTags = {
  keys: 'Key lifecycle and key operations: create, rotate, sign, verify, encrypt, decrypt, MAC',
  system: 'Random bytes and the backend\'s capabilities',
  jose: 'JWS and JWE with keys of this service, and the JWKS document',
  fspiop: 'Mojaloop FSPIOP signatures (API Signature v1.1) and participant keys',
  payment: 'PIN translation, PIN blocks to JWE, TR-31 key exchange',
  ceremonies: 'Key ceremonies: a payment key formed from clear components entered by different custodians (dual control)',
} as const;
export type OperationTag = keyof typeof operationTags;

export type JsonSchema = Record<string, unknown>;

/** A REST request after fastify parsed it and checked it against the route's schemas. */
export interface RestRequest {
  readonly params: any;
  readonly body: any;
}

export interface RestBinding<In, Out> {
  readonly method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** fastify syntax: /v1/keys/:name/sign */
  readonly path: string;
  readonly params?: JsonSchema;
  readonly body?: JsonSchema;
  /** The body as the OpenAPI document shows it, when the route checks part of it later (a batch's items, one by one). */
  readonly documentedBody?: JsonSchema;
  /** The success answer's schema; absent for an answer without a body (204). */
  readonly response?: JsonSchema;
  /** Success status; default 200. */
  readonly status?: 200 | 201 | 204;
  /** `services` for limits that concern the request as a whole (a batch's item count), checked before the rest is read. */
  decode(request: RestRequest, services: ServicesFor): In;
  /** The JSON answer; ignored for 204. */
  encode(out: Out, input: In): unknown;
}

/** The hsmbridge.v1 services (proto/hsmbridge/v1/*.proto). */
export const grpcServices = {
  KeyService: 'hsmbridge.v1.KeyService',
  JoseService: 'hsmbridge.v1.JoseService',
  FspiopService: 'hsmbridge.v1.FspiopService',
  PaymentService: 'hsmbridge.v1.PaymentService',
} as const;
export type GrpcServiceName = keyof typeof grpcServices;

export interface GrpcBinding<In, Out> {
  readonly service: GrpcServiceName;
  readonly method: string;
  /** The request message as @grpc/proto-loader decodes it (camelCase, bytes as Buffer, defaults filled in). */
  decode(message: any, services: ServicesFor): In;
  encode(out: Out, input: In): unknown;
}

/** A key an operation used: its name, and the version when the operation knows it (absent: every version, or none yet). */
export interface KeyUse {
  readonly name: string;
  readonly version?: number;
}

/** The KeyUse list of one key, empty when there is no key of ours (a JWE to an outside JWK). */
export const keyUse = (name: string | undefined, version?: number): KeyUse[] =>
  name === undefined ? [] : [version === undefined ? { name } : { name, version }];

export interface Operation<In = any, Out = any> {
  /** `<group>.<action>`, e.g. keys.sign: the permission it needs unless `permission` names another. */
  readonly name: string;
  /** The policy permission it needs, when two operations share one (keys.import and keys.importVersion). */
  readonly permission?: string;
  /** Its OpenAPI operationId, when not the rpc's name with a lower-case first letter (FSPIOP's Sign would clash with KeyService's). */
  readonly operationId?: string;
  readonly tag: OperationTag;
  readonly summary: string;
  readonly description: string;
  /** Error codes this operation can return beyond those of the transport itself (bad input, size, internal). */
  readonly errors: readonly ErrorCode[];
  /** A service beside KeyService that it runs on. */
  readonly needs?: OptionalService;
  /** The key names it uses (as given: the log keeps only well-formed ones). */
  keys?(input: In): readonly unknown[];
  /**
   * Key names it uses that only the backend knows (a ceremony's key, by the ceremony's id), read before the
   * policy decides; [] when there is nothing to name (the operation then fails on its own terms).
   */
  resolveKeys?(services: ServicesFor, input: In): Promise<readonly unknown[]>;
  /** The FSPIOP participants it reads or changes. */
  participants?(input: In): readonly unknown[];
  /** The keys it used, with the version of each, read from its result (for the audit record). */
  keysUsed?(out: Out, input: In): readonly KeyUse[];
  /** Facts for its audit record beyond caller, keys and outcome (a failure adds those its error carries). */
  auditDetails?(input: In, out: Out | undefined): AuditDetails;
  /** It changes a key or a participant: its audit record is on disk before the answer leaves. */
  readonly changesState?: true;
  /**
   * Buffer fields that hold secrets, by path (./secretFields.ts): `input` ones, in the request and the
   * decoded input, are zeroed once the operation has run; `output` ones, in its result and the gRPC answer
   * alike, once the answer is encoded (gRPC: serialized). Secrets are never logged in any case.
   */
  readonly secrets?: { readonly input?: readonly string[]; readonly output?: readonly string[] };
  /**
   * Who may call it. Default: a caller the access policy allows. 'authenticated': any identified caller
   * (whoami). 'open': anyone, without identity or policy (the JWKS document, public by nature).
   */
  readonly access?: 'authenticated' | 'open';
  /** The work; `caller` is the identified caller (whoami answers with it). */
  run(services: ServicesFor, input: In, caller: Caller): Promise<Out>;
  readonly rest: RestBinding<In, Out>;
  readonly grpc: GrpcBinding<In, Out>;
}

/** Declares an operation; the identity function, there to infer In and Out across its parts. */
export function operation<In, Out>(declaration: Operation<In, Out>): Operation<In, Out> {
  return declaration;
}

/** The permission an operation needs in the access policy. */
export const permissionOf = (op: Pick<Operation, 'name' | 'permission'>): string => op.permission ?? op.name;

/** The OpenAPI operationId: GenerateMac -> generateMac, unless the declaration names one. */
export function operationId(op: Pick<Operation, 'operationId' | 'grpc'>): string {
  return op.operationId ?? op.grpc.method.charAt(0).toLowerCase() + op.grpc.method.slice(1);
}
