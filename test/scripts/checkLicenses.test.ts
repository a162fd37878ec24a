/**
 * scripts/check-licenses.mjs against fixture trees (test/fixtures/licences/) and against the project
 * itself. The `tree` fixture hides a GPL package (`copyleft`) below `hub`, which npm ls first meets as a
 * `deduped` dependency of `alpha`; it also holds a package with no licence, one with its own terms, SPDX
 * expressions that pass or fail only by operator precedence, a nested second version, and a GPL
 * devDependency that must not count.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const repo = join(__dirname, '..', '..');
const script = join(repo, 'scripts', 'check-licenses.mjs');
const fixture = (name: string) => join(repo, 'test', 'fixtures', 'licences', name);

function check(dir: string) {
  const run = spawnSync(process.execPath, [script, dir], { encoding: 'utf8' });
  return { status: run.status, out: run.stdout + run.stderr };
}

/** `npm ls --omit=dev --all --parseable` minus the root line. */
function npmLsCount(dir: string): number {
  return execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: dir, encoding: 'utf8' }).trim().split('\n').length - 1;
}

type LsNode = { dependencies?: Record<string, LsNode> };

describe('check-licenses', () => {
  it('the fixture really hides the GPL package: npm ls --json first shows hub deduped, without children', () => {
    const tree = JSON.parse(execFileSync('npm', ['ls', '--omit=dev', '--all', '--json'], { cwd: fixture('tree'), encoding: 'utf8' })) as LsNode;
    const first = Object.entries(tree.dependencies!)[0]!;
    expect(first[0]).toBe('alpha');
    expect(first[1].dependencies!.hub).toBeDefined();
    expect(first[1].dependencies!.hub!.dependencies).toBeUndefined();
    expect(tree.dependencies!.hub!.dependencies!.copyleft).toBeDefined();
  });

  it('refuses the GPL package below the deduped entry, a missing licence and unknown terms; counts what npm ls lists', () => {
    const { status, out } = check(fixture('tree'));
    expect(status).toBe(1);
    expect(npmLsCount(fixture('tree'))).toBe(12);
    expect(out).toContain('licences: 12 production packages checked');
    const refused = out.split('\n').filter((line) => line.startsWith('  ')).map((line) => line.trim()).sort();
    expect(refused).toEqual([
      '@scope/both@1.0.0: (MIT OR Apache-2.0) AND SSPL-1.0 (copyleft, not Apache-2.0 compatible)',
      'copyleft@1.0.0: GPL-3.0-only (copyleft, not Apache-2.0 compatible)',
      'mixed@1.0.0: MIT AND GPL-3.0-or-later (copyleft, not Apache-2.0 compatible)',
      'no-licence@1.0.0: no licence declared',
      'own-terms@1.0.0: SEE LICENSE IN TERMS.txt (not known to be Apache-2.0 compatible)',
      'util@2.0.0: (LGPL-2.1-or-later OR SSPL-1.0) (copyleft, not Apache-2.0 compatible)',
    ]);
    // Passed: (MIT OR Apache-2.0), (AGPL-3.0-only OR BSD-3-Clause) AND MIT, the old `licenses` array; never the devDependency.
    expect(out).not.toMatch(/dual@|either@|legacy@|alpha@|hub@|util@1|dev-tool/);
  });

  it('fails when a production dependency is not installed, rather than checking less', () => {
    const { status, out } = check(fixture('missing'));
    expect(status).toBe(1);
    expect(out).toContain('production dependencies not installed: absent');
  });

  it('passes on this project, having checked every package npm ls lists', () => {
    const { status, out } = check(repo);
    expect(out).toContain(`licences: ${npmLsCount(repo)} production packages checked`);
    expect(status).toBe(0);
  });
});
