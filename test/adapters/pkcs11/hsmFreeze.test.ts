/**
 * An HSM that stops answering, seen from outside the service. The service runs as a process of its own
 * (test/helpers/serviceProcess.ts) on a SoftHSM token served by `p11-kit server`; this process only
 * speaks HTTP to it, so nothing here can block on the HSM, and the service is SIGKILLed at a hard
 * deadline whatever happens.
 *
 * With 6 clients signing, the p11-kit server's process group is stopped (SIGSTOP) for 12 s:
 * - GET /health/live keeps answering quickly throughout (the event loop never calls PKCS#11);
 * - /health/ready answers 503 while the HSM does not answer;
 * - every sign call ends by its deadline (operationTimeoutMs) plus a little, with 503 BACKEND_UNAVAILABLE;
 * - after SIGCONT the service recovers by itself, and every signature it returned verifies with node:crypto.
 * Then the server is SIGKILLed and restarted: the same, and the time to recover is printed.
 *
 * Figures are printed; the bounds asserted are generous (LIVE_MS, SLACK_MS): the point is "never waits on
 * the HSM", not speed.
 */
import { createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startP11KitServer, type P11KitServer } from '../../helpers/p11kitServer.js';
import { startServiceProcess, type ServiceProcess } from '../../helpers/serviceProcess.js';
import { createSoftHsmToken, type SoftHsmToken } from '../../helpers/softhsm.js';

const OPERATION_TIMEOUT_MS = 2000;
/** What "a little" past the deadline may be: a queued call, the HTTP round trip, a loaded CI machine. */
const SLACK_MS = 1500;
/**
 * /health/live answers within LIVE_MS (95th percentile), and never anywhere near a frozen HSM's time
 * (LIVE_MAX_MS): test files run in parallel on 2 cores, so a single probe may wait for the CPU.
 */
const LIVE_MS = 100;
const LIVE_MAX_MS = 1000;
const FREEZE_MS = 12_000;
const RECOVER_MS = 5000;
const CLIENTS = 6;

const message = Buffer.from('signed while the HSM may be frozen');
let token: SoftHsmToken;
let server: P11KitServer;
let service: ServiceProcess;
let publicKey: KeyObject;

interface Call {
  readonly startedAt: number;
  readonly ms: number;
  readonly status: number;
  readonly code?: string;
  readonly signature?: Buffer;
}

async function sign(): Promise<Call> {
  const startedAt = performance.now();
  const response = await fetch(`${service.restUrl}/v1/keys/freeze-ec/sign`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message: message.toString('base64'), algorithm: 'ES256' }),
    signal: AbortSignal.timeout(OPERATION_TIMEOUT_MS * 10),
  });
  const body = (await response.json()) as { signature?: string; error?: { code: string } };
  const ms = performance.now() - startedAt;
  return { startedAt, ms, status: response.status, ...(body.error ? { code: body.error.code } : {}), ...(body.signature ? { signature: Buffer.from(body.signature, 'base64') } : {}) };
}

/** Runs `clients` signing loops and a liveness and readiness poller until `stop` is set; returns what they saw. */
function underLoad() {
  const calls: Call[] = [];
  const live: { at: number; ms: number }[] = [];
  const ready: { at: number; status: number }[] = [];
  let stopped = false;
  const loops = [
    ...Array.from({ length: CLIENTS }, async () => {
      while (!stopped) {
        const call = await sign();
        calls.push(call);
        if (call.status !== 200) await new Promise((r) => setTimeout(r, 50)); // a client backing off a little
      }
    }),
    (async () => {
      while (!stopped) {
        const at = performance.now();
        const response = await fetch(`${service.restUrl}/health/live`, { signal: AbortSignal.timeout(10_000) });
        await response.arrayBuffer();
        live.push({ at, ms: performance.now() - at });
        await new Promise((r) => setTimeout(r, 50));
      }
    })(),
    (async () => {
      while (!stopped) {
        const at = performance.now();
        const response = await fetch(`${service.restUrl}/health/ready`, { signal: AbortSignal.timeout(10_000) });
        await response.arrayBuffer();
        ready.push({ at, status: response.status });
        await new Promise((r) => setTimeout(r, 200));
      }
    })(),
  ];
  return {
    calls, live, ready,
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

const percentile = (values: number[], p: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))]!;

async function until(what: string, ms: number, check: () => Promise<boolean>): Promise<number> {
  const started = performance.now();
  while (!(await check())) {
    if (performance.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return performance.now() - started;
}

const readyNow = async () => (await fetch(`${service.restUrl}/health/ready`)).status === 200;
const signsNow = async () => (await sign()).status === 200;

/** The calls that started and ended inside [from, to]: there are some, and each was refused with 503 by its deadline. */
function refusedInTime(calls: readonly Call[], from: number, to: number): Call[] {
  const inside = calls.filter((c) => c.startedAt >= from && c.startedAt + c.ms <= to);
  expect(inside.length).toBeGreaterThan(0);
  for (const c of inside) {
    expect(c.status, JSON.stringify(c)).toBe(503);
    expect(c.ms).toBeLessThan(OPERATION_TIMEOUT_MS + SLACK_MS);
  }
  return inside;
}

/** /health/live answered quickly (95th percentile) and never anywhere near a frozen HSM's time. */
function expectLiveQuick(live: readonly { ms: number }[]): void {
  expect(percentile(live.map((l) => l.ms), 0.95)).toBeLessThan(LIVE_MS);
  expect(Math.max(...live.map((l) => l.ms))).toBeLessThan(LIVE_MAX_MS);
}

function expectSignaturesVerify(calls: readonly Call[]): void {
  const signed = calls.filter((c) => c.status === 200);
  expect(signed.length).toBeGreaterThan(0);
  for (const c of signed) expect(nodeVerify('sha256', message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, c.signature!)).toBe(true);
}

beforeAll(async () => {
  token = await createSoftHsmToken();
  server = await startP11KitServer(token);
  service = await startServiceProcess({
    config: {
      rest: { host: '127.0.0.1', port: 0 },
      grpc: { enabled: false },
      ops: { enabled: false },
      backend: { type: 'pkcs11', pkcs11: server.backendConfig({ sessionPoolSize: 4, operationTimeoutMs: OPERATION_TIMEOUT_MS }) },
    },
    env: { [token.pinEnv]: token.pin, P11_KIT_SERVER_ADDRESS: server.address },
    hardDeadlineMs: 180_000,
  });
  const created = await fetch(`${service.restUrl}/v1/keys`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'freeze-ec', type: 'EC_P256' }),
  });
  const key = (await created.json()) as { versions: { publicKeyPem: string }[] };
  expect(created.status, JSON.stringify(key)).toBe(201);
  publicKey = createPublicKey(key.versions[0]!.publicKeyPem);
}, 60_000);

afterAll(async () => {
  try {
    server?.thaw();
  } catch {
    // not running
  }
  await service?.stop();
  await server?.stop();
  await token?.cleanup();
});

describe('the HSM stops answering (SIGSTOP of the p11-kit server) under load', () => {
  it('live stays quick, ready says 503, every call ends by its deadline with 503, and it recovers by itself', async () => {
    const load = underLoad();
    let frozenAt = 0;
    let thawedAt = 0;
    try {
      await new Promise((r) => setTimeout(r, 1000));
      frozenAt = performance.now();
      server.freeze();
      await new Promise((r) => setTimeout(r, FREEZE_MS));
      thawedAt = performance.now();
      server.thaw();
      const recovered = await until('sign and ready after SIGCONT', RECOVER_MS, async () => (await readyNow()) && (await signsNow()));
      console.info(`[hsmFreeze] recovered ${Math.round(recovered)} ms after SIGCONT`);
    } finally {
      await load.stop();
    }
    const duringFreeze = refusedInTime(load.calls, frozenAt, thawedAt);
    const slowestLive = Math.max(...load.live.map((l) => l.ms));
    const live95 = percentile(load.live.map((l) => l.ms), 0.95);
    const failed = duringFreeze.filter((c) => c.status !== 200);
    console.info(
      `[hsmFreeze] ${load.calls.length} calls, ${duringFreeze.length} during the freeze (${failed.length} refused), ` +
        `slowest of those ${Math.round(Math.max(...duringFreeze.map((c) => c.ms)))} ms; /health/live slowest ${Math.round(slowestLive)} ms, 95th percentile ${Math.round(live95)} ms over ${load.live.length} probes`,
    );
    expectLiveQuick(load.live);
    expect(load.live.filter((l) => l.at > frozenAt + 1000 && l.at < thawedAt).length).toBeGreaterThan(FREEZE_MS / 100);
    expect(load.ready.some((r) => r.at > frozenAt && r.at < thawedAt && r.status === 503)).toBe(true);
    for (const c of duringFreeze) expect(c.code).toBe('BACKEND_UNAVAILABLE');
    expectSignaturesVerify(load.calls);
  }, 60_000);

  it('the HSM killed and restarted under load: calls fail fast with 503, then it recovers by itself', async () => {
    const load = underLoad();
    let killedAt = 0;
    let restartedAt = 0;
    try {
      await new Promise((r) => setTimeout(r, 1000));
      killedAt = performance.now();
      await server.kill();
      await new Promise((r) => setTimeout(r, 2000));
      restartedAt = performance.now();
      await server.restart();
      const recovered = await until('sign and ready after the restart', RECOVER_MS, async () => (await readyNow()) && (await signsNow()));
      console.info(`[hsmFreeze] recovered ${Math.round(recovered)} ms after the server restarted`);
    } finally {
      await load.stop();
    }
    refusedInTime(load.calls, killedAt, restartedAt);
    expectLiveQuick(load.live);
    expectSignaturesVerify(load.calls);
  }, 60_000);
});
