/**
 * What the conformance suites are written against, so that they run both in this repository's vitest
 * set-up and in `hsmb conformance` from the installed package, with no test framework there. A suite is a
 * function of a SuiteHost: it declares blocks, checks and hooks, and the host runs them. Assertions come
 * from ./expect.ts in both cases, so what CI checks is exactly what ships.
 */

export type Body = () => Promise<void> | void;

export interface SuiteHost {
  describe(name: string, body: () => void): void;
  /** A check; `timeoutMs` where it needs longer than the host's default. */
  it(name: string, body: Body, timeoutMs?: number): void;
  beforeAll(body: Body, timeoutMs?: number): void;
  afterAll(body: Body, timeoutMs?: number): void;
  /**
   * Says that the running check met a capability the backend does not offer, and checked only that it
   * is refused (or left it to the check that does). The kit reports such a check as `refused`, not
   * `pass`, so that a report shows what was really exercised.
   */
  refused(what: string): void;
}

/** The backend under test: opened again (after close) to prove that keys persist in the backend. */
export interface ConformanceTarget {
  open(): Promise<import('../backend/port.js').Backend>;
  cleanup(): Promise<void>;
}

/** A conformance suite: registers its checks for one target on a host. */
export type Suite = (host: SuiteHost, label: string, makeTarget: () => Promise<ConformanceTarget>) => void;
