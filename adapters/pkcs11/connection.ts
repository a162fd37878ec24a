/**
 * One member's link to its token, on the main thread, which never calls PKCS#11 itself (README.md,
 * "Threads and deadlines"). A control worker logs in, probes the token's health and reinitializes the
 * module; a pool of session workers, each owning one session, runs the calls.
 *
 * - Every call has a deadline, carried from the backend through retries and reconnects. A call past it
 *   fails with BACKEND_UNAVAILABLE; its worker is set aside (quarantined) until the call returns. When
 *   every worker is set aside, calls fail at once.
 * - Readiness follows a probe (C_GetTokenInfo) every second with a short deadline, so an HSM that stops
 *   answering turns the member not ready within a few seconds, with or without traffic.
 * - A call that fails with a "device gone" CKR drops the sessions, reinitializes the module, logs in
 *   again, and is retried once when it is idempotent. If the HSM stays away, calls fail fast with
 *   BACKEND_UNAVAILABLE and a background timer (backoff, unref'd) keeps trying until it is back.
 *   A wrong PIN stops the retries.
 */
import type { Logger } from 'pino';
import type { BackendHealth, Capabilities } from '../../src/backend/port.js';
import { HsmBridgeError } from '../../src/errors.js';
import type { MemberSettings } from './config.js';
import { PinError, unavailable } from './errors.js';
import { SharedModule } from './sharedModule.js';
import { sessionPoolSizeFor } from './token.js';
import type { TokenProfile } from './worker/keyOperations.js';
import type { WorkerSetup } from './worker/tokenWorker.js';
import { WorkerCallError, WorkerLink } from './workerLink.js';
import { PoolClosedError, WorkerPool } from './workerPool.js';

const RECOVERY_FIRST_DELAY_MS = 250;
/** A member that comes back is used again within about this long. */
const RECOVERY_MAX_DELAY_MS = 1000;
/** How long a reconnect waits for calls still running on the old sessions (they fail fast on a dead device). */
const DRAIN_TIMEOUT_MS = 10_000;
const HEALTH_PROBE_INTERVAL_MS = 1000;
/** A token that does not answer C_GetTokenInfo within this is not ready. */
const HEALTH_PROBE_TIMEOUT_MS = 2000;
/** How long close() waits for a worker to stop (one stuck in a call stops when the call returns). */
const TERMINATE_WAIT_MS = 1000;

/** One place in the pool: its worker is replaced if it stops. */
interface SessionSlot {
  link: WorkerLink;
}

type State =
  | { readonly kind: 'up' }
  | { readonly kind: 'recovering'; readonly done: Promise<void> }
  | { readonly kind: 'down'; readonly detail: string; readonly pinError: boolean }
  | { readonly kind: 'closed' };

export interface CallOptions {
  /** When the caller stops waiting (Date.now() ms): every wait and worker call of this call ends by then. */
  readonly deadline: number;
  /** Safe to run twice: retried after a reconnect (and, by members.ts, on another member). */
  readonly idempotent: boolean;
}

export class Connection {
  private state: State = { kind: 'closed' };
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = RECOVERY_FIRST_DELAY_MS;
  private healthTimer: NodeJS.Timeout | undefined;
  /** The last probe: undefined = fine, else why not ready. */
  private probeFailure: string | undefined;
  private probing = false;
  /** When this member last finalized and initialized its module (reinitMinIntervalMs). */
  private lastReinitAt = 0;
  private readonly pool: WorkerPool<SessionSlot>;
  private readonly unregister: () => void;

  private constructor(
    private readonly module: SharedModule,
    private readonly config: MemberSettings,
    private readonly logger: Logger,
    private control: WorkerLink,
    private readonly slots: SessionSlot[],
    private readonly profile: TokenProfile,
    readonly capabilities: Capabilities,
    /** Called when a reconnect starts: what was cached from the token may be stale. */
    private readonly onReset: () => void,
  ) {
    this.pool = new WorkerPool(slots, { acquireTimeoutMs: config.acquireTimeoutMs, maxQueued: config.maxQueuedRequests });
    // Another connection on the same library that reinitializes the module waits for our calls too.
    this.unregister = module.register({ drain: () => this.pool.settled(DRAIN_TIMEOUT_MS), stuck: () => this.pool.stuck > 0 || this.control.overdue > 0 });
  }

  /** Spawns the workers, logs in and learns the token, or fails with a clear error (never containing the PIN). */
  static async open(config: MemberSettings, logger: Logger, onReset: () => void): Promise<Connection> {
    const module = SharedModule.acquire(config.library);
    return module.exclusive(() => Connection.openOn(module, config, logger, onReset));
  }

  private static async openOn(module: SharedModule, config: MemberSettings, logger: Logger, onReset: () => void): Promise<Connection> {
    const spawned: WorkerLink[] = [];
    let connection: Connection | undefined;
    const spawn = async (role: WorkerSetup['role'], label: string) => {
      const link = await WorkerLink.spawn(setupFor(config, role, module), label, logger, (l) => connection?.settled(l));
      spawned.push(link);
      return link;
    };
    try {
      const control = await spawn('control', 'control');
      const { profile, capabilities, maxSessions } = await control.call<{ profile: TokenProfile; capabilities: Capabilities; maxSessions: number }>(
        'connect', [config.allowRawRsaOaepFallback], config.keyGenerationTimeoutMs);
      const size = sessionPoolSizeFor(config.sessionPoolSize, maxSessions);
      if (size < 1) throw unavailable(`the token allows ${maxSessions} session(s); hsm-bridge needs at least 2 (one stays logged in, one works)`);
      if (size < config.sessionPoolSize) logger.warn({ sessionPoolSize: config.sessionPoolSize, maxSessions }, 'pkcs11: the token allows fewer sessions than sessionPoolSize; using fewer');
      // After the control worker's C_Initialize: SoftHSM's is not safe when threads call it at once.
      const slots = await Promise.all(
        Array.from({ length: size }, async (_, i) => {
          const link = await spawn('session', `session-${i + 1}`);
          await link.call('attach', [profile, config.idleSessionCheckMs], config.operationTimeoutMs);
          link.generation = module.generation;
          return { link };
        }),
      );
      connection = new Connection(module, config, logger, control, slots, profile, capabilities, onReset);
      connection.state = { kind: 'up' };
      connection.healthTimer = setInterval(() => connection!.probe(), HEALTH_PROBE_INTERVAL_MS);
      connection.healthTimer.unref();
      return connection;
    } catch (e) {
      if (module.release() && spawned[0]?.alive) await spawned[0].call('finalize', [], TERMINATE_WAIT_MS).catch(() => undefined);
      await Promise.all(spawned.map((l) => bounded(l.terminate())));
      throw e instanceof WorkerCallError ? e.error : e;
    }
  }

  /** Whether `link` is one of this connection's workers. */
  owns(link: WorkerLink): boolean {
    return this.slots.some((s) => s.link === link);
  }

  /** Whether calls can go here now: up, its last probe answered, and not every worker stuck. */
  get serving(): boolean {
    return this.state.kind === 'up' && this.probeFailure === undefined && this.pool.stuck < this.slots.length;
  }

  /** The pool's counts; all zero while the connection is not up. */
  poolCounts(): { size: number; inUse: number; waiting: number } {
    if (this.state.kind !== 'up') return { size: 0, inUse: 0, waiting: 0 };
    return { size: this.pool.size, inUse: this.pool.inUse, waiting: this.pool.waiting };
  }

  /**
   * Runs `method` on a session worker of its own and says which worker ran it (a derived key lives in
   * that worker's session). A device-gone error triggers one reconnect, and an idempotent call is then
   * retried once; every failure reaches the caller as an HsmBridgeError by the deadline.
   */
  async run<T>(method: string, args: readonly unknown[], options: CallOptions): Promise<{ value: T; link: WorkerLink }> {
    /** Whether an attempt may have changed the token: after that, only an idempotent call may run again. */
    let mayHaveRun = false;
    const fail = (error: HsmBridgeError) => (mayHaveRun ? error : markUnchanged(error));
    for (let attempt = 0; ; attempt++) {
      let slot: SessionSlot;
      try {
        await this.upState(options.deadline);
        slot = await this.pool.acquire();
      } catch (e) {
        throw fail(e instanceof PoolClosedError ? unavailable('backend closed') : asCallError(e).error);
      }
      if (Date.now() >= options.deadline) {
        // Waiting (for a reconnect, a worker) used the whole deadline: never send a call that cannot be answered in time.
        this.pool.release(slot);
        throw fail(unavailable('no HSM session became free before the deadline'));
      }
      const generation = slot.link.generation;
      let outcome: { ok: true; value: T; link: WorkerLink } | { ok: false; error: WorkerCallError; sent: boolean };
      let sent = false;
      try {
        await this.ready(slot, options.deadline);
        const { link } = slot;
        sent = true;
        outcome = { ok: true, value: await link.call<T>(method, args, remaining(options.deadline)), link };
      } catch (e) {
        outcome = { ok: false, error: asCallError(e), sent };
      }
      if (slot.link.overdue > 0) this.pool.setAside(slot);
      else this.pool.release(slot);
      if (outcome.ok) return { value: outcome.value, link: outcome.link };
      const { error, wire } = outcome.error;
      // A worker's answer says whether the call changed the token; a deadline or a lost worker says nothing.
      if (outcome.sent && !wire?.unchanged) mayHaveRun = true;
      if (error instanceof PinError) this.pinFailed(error);
      if (wire?.deviceGone) {
        await withinDeadline(this.recover(generation, error.message).catch(() => undefined), options.deadline);
        // A call that changed nothing may run again, whatever it is; otherwise only an idempotent one.
        if (attempt === 0 && (options.idempotent || !mayHaveRun)) continue;
      }
      throw fail(error);
    }
  }

  /**
   * Sends `method` to every session worker without waiting for a free one (each handles its messages in
   * order): a change one worker made, that the others must see (a key's cached handles).
   */
  broadcast(method: string, args: readonly unknown[]): void {
    for (const slot of this.slots) if (slot.link.alive) void slot.link.call(method, args, this.config.operationTimeoutMs).catch(() => undefined);
  }

  /**
   * Sends `method` to the worker of `link` itself (a derived key lives in that worker's session), unless
   * the module was reinitialized since that worker's session was opened: its handles may name other objects now.
   */
  async runOn<T>(link: WorkerLink, method: string, args: readonly unknown[], deadline: number): Promise<T> {
    if (link.generation !== this.module.generation) throw unavailable('the derived key was lost with its HSM session; retry');
    try {
      return await link.call<T>(method, args, remaining(deadline));
    } catch (e) {
      throw asCallError(e).error;
    }
  }

  /** From the connection's state, the last probe (at most a second old) and the stuck workers; no HSM call. */
  async health(): Promise<BackendHealth> {
    const state = this.state;
    switch (state.kind) {
      case 'closed':
        return { ready: false, detail: 'closed' };
      case 'down':
        return { ready: false, detail: state.detail };
      case 'recovering':
        return { ready: false, detail: 'reconnecting to the HSM' };
      case 'up':
        if (this.probeFailure !== undefined) return { ready: false, detail: this.probeFailure };
        if (this.pool.stuck === this.slots.length) return { ready: false, detail: 'HSM unavailable: every session is waiting for an answer past its deadline' };
        return { ready: true };
    }
  }

  async close(): Promise<void> {
    const state = this.state;
    if (state.kind === 'closed' && this.retryTimer === undefined) return;
    this.state = { kind: 'closed' };
    clearInterval(this.healthTimer);
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.unregister();
    if (state.kind === 'recovering') await state.done.catch(() => undefined);
    await this.pool.close(DRAIN_TIMEOUT_MS);
    await this.module.exclusive(async () => {
      const stuck = this.slots.some((s) => s.link.overdue > 0) || this.control.overdue > 0;
      await Promise.all(this.slots.map(async ({ link }) => {
        // A worker inside a call may hold the token lock: terminating it would never release it. It ends when
        // the call returns (it is unref'd, so it does not keep the process alive).
        if (link.overdue > 0) return;
        await link.call('detach', [], TERMINATE_WAIT_MS).catch(() => undefined);
        await bounded(link.terminate());
      }));
      // C_Finalize while another thread is inside a call is unsafe: with a call stuck, the process keeps the module.
      if (this.module.release() && !stuck) await this.control.call('finalize', [], TERMINATE_WAIT_MS).catch(() => undefined);
      await bounded(this.control.terminate());
    });
  }

  // --- internals ---------------------------------------------------------------------------------

  /** A worker that stopped is replaced, and one whose session predates a reinitialization reopens it. */
  private async ready(slot: SessionSlot, deadline: number): Promise<void> {
    if (!slot.link.alive) {
      this.logger.warn({ worker: slot.link.label }, 'pkcs11: replacing a token worker that stopped');
      const link = await WorkerLink.spawn(setupFor(this.config, 'session', this.module), slot.link.label, this.logger, (l) => this.settled(l));
      try {
        await link.call('attach', [this.profile, this.config.idleSessionCheckMs], remaining(deadline));
      } catch (e) {
        void bounded(link.terminate());
        throw e;
      }
      link.generation = this.module.generation;
      slot.link = link;
      return;
    }
    if (slot.link.generation !== this.module.generation) {
      const generation = this.module.generation;
      await slot.link.call('reopen', [], remaining(deadline));
      slot.link.generation = generation;
    }
  }

  /** A worker could not log in: reconnecting would count towards locking the token. Stay down. */
  private pinFailed(error: PinError): void {
    if (this.state.kind === 'closed' || (this.state.kind === 'down' && this.state.pinError)) return;
    this.state = { kind: 'down', detail: error.message, pinError: true };
    clearTimeout(this.retryTimer);
    this.logger.error({ detail: error.message }, 'pkcs11: cannot log in; not retrying (a wrong PIN locks the token): fix the PIN and restart');
  }

  /** An overdue call returned (or its worker stopped): the worker can be lent again. */
  private settled(link: WorkerLink): void {
    if (link.overdue > 0) return;
    if (link === this.control) {
      this.probing = false; // the stuck probe returned: the next one tells how the token is
      return;
    }
    const slot = this.slots.find((s) => s.link === link);
    if (slot) this.pool.restore(slot);
  }

  /** Waits out a reconnect in progress, but never past the caller's deadline. */
  private async upState(deadline: number): Promise<void> {
    const state = this.state;
    if (state.kind === 'recovering') await withinDeadline(state.done.catch(() => undefined), deadline);
    if (this.state.kind !== 'up') throw this.notUp();
  }

  private notUp(): HsmBridgeError {
    const state = this.state;
    return unavailable(state.kind === 'down' ? state.detail.replace(/^HSM unavailable: /, '') : state.kind === 'closed' ? 'backend closed' : 'reconnecting');
  }

  /** C_GetTokenInfo in the control worker, one at a time; a timeout or a dead device makes the member not ready. */
  private probe(): void {
    if (this.state.kind !== 'up' || this.probing) return;
    if (!this.control.alive) {
      this.probeFailure = 'HSM unavailable: the control worker stopped';
      void this.recover(this.module.generation, this.probeFailure).catch(() => undefined);
      return;
    }
    this.probing = true;
    const generation = this.module.generation;
    this.control
      .call('probe', [], Math.min(HEALTH_PROBE_TIMEOUT_MS, this.config.operationTimeoutMs))
      .then(
        () => {
          this.probeFailure = undefined;
        },
        (e: unknown) => {
          const { error, wire } = asCallError(e);
          this.probeFailure = error.message.startsWith('HSM unavailable') ? error.message : `HSM unavailable: ${error.message}`;
          if (wire?.deviceGone) void this.recover(generation, error.message).catch(() => undefined);
        },
      )
      .finally(() => {
        // A probe stuck on a frozen HSM returns when the HSM does (settled()); until then no other starts.
        if (this.control.overdue === 0) this.probing = false;
      });
  }

  /** One reconnect at a time; callers that saw a failure of the same module generation share it. */
  private recover(failedGeneration: number, cause: string): Promise<void> {
    const current = this.state;
    if (current.kind === 'recovering') return current.done;
    // A failure of a session older than the module's generation: reconnected already; it reopens on next use.
    if (current.kind !== 'up' || failedGeneration !== this.module.generation) return Promise.resolve();
    this.logger.warn({ detail: cause }, 'pkcs11: HSM connection lost; reconnecting');
    this.onReset();
    const done = (async () => {
      await this.pool.settled(DRAIN_TIMEOUT_MS);
      await this.reconnect(failedGeneration);
    })();
    this.state = { kind: 'recovering', done };
    return done;
  }

  private async reconnect(failedGeneration: number): Promise<void> {
    try {
      // A control worker stuck in a call would run every queued call after it, C_Finalize included, while
      // that call is still inside the library: wait for it (the retry timer comes back). A dead one is replaced.
      if (this.control.overdue > 0) throw unavailable('the HSM has not answered the last health probe yet');
      if (!this.control.alive) {
        this.control = await WorkerLink.spawn(setupFor(this.config, 'control', this.module), 'control', this.logger, (l) => this.settled(l));
        this.probing = false;
      }
      // At most one reinitialization per reinitMinIntervalMs: a flapping HSM is not hammered with them.
      const wait = this.lastReinitAt + this.config.reinitMinIntervalMs - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait).unref());
      let ours = false;
      await this.module.reinitialize(failedGeneration, async () => {
        ours = true;
        this.lastReinitAt = Date.now();
        await this.control.call('reinitialize', [], this.config.keyGenerationTimeoutMs);
      });
      // Another connection on the same library made the new generation: our login went with the old one.
      if (!ours) await this.control.call('relogin', [], this.config.keyGenerationTimeoutMs);
      if (this.state.kind === 'closed') return;
      this.state = { kind: 'up' };
      this.probeFailure = undefined;
      this.retryDelay = RECOVERY_FIRST_DELAY_MS;
      this.logger.info('pkcs11: reconnected to the HSM');
    } catch (e) {
      const { error } = asCallError(e);
      if (this.state.kind === 'closed') return;
      const pinError = error instanceof PinError;
      this.state = { kind: 'down', detail: error.message, pinError };
      if (pinError) {
        // Retrying a wrong PIN would lock the token: stay down until an operator fixes it and restarts.
        this.logger.error({ detail: error.message }, 'pkcs11: cannot log in again; not retrying');
      } else {
        this.scheduleRetry();
      }
      throw error;
    }
  }

  private scheduleRetry(): void {
    const delay = this.retryDelay;
    this.retryDelay = Math.min(this.retryDelay * 2, RECOVERY_MAX_DELAY_MS);
    this.logger.warn({ retryInMs: delay }, 'pkcs11: HSM still unavailable');
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.state.kind !== 'down') return;
      // Always initialize afresh: a module initialized while the HSM was away may never see it return.
      const done = this.reconnect(this.module.generation);
      this.state = { kind: 'recovering', done };
      done.catch(() => undefined);
    }, delay);
    this.retryTimer.unref();
  }
}

function setupFor(config: MemberSettings, role: WorkerSetup['role'], module: SharedModule): WorkerSetup {
  return { role, library: config.library, token: config.token, pin: config.pin, sharing: module.sharingFor(JSON.stringify(config.token)) };
}

/** What is left of a deadline for one wait (at least 1 ms: a timer of 0 would fire before the answer can). */
const remaining = (deadline: number) => Math.max(1, deadline - Date.now());

/** Errors of calls known not to have changed the token: safe to send to another member, even a key creation. */
const unchangedErrors = new WeakSet<Error>();
function markUnchanged(e: HsmBridgeError): HsmBridgeError {
  unchangedErrors.add(e);
  return e;
}
export const leftTokenUnchanged = (e: unknown): boolean => e instanceof Error && unchangedErrors.has(e);

function asCallError(e: unknown): WorkerCallError {
  if (e instanceof WorkerCallError) return e;
  if (e instanceof HsmBridgeError) return new WorkerCallError(e, undefined);
  return new WorkerCallError(unavailable(e instanceof Error ? e.message : String(e)), undefined);
}

/** Waits for `p`, but never past `deadline`. */
async function withinDeadline(p: Promise<unknown>, deadline: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise((resolve) => (timer = setTimeout(resolve, remaining(deadline))))]);
  clearTimeout(timer);
}

async function bounded(p: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, TERMINATE_WAIT_MS)))]);
  clearTimeout(timer);
}
