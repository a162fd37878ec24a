/**
 * Several HSMs that hold the same keys through the vendor's own replication (a Luna HA group's members,
 * a CloudHSM cluster, several network paths to one partition), each behind a connection of its own
 * (connection.ts). README.md, "Members".
 *
 * - A call goes to the serving member with the fewest calls in flight. A member that fails stops
 *   serving (its connection's probe or state says so), is probed in the background and serves again
 *   when it answers.
 * - An idempotent call (sign, verify, decrypt, MAC, random, key reads) that fails with
 *   BACKEND_UNAVAILABLE is retried once on another member; any call is, when it never reached a worker.
 * - A lifecycle change goes to one member and the vendor replicates it. For replicationWaitMs afterwards,
 *   a KEY_NOT_FOUND or KEY_VERSION_NOT_FOUND for that key on another member is waited out (polled) until
 *   the change shows there, so a read after a create never fails.
 */
import type { Logger } from 'pino';
import type { BackendHealth, Capabilities } from '../../src/backend/port.js';
import { HsmBridgeError } from '../../src/errors.js';
import type { ResolvedPkcs11Config } from './config.js';
import { Connection, leftTokenUnchanged, type CallOptions } from './connection.js';
import { PinError, unavailable } from './errors.js';
import type { WorkerLink } from './workerLink.js';

const POLL_MS = 100;

export interface MemberCallOptions extends CallOptions {
  /** The key the call is about, for read-after-change across members. */
  readonly key?: string;
}

interface Member {
  readonly name: string;
  /** Calls sent to it so far (metrics, and to see that a member that came back is used again). */
  calls: number;
  /** Calls sent to it and not yet answered: counted here, at the moment of choosing, not when a worker takes them. */
  inFlight: number;
  /** Undefined while it could not be opened (at start); opened again in the background. */
  connection: Connection | undefined;
  openError?: string;
  /** It could not log in: never tried again (a wrong PIN locks the token). */
  pinError?: boolean;
}

export class Members {
  /** Keys changed lately, and by which member: the others may not show the change yet. */
  private readonly recent = new Map<string, { member: Member; until: number }>();
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly members: Member[],
    private readonly config: ResolvedPkcs11Config,
    private readonly logger: Logger,
    private readonly onReset: () => void,
    readonly capabilities: Capabilities,
  ) {}

  /** Opens every member; starts when at least one opens (the others are retried), fails with the first error otherwise. */
  static async open(config: ResolvedPkcs11Config, logger: Logger, onReset: () => void): Promise<Members> {
    const members: Member[] = config.members.map((m) => ({ name: m.name, calls: 0, inFlight: 0, connection: undefined }));
    const errors = await Promise.all(
      config.members.map(async (settings, i) => {
        try {
          members[i]!.connection = await Connection.open({ ...config, ...settings }, memberLogger(logger, config, settings.name), onReset);
          return undefined;
        } catch (e) {
          members[i]!.openError = (e as Error).message;
          members[i]!.pinError = e instanceof PinError;
          return e;
        }
      }),
    );
    const first = members.find((m) => m.connection)?.connection;
    if (!first) throw errors[0];
    for (const m of members) {
      if (m.connection) continue;
      if (m.pinError) logger.error({ member: m.name, detail: m.openError }, 'pkcs11: an HSM member refused the PIN; serving from the others and not retrying it (a wrong PIN locks the token)');
      else logger.error({ member: m.name, detail: m.openError }, 'pkcs11: an HSM member could not be opened; serving from the others and retrying it');
    }
    const set = new Members(members, config, logger, onReset, first.capabilities);
    set.scheduleReopen();
    return set;
  }

  /** Runs a call on a member, within its deadline, and says which worker ran it. */
  async run<T>(method: string, args: readonly unknown[], options: MemberCallOptions): Promise<{ value: T; link: WorkerLink }> {
    const tried = new Set<Member>();
    for (;;) {
      const member = this.pick(tried);
      if (!member) throw unavailable(this.members.length === 1 ? this.downDetail(this.members[0]!) : 'no HSM member is available');
      tried.add(member);
      try {
        return await this.onMember<T>(member, method, args, options);
      } catch (e) {
        const retry = e instanceof HsmBridgeError && e.code === 'BACKEND_UNAVAILABLE' && (options.idempotent || leftTokenUnchanged(e)) && tried.size === 1;
        if (!retry || !this.pick(tried)) throw e;
        this.logger.warn({ member: member.name, detail: e.message }, 'pkcs11: an HSM member failed a call; retrying it on another');
      }
    }
  }

  /** A lifecycle change of `key` was made by the member that ran `link`. */
  changed(key: string, link: WorkerLink): void {
    const member = this.members.find((m) => m.connection?.owns(link));
    if (!member || this.members.length === 1) return;
    const now = Date.now();
    for (const [k, r] of this.recent) if (r.until < now) this.recent.delete(k);
    this.recent.set(key, { member, until: now + this.config.replicationWaitMs });
  }

  /** Sends to every serving member's workers (a key's cached handles to drop). */
  broadcast(method: string, args: readonly unknown[]): void {
    for (const m of this.members) m.connection?.broadcast(method, args);
  }

  /** Sends to the worker of `link` itself, whichever member it belongs to. */
  runOn<T>(link: WorkerLink, method: string, args: readonly unknown[], deadline: number): Promise<T> {
    const member = this.members.find((m) => m.connection?.owns(link));
    if (!member?.connection) return Promise.reject(unavailable('that HSM member is gone'));
    return member.connection.runOn<T>(link, method, args, deadline);
  }

  /** Each member: serving, calls in flight, calls so far (only with more than one member). */
  memberGauges(): { name: string; serving: boolean; inFlight: number; calls: number }[] | undefined {
    if (this.members.length === 1) return undefined;
    return this.members.map((m) => ({ name: m.name, serving: m.connection?.serving ?? false, inFlight: m.inFlight, calls: m.calls }));
  }

  poolCounts(): { size: number; inUse: number; waiting: number } {
    const total = { size: 0, inUse: 0, waiting: 0 };
    for (const m of this.members) {
      const c = m.connection?.poolCounts();
      if (!c) continue;
      total.size += c.size;
      total.inUse += c.inUse;
      total.waiting += c.waiting;
    }
    return total;
  }

  /** Ready when any member is; the detail names the members that are not. */
  async health(): Promise<BackendHealth> {
    const states = await Promise.all(this.members.map(async (m) => ({ m, health: m.connection ? await m.connection.health() : { ready: false, detail: this.downDetail(m) } })));
    const down = states.filter((s) => !s.health.ready);
    if (this.members.length === 1) return states[0]!.health;
    if (down.length === states.length) return { ready: false, detail: `HSM unavailable: no member answers (${down.map((s) => `${s.m.name}: ${s.health.detail}`).join('; ')})` };
    return down.length === 0 ? { ready: true } : { ready: true, detail: `serving without ${down.map((s) => s.m.name).join(', ')}` };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    await Promise.all(this.members.map((m) => m.connection?.close()));
  }

  // --- internals ---------------------------------------------------------------------------------

  /**
   * The member for a call: the serving one with the fewest calls in flight; when none serves, a member
   * that is at least connected (its calls then fail or succeed on their own), so a single member
   * behaves as before.
   */
  private pick(tried: ReadonlySet<Member>): Member | undefined {
    const open = this.members.filter((m) => m.connection && !tried.has(m));
    const serving = open.filter((m) => m.connection!.serving);
    const pool = serving.length > 0 ? serving : tried.size === 0 ? open : [];
    return pool.reduce<Member | undefined>((best, m) => (!best || m.inFlight < best.inFlight ? m : best), undefined);
  }

  /**
   * Runs on one member; a key another member changed lately is waited for until it shows here, within
   * the replication wait and the call's deadline.
   */
  private async onMember<T>(member: Member, method: string, args: readonly unknown[], options: MemberCallOptions): Promise<{ value: T; link: WorkerLink }> {
    for (;;) {
      member.calls++;
      member.inFlight++;
      try {
        return await member.connection!.run<T>(method, args, options);
      } catch (e) {
        const recent = options.key === undefined ? undefined : this.recent.get(options.key);
        const notYet = e instanceof HsmBridgeError && (e.code === 'KEY_NOT_FOUND' || e.code === 'KEY_VERSION_NOT_FOUND');
        const until = Math.min(recent?.until ?? 0, options.deadline - POLL_MS);
        if (!notYet || !recent || recent.member === member || Date.now() >= until) throw e;
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      } finally {
        member.inFlight--;
      }
    }
  }

  private downDetail(m: Member): string {
    return m.openError ?? 'not connected';
  }

  /** Members that could not be opened at start are tried again, with the connection's own backoff range. */
  private scheduleReopen(delay = 250): void {
    if (this.closed || this.members.every((m) => m.connection || m.pinError)) return;
    this.retryTimer = setTimeout(() => {
      void Promise.all(
        this.members.map(async (m, i) => {
          if (m.connection || m.pinError) return;
          const settings = this.config.members[i]!;
          try {
            const connection = await Connection.open({ ...this.config, ...settings }, memberLogger(this.logger, this.config, settings.name), this.onReset);
            if (this.closed) await connection.close();
            else {
              m.connection = connection;
              delete m.openError;
              this.logger.info({ member: m.name }, 'pkcs11: HSM member connected');
            }
          } catch (e) {
            m.openError = (e as Error).message;
            m.pinError = e instanceof PinError;
          }
        }),
      ).then(() => this.scheduleReopen(Math.min(delay * 2, 1000)));
    }, delay);
    this.retryTimer.unref();
  }
}

function memberLogger(logger: Logger, config: ResolvedPkcs11Config, name: string): Logger {
  return config.members.length > 1 ? logger.child({ member: name }) : logger;
}
