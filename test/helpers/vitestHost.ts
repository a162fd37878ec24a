import { afterAll, beforeAll, describe, it } from 'vitest';
import type { SuiteHost } from '../../src/conformance/host.js';

/** The conformance suites (src/conformance/suites) as vitest tests; a check that met an unoffered capability passes here, and `hsmb conformance` reports it as refused. */
export const vitestHost: SuiteHost = {
  describe: (name, body) => describe(name, body),
  it: (name, body, timeoutMs) => it(name, async () => body(), timeoutMs),
  beforeAll: (body, timeoutMs) => beforeAll(async () => body(), timeoutMs),
  afterAll: (body, timeoutMs) => afterAll(async () => body(), timeoutMs),
  refused: () => undefined,
};
