// The production packages of an npm project, found twice: by walking node_modules from the root's
// dependencies the way Node resolves them, and by `npm ls --omit=dev --all --parseable`. The two lists
// must be the same set of directories, so a walk that misses packages (as one over `npm ls --json` did:
// it stopped at `deduped` entries, which carry no children) fails instead of passing quietly.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';

const readManifest = (dir) => JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));

/** The edges npm ls follows without dev: dependencies, optional and peer dependencies (optional ones only when installed). */
function edges(manifest) {
  const out = new Map();
  for (const name of Object.keys(manifest.peerDependencies ?? {})) out.set(name, manifest.peerDependenciesMeta?.[name]?.optional === true);
  for (const name of Object.keys(manifest.dependencies ?? {})) out.set(name, false);
  for (const name of Object.keys(manifest.optionalDependencies ?? {})) out.set(name, true);
  return out;
}

/** Node's lookup: `<dir>/node_modules/<name>` from the package's own directory up to the project root. */
function locate(root, from, name) {
  for (let dir = from; ; dir = dirname(dir)) {
    if (basename(dir) !== 'node_modules') {
      const candidate = join(dir, 'node_modules', name);
      if (existsSync(join(candidate, 'package.json'))) return candidate;
    }
    if (dir === root || dir === dirname(dir)) return undefined;
  }
}

/**
 * Every production package of the project at `rootDir`: `{ path, name, version, manifest }`, sorted by
 * path. Throws when a required dependency is not installed, when npm ls fails, or when the walk and
 * npm ls disagree.
 */
export function productionPackages(rootDir) {
  const root = realpathSync(resolve(rootDir));
  const found = new Map();
  const missing = [];
  const queue = [[root, readManifest(root)]];
  while (queue.length) {
    const [dir, manifest] = queue.shift();
    for (const [name, optional] of edges(manifest)) {
      const path = locate(root, dir, name);
      if (!path) {
        if (!optional) missing.push(`${name} (needed by ${relative(root, dir) || 'the project'})`);
        continue;
      }
      if (found.has(path)) continue;
      const dep = readManifest(path);
      found.set(path, { path, name: dep.name ?? name, version: dep.version, manifest: dep });
      queue.push([path, dep]);
    }
  }
  if (missing.length) throw new Error(`production dependencies not installed: ${missing.join(', ')}`);

  let listed;
  try {
    listed = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    throw new Error(`npm ls --omit=dev --all --parseable failed: ${String(err.stderr ?? err.message).trim()}`);
  }
  const fromNpm = new Set(listed.split('\n').filter((line) => line && line !== root));
  const onlyWalk = [...found.keys()].filter((path) => !fromNpm.has(path));
  const onlyNpm = [...fromNpm].filter((path) => !found.has(path));
  if (onlyWalk.length || onlyNpm.length) {
    const show = (paths) => paths.map((path) => relative(root, path)).join(', ') || 'none';
    throw new Error(`the walk of node_modules and npm ls disagree; only in the walk: ${show(onlyWalk)}; only in npm ls: ${show(onlyNpm)}`);
  }
  return [...found.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
