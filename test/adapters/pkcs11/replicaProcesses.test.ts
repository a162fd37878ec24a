/**
 * Two real service processes (src/main.ts) on one SoftHSM token, as two replicas sharing an HSM with no
 * database: 16 clients split between them sign, rotate, disable and enable the same 3 keys for
 * HSMB_TEST_REPLICA_MS (default 15 s). No 5xx but 503, no KEY_NOT_FOUND (the keys exist throughout: all are
 * created before the clients start and none is destroyed), and every signature returned verifies with
 * node:crypto against the public key of the version the answer names. SoftHSM's file store gives each
 * process its own view of the token (keyObjects.ts, "Replicas" in adapters/pkcs11/README.md): that is
 * what this exercises, and what two backends in one process (replicaRaces.test.ts) cannot.
 */
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServiceProcess, type ServiceProcess } from '../../helpers/serviceProcess.js';
import { createSoftHsmToken, type SoftHsmToken } from '../../helpers/softhsm.js';

const DURATION_MS = Number(process.env.HSMB_TEST_REPLICA_MS ?? 15_000);
const CLIENTS = 16;
const KEYS = 3;
const START_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 30_000;

let token: SoftHsmToken;
const replicas: { service: ServiceProcess; url: string }[] = [];

interface Answer {
  status: number;
  body: { error?: { code: string; message: string }; keyVersion?: number; signature?: string; versions?: { version: number; publicKeyPem?: string }[] };
}

async function call(url: string, method: string, path: string, body?: object): Promise<Answer> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Answer['body']) : {} };
}

beforeAll(async () => {
  token = await createSoftHsmToken();
  const config = {
    rest: { host: '127.0.0.1', port: 0 },
    grpc: { enabled: false },
    ops: { enabled: false },
    log: { level: 'info' },
    access: { allowUnauthenticated: true },
    backend: { type: 'pkcs11', pkcs11: { library: token.library, tokenLabel: token.tokenLabel, pinEnv: token.pinEnv, sessionPoolSize: 8, maxQueuedRequests: 256 } },
  };
  // One after the other: SoftHSM's file store reads the token directory at C_Initialize, and a process that
  // reads it while another rewrites the token's files can miss the token altogether (seen in CI: "no token
  // labelled ... is present"). A hardware HSM has no such window; the replicas' concurrency is in the test.
  for (let i = 0; i < 2; i++) {
    const service = await startServiceProcess({ config, hardDeadlineMs: 5 * 60_000 });
    replicas.push({ service, url: service.restUrl });
  }
}, 2 * START_TIMEOUT_MS);

afterAll(async () => {
  await Promise.all(replicas.map(({ service }) => service.stop()));
  await token?.cleanup();
}, 30_000);

describe('two service processes on one token', () => {
  it(`${CLIENTS} clients sign, rotate, disable and enable ${KEYS} keys for ${DURATION_MS} ms: no 5xx but 503, no false KEY_NOT_FOUND, every signature verifies`, async () => {
    const names = Array.from({ length: KEYS }, (_, i) => `replica-${i}-${randomBytes(3).toString('hex')}`);
    for (const name of names) {
      const created = await call(replicas[0]!.url, 'POST', '/v1/keys', { name, type: 'EC_P256', purpose: 'sign' });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
    }
    const signatures: { name: string; version: number; message: Buffer; signature: Buffer; replica: number; at: string }[] = [];
    const failures: string[] = [];
    const counts: Record<string, number> = {};
    const deadline = Date.now() + DURATION_MS;
    const client = async (c: number) => {
      const { url } = replicas[c % 2]!;
      while (Date.now() < deadline) {
        const name = names[Math.floor(Math.random() * KEYS)]!;
        const r = Math.random();
        const op = r < 0.7 ? 'sign' : r < 0.8 ? 'rotate' : r < 0.9 ? 'disable' : 'enable';
        const message = randomBytes(16);
        const answer = op === 'sign'
          ? await call(url, 'POST', `/v1/keys/${name}/sign`, { algorithm: 'ES256', message: message.toString('base64') })
          : await call(url, 'POST', `/v1/keys/${name}/${op}`);
        const outcome = `${op} ${answer.status} ${answer.body.error?.code ?? ''}`.trim();
        counts[outcome] = (counts[outcome] ?? 0) + 1;
        if ((answer.status >= 500 && answer.status !== 503) || answer.body.error?.code === 'KEY_NOT_FOUND' || answer.body.error?.code === 'KEY_VERSION_NOT_FOUND') {
          failures.push(`replica ${c % 2}: ${outcome}: ${answer.body.error?.message}`);
        }
        if (op === 'sign' && answer.status === 200) {
          signatures.push({ name, version: answer.body.keyVersion!, message, signature: Buffer.from(answer.body.signature!, 'base64'), replica: c % 2, at: new Date().toISOString() });
        }
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
    if (process.env.HSMB_TEST_REPORT) process.stderr.write(`replicaProcesses: ${JSON.stringify(counts)}\n`);

    const keys = new Map<string, Map<number, string>>();
    for (const name of names) {
      const meta = await call(replicas[1]!.url, 'GET', `/v1/keys/${name}`);
      expect(meta.status, JSON.stringify(meta.body)).toBe(200);
      keys.set(name, new Map(meta.body.versions!.map((v) => [v.version, v.publicKeyPem!])));
    }
    const unverified = signatures.filter(({ name, version, message, signature }) => {
      const pem = keys.get(name)!.get(version);
      return !pem || !verify('sha256', message, { key: createPublicKey(pem), dsaEncoding: 'ieee-p1363' }, signature);
    });
    // On failure, what the replicas logged as errors tells why (the PKCS#11 return value, never a secret).
    const errorLines = replicas.flatMap(({ service }, i) => service.output().split('\n').filter((l) => /"level":(50|60)/.test(l)).map((l) => `replica ${i}: ${l.slice(0, 400)}`));
    expect(failures, `${JSON.stringify(counts)}\n${errorLines.join('\n')}`).toEqual([]);
    expect(signatures.length).toBeGreaterThan(0);
    expect(unverified.map((s) => `${s.name} v${s.version} from replica ${s.replica} at ${s.at}`)).toEqual([]);
  }, DURATION_MS + 4 * REQUEST_TIMEOUT_MS);
});
