/**
 * The container image and the compose try-out, checked without a Docker engine (there is none in CI):
 * docker/Dockerfile, .dockerignore and docker/compose.yaml are read as text, and the configuration the
 * try-out mounts is loaded by the service's own loader. The linter (npm run lint:docker) and
 * `docker-compose config` run in .ci/run.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { resolveBackend } from '../../src/backends.js';
import { loadServiceConfig } from '../../src/config/load.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const read = (path: string) => readFileSync(join(root, path), 'utf8');

interface Instruction {
  readonly command: string;
  readonly args: string;
}
interface Stage {
  readonly from: string;
  readonly name?: string;
  readonly instructions: Instruction[];
}

/** Instructions with continuation lines joined and comments dropped; ARGs before the first FROM dropped. */
function parseDockerfile(text: string): { stages: Stage[] } {
  const joined = text
    .split('\n')
    .filter((line) => !line.trim().startsWith('#'))
    .join('\n')
    .replace(/\\\n/g, ' ');
  const stages: Stage[] = [];
  for (const line of joined.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const [, command = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const upper = command.toUpperCase();
    if (upper === 'FROM') {
      const [from = '', , name] = args.split(/\s+/);
      stages.push({ from, name: name?.toLowerCase(), instructions: [] });
    } else {
      stages.at(-1)?.instructions.push({ command: upper, args });
    }
  }
  return { stages };
}

/** .dockerignore's rules (the last matching pattern decides; a pattern that matches a folder covers what is in it). */
function dockerIgnored(patterns: readonly string[], path: string): boolean {
  const toRegExp = (pattern: string) =>
    new RegExp(
      `^${pattern
        .replace(/^\//, '')
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*\*\//g, '\u0000')
        .replace(/\*\*/g, '.*')
        .replace(/\*/g, '[^/]*')
        .replace(/\?/g, '[^/]')
        .replace(/\u0000/g, '(?:.*/)?')}$`,
    );
  const prefixes = path.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const re = toRegExp(negated ? raw.slice(1) : raw);
    if (prefixes.some((p) => re.test(p))) ignored = !negated;
  }
  return ignored;
}

const dockerfile = parseDockerfile(read('docker/Dockerfile'));
const stageNames = new Set(dockerfile.stages.map((s) => s.name).filter(Boolean));
const released = dockerfile.stages.at(-1)!;
/** The stages the released image is made of, itself first. */
function lineage(stage: Stage): Stage[] {
  const parent = dockerfile.stages.find((s) => s.name === stage.from.toLowerCase());
  return parent ? [stage, ...lineage(parent)] : [stage];
}
const runtime = lineage(released).flatMap((s) => s.instructions);
const ignorePatterns = read('.dockerignore')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));

describe('docker/Dockerfile', () => {
  it('pins every base image by tag and digest, written out where Dependabot updates it', () => {
    // Dependabot does not resolve an ARG in FROM (dependabot-core#2057): the pin would go stale.
    for (const stage of dockerfile.stages) expect(stage.from).not.toContain('$');
    const external = dockerfile.stages.map((s) => s.from).filter((from) => !stageNames.has(from.toLowerCase()));
    expect(external.length).toBeGreaterThan(0);
    for (const image of external) expect(image).toMatch(/^[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}$/);
    const dependabot = parseYaml(read('.github/dependabot.yml')) as { updates: { 'package-ecosystem': string; directory: string }[] };
    expect(dependabot.updates).toContainEqual(expect.objectContaining({ 'package-ecosystem': 'docker', directory: '/docker' }));
  });

  it('releases a stage with no build tools and no SoftHSM, which installs nothing and runs as a numeric non-root user', () => {
    expect(released.name).toBeUndefined();
    expect(lineage(released).map((s) => s.name)).not.toContain('softhsm-tryout');
    expect(lineage(released).map((s) => s.name)).not.toContain('build');
    const runs = runtime.filter((i) => i.command === 'RUN').map((i) => i.args);
    for (const run of runs) expect(run).not.toMatch(/apt-get|npm (ci|install)|python3|g\+\+|make/);
    const users = runtime.filter((i) => i.command === 'USER');
    expect(users.length).toBeGreaterThan(0);
    expect(users[0]!.args).toMatch(/^[1-9]\d*(:\d+)?$/);
    // The build stage's node_modules are pruned to production dependencies before they are copied.
    const build = dockerfile.stages.find((s) => s.name === 'build')!;
    expect(build.instructions.some((i) => i.command === 'RUN' && /npm prune --omit=dev/.test(i.args))).toBe(true);
  });

  it('drops the base image\'s package managers, which nothing in the released image runs', () => {
    const removed = runtime
      .filter((i) => i.command === 'RUN')
      .flatMap((i) => [...i.args.matchAll(/\brm -rf ((?:\s*[\w/.*-]+)+)/g)].flatMap((m) => m[1]!.trim().split(/\s+/)));
    // Where node:24-bookworm-slim puts them: Node's tarball in /usr/local, yarn 1 in /opt.
    for (const path of [
      '/usr/local/lib/node_modules/npm', '/usr/local/lib/node_modules/corepack', '/usr/local/bin/npm', '/usr/local/bin/npx',
      '/usr/local/bin/corepack', '/opt/yarn-v*', '/usr/local/bin/yarn', '/usr/local/bin/yarnpkg',
    ]) expect(removed, path).toContain(path);
    for (const command of ['HEALTHCHECK', 'ENTRYPOINT', 'CMD']) {
      const instruction = runtime.find((i) => i.command === command);
      expect(instruction?.args, command).toBeDefined();
      expect(instruction!.args, command).not.toMatch(/\b(npm|npx|corepack|yarn|yarnpkg)\b/);
    }
    expect(runtime.find((i) => i.command === 'ENTRYPOINT')?.args).toMatch(/^\["node", /);
  });

  it('has a health check that runs the copied script with node, OCI labels and a volume for what it writes', () => {
    const healthcheck = runtime.find((i) => i.command === 'HEALTHCHECK');
    expect(healthcheck?.args).toMatch(/CMD \["node", "healthcheck\.mjs"\]$/);
    expect(runtime.some((i) => i.command === 'COPY' && i.args === 'docker/healthcheck.mjs ./')).toBe(true);
    const labels = runtime.filter((i) => i.command === 'LABEL').map((i) => i.args).join(' ');
    for (const key of ['source', 'version', 'licenses', 'title', 'description']) expect(labels).toContain(`org.opencontainers.image.${key}=`);
    expect(labels).toContain(`org.opencontainers.image.licenses="${JSON.parse(read('package.json')).license}"`);
    expect(runtime.find((i) => i.command === 'VOLUME')?.args).toBe('["/var/lib/hsm-bridge"]');
  });

  it('copies only what .dockerignore lets into the build context', () => {
    const sources = dockerfile.stages
      .flatMap((s) => s.instructions)
      .filter((i) => i.command === 'COPY' && !i.args.startsWith('--from'))
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    expect(sources).toContain('src');
    for (const source of sources) {
      expect(existsSync(join(root, source)), source).toBe(true);
      expect(dockerIgnored(ignorePatterns, source), source).toBe(false);
    }
  });
});

describe('.dockerignore', () => {
  it('keeps keys, git, dependencies, tests, builds, SBOMs, CI files, logs and secrets out of the build context', () => {
    const never = [
      'data/keystore.json', 'data/keystore.json.master-key', '.git/config', 'node_modules/fastify/package.json', 'test/errors.test.ts',
      'bench/keys.bench.ts', 'coverage/index.html', 'dist/src/main.js', 'sbom.cdx.json', '.ci/run', 'docker/secrets/hsm-pin',
      'npm-debug.log', 'src/debug.log', 'src/data/keystore.json', 'adapters/pkcs11/node_modules/x.js', 'docker/compose.yaml',
    ];
    for (const path of never) expect(dockerIgnored(ignorePatterns, path), path).toBe(true);
  });
});

describe('docker/compose.yaml', () => {
  const composeDir = join(root, 'docker');
  // merge: compose applies YAML merge keys (<<), which YAML 1.2 leaves out by default.
  const compose = parseYaml(read('docker/compose.yaml'), { merge: true }) as {
    services: Record<string, Record<string, unknown>>;
    volumes: Record<string, unknown>;
    secrets: Record<string, Record<string, unknown>>;
  };
  const service = compose.services['hsm-bridge']!;
  const init = compose.services['softhsm-init']!;
  const mounts = (s: Record<string, unknown>) => (s.volumes as string[]).map((v) => v.split(':'));
  const configMount = mounts(service).find(([, target]) => target === '/etc/hsm-bridge/hsm-bridge.yaml')!;

  it('builds the try-out stage of docker/Dockerfile from the repository root', () => {
    for (const s of [service, init]) {
      const build = s.build as { context: string; dockerfile: string; target: string };
      expect(resolve(composeDir, build.context)).toBe(root);
      expect(existsSync(join(root, build.dockerfile))).toBe(true);
      expect(resolve(root, build.dockerfile)).toBe(join(root, 'docker/Dockerfile'));
      expect(stageNames).toContain(build.target);
      expect(build.target).not.toBe(released.name);
    }
  });

  it('runs both containers read-only, as a numeric non-root user with no capabilities, sharing the token volume', () => {
    for (const s of [service, init]) {
      expect(s.read_only).toBe(true);
      expect(s.cap_drop).toEqual(['ALL']);
      expect(s.security_opt).toEqual(['no-new-privileges:true']);
      expect(String(s.user)).toMatch(/^[1-9]\d*:\d+$/);
      expect(mounts(s)).toContainEqual(['hsm-data', '/var/lib/hsm-bridge']);
    }
    expect(Object.keys(compose.volumes)).toContain('hsm-data');
    expect(service.depends_on).toEqual({ 'softhsm-init': { condition: 'service_completed_successfully' } });
    expect((service.healthcheck as { test: string[] }).test).toEqual(['CMD', 'node', 'healthcheck.mjs']);
  });

  it('mounts a configuration the service accepts, for SoftHSM, with the PIN from a secret file', async () => {
    // The image's environment (listeners on all interfaces) applies on top of the file.
    const imageEnv = Object.fromEntries(
      runtime
        .filter((i) => i.command === 'ENV')
        .flatMap((i) => i.args.split(/\s+/))
        .map((pair) => pair.split('=') as [string, string]),
    );
    const config = loadServiceConfig({ file: resolve(composeDir, configMount[0]!), env: imageEnv });
    expect(config.backend.type).toBe('pkcs11');
    const { section } = await resolveBackend(config);
    const pkcs11 = section as { library: string; tokenLabel: string; pinFile: string };
    // Debian's softhsm2 package (the try-out stage installs it): the same path scripts/ensure-softhsm.sh gives the tests.
    expect(pkcs11.library).toBe('/usr/lib/softhsm/libsofthsm2.so');
    expect(read('docker/softhsm-init.sh')).toContain(`label=${pkcs11.tokenLabel}\n`);
    const secretNames = service.secrets as string[];
    expect(secretNames.map((name) => `/run/secrets/${name}`)).toContain(pkcs11.pinFile);

    // Ports: each listener published on the host's loopback only.
    const ports = (service.ports as string[]).map((p) => p.split(':'));
    expect(ports).toEqual(expect.arrayContaining([config.rest.port, config.grpc.port, config.ops.port].map((port) => ['127.0.0.1', String(port), String(port)])));
    for (const [host] of ports) expect(host).toBe('127.0.0.1');
  });

  it('holds no secret inline: secrets come from git-ignored files', () => {
    for (const s of Object.values(compose.services)) expect(s.environment).toBeUndefined();
    for (const secret of Object.values(compose.secrets)) {
      expect(Object.keys(secret)).toEqual(['file']);
      const file = relative(root, resolve(composeDir, String(secret.file)));
      expect(read('.gitignore').split('\n')).toContain(`${dirname(file)}/`);
    }
  });
});
