/**
 * scripts/check-sbom.mjs on an SBOM that cyclonedx-npm writes for the licence fixture tree (which has a
 * nested second version and a devDependency), then on copies with a package taken out or one added.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repo = join(__dirname, '..', '..');
const tree = join(repo, 'test', 'fixtures', 'licences', 'tree');

type Component = { name: string; version: string; components?: Component[] };
type Bom = { components: Component[] };

function check(file: string) {
  const run = spawnSync(process.execPath, [join(repo, 'scripts', 'check-sbom.mjs'), file, tree], { encoding: 'utf8' });
  return { status: run.status, out: run.stdout + run.stderr };
}

describe('check-sbom', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sbom-'));
  let bom: Bom;

  beforeAll(() => {
    const file = join(dir, 'sbom.cdx.json');
    execFileSync(join(repo, 'node_modules', '.bin', 'cyclonedx-npm'), ['--omit', 'dev', '--output-format', 'JSON', '--output-file', file], { cwd: tree, stdio: 'ignore' });
    bom = JSON.parse(readFileSync(file, 'utf8')) as Bom;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const variant = (name: string, edit: (b: Bom) => void) => {
    const copy = structuredClone(bom);
    edit(copy);
    const file = join(dir, name);
    writeFileSync(file, JSON.stringify(copy));
    return file;
  };

  it('accepts the SBOM cyclonedx-npm writes for the production packages', () => {
    const { status, out } = check(join(dir, 'sbom.cdx.json'));
    expect(out).toContain('lists all 12 production packages and nothing else');
    expect(status).toBe(0);
  });

  it('refuses an SBOM without a nested package', () => {
    const file = variant('missing.json', (b) => {
      const alpha = b.components.find((c) => c.name === 'alpha')!;
      alpha.components = alpha.components!.filter((c) => c.name !== 'util');
    });
    const { status, out } = check(file);
    expect(status).toBe(1);
    expect(out).toContain('missing: util@2.0.0');
  });

  it('refuses an SBOM that lists a development package', () => {
    const file = variant('extra.json', (b) => b.components.push({ name: 'dev-tool', version: '1.0.0' }));
    const { status, out } = check(file);
    expect(status).toBe(1);
    expect(out).toContain('not production packages: dev-tool@1.0.0');
  });
});
