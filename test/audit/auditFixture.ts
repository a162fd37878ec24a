/**
 * The service's REST and gRPC transports on one software backend, with the audit stage on a real
 * trail file and a test identity stage that names the caller by transport; the log lines of both.
 */
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import { softwareBackendFactory } from '../../adapters/software/index.js';
import type { PipelineStages } from '../../src/api/stages.js';
import { openStages } from '../../src/api/stages.js';
import type { AuditConfig } from '../../src/audit/config.js';
import type { OperationRecord } from '../../src/audit/record.js';
import { openAudit } from '../../src/audit/index.js';
import { hashLine } from '../../src/audit/record.js';
import { runHsmb } from '../../src/cli/commands.js';
import { auditStages } from '../../src/audit/stage.js';
import type { AuditTrail } from '../../src/audit/trail.js';
import type { Backend } from '../../src/backend/port.js';
import { FspiopService, ParticipantRegistry } from '../../src/fspiop/index.js';
import { JoseService } from '../../src/jose/joseService.js';
import { KeyService } from '../../src/operations/keyService.js';
import { createPaymentServices } from '../../src/payment/index.js';
import { startGrpcServer, type RunningGrpcServer } from '../../src/transports/grpc/server.js';
import { buildRestServer } from '../../src/transports/rest/server.js';
import { createSoftwareBackendConfig } from '../helpers/software.js';
import { connect, type TestClients } from '../transports/grpc/grpcClient.js';

export const AUDIT_KEY = 'hsmb-audit';

export const trailOptions = (file: string, overrides: Partial<AuditConfig> = {}): AuditConfig => ({
  file,
  checkpointRecords: 1000,
  checkpointMs: 3_600_000,
  flushRecords: 1000,
  flushMs: 3_600_000,
  maxPendingRecords: 10_000,
  keyName: AUDIT_KEY,
  ...overrides,
});

/** A software backend on a temp directory, its KeyService, and a config file that names it (for hsmb). */
export interface BackendHarness {
  /** A temp directory of the test's own. */
  readonly dir: string;
  readonly backend: Backend;
  readonly keys: KeyService;
  /** The service configuration file hsmb reads. */
  readonly configFile: string;
  readonly auditFile: string;
  /** Closes the backend: a software keystore is used by one process at a time, so hsmb can open it only then. */
  stopBackend(): Promise<void>;
  close(): Promise<void>;
}

/** SoftHSM through PKCS#11: a fresh token; its PIN in an environment variable of its own, as in production. */
export async function openSoftHsm(): Promise<BackendHarness> {
  const { pkcs11BackendFactory } = await import('../../adapters/pkcs11/index.js');
  const { createSoftHsmToken } = await import('../helpers/softhsm.js');
  const token = await createSoftHsmToken();
  const dir = await mkdtemp(join(tmpdir(), 'hsmb-audit-'));
  const backend = await pkcs11BackendFactory.create(token.backendConfig(), { logger: pino({ level: 'silent' }) });
  const configFile = join(dir, 'config.json');
  await writeFile(configFile, JSON.stringify({ backend: { type: 'pkcs11', pkcs11: token.backendConfig() } }));
  let stopped = false;
  const stopBackend = async () => {
    if (!stopped) await backend.close();
    stopped = true;
  };
  return {
    dir,
    backend,
    keys: new KeyService(backend, { limits: { maxDataBytes: 16 * 1024, maxRandomBytes: 256 }, metadataCacheTtlMs: 0 }),
    configFile,
    auditFile: join(dir, 'audit.jsonl'),
    stopBackend,
    async close() {
      await stopBackend();
      await token.cleanup();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export async function openSoftware(): Promise<BackendHarness> {
  const harness = await createSoftwareBackendConfig();
  const backend = await softwareBackendFactory.create(harness.config, { logger: pino({ level: 'silent' }) });
  const configFile = join(harness.dir, 'config.json');
  let stopped = false;
  const stopBackend = async () => {
    if (!stopped) await backend.close();
    stopped = true;
  };
  await writeFile(configFile, JSON.stringify({ backend: { type: 'software', software: harness.config } }));
  return {
    dir: harness.dir,
    backend,
    keys: new KeyService(backend, { limits: { maxDataBytes: 16 * 1024, maxRandomBytes: 256 }, metadataCacheTtlMs: 0 }),
    configFile,
    auditFile: join(harness.dir, 'audit.jsonl'),
    stopBackend,
    async close() {
      await stopBackend();
      await harness.cleanup();
    },
  };
}

export interface AuditedService {
  readonly env: BackendHarness;
  readonly trail: AuditTrail;
  readonly rest: FastifyInstance;
  readonly grpc: RunningGrpcServer;
  readonly client: TestClients;
  readonly otpIncomingKeys: string[];
  logText(): string;
  close(): Promise<void>;
}

/** The caller the test identity stage establishes: one per transport, so that records show which one called. */
export const callerOf = (transport: string) => `tester-${transport}`;

/** The service on `env`, auditing to env.auditFile (or to `trail`, a trail the test built itself). */
export async function startAudited(env: BackendHarness, options: Partial<AuditConfig> = {}, given?: (logger: Logger) => AuditTrail): Promise<AuditedService> {
  let logs = '';
  const logger: Logger = pino(
    { level: 'trace' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        logs += chunk.toString('utf8');
        done();
      },
    }),
  );
  // As src/app.ts wires it (openAudit), unless the test built its own trail.
  const audit = given ? { trail: given(logger), stages: undefined } : await openAudit(trailOptions(env.auditFile, options), env.keys, logger);
  const trail = audit.trail;
  const stages: PipelineStages = {
    ...openStages,
    identify: async (credentials) => ({ authenticatedBy: 'certificate', id: callerOf(credentials.transport) }),
    ...(audit.stages ?? auditStages(trail, AUDIT_KEY)),
  };
  const service = env.keys;
  const participants = await ParticipantRegistry.open({ logger });
  const fspiop = { service: new FspiopService({ keyService: service, registry: participants }), participants };
  const jose = new JoseService(service);
  const otpIncomingKeys: string[] = [];
  const payment = createPaymentServices(service, jose, { participants, otpIncomingKeys, logger });
  const rest = await buildRestServer({ service, jose, fspiop, payment, logger, maxRequestBytes: 64 * 1024, stages });
  const grpc = await startGrpcServer({ service, jose, fspiop, payment, logger, host: '127.0.0.1', port: 0, maxMessageBytes: 64 * 1024, stages });
  const client = connect(grpc.port);
  return {
    env,
    trail,
    rest,
    grpc,
    client,
    otpIncomingKeys,
    logText: () => logs,
    async close() {
      client.close();
      await grpc.close();
      await rest.close();
      await participants.close();
      await trail.close();
    },
  };
}

/** Runs `hsmb audit verify FILE --config CONFIG` in process; its exit code and output. */
export async function verify(env: BackendHarness, file: string, extra: readonly string[] = []): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const io = { env: process.env, out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
  const code = await runHsmb(['audit', 'verify', file, '--config', env.configFile, ...extra], io);
  return { code, out: lines.join('\n') };
}

/** The trail's lines with record `at` (0-based) edited and the chain after it rewritten, as someone without the audit key could. */
export function rewriteAfterEdit(lines: readonly string[], at: number): string[] {
  const rewritten: string[] = [];
  const newHash = new Map<number, string>();
  for (const [i, line] of lines.entries()) {
    const record = JSON.parse(line) as Record<string, any>;
    if (i === at) record.outcome = 'KEY_NOT_FOUND';
    if (i > 0) record.prev = hashLine(rewritten[i - 1]!);
    if (record.type === 'checkpoint' && newHash.has(record.covers.seq)) record.covers.hash = newHash.get(record.covers.seq);
    rewritten.push(JSON.stringify(record));
    newHash.set(record.seq, hashLine(rewritten[i]!));
  }
  return rewritten;
}

/** The operation records in an audit file, once the trail writing it has flushed. */
export async function operationRecordsIn(trail: { flush(): Promise<void> }, file: string): Promise<OperationRecord[]> {
  await trail.flush();
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as { type: string })
    .filter((record): record is OperationRecord => record.type === 'operation');
}
