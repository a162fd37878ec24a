/**
 * The composition root: builds the backend from configuration, the core service on top of it, the JOSE
 * and FSPIOP services on top of that, and the REST and gRPC transports that expose them all. Used by
 * main.ts and by the end-to-end tests.
 */
import type { Logger } from 'pino';
import type { Backend } from './backend/port.js';
import { openStages, type PipelineStages } from './api/index.js';
import { createBackend } from './backends.js';
import type { ServiceConfig } from './config/schema.js';
import { FspiopService, ParticipantRegistry } from './fspiop/index.js';
import { checkExposure } from './identity/exposure.js';
import { createAccessStages, type AccessStages } from './identity/stages.js';
import { JoseService } from './jose/joseService.js';
import { KeyService } from './operations/keyService.js';
import { createPaymentServices } from './payment/index.js';
import { startGrpcServer } from './transports/grpc/server.js';
import { buildRestServer } from './transports/rest/server.js';
import { ReloadingTls } from './transports/tlsReload.js';
import { openAudit } from './audit/index.js';
import { createMetrics } from './metrics/metrics.js';
import { timedBackend } from './metrics/timedBackend.js';
import { startOpsServer } from './ops/opsServer.js';
import { PinFailureLimiter, withPinFailureLimit } from './ops/pinFailureLimit.js';
import { reservedKeyNames } from './api/reservedKeys.js';

export interface RunningApp {
  readonly service: KeyService;
  readonly jose: JoseService;
  readonly fspiop: FspiopService;
  /** FSPIOP participants' public keys; its directory watcher runs until close(). */
  readonly participants: ParticipantRegistry;
  /** e.g. http://127.0.0.1:8080, or https://... with rest.tls; undefined when REST is off. */
  readonly restUrl?: string;
  /** The bound gRPC port; undefined when gRPC is off. */
  readonly grpcPort?: number;
  /** e.g. http://127.0.0.1:9464, serving /metrics and the health probes; undefined when ops is off. */
  readonly opsUrl?: string;
  close(): Promise<void>;
}

/** The listener's TLS files, read and checked, reloaded once watched; undefined for plain TCP or a listener that is off. */
function tlsFor(listener: ServiceConfig['rest'], field: string, logger: Logger): ReloadingTls | undefined {
  if (!listener.enabled || !listener.tls) return undefined;
  const tls = new ReloadingTls(listener.tls, field, logger);
  if (listener.tls.caFile && !listener.tls.requireClientCert) {
    logger.warn({ field: `${field}/caFile` }, `${field}/caFile is set but ${field}/requireClientCert is false: client certificates are not asked for`);
  }
  return tls;
}

const tlsLog = (reloading: ReloadingTls | undefined) => {
  const tls = reloading?.material;
  return tls
    ? { tls: true, clientCert: tls.requireClientCert ? 'required' : 'off', certSubject: tls.subject, certValidTo: tls.validTo.toISOString() }
    : { tls: false };
};

export async function startApp(config: ServiceConfig, logger: Logger, backend?: Backend): Promise<RunningApp> {
  // Before the backend opens, so that a bad certificate path fails without touching the HSM.
  let restTls: ReloadingTls | undefined;
  let grpcTls: ReloadingTls | undefined;
  let access: AccessStages;
  const metrics = createMetrics(config.metrics);
  try {
    restTls = tlsFor(config.rest, '/rest/tls', logger);
    grpcTls = tlsFor(config.grpc, '/grpc/tls', logger);
    checkExposure(
      config.access,
      [
        { field: '/rest', enabled: config.rest.enabled, host: config.rest.host, tls: config.rest.tls !== undefined },
        { field: '/grpc', enabled: config.grpc.enabled, host: config.grpc.host, tls: config.grpc.tls !== undefined },
      ],
      logger,
    );
    access = createAccessStages(config.access, logger, { authenticationFailed: (why) => metrics.authenticationFailed(why) });
  } catch (e) {
    await backend?.close(); // a backend given to startApp is closed on failure, as below
    throw e;
  }
  let theBackend: Backend;
  try {
    theBackend = timedBackend(backend ?? (await createBackend(config, { logger })), metrics);
  } catch (e) {
    access.close();
    throw e;
  }
  metrics.watchBackend(theBackend);
  const service = new KeyService(theBackend, {
    limits: config.limits,
    metadataCacheTtlMs: config.keys.metadataCacheTtlMs,
    wrappingKey: { name: config.keyImport.wrappingKeyName, type: config.keyImport.wrappingKeyType },
    ceremonyTtlMs: config.ceremonies.ttlMs,
  });
  const closers: Array<() => Promise<void>> = [() => theBackend.close(), async () => access.close()];
  const close = async () => {
    for (const c of closers.splice(0).reverse()) await c().catch((e: unknown) => logger.error({ err: e }, 'error while closing'));
  };
  try {
    const jose = new JoseService(service);
    // Before the listeners: a bad configured participant key fails the start, naming it.
    const participants = await ParticipantRegistry.open({
      logger,
      participants: config.fspiop.participants,
      participantsDir: config.fspiop.participantsDir,
      rescanIntervalMs: config.fspiop.rescanIntervalMs,
    });
    closers.push(() => participants.close());
    if (!participants.persistent) {
      logger.info('fspiop: no participantsDir configured; participant keys added through the API are held in memory only');
    }
    const fspiop = new FspiopService({
      keyService: service,
      registry: participants,
      allowedAlgorithms: config.fspiop.allowedAlgorithms,
      acceptCanonicalBody: config.fspiop.acceptCanonicalBody,
    });
    const payment = createPaymentServices(service, jose, { participants, otpIncomingKeys: config.payment.otpIncomingKeys, logger });
    // Before the listeners (it refuses the start when its file cannot be opened); closed after them, sealing the trail.
    const audit = config.audit && (await openAudit(config.audit, service, logger, { recordsWritten: (n) => metrics.auditRecordsWritten(n), sinkFailed: () => metrics.auditSinkFailed() }));
    if (audit) closers.push(() => audit.close());
    else logger.warn('audit: no audit.file configured: the use and change of keys are not recorded');
    service.ceremonies.startSweeping((state) => {
      logger.info({ ceremony: state.plan.id, keyName: state.plan.key.name }, 'ceremony expired: its staged components are destroyed');
      audit?.recordInternal('ceremonies.expire', [{ name: state.plan.key.name }], { ceremony: state.plan.id, received: state.entries.length });
    });
    closers.push(async () => service.ceremonies.close());
    const reserved = reservedKeyNames([[service.wrappedImport.reservedName, 'the import wrapping key']]);
    const stages: PipelineStages = withPinFailureLimit(
      {
        ...openStages,
        identify: access.identify,
        authorize: access.authorize,
        ...audit?.stages,
        admit: (op, keyNames) => {
          reserved(keyNames);
          audit?.stages.admit?.(op, keyNames);
        },
        observe: metrics.observe,
      },
      new PinFailureLimiter({ maxPerMinute: config.payment.maxPinFailuresPerMinute }),
    );
    // Before the API listeners, so that it closes after them.
    let opsUrl: string | undefined;
    if (config.ops.enabled) {
      const ops = await startOpsServer({ host: config.ops.host, port: config.ops.port, metrics, health: () => service.health(), logger });
      closers.push(() => ops.close());
      opsUrl = ops.url;
      logger.info({ url: opsUrl }, 'ops listening (metrics, health)');
    }
    const extra = { jose, fspiop: { service: fspiop, participants }, payment, stages };
    let restUrl: string | undefined;
    let grpcPort: number | undefined;
    if (config.rest.enabled) {
      const rest = await buildRestServer({ service, ...extra, logger, maxRequestBytes: config.limits.maxRequestBytes, tls: restTls });
      closers.push(() => rest.close());
      await rest.listen({ host: config.rest.host, port: config.rest.port });
      const address = rest.server.address();
      const port = typeof address === 'object' && address ? address.port : config.rest.port;
      restUrl = `${restTls ? 'https' : 'http'}://${config.rest.host.includes(':') ? `[${config.rest.host}]` : config.rest.host}:${port}`;
      logger.info({ url: restUrl, ...tlsLog(restTls) }, 'REST listening');
      restTls?.watch();
      if (restTls) closers.push(async () => restTls.close());
    }
    if (config.grpc.enabled) {
      const grpc = await startGrpcServer({
        service,
        ...extra,
        logger,
        host: config.grpc.host,
        port: config.grpc.port,
        maxMessageBytes: config.limits.maxRequestBytes,
        tls: grpcTls,
      });
      closers.push(() => grpc.close());
      grpcPort = grpc.port;
      logger.info({ host: config.grpc.host, port: grpcPort, ...tlsLog(grpcTls) }, 'gRPC listening');
      grpcTls?.watch();
      if (grpcTls) closers.push(async () => grpcTls.close());
    }
    return { service, jose, fspiop, participants, restUrl, grpcPort, opsUrl, close };
  } catch (e) {
    await close();
    throw e;
  }
}
