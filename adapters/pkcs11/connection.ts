/**
 * The backend's link to its token: module, slot, login and session pool, and what happens when the HSM
 * goes away. Every HSM call runs through `run()`, which lends it a session; when a call fails with a
 * "device gone" CKR, the pool is dropped, the module finalized and initialized again, the user logged in
 * again, and the call retried once. If the HSM stays away, calls fail fast with BACKEND_UNAVAILABLE and a
 * background timer (backoff, unref'd) keeps trying until it is back.
 */
import type { Logger } from 'pino';
import type { BackendHealth } from '../../src/backend/port.js';
import type { ResolvedPkcs11Config } from './config.js';
import { ckrName, involvesCkr, isDeviceGone, PinError, toBridgeError, unavailable } from './errors.js';
import { Pkcs11Module, type Handle, type Pkcs11Api } from './module.js';
import { PoolClosedError, SessionPool } from './sessionPool.js';
import { closeSession, describeToken, findSlot, login, openSession } from './token.js';

const RECOVERY_FIRST_DELAY_MS = 250;
const RECOVERY_MAX_DELAY_MS = 10_000;
/** How long a reconnect waits for calls still running on the old sessions (they fail fast on a dead device). */
const DRAIN_TIMEOUT_MS = 10_000;
/** How often the token is probed for health(); probes answer from the last result. */
const HEALTH_PROBE_INTERVAL_MS = 1000;

type State =
  | { readonly kind: 'up'; readonly slot: Handle; readonly pool: SessionPool<Handle>; readonly generation: number }
  | { readonly kind: 'recovering'; readonly done: Promise<void> }
  | { readonly kind: 'down'; readonly detail: string }
  | { readonly kind: 'closed' };

export class Connection {
  private state: State = { kind: 'closed' };
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = RECOVERY_FIRST_DELAY_MS;
  private healthTimer: NodeJS.Timeout | undefined;
  /** The last device probe while up: undefined = fine, else why not. */
  private probeFailure: string | undefined;
  /**
   * Sessions that created session objects still in use (transient keys, transientKeys.ts), by handle:
   * closing such a session would destroy its objects, so when the pool lets one go (replaced after a
   * failed call) it stays open, out of the pool, until its last object is released.
   */
  private readonly holders = new Map<string, { readonly session: Handle; objects: number; retired: boolean }>();

  private constructor(
    private readonly module: Pkcs11Module,
    private readonly config: ResolvedPkcs11Config,
    private readonly logger: Logger,
    /** Called whenever sessions and object handles become invalid (reconnect, close). */
    private readonly onReset: () => void,
  ) {}

  /** Connects and logs in, or fails with a clear error (never containing the PIN). */
  static async open(config: ResolvedPkcs11Config, logger: Logger, onReset: () => void): Promise<Connection> {
    const module = Pkcs11Module.acquire(config.library);
    const connection = new Connection(module, config, logger, onReset);
    try {
      connection.state = await connection.connect();
    } catch (e) {
      module.release();
      throw e;
    }
    // Readiness probes come often (every replica, every orchestrator): a synchronous C_GetTokenInfo
    // per probe would put the HSM's latency on the event loop each time. One timer does it instead.
    connection.healthTimer = setInterval(() => connection.probe(), HEALTH_PROBE_INTERVAL_MS);
    connection.healthTimer.unref();
    return connection;
  }

  get api(): Pkcs11Api {
    return this.module.api;
  }

  /** The session pool's counts; all zero while the connection is not up (no sessions to lend). */
  poolCounts(): { size: number; inUse: number; waiting: number } {
    if (this.state.kind !== 'up') return { size: 0, inUse: 0, waiting: 0 };
    const { pool } = this.state;
    return { size: pool.size, inUse: pool.inUse, waiting: pool.waiting };
  }

  /** The token's slot; only valid while the connection is up. */
  slot(): Handle {
    if (this.state.kind !== 'up') throw this.notUp();
    return this.state.slot;
  }

  /**
   * Runs `operation` on a session of its own. Device-gone errors trigger one reconnect and one retry;
   * everything else is mapped to an HsmBridgeError by the caller's own handling or toBridgeError.
   */
  async run<T>(operation: (session: Handle) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const state = await this.upState();
      let session: Handle;
      try {
        session = await state.pool.acquire();
      } catch (e) {
        if (e instanceof PoolClosedError && attempt === 0) continue; // a reconnect started meanwhile
        throw e instanceof PoolClosedError ? unavailable('reconnecting') : e;
      }
      const outcome = await this.settle(state.pool, session, operation);
      if (outcome.ok) return outcome.value;
      if (isDeviceGone(outcome.error)) {
        if (attempt === 0) {
          await this.recover(state, outcome.error).catch(() => undefined);
          continue;
        }
        throw toBridgeError(outcome.error);
      }
      throw outcome.error;
    }
  }

  /** Keeps `session` open while a session object it created is in use (until unhold). */
  hold(session: Handle): void {
    const id = session.toString('hex');
    const entry = this.holders.get(id);
    if (entry) entry.objects++;
    else this.holders.set(id, { session, objects: 1, retired: false });
  }

  /** The session object is gone: a session the pool has let go meanwhile is closed now. */
  unhold(session: Handle): void {
    const id = session.toString('hex');
    const entry = this.holders.get(id);
    if (!entry || entry.session !== session) return; // a session of an older connection: already gone
    if (--entry.objects > 0) return;
    this.holders.delete(id);
    if (entry.retired) closeSession(this.api, session);
  }

  private closeUnlessHolding(session: Handle): void {
    const entry = this.holders.get(session.toString('hex'));
    if (entry && entry.session === session) entry.retired = true;
    else closeSession(this.api, session);
  }

  /** From the connection's state and the last probe (at most HEALTH_PROBE_INTERVAL_MS old); no HSM call. */
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
        return this.probeFailure === undefined ? { ready: true } : { ready: false, detail: this.probeFailure };
    }
  }

  /**
   * C_GetTokenInfo is cheap and touches the device, so an HSM that died while idle is noticed (and a
   * reconnect started) without waiting for a request. It is synchronous: see README.md on a frozen HSM.
   */
  private probe(): void {
    const state = this.state;
    if (state.kind !== 'up') return;
    try {
      this.api.C_GetTokenInfo(state.slot);
      this.probeFailure = undefined;
    } catch (e) {
      this.probeFailure = `HSM unavailable: ${ckrName(e)}`;
      void this.recover(state, e).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    const state = this.state;
    if (state.kind === 'closed' && this.retryTimer === undefined) return;
    this.state = { kind: 'closed' };
    clearInterval(this.healthTimer);
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (state.kind === 'recovering') await state.done.catch(() => undefined);
    if (state.kind === 'up') await state.pool.close(DRAIN_TIMEOUT_MS);
    this.onReset();
    this.module.release();
  }

  // --- internals ---------------------------------------------------------------------------------

  private async connect(): Promise<State & { kind: 'up' }> {
    const api = this.api;
    const generation = this.module.generation;
    const slot = findSlot(api, this.config.token);
    // A new module generation: the sessions (and session objects) of the old one are gone.
    this.holders.clear();
    let pool: SessionPool<Handle>;
    try {
      pool = new SessionPool<Handle>({
        size: this.config.sessionPoolSize,
        acquireTimeoutMs: this.config.acquireTimeoutMs,
        maxQueued: this.config.maxQueuedRequests,
        open: () => openSession(api, slot),
        close: (s) => this.closeUnlessHolding(s),
      });
    } catch (e) {
      throw unavailable(`cannot open ${this.config.sessionPoolSize} session(s) on ${describeToken(this.config.token)} (${ckrName(e)})`, e);
    }
    try {
      const session = await pool.acquire();
      try {
        await login(api, session, this.config.pin);
      } finally {
        pool.release(session);
      }
    } catch (e) {
      await pool.close(0);
      throw e;
    }
    return { kind: 'up', slot, pool, generation };
  }

  private async upState(): Promise<State & { kind: 'up' }> {
    let state = this.state;
    if (state.kind === 'recovering') {
      await state.done.catch(() => undefined);
      state = this.state;
    }
    if (state.kind !== 'up') throw this.notUp();
    return state;
  }

  private notUp() {
    const state = this.state;
    return unavailable(state.kind === 'down' ? state.detail.replace(/^HSM unavailable: /, '') : state.kind === 'closed' ? 'backend closed' : 'reconnecting');
  }

  /**
   * Runs the operation and gives its session back when the call has really returned, even if the caller
   * stopped waiting (operationTimeoutMs): PKCS#11 cannot cancel a call, and its session is busy until then.
   */
  private async settle<T>(pool: SessionPool<Handle>, session: Handle, operation: (session: Handle) => Promise<T>) {
    type Outcome = { ok: true; value: T } | { ok: false; error: unknown };
    const settled: Promise<Outcome> = Promise.resolve()
      .then(() => operation(session))
      .then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      );
    // Released before any awaiting code below runs, so a reconnect waiting for the pool to drain sees it.
    void settled.then((o) => pool.release(session, !o.ok && involvesCkr(o.error) && !isDeviceGone(o.error)));
    const timeoutMs = this.config.operationTimeoutMs;
    if (timeoutMs === undefined) return settled;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<Outcome>((resolve) => {
      timer = setTimeout(() => resolve({ ok: false, error: unavailable(`an HSM call took longer than ${timeoutMs} ms`) }), timeoutMs);
    });
    try {
      return await Promise.race([settled, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** One reconnect at a time; callers that saw the same failure share it. */
  private recover(failed: State & { kind: 'up' }, cause: unknown): Promise<void> {
    const current = this.state;
    if (current.kind === 'recovering') return current.done;
    if (current !== failed) return Promise.resolve(); // someone already reconnected (or closed)
    this.logger.warn({ ckr: ckrName(cause) }, 'pkcs11: HSM connection lost; reconnecting');
    const done = (async () => {
      await failed.pool.close(DRAIN_TIMEOUT_MS);
      this.onReset();
      await this.reconnect(failed.generation);
    })();
    this.state = { kind: 'recovering', done };
    return done;
  }

  private async reconnect(failedGeneration: number): Promise<void> {
    try {
      await this.module.reinitialize(failedGeneration);
      const up = await this.connect();
      if (this.state.kind === 'closed') {
        await up.pool.close(0);
        return;
      }
      this.state = up;
      this.probeFailure = undefined;
      this.retryDelay = RECOVERY_FIRST_DELAY_MS;
      this.logger.info('pkcs11: reconnected to the HSM');
    } catch (e) {
      const error = toBridgeError(e);
      if (this.state.kind === 'closed') return;
      this.state = { kind: 'down', detail: error.message };
      if (e instanceof PinError) {
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
