/**
 * The conformance kit: the suites every backend adapter must pass, the runner that runs them outside a
 * test framework and the report (`hsmb conformance`, src/cli/conformanceCommand.ts). They ship built in
 * the package, so an HSM vendor needs no clone of this repository.
 */
import type { Suite } from './host.js';
import { describeBackendConformance } from './suites/backend.js';
import { describeDataProtectionConformance } from './suites/dataProtection.js';
import { describeKeyImportConformance } from './suites/keyImport.js';
import { describePaymentConformance } from './suites/payment.js';

/** The suites by the name `--suite` takes, in the order they run. */
export const conformanceSuites: Readonly<Record<string, Suite>> = {
  backend: describeBackendConformance,
  'key-import': describeKeyImportConformance,
  'data-protection': describeDataProtectionConformance,
  payment: describePaymentConformance,
};

export type { ConformanceTarget, Suite, SuiteHost } from './host.js';
export { runSuites, type CheckResult, type CheckStatus } from './runner.js';
