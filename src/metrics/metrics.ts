/**
 * The service's Prometheus series (prom-client), in a registry of their own so that nothing registered
 * globally by a library leaks onto the scrape. The observe stage of the request pipeline feeds the
 * operation histogram; the other stages call the counters exported here; backend gauges are read from the
 * backend at each scrape.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Outcome } from '../api/stages.js';
import type { Backend, BackendGauges } from '../backend/port.js';
import type { MetricsConfig } from './config.js';

/** Seconds; from a fast software signature (~100 µs) to an HSM at its timeout. */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/**
 * How often the event loop's delay is sampled (monitorEventLoopDelay). Each sample is the whole time
 * between two of its timer's turns, so the hsmb_nodejs_eventloop_lag_* series read this much on an idle
 * loop: the delay is what they show beyond it.
 */
export const EVENT_LOOP_SAMPLE_MS = 10;

/** How long a scrape waits for the backend's health before it reports the backend down. */
const HEALTH_TIMEOUT_MS = 2000;

/** Why an authentication failed, as the identity stage reports it (a bounded set: it is a label). */
export type AuthenticationFailureReason = 'missing' | 'invalid' | 'expired';

export interface Metrics {
  readonly registry: Registry;
  /** The observe stage (src/api/stages.ts): the operation histogram, PIN decode failures and rate-limit refusals. */
  observe(outcome: Outcome): void;
  /** Times one backend call (./timedBackend.ts). */
  observeBackendCall(backend: string, primitive: string, seconds: number): void;
  /** Reads the backend's pool gauges and health at each scrape; one backend per registry. */
  watchBackend(backend: Backend): void;
  /** For the audit trail: records written to the sink. */
  auditRecordsWritten(count: number): void;
  /** For the audit stage: a write or flush to the sink failed. */
  auditSinkFailed(): void;
  /** For the identity stage. */
  authenticationFailed(reason: AuthenticationFailureReason): void;
  /** The text a scrape receives, and its content type. */
  exposition(): Promise<{ contentType: string; text: string }>;
}

export function createMetrics(config: MetricsConfig): Metrics {
  const registry = new Registry();
  // The process's own figures (resident memory, heap, event-loop delay since the last scrape, CPU): what a
  // leak or a blocked event loop shows up in first.
  collectDefaultMetrics({ register: registry, prefix: 'hsmb_', eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  const keyLabel = config.keyLabels ? (['key'] as const) : ([] as const);
  const operationDuration = new Histogram({
    name: 'hsmb_operation_duration_seconds',
    help: 'Duration of API operations, from arrival to answer, by operation, transport and outcome code (OK on success).',
    labelNames: ['operation', 'transport', 'code', ...keyLabel],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const backendCallDuration = new Histogram({
    name: 'hsmb_backend_call_duration_seconds',
    help: 'Duration of calls into the backend (HSM, KMIP server, software keystore), by backend and primitive.',
    labelNames: ['backend', 'primitive'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const pinDecodeFailures = new Counter({
    name: 'hsmb_pin_decode_failures_total',
    help: 'PIN blocks that did not decode (wrong key or PAN, or PAN-variation probing), by operation.',
    labelNames: ['operation', ...keyLabel],
    registers: [registry],
  });
  const rateLimitRefusals = new Counter({
    name: 'hsmb_rate_limit_refusals_total',
    help: 'Calls refused with RATE_LIMITED (too many undecodable PIN blocks from one caller on one key), by operation.',
    labelNames: ['operation', ...keyLabel],
    registers: [registry],
  });
  const auditRecords = new Counter({ name: 'hsmb_audit_records_total', help: 'Audit records written to the audit sink.', registers: [registry] });
  const auditFailures = new Counter({ name: 'hsmb_audit_sink_failures_total', help: 'Failed writes or flushes of the audit sink.', registers: [registry] });
  const authenticationFailures = new Counter({
    name: 'hsmb_authentication_failures_total',
    help: 'Requests refused with UNAUTHENTICATED, by reason (missing, invalid, expired credential).',
    labelNames: ['reason'],
    registers: [registry],
  });
  for (const reason of ['missing', 'invalid', 'expired'] satisfies AuthenticationFailureReason[]) authenticationFailures.labels({ reason }).inc(0);

  // Only a key an authorized call used is a label: a caller naming keys at will must not make series at will.
  const namedKeyOf = (outcome: Outcome) => (config.keyLabels ? { key: outcome.keyNames[0] ?? '' } : {});
  const keyOf = (outcome: Outcome) => (config.keyLabels ? { key: (outcome.authorized && outcome.keysUsed?.[0]?.name) || '' } : {});
  let watched: Backend | undefined;

  const poolGauge = (name: string, help: string, read: (pool: { size: number; inUse: number; waiting: number }) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['backend'],
      registers: [registry],
      collect() {
        this.reset();
        const pool = watched?.gauges().sessionPool;
        if (watched && pool) this.labels({ backend: watched.kind }).set(read(pool));
      },
    });
  poolGauge('hsmb_backend_pool_size', 'Sessions (PKCS#11) or connections (KMIP) the backend pool may hold.', (p) => p.size);
  poolGauge('hsmb_backend_pool_in_use', 'Pool sessions or connections lent to a call right now.', (p) => p.inUse);
  poolGauge('hsmb_backend_pool_waiting', 'Calls waiting for a pool session or connection.', (p) => p.waiting);
  const memberGauge = (name: string, help: string, read: (m: NonNullable<BackendGauges['members']>[number]) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['backend', 'member'],
      registers: [registry],
      collect() {
        this.reset();
        for (const m of watched?.gauges().members ?? []) this.labels({ backend: watched!.kind, member: m.name }).set(read(m));
      },
    });
  memberGauge('hsmb_backend_member_up', 'Whether each HSM member serves calls (1) or is out (0).', (m) => (m.serving ? 1 : 0));
  memberGauge('hsmb_backend_member_in_flight', 'Calls running or waiting on each HSM member.', (m) => m.inFlight);
  new Counter({
    name: 'hsmb_backend_member_calls_total',
    help: 'Calls sent to each HSM member.',
    labelNames: ['backend', 'member'],
    registers: [registry],
    collect() {
      this.reset();
      for (const m of watched?.gauges().members ?? []) this.labels({ backend: watched!.kind, member: m.name }).inc(m.calls);
    },
  });
  new Gauge({
    name: 'hsmb_backend_up',
    help: 'Whether the backend is ready (1) or not (0), from its health check at scrape time.',
    labelNames: ['backend'],
    registers: [registry],
    async collect() {
      this.reset();
      if (watched) this.labels({ backend: watched.kind }).set((await isReady(watched)) ? 1 : 0);
    },
  });

  return {
    registry,
    observe(outcome) {
      const operation = outcome.operation.name;
      operationDuration.observe({ operation, transport: outcome.transport, code: outcome.code ?? 'OK', ...keyOf(outcome) }, outcome.durationMs / 1000);
      // These two name a key that exists: one that deciphered a block, or one with failures on record.
      if (outcome.reason === 'PIN_BLOCK_NOT_DECODED') pinDecodeFailures.inc({ operation, ...namedKeyOf(outcome) });
      if (outcome.code === 'RATE_LIMITED') rateLimitRefusals.inc({ operation, ...namedKeyOf(outcome) });
    },
    observeBackendCall: (backend, primitive, seconds) => backendCallDuration.observe({ backend, primitive }, seconds),
    watchBackend(backend) {
      watched = backend;
    },
    auditRecordsWritten: (count) => auditRecords.inc(count),
    auditSinkFailed: () => auditFailures.inc(),
    authenticationFailed: (reason) => authenticationFailures.inc({ reason }),
    exposition: async () => ({ contentType: registry.contentType, text: await registry.metrics() }),
  };
}

async function isReady(backend: Backend): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), HEALTH_TIMEOUT_MS);
  });
  try {
    return await Promise.race([backend.health().then((h) => h.ready, () => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
