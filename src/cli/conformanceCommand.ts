/**
 * `hsmb conformance --backend-config FILE`: runs the conformance suites (src/conformance) against the
 * backend that FILE configures, as the service would build it: a built-in adapter, a PKCS#11 library by
 * configuration, or `type: module`, a vendor's own adapter. It prints the capability matrix and each
 * check's result, writes the reports asked for, and exits 1 when any check failed.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import type { BackendContext } from '../backend/factory.js';
import { createBackend, resolveBackend } from '../backends.js';
import { ConfigError, loadServiceConfig } from '../config/load.js';
import { conformanceSuites } from '../conformance/index.js';
import { capabilityLines, capabilityMatrix, markdownReport, resultLine, summarise, type ConformanceReport } from '../conformance/report.js';
import { runSuites } from '../conformance/runner.js';
import { EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_USAGE, type Command } from './command.js';

/** This package's name and version, for the report: the first package.json above this module (src/ or dist/src/). */
function toolVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dirname(dir) !== dir; dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'hsm-bridge') return `hsm-bridge ${pkg.version ?? '?'}`;
    } catch {
      // not here: look further up
    }
  }
  return 'hsm-bridge';
}

export const conformance: Command = {
  usage: `--backend-config FILE [--suite NAME]... [--report FILE.md] [--json FILE.json]`,
  summary: `run the adapter conformance suites (${Object.keys(conformanceSuites).join(', ')}; default all) against the backend FILE configures (the service's configuration format; a test token: the checks create keys named conf-*); prints the capability matrix and each check's result; exit 1 when a check fails`,
  async run(args, io) {
    const { values, positionals } = parseArgs({
      args,
      options: { 'backend-config': { type: 'string' }, suite: { type: 'string', multiple: true }, report: { type: 'string' }, json: { type: 'string' } },
      allowPositionals: true,
      strict: true,
    });
    const file = values['backend-config'];
    const unknown = (values.suite ?? []).filter((s) => !Object.hasOwn(conformanceSuites, s));
    if (file === undefined || positionals.length > 0 || unknown.length > 0) {
      if (unknown.length > 0) io.err(`hsmb conformance: no suite ${unknown.join(', ')}; the suites: ${Object.keys(conformanceSuites).join(', ')}`);
      io.err(`usage: hsmb conformance ${this.usage}`);
      return EXIT_USAGE;
    }
    const config = loadServiceConfig({ file, env: io.env });
    const { factory } = await resolveBackend(config);
    const context: BackendContext = { logger: pino({ level: 'silent' }) };

    let capabilities;
    try {
      const backend = await createBackend(config, context);
      capabilities = backend.capabilities();
      await backend.close();
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      io.err(`hsmb conformance: the ${factory.kind} backend did not open: ${(e as Error).message}`);
      return EXIT_UNAVAILABLE;
    }
    const matrix = capabilityMatrix(capabilities);
    io.out(`Capabilities of the ${factory.kind} backend (${file}):`);
    for (const line of capabilityLines(matrix)) io.out(`  ${line}`);
    io.out('');

    const chosen = values.suite ?? Object.keys(conformanceSuites);
    const checks = await runSuites(
      chosen.map((name) => ({ suite: conformanceSuites[name]!, label: factory.kind })),
      async () => ({ open: () => createBackend(config, context), cleanup: async () => undefined }),
      { onResult: (r) => io.out(resultLine(r)) },
    );
    const report: ConformanceReport = {
      tool: toolVersion(),
      date: new Date().toISOString(),
      backend: { kind: factory.kind, config: file },
      capabilities: matrix,
      summary: summarise(checks),
      checks,
    };
    if (values.report) await writeFile(values.report, markdownReport(report));
    if (values.json) await writeFile(values.json, `${JSON.stringify(report, null, 2)}\n`);
    const { pass, refused, fail } = report.summary;
    io.out('');
    io.out(`${fail === 0 ? 'PASSED' : 'FAILED'}: ${pass} pass, ${refused} refused as the capabilities say, ${fail} fail`);
    return fail === 0 ? 0 : EXIT_FAILED;
  },
};
