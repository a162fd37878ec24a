#!/usr/bin/env node
// The npm audit gate over the production dependencies, failing closed. Exit status:
//   0  the audit ran: no high or critical advisory;
//   1  a high or critical advisory, or npm audit failed in a way that is not a missing endpoint;
//   2  the audit DID NOT RUN: the registry has no audit endpoint (it answered the advisory request with
//      404, 405 or 501, as some registries and mirrors do). Any other HTTP error (an outage, a refused
//      credential, a rate limit) is 1: a registry that has the endpoint must answer it.
// .ci/run reports status 2 in its summary and goes on; npm run release:check fails on it like on 1.
import { spawnSync } from 'node:child_process';

const NO_ENDPOINT = [404, 405, 501];

const run = spawnSync('npm', ['audit', '--omit=dev', '--json'], { encoding: 'utf8' });
let report;
try {
  report = JSON.parse(run.stdout);
} catch {
  console.error(`npm audit: no report (exit ${run.status}): ${run.stderr.trim() || run.stdout.trim()}`);
  process.exit(1);
}

const counts = report?.metadata?.vulnerabilities;
if (!counts) {
  if (NO_ENDPOINT.includes(report?.statusCode)) {
    console.error(`npm audit: DID NOT RUN: the registry has no audit endpoint (${report.message ?? `HTTP ${report.statusCode}`}); no advisory was checked`);
    process.exit(2);
  }
  const status = typeof report?.statusCode === 'number' ? ` (HTTP ${report.statusCode}: the registry has an audit endpoint but did not answer)` : '';
  console.error(`npm audit: no report (exit ${run.status})${status}: ${run.stdout.trim()}`);
  process.exit(1);
}

const blocking = Object.values(report.vulnerabilities ?? {}).filter((v) => v.severity === 'high' || v.severity === 'critical');
const tally = ['critical', 'high', 'moderate', 'low', 'info'].map((s) => `${counts[s] ?? 0} ${s}`).join(', ');
if (blocking.length || (counts.high ?? 0) + (counts.critical ?? 0) > 0) {
  console.error(`npm audit: FAILED, production dependencies have high or critical advisories (${tally}):`);
  for (const v of blocking) {
    const titles = (v.via ?? []).filter((via) => typeof via === 'object').map((via) => `${via.title} ${via.url}`);
    console.error(`  ${v.name} (${v.severity}, ${v.range})${titles.length ? `: ${titles.join('; ')}` : ''}`);
  }
  console.error('  `npm audit --omit=dev` shows the fixes.');
  process.exit(1);
}
console.log(`npm audit: passed, no high or critical advisory in the production dependencies (${tally})`);
