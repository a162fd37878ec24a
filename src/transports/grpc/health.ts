/**
 * grpc.health.v1.Health: SERVING when the backend reports ready, NOT_SERVING otherwise, for the server
 * as a whole ("") and for each hsmbridge.v1 service it serves (all of them depend on the backend). Watch
 * streams share one poller that runs only while someone watches, so a hundred watchers cost the HSM one
 * health check per interval, not a hundred.
 */
import { type ServerWritableStream, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { HsmBridgeError } from '../../errors.js';
import type { KeyService } from '../../operations/keyService.js';
import { unaryCall } from './calls.js';
import { toGrpcFailure } from './errors.js';
import type { HealthCheckRequest, HealthCheckResponse, ServingStatus } from './messages.js';
import { HEALTH_SERVICE_NAME, isMalformed, type MalformedRequest } from './protos.js';

export interface HealthOptions {
  /** The services served (e.g. hsmbridge.v1.KeyService), answered for by name; "" is the server as a whole. */
  readonly services: readonly string[];
  /** How often Watch streams re-check the backend. */
  readonly pollMs: number;
  /** A backend health check slower than this counts as NOT_SERVING, so that a slow asynchronous check cannot hang a probe. (An HSM that freezes inside a synchronous PKCS#11 call blocks the whole process: see adapters/pkcs11/README.md.) */
  readonly timeoutMs: number;
}

type Listener = (status: ServingStatus) => void;

/** Polls while it has listeners and hands each result to all of them. */
class StatusFeed {
  private readonly listeners = new Set<Listener>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(
    private readonly probe: () => Promise<ServingStatus>,
    private readonly intervalMs: number,
  ) {}

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    this.timer ??= setInterval(() => void this.poll(), this.intervalMs);
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stop();
    };
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async poll(): Promise<void> {
    if (this.polling) return; // the previous check is still out: do not pile up calls on a slow HSM
    this.polling = true;
    try {
      const current = await this.probe();
      for (const listener of this.listeners) listener(current);
    } finally {
      this.polling = false;
    }
  }
}

export interface HealthService {
  readonly handlers: UntypedServiceImplementation;
  /** Ends every Watch stream, so that a graceful shutdown does not wait for them. */
  close(): void;
}

export function createHealthService(service: KeyService, logger: Logger, options: HealthOptions): HealthService {
  const knownServices = new Set(['', ...options.services]);
  const probe = async (): Promise<ServingStatus> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<ServingStatus>((resolve) => {
      timer = setTimeout(() => resolve('NOT_SERVING'), options.timeoutMs);
    });
    const check = service.health().then(
      (health): ServingStatus => (health.ready ? 'SERVING' : 'NOT_SERVING'),
      (e: unknown): ServingStatus => {
        logger.warn({ err: e }, 'backend health check failed');
        return 'NOT_SERVING';
      },
    );
    try {
      return await Promise.race([check, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };
  const feed = new StatusFeed(probe, options.pollMs);
  /** Open Watch streams, each with whether it watches a service we know. */
  const watchers = new Map<ServerWritableStream<unknown, HealthCheckResponse>, boolean>();

  const check = unaryCall(
    `${HEALTH_SERVICE_NAME}/Check`,
    logger,
    async (r: HealthCheckRequest): Promise<HealthCheckResponse> => {
      if (!knownServices.has(r.service)) throw new HsmBridgeError('NOT_FOUND', 'unknown service');
      return { status: await probe() };
    },
    'debug',
  );

  const watch = (call: ServerWritableStream<HealthCheckRequest | MalformedRequest, HealthCheckResponse>): void => {
    const request = call.request;
    if (isMalformed(request)) {
      const { response } = toGrpcFailure(new HsmBridgeError('INVALID_ARGUMENT', 'the request is not a valid HealthCheckRequest'));
      call.emit('error', response);
      return;
    }
    if (!knownServices.has(request.service)) {
      // The protocol says: tell the watcher, and keep the stream open in case the service appears.
      call.write({ status: 'SERVICE_UNKNOWN' });
      watchers.set(call, false);
      call.on('cancelled', () => watchers.delete(call));
      return;
    }
    let sent: ServingStatus | undefined;
    let unsubscribe: (() => void) | undefined;
    const send = (current: ServingStatus) => {
      if (current === sent || call.cancelled) return;
      sent = current;
      call.write({ status: current });
    };
    watchers.set(call, true);
    call.on('cancelled', () => {
      unsubscribe?.();
      watchers.delete(call);
    });
    // The current status first, then changes: subscribing only afterwards keeps an older answer from
    // arriving after a newer one.
    void probe().then((current) => {
      if (call.cancelled || !watchers.has(call)) return;
      send(current);
      unsubscribe = feed.subscribe(send);
    });
    logger.debug({ method: `${HEALTH_SERVICE_NAME}/Watch`, service: request.service }, 'grpc watch started');
  };

  return {
    handlers: { Check: check, Watch: watch },
    close() {
      feed.stop();
      for (const [call, known] of watchers) {
        if (known) call.write({ status: 'NOT_SERVING' });
        call.end();
      }
      watchers.clear();
    },
  };
}
