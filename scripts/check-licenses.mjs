#!/usr/bin/env node
// Fails when a production dependency (direct or transitive) has a licence that is not known to be
// compatible with Apache-2.0: GPL-family licences and anything unrecognised are refused by name.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const allowed = new Set(['MIT', 'ISC', 'Apache-2.0', 'BSD-2-Clause', 'BSD-3-Clause', '0BSD', 'BlueOak-1.0.0', 'CC0-1.0', 'Unlicense', 'Python-2.0']);

const tree = JSON.parse(execFileSync('npm', ['ls', '--omit=dev', '--all', '--json', '--long'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
const seen = new Map();
(function walk(deps) {
  for (const [name, dep] of Object.entries(deps ?? {})) {
    if (!dep.path || seen.has(dep.path)) continue;
    const pkg = JSON.parse(readFileSync(join(dep.path, 'package.json'), 'utf8'));
    const license = typeof pkg.license === 'string' ? pkg.license : pkg.license?.type ?? 'UNKNOWN';
    seen.set(dep.path, { name: `${name}@${pkg.version}`, license });
    walk(dep.dependencies);
  }
})(tree.dependencies);

// An SPDX expression passes when at least one OR-alternative has every AND-part allowed.
const ok = (expr) => expr.replace(/[()]/g, '').split(/\s+OR\s+/).some((alt) => alt.split(/\s+AND\s+/).every((id) => allowed.has(id.trim())));
const bad = [...seen.values()].filter((d) => !ok(d.license));
if (bad.length) {
  console.error('Dependencies with licences not known to be Apache-2.0 compatible:');
  for (const d of bad) console.error(`  ${d.name}: ${d.license}`);
  process.exit(1);
}
console.log(`licences: ${seen.size} production packages, all Apache-2.0 compatible`);
