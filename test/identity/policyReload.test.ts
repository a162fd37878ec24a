/**
 * Policy reloads under load: a steady stream of signing requests by a caller every version of the policy
 * allows, on REST and gRPC, a few in flight on each, while the policy file is replaced (by rename, as
 * configuration management does, and once overwritten in place) with versions that keep allowing that
 * caller, and once with a file that is not valid. No request fails because of a reload; every reload
 * took effect while requests were running, and the last version's new rule is in force at the end.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capturedLogger, grpcCaller, startAccessServers, tempDir, tokenIssuer, writeJson, AUDIENCE, ISSUER, type AccessServers, type GrpcCaller } from './accessSupport.js';

const initial = `
principals:
  app: { jwtSubject: rl-app }
rules:
  - principal: app
    allow: [keys.sign]
    keys: ["rl-*"]
`;

/** The versions written under load, in order; each but the invalid one keeps allowing rl-app to sign with rl-signer. */
const versions: ReadonlyArray<{ readonly text: string; readonly valid: boolean; readonly inPlace?: boolean }> = [
  {
    valid: true,
    text: `${initial}
  - principal: ops
    allow: [keys.get]
    keys: ["*"]
`.replace('principals:\n', 'principals:\n  ops: { jwtSubject: rl-ops }\n'),
  },
  {
    // The same caller, now named by a claim, with wider operations on one key.
    valid: true,
    text: `
principals:
  app: { jwtClaim: { roles: signer } }
rules:
  - principal: app
    allow: ["keys.*"]
    keys: [rl-signer]
`,
  },
  { valid: false, text: 'rules: [unclosed' },
  {
    valid: true,
    inPlace: true,
    text: `
principals:
  app: { jwtSubject: rl-app }
rules:
  - principal: app
    allow: ["*"]
    keys: ["*"]
`,
  },
  {
    // The first version again, with a rule for a caller refused until now.
    valid: true,
    text: `${initial}
  - principal: late
    allow: [keys.sign]
    keys: [rl-signer]
`.replace('principals:\n', 'principals:\n  late: { jwtSubject: rl-late }\n'),
  },
];

/** In flight on each transport. */
const WORKERS = 3;
/** Requests on each transport at least; they keep coming until the last reload took effect. */
const MIN_PER_TRANSPORT = 200;
/** A bound, should reloads be seen only by the slow poll. */
const MAX_PER_TRANSPORT = 3000;
/** Requests completed between one rewrite and the next. */
const STEP = 50;

const files = tempDir();
const policyFile = files.at('policy.yaml');
const log = capturedLogger();
let servers: AccessServers;
let grpc: GrpcCaller;
const tokens = { app: '', late: '' };

const b64 = (text: string) => Buffer.from(text).toString('base64');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Waits, boundedly, for `condition` (nothing about the time it took is asserted). */
const until = async (condition: () => boolean | Promise<boolean>): Promise<boolean> => {
  for (let i = 0; i < 300; i++) {
    if (await condition()) return true;
    await sleep(20);
  }
  return condition();
};

const signViaRest = async (token: string): Promise<{ ok: boolean; status: number; code?: string }> => {
  const r = await servers.rest.inject({ method: 'POST', url: '/v1/keys/rl-signer/sign', payload: { message: b64('m') }, headers: { authorization: `Bearer ${token}` } });
  return { ok: r.statusCode === 200, status: r.statusCode, code: r.statusCode === 200 ? undefined : JSON.parse(r.body)?.error?.code };
};
const signViaGrpc = async (token: string): Promise<{ ok: boolean; status: number; code?: string }> => {
  const r = await grpc.call('KeyService', 'Sign', { name: 'rl-signer', message: Buffer.from('m') }, token);
  return { ok: r.status === 0 && Buffer.isBuffer(r.answer?.signature) && r.answer.signature.length > 0, status: r.status, ...(r.code === undefined ? {} : { code: r.code }) };
};
const transports = [
  { name: 'REST', sign: signViaRest },
  { name: 'gRPC', sign: signViaGrpc },
] as const;

const logged = (message: string) => log.lines().filter((l) => String(l.msg).includes(message)).length;

beforeAll(async () => {
  const issuer = await tokenIssuer();
  writeJson(files.at('jwks.json'), issuer.jwks);
  writeFileSync(policyFile, initial);
  const access = { policyFile, allowUnauthenticated: false, jwt: { jwksFile: files.at('jwks.json'), jwksCacheSeconds: 300, issuer: ISSUER, audience: AUDIENCE, algorithms: ['ES256'], clockToleranceSeconds: 30 } };
  servers = await startAccessServers(access, log.logger);
  grpc = grpcCaller(servers.grpc.port);
  await servers.service.createKey({ name: 'rl-signer', type: 'EC_P256' });
  tokens.app = await issuer.token('rl-app', { roles: ['signer'] });
  tokens.late = await issuer.token('rl-late');
}, 60_000);

afterAll(async () => {
  grpc.close();
  await servers.close();
  files.remove();
});

describe('policy reloads under load', () => {
  it('no request fails because of a reload, and every reload takes effect', async () => {
    for (const t of transports) expect((await t.sign(tokens.late)).code, t.name).toBe('PERMISSION_DENIED');

    const completed = { REST: 0, gRPC: 0 };
    const failures: Array<{ transport: string; status: number; code?: string }> = [];
    let writerDone = false;
    const worker = async (transport: (typeof transports)[number]) => {
      while ((!writerDone || completed[transport.name] < MIN_PER_TRANSPORT) && completed[transport.name] < MAX_PER_TRANSPORT) {
        const r = await transport.sign(tokens.app);
        completed[transport.name]++;
        if (!r.ok) failures.push({ transport: transport.name, status: r.status, ...(r.code === undefined ? {} : { code: r.code }) });
      }
    };
    const total = () => completed.REST + completed.gRPC;

    /** For each version: whether it was seen (a new policy in force, or the refusal logged), and the requests completed before it was written. */
    const seen: Array<{ version: number; took: boolean; completedBefore: number }> = [];
    const writer = async () => {
      try {
        for (const [i, version] of versions.entries()) {
          await until(() => total() >= (i + 1) * STEP);
          const completedBefore = total();
          const policyBefore = servers.stages.policy!.current();
          const refusalsBefore = logged('policy file is refused');
          if (version.inPlace) {
            writeFileSync(policyFile, version.text);
          } else {
            writeFileSync(files.at('.policy.yaml.new'), version.text);
            renameSync(files.at('.policy.yaml.new'), policyFile);
          }
          const took = await until(() => (version.valid ? servers.stages.policy!.current() !== policyBefore : logged('policy file is refused') > refusalsBefore));
          seen.push({ version: i, took, completedBefore });
        }
      } finally {
        writerDone = true;
      }
    };

    await Promise.all([...transports.flatMap((t) => Array.from({ length: WORKERS }, () => worker(t))), writer()]);

    console.log(`policy reload under load: ${completed.REST} REST and ${completed.gRPC} gRPC requests, ${versions.length} policy rewrites`);
    expect(failures).toEqual([]);
    expect(seen).toEqual(versions.map((_, i) => ({ version: i, took: true, completedBefore: expect.any(Number) })));
    // Requests were running on both transports across every rewrite: neither stream stopped at its bound
    // before the last reload took effect.
    for (const t of transports) expect(completed[t.name], t.name).toBeGreaterThanOrEqual(MIN_PER_TRANSPORT);
    for (const t of transports) expect(completed[t.name], t.name).toBeLessThan(MAX_PER_TRANSPORT);
    expect(logged('policy reloaded')).toBe(versions.filter((v) => v.valid).length);

    // The last version's new rule is in force; the caller allowed throughout still is.
    for (const t of transports) {
      expect((await t.sign(tokens.late)).ok, t.name).toBe(true);
      expect((await t.sign(tokens.app)).ok, t.name).toBe(true);
    }
  }, 120_000);
});
