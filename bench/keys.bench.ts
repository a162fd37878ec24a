/**
 * Key operation benchmark (issue #13), everything in separate processes: the service on the pkcs11 backend
 * (a fresh SoftHSM token), this process as its client, and the baseline, bare pkcs11js with the same keys
 * on the same token (rawPkcs11.ts), in a third.
 *
 *   npm run bench        BENCH_SECONDS per case (default 3; CI runs 0.2)
 *                        BENCH_SIGNS operations in the long run (default 1,000,000 from BENCH_SECONDS=3,
 *                        100,000 x BENCH_SECONDS below)
 *                        BENCH_PROFILE=<dir>: the service writes a CPU profile there when it stops (cpuProfile.ts)
 *
 * In order:
 * - The baseline: pkcs11js async with 8 sessions (the service's default session pool), one call in flight
 *   on each, for RS256 (RSA-2048) and ES256 (P-256) sign, AES-256-GCM encrypt of 1 KiB, HMAC-SHA-256.
 * - The transport floors, a call that does no key work: gRPC GetCapabilities (the whole request pipeline
 *   and a capability list), REST GET /health/live (a bare fastify route).
 * - Each operation over gRPC and REST, single (16 calls in flight) and in batches of 16 and 64
 *   (BATCH_IN_FLIGHT calls in flight: enough to keep the 8 sessions busy). A batch row
 *   counts items: its ops/s and CPU are per item, so its ratio to the baseline is per operation; its
 *   latency is the whole batch's.
 * - FSPIOP validation of requests signed by the Mojaloop reference JwsSigner: the reference JwsValidator
 *   in this process, and the service over gRPC and REST, single and in batches (fspiopValidate.ts).
 * - Open loop: P-256 and RSA-2048 gRPC Sign at a fixed rate of 25%, 50% and 75% of the closed-loop figure
 *   just measured, p50/p99/p99.9 from each call's scheduled start (measure.ts measureOpenLoop): a closed
 *   loop slows down with the service and so never shows the queue a steady arrival rate builds.
 * - The long run: BENCH_SIGNS P-256 signs as gRPC SignBatch of 64, with the service's resident memory and
 *   event-loop delay from its /metrics before and after each tenth of the run (longRun.ts).
 * - The targets of the issue, each PASS or MISS with its figure. A missed target never fails the process.
 *
 * Each row also gives the CPU time per operation of the processes doing the work (the raw process; service
 * and client), the figure that least depends on what else runs on the machine. The service runs as
 * configured by default (session pool 8, log level info) but for the backend and port 0 listeners; on
 * loopback it needs no access policy (src/identity/exposure.ts). Every path is warmed up before any is timed.
 *
 * Results are checked against a second implementation before the figures count, and the last call of every
 * timed case again: signatures with node:crypto; MACs against the raw process's MAC of the same message
 * with the same key object; AES-GCM by the raw process decrypting the service's ciphertexts and the service
 * decrypting the raw process's, then the envelope's shape and a round trip through the service. A wrong
 * result, or a batch item that failed, makes the process exit non-zero.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EVENT_LOOP_SAMPLE_MS } from '../src/metrics/metrics.js';
import { nodeVerifies } from '../src/conformance/reference/nodeVerify.js';
import { startServiceProcess, type ServiceProcess } from '../test/helpers/serviceProcess.js';
import { createSoftHsmToken, type SoftHsmToken } from '../test/helpers/softhsm.js';
import { FLOOR_GRPC, FLOOR_REST, grpcClient, restClient, transportFloors, type RestClient } from './clients.js';
import { validateCases } from './fspiopValidate.js';
import { keyCall, keyCallName, keyOperations, message, messages, plaintext, plaintexts, type KeyCall, type KeyOperation } from './keyOperations.js';
import { durationBound, measureLongRun, scrapeOperationDurations, type LongRun } from './longRun.js';
import { Report, SECONDS, measureLatency, measureOpenLoop, ownCpuMs, warmUp, type OpenLoopTiming } from './measure.js';
import { runRaw, softHsmServiceEnv } from './processes.js';
import type { RawKind } from './rawPkcs11.js';

const IN_FLIGHT = 16;
const SESSIONS = 8;
/**
 * Batch calls in flight. The service keeps the items of all batches together at twice its sessions (16) in
 * flight, the rest waiting their turn: 2 batches keep the 8 sessions busy; more only wait longer.
 */
const BATCH_IN_FLIGHT = 2;
const BATCHES = [16, 64];
/** Calls whose outputs are all checked before each case is timed. */
const SAMPLES = 4;
const LONG_RUN_OPS = Number(process.env.BENCH_SIGNS ?? (SECONDS >= 3 ? 1_000_000 : Math.round(SECONDS * 100_000)));
const LONG_RUN_BATCH = 64;
const OPEN_LOOP_LOADS = [0.25, 0.5, 0.75];
const PROFILE_DIR = process.env.BENCH_PROFILE ? resolve(process.env.BENCH_PROFILE) : undefined;
const CPU_PROFILE = fileURLToPath(new URL('./cpuProfile.js', import.meta.url));

const report = new Report('raw pkcs11js');
const rawRow = (o: KeyOperation) => `${o.label}: raw pkcs11js async, ${SESSIONS} sessions`;
const op = (kind: RawKind) => keyOperations.find((o) => o.kind === kind)!;

/** Checks one output of input i; `roundTrip` also decrypts an AES-GCM ciphertext through the service. */
type Check = (i: number, output: Buffer, roundTrip?: boolean) => Promise<void>;

async function main(): Promise<void> {
  // The load average says whether something else shared the cores: the figures are worth little then.
  console.log(`keys bench: node ${process.version}, ${availableParallelism()} cores (load average ${loadavg()[0]!.toFixed(1)}), ${SECONDS}s per case, ${IN_FLIGHT} single calls or ${BATCH_IN_FLIGHT} batches in flight, ${LONG_RUN_OPS} operations in the long run; service, client and raw pkcs11js in separate processes\n`);
  const token = await createSoftHsmToken();
  let service: ServiceProcess | undefined;
  try {
    if (PROFILE_DIR) mkdirSync(PROFILE_DIR, { recursive: true });
    service = await startServiceProcess({ env: {
      ...softHsmServiceEnv(token),
      ...(PROFILE_DIR ? { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${CPU_PROFILE}`, BENCH_PROFILE_DIR: PROFILE_DIR } : {}),
    } });
    await bench(token, service);
  } finally {
    try {
      await service?.stop();
      if (PROFILE_DIR) console.log(`\nthe service's CPU profile is in ${PROFILE_DIR}`);
    } finally {
      await token.cleanup();
    }
  }
}

async function bench(token: SoftHsmToken, service: ServiceProcess): Promise<void> {
  const rest = restClient(service.restUrl, IN_FLIGHT);
  const keys = grpcClient(service.grpcPort!, 'key_service.proto', 'KeyService');
  const fspiop = grpcClient(service.grpcPort!, 'fspiop_service.proto', 'FspiopService');
  try {
    const publicKeys = new Map<string, KeyObject>();
    for (const o of keyOperations) {
      const created = await rest.expect(201, 'POST', '/v1/keys', o.key);
      if (o.key.purpose === 'sign') publicKeys.set(o.key.name, createPublicKey(created.versions[0].publicKeyPem));
    }
    const checks = await baseline(token, rest, publicKeys);

    const floors = transportFloors(keys, rest);
    const calls = keyOperations.flatMap((o) => (['gRPC', 'REST'] as const).flatMap((t) => [1, ...BATCHES].map((n) => ({ op: o, ...keyCall(o, t, n, { grpc: keys, rest }) }))));
    const inFlight = (c: KeyCall) => (c.batch === 1 ? IN_FLIGHT : BATCH_IN_FLIGHT);
    const checkCall = async (c: KeyCall & { op: KeyOperation }, i: number, outputs: Buffer[]) => {
      for (const [j, output] of outputs.entries()) await checks[c.op.kind](i * c.batch + j, output, j === 0);
    };

    // Every path through the service (and the client) once before any is timed: the first case measured would otherwise pay for the JIT.
    for (const f of floors) await warmUp(f.call, IN_FLIGHT);
    for (const c of calls) {
      for (let i = 0; i < SAMPLES; i++) await checkCall(c, i, await c.call(i));
      await warmUp(c.call, inFlight(c));
    }

    const cpuMs = { service: () => service.cpuMs(), client: ownCpuMs };
    for (const f of floors) report.print({ name: f.name, ...(await measureLatency(f.call, IN_FLIGHT, cpuMs)) });
    for (const c of calls) {
      if (c.transport === 'gRPC' && c.batch === 1) console.log('');
      let last: { i: number; outputs: Buffer[] } | undefined;
      const timing = await measureLatency(async (i) => {
        last = { i, outputs: await c.call(i) };
      }, inFlight(c), cpuMs, c.batch);
      await checkCall(c, last!.i, last!.outputs);
      const floor = c.transport === 'gRPC' ? { row: FLOOR_GRPC, label: 'the gRPC floor' } : { row: FLOOR_REST, label: 'the REST floor' };
      report.print({ name: c.name, ...timing, baseline: rawRow(c.op), also: c.batch === 1 ? [floor] : [] });
    }

    for (const alg of ['RS256', 'ES256'] as const) {
      console.log('');
      const cases = await validateCases(alg, 64, { rest, grpc: fspiop });
      report.print({ name: cases.reference.name, ...(await measureLatency(cases.reference.call, 1, { client: ownCpuMs })) });
      const reference = [{ row: cases.reference.name, label: 'the reference' }];
      for (const s of cases.service) report.print({ name: s.name, ...(await measureLatency(s.call, s.batch === 1 ? IN_FLIGHT : BATCH_IN_FLIGHT, cpuMs, s.batch)), also: reference });
    }

    console.log('\nopen loop: calls started at a fixed rate, latency from each call\'s scheduled start');
    const openLoop = new Map<string, OpenLoopTiming>();
    for (const kind of ['ES256', 'RS256'] as const) {
      const unary = calls.find((c) => c.op.kind === kind && c.transport === 'gRPC' && c.batch === 1)!;
      const max = report.find(unary.name)!.opsPerSec;
      for (const load of OPEN_LOOP_LOADS) {
        const durationsBefore = await scrapeOperationDurations(service.opsUrl!, 'keys.sign', 'grpc');
        const timing = await measureOpenLoop(async (i) => {
          const outputs = await unary.call(i);
          if (i % 256 === 0) await checkCall(unary, i, outputs);
        }, max * load, SECONDS);
        const durationsAfter = await scrapeOperationDurations(service.opsUrl!, 'keys.sign', 'grpc');
        openLoop.set(`${kind} ${load}`, timing);
        printOpenLoop(`${unary.name} at ${load * 100}% of max`, timing, durationBound(durationsBefore, durationsAfter, 0.99));
      }
    }

    const longBatch = calls.find((c) => c.op.kind === 'ES256' && c.transport === 'gRPC' && c.batch === LONG_RUN_BATCH)!;
    const longRun = await measureLongRun(service.opsUrl!, LONG_RUN_OPS, LONG_RUN_BATCH, BATCH_IN_FLIGHT, async (i) => {
      const outputs = await longBatch.call(i);
      await checks.ES256(i * LONG_RUN_BATCH, outputs[0]!);
    });
    printLongRun(longRun);
    printTargets(openLoop, longRun);
  } finally {
    keys.close();
    fspiop.close();
    rest.close();
  }
}

/**
 * Runs and prints the raw pkcs11js baseline, after the checks that need it as the second implementation;
 * answers the check of each operation's outputs.
 */
async function baseline(token: SoftHsmToken, rest: RestClient, publicKeys: ReadonlyMap<string, KeyObject>): Promise<Record<RawKind, Check>> {
  const aes = op('AES_GCM').key.name;
  const serviceCiphertexts: Buffer[] = [];
  for (let i = 0; i < SAMPLES; i++) serviceCiphertexts.push(Buffer.from((await rest.expect(200, 'POST', `/v1/keys/${aes}/encrypt`, { plaintext: plaintext(i).toString('base64') })).ciphertext, 'base64'));
  const raw = await runRaw({
    library: token.library,
    tokenLabel: token.tokenLabel,
    pinEnv: token.pinEnv,
    sessions: SESSIONS,
    keys: keyOperations.map((o) => ({ label: o.key.name, kind: o.kind, ...(o.kind === 'AES_GCM' ? { decrypt: serviceCiphertexts.map((c) => envelopeBody(c).toString('base64')) } : {}) })),
    messages: messages.map((m) => m.toString('base64')),
    plaintexts: plaintexts.map((p) => p.toString('base64')),
  });
  const result = (o: KeyOperation) => {
    const r = raw.results.find((x) => x.label === o.key.name);
    if (!r) throw new Error(`raw pkcs11js: no result for ${o.key.name}`);
    return { ...r, samples: r.samples.map((s) => Buffer.from(s, 'base64')) };
  };
  const rawMacs = result(op('HMAC_SHA256')).samples;

  const sign = (o: KeyOperation): Check => async (i, signature) => {
    if (!nodeVerifies(o.kind as 'RS256' | 'ES256', publicKeys.get(o.key.name)!, message(i), signature)) throw new Error(`${o.label}: the signature of message ${i % messages.length} does not verify with node:crypto`);
  };
  const checks: Record<RawKind, Check> = {
    RS256: sign(op('RS256')),
    ES256: sign(op('ES256')),
    HMAC_SHA256: async (i, mac) => {
      if (!mac.equals(rawMacs[i % messages.length]!)) throw new Error(`HMAC-SHA-256: the service's MAC of message ${i % messages.length} differs from raw pkcs11js's with the same key`);
    },
    AES_GCM: async (i, ciphertext, roundTrip) => {
      if (ciphertext.length !== 8 + 12 + plaintext(i).length + 16 || !ciphertext.subarray(0, 8).equals(Buffer.from('4842010100000001', 'hex'))) {
        throw new Error(`AES-256-GCM: not an hsm-bridge AES_GCM ciphertext of key version 1 with a 12-byte IV and 16-byte tag (${ciphertext.length} bytes)`);
      }
      if (roundTrip) await expectPlaintext('the service', aes, rest, ciphertext, i, {});
    },
  };

  // The second implementation's part of the checks: the raw process decrypted the service's ciphertexts, the service decrypts the raw process's.
  const rawAes = result(op('AES_GCM'));
  for (const [i, p] of (rawAes.decrypted ?? []).entries()) {
    if (!Buffer.from(p, 'base64').equals(plaintext(i))) throw new Error(`AES-256-GCM: raw pkcs11js decrypts the service's ciphertext of plaintext ${i} to something else`);
  }
  for (const [i, c] of rawAes.samples.entries()) await expectPlaintext('raw pkcs11js', aes, rest, c, i, { keyVersion: 1, algorithm: 'AES_GCM' });

  for (const o of keyOperations) {
    const r = result(o);
    if (o.kind !== 'AES_GCM') for (const [i, s] of r.samples.entries()) await checks[o.kind](i, s);
    report.print({ name: rawRow(o), opsPerSec: r.opsPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms, ...(r.cpuMsPerOp ? { cpuMsPerOp: r.cpuMsPerOp } : {}) });
  }
  console.log('');
  return checks;
}

/** An hsm-bridge ciphertext's body: for AES_GCM, IV || ciphertext || tag. */
const envelopeBody = (ciphertext: Buffer) => ciphertext.subarray(8);

async function expectPlaintext(whose: string, key: string, rest: RestClient, ciphertext: Buffer, i: number, raw: { keyVersion?: number; algorithm?: string }): Promise<void> {
  const answer = await rest.expect(200, 'POST', `/v1/keys/${key}/decrypt`, { ciphertext: ciphertext.toString('base64'), ...raw });
  if (!Buffer.from(answer.plaintext, 'base64').equals(plaintext(i))) throw new Error(`AES-256-GCM: the service decrypts ${whose}'s ciphertext of plaintext ${i % plaintexts.length} to something else`);
}

/** An open-loop row: the client's latency, and the service's own p99 (request to answer) as its histogram bounds it. */
function printOpenLoop(name: string, t: OpenLoopTiming, serviceP99BoundMs: number): void {
  const ms = (v: number) => `${v.toFixed(1)} ms`.padStart(9);
  const failed = t.failed ? `  FAILED ${t.failed} of ${t.calls} (${String(t.firstError)})` : '';
  console.log(`${name.padEnd(60)} ${t.targetPerSec.toFixed(0).padStart(6)}/s (started ${t.startedPerSec.toFixed(0)}/s)  p50 ${ms(t.p50Ms)}  p99 ${ms(t.p99Ms)}  p99.9 ${ms(t.p999Ms)}  in the service p99 <= ${serviceP99BoundMs} ms${failed}`);
}

function printLongRun(r: LongRun): void {
  const mib = (b: number) => (b / 2 ** 20).toFixed(0);
  console.log(`\nlong run: ${r.operations} ES256 signs as gRPC SignBatch of ${LONG_RUN_BATCH}, ${BATCH_IN_FLIGHT} in flight, ${r.opsPerSec.toFixed(0)} ops/s`);
  console.log(`  service RSS ${mib(r.before.rssBytes)} MiB before, after each tenth ${r.tenths.map((t) => mib(t.rssBytes)).join(' ')} MiB (${(r.rssGrowth * 100).toFixed(1)}% from the first tenth to the last)`);
  console.log(`  JS heap used ${mib(r.before.heapUsedBytes)} MiB before, after each tenth ${r.tenths.map((t) => mib(t.heapUsedBytes)).join(' ')} MiB`);
  console.log(`  event-loop delay beyond its ${EVENT_LOOP_SAMPLE_MS} ms sampling, worst tenth: p99 ${r.eventLoopP99Ms.toFixed(1)} ms, max ${r.eventLoopMaxMs.toFixed(1)} ms`);
}

/** The issue's targets, each PASS or MISS with its figure. */
function printTargets(openLoop: ReadonlyMap<string, OpenLoopTiming>, longRun: LongRun): void {
  const lines: string[] = [];
  const target = (met: boolean, text: string) => lines.push(`  ${met ? 'PASS' : 'MISS'}  ${text}`);
  const row = (name: string) => report.find(name)!.opsPerSec;
  const grpc = (kind: RawKind, batch: number) => row(keyCallName(op(kind), 'gRPC', batch));
  for (const [kind, min] of [['RS256', 0.85], ['ES256', 0.5]] as const) {
    const ratio = grpc(kind, 64) / row(rawRow(op(kind)));
    target(ratio >= min, `gRPC SignBatch of 64, ${op(kind).label}: ${ratio.toFixed(3)}x raw pkcs11js (target >= ${min}x)`);
  }
  for (const kind of ['RS256', 'ES256'] as const) {
    const bound = 1 / (1 / row(rawRow(op(kind))) + 1 / row(FLOOR_GRPC));
    const ratio = grpc(kind, 1) / bound;
    target(ratio >= 0.95, `unary gRPC Sign, ${op(kind).label}: ${ratio.toFixed(3)}x the bound 1/(1/raw + 1/floor) = ${bound.toFixed(0)} ops/s (target >= 0.95x)`);
  }
  const half = openLoop.get('ES256 0.5')!;
  target(half.failed === 0 && half.p99Ms < 5, `P-256 unary gRPC at 50% of max load: p99 ${half.p99Ms.toFixed(1)} ms${half.failed ? `, ${half.failed} calls failed` : ''} (target < 5 ms)`);
  target(longRun.rssGrowth < 0.1, `over ${longRun.operations} signs: service RSS growth ${(longRun.rssGrowth * 100).toFixed(1)}% from the first tenth to the last (target < 10%)`);
  target(longRun.eventLoopP99Ms < 20, `over ${longRun.operations} signs: event-loop delay p99 ${longRun.eventLoopP99Ms.toFixed(1)} ms, the worst tenth's (target < 20 ms)`);
  console.log(`\ntargets\n${lines.join('\n')}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
