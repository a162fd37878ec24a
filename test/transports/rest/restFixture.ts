/**
 * The REST server on the real KeyService and a real backend, for end-to-end tests through fastify's
 * inject(). One target per adapter: the software backend on a temp keystore, PKCS#11 on a fresh SoftHSM
 * token and KMIP on a PyKMIP server of its own. Adapters are imported when a target opens, so one target's
 * module never loads another's.
 */
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import type { Backend } from '../../../src/backend/port.js';
import { FspiopService, ParticipantRegistry, type ParticipantRegistryOptions } from '../../../src/fspiop/index.js';
import { JoseService } from '../../../src/jose/joseService.js';
import { KeyService, type KeyServiceLimits } from '../../../src/operations/keyService.js';
import { createPaymentServices } from '../../../src/payment/index.js';
import { buildRestServer } from '../../../src/transports/rest/server.js';
import type { PipelineStages } from '../../../src/api/stages.js';

const silent = pino({ level: 'silent' });

export interface RestTarget {
  readonly label: string;
  open(): Promise<{ backend: Backend; cleanup(): Promise<void> }>;
}

/**
 * software + SoftHSM: the targets of the JOSE, FSPIOP and payment suites (REST and gRPC). Those stay off
 * KMIP: what they add over the key service (JWS/JWE, FSPIOP signatures, TR-31, PIN, DUKPT) needs EC keys,
 * PS256, RSA-OAEP, AES key wrap or payment keys, none of which the KMIP backend offers, so on KMIP they
 * would prove only the refusals the key-service suites below already prove.
 */
export const restTargets: RestTarget[] = [
  {
    label: 'software',
    async open() {
      const { softwareBackendFactory } = await import('../../../adapters/software/index.js');
      const { createSoftwareBackendConfig } = await import('../../helpers/software.js');
      const harness = await createSoftwareBackendConfig();
      return { backend: await softwareBackendFactory.create(harness.config, { logger: silent }), cleanup: () => harness.cleanup() };
    },
  },
  softHsmTarget('pkcs11 (SoftHSM)', {}),
];

/** The KMIP backend on a PyKMIP server started for the fixture and stopped in its cleanup. */
export const kmipTarget: RestTarget = {
  label: 'kmip (PyKMIP)',
  async open() {
    const { openKmipBackend } = await import('../../helpers/kmipBackend.js');
    const { backend, cleanup } = await openKmipBackend(silent);
    return { backend, cleanup };
  },
};

/**
 * Every backend, for the suites of the key service itself (REST API, bad input, request log, gRPC key
 * service): what a backend lacks is asserted as the refusal its capabilities() announce.
 */
export const keyServiceTargets: RestTarget[] = [...restTargets, kmipTarget];

/**
 * SoftHSM as it comes: its OAEP is SHA-1 only, and without the (opt-in) raw-RSA fallback that the test
 * harness turns on, RSA_OAEP_SHA256 is not offered. For the tests that prove the refusal.
 */
export const softHsmWithoutRawRsa: RestTarget = softHsmTarget('pkcs11 (SoftHSM, no raw-RSA fallback)', { allowRawRsaOaepFallback: false });

function softHsmTarget(label: string, overrides: { allowRawRsaOaepFallback?: boolean }): RestTarget {
  return {
    label,
    async open() {
      const { pkcs11BackendFactory } = await import('../../../adapters/pkcs11/index.js');
      const { createSoftHsmToken } = await import('../../helpers/softhsm.js');
      const token = await createSoftHsmToken();
      return { backend: await pkcs11BackendFactory.create(token.backendConfig(overrides), { logger: silent }), cleanup: () => token.cleanup() };
    },
  };
}

export interface Reply {
  status: number;
  /** Parsed JSON; tests check it field by field. */
  body: any;
  raw: string;
  headers: Record<string, unknown>;
}

export interface RestFixture {
  readonly app: FastifyInstance;
  readonly service: KeyService;
  readonly backend: Backend;
  /** The FSPIOP participant registry behind /v1/fspiop (in memory unless startRest was given a participantsDir). */
  readonly participants: ParticipantRegistry;
  /** payment.otpIncomingKeys as the service sees it: push the names of the keys a test feeds to the OTP flow. */
  readonly otpIncomingKeys: string[];
  /** Every log line the server wrote, parsed. */
  readonly logs: Array<Record<string, unknown>>;
  /** The raw log text, to search for anything that must never be logged. */
  logText(): string;
  call(method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown): Promise<Reply>;
  /** A request with a payload and headers exactly as given (for content-type and JSON syntax tests). */
  send(method: 'GET' | 'POST' | 'DELETE', url: string, payload: string | Buffer, headers: Record<string, string>): Promise<Reply>;
  close(): Promise<void>;
}

export const testLimits: KeyServiceLimits = { maxDataBytes: 4096, maxRandomBytes: 256 };

export interface RestOptions {
  readonly maxRequestBytes?: number;
  readonly limits?: KeyServiceLimits;
  /** The participant registry's configuration (its logger is the fixture's). */
  readonly participants?: Omit<ParticipantRegistryOptions, 'logger'>;
  /** The pipeline's deployment stages (identity, policy, audit, metrics); default: open. */
  readonly stages?: PipelineStages;
}

export async function startRest(target: RestTarget, maxRequestBytesOrOptions: number | RestOptions = {}): Promise<RestFixture> {
  const options = typeof maxRequestBytesOrOptions === 'number' ? { maxRequestBytes: maxRequestBytesOrOptions } : maxRequestBytesOrOptions;
  const maxRequestBytes = options.maxRequestBytes ?? 16 * 1024;
  const { backend, cleanup } = await target.open();
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      done();
    },
  });
  const logger = pino({ level: 'info' }, sink);
  const service = new KeyService(backend, { limits: options.limits ?? testLimits, metadataCacheTtlMs: 1000 });
  const participants = await ParticipantRegistry.open({ logger, ...options.participants });
  const fspiop = new FspiopService({ keyService: service, registry: participants });
  const jose = new JoseService(service);
  const otpIncomingKeys: string[] = [];
  const payment = createPaymentServices(service, jose, { participants, otpIncomingKeys, logger });
  const app = await buildRestServer({ service, jose, fspiop: { service: fspiop, participants }, payment, logger, maxRequestBytes, ...(options.stages ? { stages: options.stages } : {}) });
  const toReply = (r: { statusCode: number; body: string; headers: Record<string, unknown> }): Reply => ({
    status: r.statusCode,
    body: r.body === '' ? undefined : JSON.parse(r.body),
    raw: r.body,
    headers: r.headers,
  });
  return {
    app,
    service,
    backend,
    participants,
    otpIncomingKeys,
    get logs() {
      return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    logText: () => lines.join('\n'),
    call: async (method, url, body) => toReply(await app.inject({ method, url, ...(body === undefined ? {} : { payload: body as object }) })),
    send: async (method, url, payload, headers) => toReply(await app.inject({ method, url, payload, headers })),
    async close() {
      await app.close();
      await participants.close();
      await backend.close();
      await cleanup();
    },
  };
}

export const b64 = (data: Buffer | string): string => Buffer.from(data).toString('base64');
export const unb64 = (text: string): Buffer => Buffer.from(text, 'base64');

let seq = 0;
/** A key name no other test uses. */
export const freshName = (stem: string): string => `${stem}-${process.pid}-${seq++}`;
