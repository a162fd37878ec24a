/**
 * Key signing benchmark, everything in separate processes: the service on the pkcs11 backend (a fresh
 * SoftHSM token), this process as its client, and the baseline, bare pkcs11js signing with the same keys
 * on the same token (rawPkcs11Sign.ts), in a third. 16 requests in flight throughout.
 *
 *   npm run bench    (BENCH_SECONDS per case, default 3)
 *
 * Rows: RS256 (RSA-2048) and ES256 (P-256) signing over gRPC (hsmbridge.v1.KeyService/Sign) and REST
 * (POST /v1/keys/{name}/sign), each with its ratio to the raw pkcs11js row of the same key and to the
 * transport floor: a call that does no key work on the same service. The two floors differ: GetCapabilities
 * runs the whole request pipeline and encodes a capability list, GET /health/live is a bare fastify route.
 * Each row also gives the CPU time per call of the processes doing the work (the raw process; service and
 * client), the figure that least depends on what else runs on the machine. The service runs as configured
 * by default (session pool, log level info) but for the backend and port 0 listeners; on loopback it
 * needs no access policy (src/identity/exposure.ts). Every path is warmed up before any is timed.
 *
 * Sample signatures of every signing case, the baseline's included, are verified with node:crypto
 * before the figures count; a failure anywhere makes the process exit non-zero.
 */
import { spawn } from 'node:child_process';
import { createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { Agent, request } from 'node:http';
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { credentials, loadPackageDefinition, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { findProtoRoot } from '../src/transports/grpc/protos.js';
import { nodeVerifies } from '../test/helpers/nodeVerify.js';
import { createSoftHsmToken, type SoftHsmToken } from '../test/helpers/softhsm.js';
import { Report, SECONDS, measureLatency, ownCpuMs, warmUp } from './measure.js';
import type { RawSignResult, RawSignTask } from './rawPkcs11Sign.js';
import { startServiceProcess, type ServiceProcess } from '../test/helpers/serviceProcess.js';

const IN_FLIGHT = 16;
const CALL_TIMEOUT_MS = 10_000;
/** Signatures checked with node:crypto before each signing case is timed (the last timed one is checked too). */
const SAMPLES = 4;
const RAW = fileURLToPath(new URL('./rawPkcs11Sign.js', import.meta.url));

const report = new Report('raw pkcs11js');
const messages = Array.from({ length: 64 }, () => randomBytes(256));
const message = (i: number) => messages[i % messages.length]!;

const cases = [
  { algorithm: 'RS256', type: 'RSA_2048', key: 'bench-rs256' },
  { algorithm: 'ES256', type: 'EC_P256', key: 'bench-es256' },
] as const;

const rawRow = (algorithm: string) => `${algorithm}: raw pkcs11js async, own process`;
const FLOOR_GRPC = 'floor: gRPC KeyService/GetCapabilities';
const FLOOR_REST = 'floor: REST GET /health/live';

function checkSignature(what: string, algorithm: 'RS256' | 'ES256', key: KeyObject, i: number, signature: Buffer): void {
  if (!nodeVerifies(algorithm, key, message(i), signature)) throw new Error(`${what}: the signature of message ${i % messages.length} does not verify with node:crypto`);
}

async function main(): Promise<void> {
  // The load average says whether something else shared the cores: the figures are worth little then.
  console.log(`keys bench: node ${process.version}, ${availableParallelism()} cores (load average ${loadavg()[0]!.toFixed(1)}), ${SECONDS}s per case, ${IN_FLIGHT} in flight; service, client and raw pkcs11js in separate processes\n`);
  const token = await createSoftHsmToken();
  let service: ServiceProcess | undefined;
  try {
    service = await startServiceProcess({ env: {
      HSMB_BACKEND__TYPE: 'pkcs11',
      HSMB_BACKEND__PKCS11__LIBRARY: token.library,
      HSMB_BACKEND__PKCS11__TOKEN_LABEL: token.tokenLabel,
      HSMB_BACKEND__PKCS11__PIN_ENV: token.pinEnv,
      HSMB_REST__PORT: '0',
      HSMB_GRPC__PORT: '0',
      HSMB_OPS__PORT: '0',
    } });
    await bench(token, service);
  } finally {
    try {
      await service?.stop();
    } finally {
      await token.cleanup();
    }
  }
}

async function bench(token: SoftHsmToken, service: ServiceProcess): Promise<void> {
  const rest = restClient(service.restUrl);
  const grpc = grpcClient(service.grpcPort!);
  try {
    const publicKeys = new Map<string, KeyObject>();
    for (const c of cases) {
      const created = await rest.call('POST', '/v1/keys', { name: c.key, type: c.type });
      if (created.status !== 201) throw new Error(`POST /v1/keys ${c.key}: ${created.status} ${JSON.stringify(created.body)}`);
      publicKeys.set(c.key, createPublicKey(created.body.versions[0].publicKeyPem));
    }

    const raw = await runRaw({
      library: token.library,
      tokenLabel: token.tokenLabel,
      pinEnv: token.pinEnv,
      inFlight: IN_FLIGHT,
      keys: cases.map((c) => ({ label: c.key, algorithm: c.algorithm })),
      messages: messages.map((m) => m.toString('base64')),
    });
    for (const c of cases) {
      const result = raw.results.find((r) => r.label === c.key);
      if (!result) throw new Error(`raw pkcs11js: no result for ${c.key}`);
      for (const s of result.samples) checkSignature(rawRow(c.algorithm), c.algorithm, publicKeys.get(c.key)!, s.message, Buffer.from(s.signature, 'base64'));
      report.print({ name: rawRow(c.algorithm), opsPerSec: result.opsPerSec, p50Ms: result.p50Ms, p99Ms: result.p99Ms, cpuMsPerOp: result.cpuMsPerOp });
    }

    const floors = [
      { name: FLOOR_GRPC, call: () => grpc.call('GetCapabilities', {}) },
      {
        name: FLOOR_REST,
        call: async () => {
          const live = await rest.call('GET', '/health/live');
          if (live.status !== 200) throw new Error(`GET /health/live: ${live.status}`);
        },
      },
    ];
    const signs = cases.flatMap((c) => [
      {
        ...c,
        name: `${c.algorithm}: hsm-bridge gRPC KeyService/Sign`,
        floor: { row: FLOOR_GRPC, label: 'the gRPC floor' },
        sign: async (i: number) => (await grpc.call<{ signature: Buffer }>('Sign', { name: c.key, algorithm: c.algorithm, message: message(i) })).signature,
      },
      {
        ...c,
        name: `${c.algorithm}: hsm-bridge REST POST /v1/keys/{name}/sign`,
        floor: { row: FLOOR_REST, label: 'the REST floor' },
        sign: async (i: number) => {
          const answer = await rest.call('POST', `/v1/keys/${c.key}/sign`, { algorithm: c.algorithm, message: message(i).toString('base64') });
          if (answer.status !== 200) throw new Error(`POST /v1/keys/${c.key}/sign: ${answer.status} ${JSON.stringify(answer.body)}`);
          return Buffer.from(answer.body.signature as string, 'base64');
        },
      },
    ]);

    // Every path through the service (and the client) once before any is timed: the first case measured would otherwise pay for the JIT.
    for (const f of floors) await warmUp(f.call, IN_FLIGHT);
    for (const s of signs) {
      for (let i = 0; i < SAMPLES; i++) checkSignature(s.name, s.algorithm, publicKeys.get(s.key)!, i, await s.sign(i));
      await warmUp(s.sign, IN_FLIGHT);
    }

    const cpuMs = { service: () => service.cpuMs(), client: ownCpuMs };
    for (const f of floors) report.print({ name: f.name, ...(await measureLatency(f.call, IN_FLIGHT, cpuMs)) });
    for (const s of signs) {
      let last: { i: number; signature: Buffer } | undefined;
      const timing = await measureLatency(async (i) => {
        last = { i, signature: await s.sign(i) };
      }, IN_FLIGHT, cpuMs);
      checkSignature(s.name, s.algorithm, publicKeys.get(s.key)!, last!.i, last!.signature);
      report.print({ name: s.name, ...timing, baseline: rawRow(s.algorithm), also: [s.floor] });
    }
  } finally {
    grpc.close();
    rest.close();
  }
}

/** Runs rawPkcs11Sign.js with `task`, within a bound that grows with BENCH_SECONDS. */
function runRaw(task: RawSignTask): Promise<RawSignResult> {
  const timeoutMs = 30_000 + task.keys.length * (SECONDS + 1) * 2000;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [RAW], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`raw pkcs11js process: ${signal === 'SIGKILL' ? `killed after ${timeoutMs} ms` : `exited with ${code ?? signal}`}`));
      else resolve(JSON.parse(out) as RawSignResult);
    });
    child.stdin.end(JSON.stringify(task));
  });
}

interface HttpAnswer {
  status: number;
  body: any;
}

/** JSON over keep-alive connections, IN_FLIGHT at most, each call bounded by CALL_TIMEOUT_MS. */
function restClient(baseUrl: string) {
  const base = new URL(baseUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: IN_FLIGHT });
  return {
    call(method: string, path: string, body?: unknown): Promise<HttpAnswer> {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      return new Promise((resolve, reject) => {
        const req = request(
          { agent, host: base.hostname, port: base.port, method, path, headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('error', reject);
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              try {
                resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
              } catch (e) {
                reject(e);
              }
            });
          },
        );
        req.setTimeout(CALL_TIMEOUT_MS, () => req.destroy(new Error(`${method} ${path}: no answer within ${CALL_TIMEOUT_MS} ms`)));
        req.on('error', reject);
        req.end(payload);
      });
    },
    close: () => agent.destroy(),
  };
}

/** hsmbridge.v1.KeyService over one plaintext channel, each call with a CALL_TIMEOUT_MS deadline. */
function grpcClient(port: number) {
  const definition = loadSync('hsmbridge/v1/key_service.proto', { includeDirs: [findProtoRoot()], keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
  const KeyService = (loadPackageDefinition(definition) as any).hsmbridge.v1.KeyService;
  const client = new KeyService(`127.0.0.1:${port}`, credentials.createInsecure()) as Client & Record<string, any>;
  return {
    call<T = unknown>(method: string, body: object): Promise<T> {
      return new Promise((resolve, reject) => {
        client[method](body, { deadline: Date.now() + CALL_TIMEOUT_MS }, (e: ServiceError | null, r: T) => (e ? reject(e) : resolve(r)));
      });
    },
    close: () => client.close(),
  };
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
