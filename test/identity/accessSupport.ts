/**
 * The parts the identity and policy tests share: a token issuer (a test key signing JWTs with `jose`,
 * its JWK Set in a file), the REST and gRPC servers on the software backend with the access stages (and,
 * when asked, the audit trail), and a gRPC caller that sends a bearer token and a request id and reports
 * the status and hsm-bridge error code.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { credentials as grpcCredentials, loadPackageDefinition, Metadata, type ChannelCredentials, type Client, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { FastifyInstance } from 'fastify';
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from 'jose';
import { pino, type Logger } from 'pino';
import { softwareBackendFactory } from '../../adapters/software/index.js';
import { openStages } from '../../src/api/stages.js';
import { openAudit, type Audit, type AuditConfig } from '../../src/audit/index.js';
import type { Backend } from '../../src/backend/port.js';
import { FspiopService, ParticipantRegistry } from '../../src/fspiop/index.js';
import type { AccessConfig } from '../../src/identity/config.js';
import { createAccessStages, type AccessStages } from '../../src/identity/stages.js';
import { JoseService } from '../../src/jose/joseService.js';
import { KeyService } from '../../src/operations/keyService.js';
import { createPaymentServices } from '../../src/payment/index.js';
import { findProtoRoot } from '../../src/transports/grpc/protos.js';
import { startGrpcServer, type RunningGrpcServer } from '../../src/transports/grpc/server.js';
import { buildRestServer } from '../../src/transports/rest/server.js';
import type { TlsMaterial } from '../../src/transports/tls.js';
import { createSoftwareBackendConfig } from '../helpers/software.js';

export const ISSUER = 'https://idp.test.example';
export const AUDIENCE = 'hsm-bridge';

export interface TokenIssuer {
  readonly jwks: { keys: JWK[] };
  /** A signed token for `sub` with these claims; `options` bend it for the refusal tests. */
  token(sub: string, claims?: JWTPayload, options?: { issuer?: string; audience?: string; expiresAt?: number; kid?: string }): Promise<string>;
}

export async function tokenIssuer(kid = 'test-key-1'): Promise<TokenIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  return {
    jwks: { keys: [jwk] },
    token: (sub, claims = {}, options = {}) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid: options.kid ?? kid })
        .setSubject(sub)
        .setIssuer(options.issuer ?? ISSUER)
        .setAudience(options.audience ?? AUDIENCE)
        .setIssuedAt()
        .setExpirationTime(options.expiresAt ?? Math.floor(Date.now() / 1000) + 600)
        .sign(privateKey),
  };
}

/** A log that the test can read. */
export function capturedLogger(): { logger: Logger; lines: () => Array<Record<string, unknown>> } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

export const tempDir = (): { dir: string; at: (name: string) => string; remove: () => void } => {
  const dir = mkdtempSync(join(tmpdir(), 'hsmb-access-'));
  return { dir, at: (name) => join(dir, name), remove: () => rmSync(dir, { recursive: true, force: true }) };
};

export interface AccessServers {
  readonly rest: FastifyInstance;
  readonly grpc: RunningGrpcServer;
  readonly stages: AccessStages;
  /** The audit trail, when the servers were started with one. */
  readonly audit?: Audit;
  readonly service: KeyService;
  readonly participants: ParticipantRegistry;
  close(): Promise<void>;
}

export type BackendName = 'software' | 'SoftHSM';

async function openBackend(name: BackendName, logger: Logger): Promise<{ backend: Backend; cleanup(): Promise<void> }> {
  if (name === 'software') {
    const harness = await createSoftwareBackendConfig();
    return { backend: await softwareBackendFactory.create(harness.config, { logger }), cleanup: () => harness.cleanup() };
  }
  const { pkcs11BackendFactory } = await import('../../adapters/pkcs11/index.js');
  const { createSoftHsmToken } = await import('../helpers/softhsm.js');
  const token = await createSoftHsmToken();
  return { backend: await pkcs11BackendFactory.create(token.backendConfig({}), { logger }), cleanup: () => token.cleanup() };
}

/** REST and gRPC on one backend (default: software), both with the access stages of `access` and, given `auditConfig`, the audit trail. */
export async function startAccessServers(
  access: AccessConfig,
  logger: Logger,
  tls?: { rest?: TlsMaterial; grpc?: TlsMaterial },
  backendName: BackendName = 'software',
  auditConfig?: AuditConfig,
): Promise<AccessServers> {
  const { backend, cleanup } = await openBackend(backendName, logger);
  const service = new KeyService(backend, { limits: { maxDataBytes: 4096, maxRandomBytes: 256 }, metadataCacheTtlMs: 0 });
  const participants = await ParticipantRegistry.open({ logger });
  const jose = new JoseService(service);
  const fspiop = { service: new FspiopService({ keyService: service, registry: participants }), participants };
  const payment = createPaymentServices(service, jose, { participants, otpIncomingKeys: [], logger });
  const audit = auditConfig && (await openAudit(auditConfig, service, logger));
  const stages = createAccessStages(access, logger);
  // As src/app.ts composes them: identity, policy and (when asked) audit here, metrics open.
  const pipelineStages = { ...openStages, identify: stages.identify, authorize: stages.authorize, ...audit?.stages };
  const rest = await buildRestServer({ service, jose, fspiop, payment, logger, maxRequestBytes: 64 * 1024, stages: pipelineStages, ...(tls?.rest ? { tls: tls.rest } : {}) });
  const grpc = await startGrpcServer({ service, jose, fspiop, payment, logger, host: '127.0.0.1', port: 0, maxMessageBytes: 64 * 1024, stages: pipelineStages, ...(tls?.grpc ? { tls: tls.grpc } : {}) });
  return {
    rest,
    grpc,
    stages,
    ...(audit ? { audit } : {}),
    service,
    participants,
    async close() {
      await grpc.close();
      await rest.close();
      await audit?.close();
      stages.close();
      await participants.close();
      await backend.close();
      await cleanup();
    },
  };
}

export type GrpcServiceName = 'KeyService' | 'JoseService' | 'FspiopService' | 'PaymentService';

/** What a gRPC call ended with: status 0 and the answer, or the status and hsm-bridge error code. */
export interface GrpcOutcome {
  readonly status: number;
  readonly code?: string;
  readonly message?: string;
  readonly answer?: Record<string, any>;
}

export interface GrpcCaller {
  /** `requestId` is sent as x-request-id, which the service takes as the request's id (logs, audit records). */
  call(service: GrpcServiceName, method: string, request: Record<string, unknown>, token?: string, requestId?: string): Promise<GrpcOutcome>;
  close(): void;
}

export function grpcCaller(port: number, channel: ChannelCredentials = grpcCredentials.createInsecure(), options: Record<string, string> = {}): GrpcCaller {
  const definition = loadSync(['hsmbridge/v1/key_service.proto', 'hsmbridge/v1/jose_service.proto', 'hsmbridge/v1/fspiop_service.proto', 'hsmbridge/v1/payment_service.proto'], {
    includeDirs: [findProtoRoot()],
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = (loadPackageDefinition(definition) as any).hsmbridge.v1;
  const clients = new Map<GrpcServiceName, Client & Record<string, any>>();
  for (const name of ['KeyService', 'JoseService', 'FspiopService', 'PaymentService'] as const) {
    clients.set(name, new (pkg[name] as ServiceClientConstructor)(`127.0.0.1:${port}`, channel, options) as Client & Record<string, any>);
  }
  return {
    call: (service, method, request, token, requestId) =>
      new Promise((resolve) => {
        const metadata = new Metadata();
        if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
        if (requestId !== undefined) metadata.set('x-request-id', requestId);
        const client = clients.get(service)!;
        client[method]!.call(client, request, metadata, { deadline: Date.now() + 30_000 }, (error: ServiceError | null, answer: Record<string, any>) => {
          if (!error) resolve({ status: 0, answer });
          else resolve({ status: error.code, code: error.metadata?.get('hsmbridge-error-code')[0] as string | undefined, message: error.details });
        });
      }),
    close: () => clients.forEach((c) => c.close()),
  };
}

export function writeJson(path: string, value: unknown): void {
  writeFileSync(path, JSON.stringify(value));
}
