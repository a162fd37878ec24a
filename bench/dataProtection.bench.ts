/**
 * Personal-data protection benchmark (issue #14): FF1 and tokens through the service, each party a process
 * of its own: the service (built, configured by default) on a fresh SoftHSM token and on the software
 * backend, this process as its client, and raw pkcs11js on the same token in a third.
 *
 *   npm run bench        BENCH_SECONDS per case (default 3; CI runs 0.2)
 *
 * In order:
 * - Baselines: FF1 (src/dataProtection/ff1.ts) encrypting 12-digit MSISDNs (radix 10) 1, 16 and 256 values
 *   a call, in this process with node:crypto's AES-ECB, and in the raw process with CKM_AES_ECB on the
 *   service's key (8 sessions, one call in flight on each); the token HMAC (src/dataProtection/tokens.ts)
 *   with node:crypto in this process, and with CKM_SHA256_HMAC on the service's key in the raw process.
 * - The transport floors, a call that does no key work (gRPC GetCapabilities, REST GET /health/live).
 * - On SoftHSM over gRPC and REST, then on the software backend over gRPC: FpeEncrypt and Tokenize with 1,
 *   16 and 256 values a request (inFlight below); on SoftHSM also gRPC GenerateDataKey (AES-256 wrapper,
 *   256-bit data key). Rows count values: ops/s and CPU are per value, latency is the whole request's.
 *
 * Results are checked before the figures count, and the last call of every timed case again: on SoftHSM
 * every FF1 value and token equals the raw process's with the same key (the same FF1 code, so this checks
 * the key and the AES blocks through the service; FF1 itself is checked against NIST in the tests); on the software backend, FF1
 * values decrypt back through the service and tokens are those of the first pass; a data key's wrapped
 * form decrypts to its plaintext. A wrong result makes the process exit non-zero.
 */
import { createCipheriv, createHmac, randomBytes, randomInt } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import { ff1 } from '../src/dataProtection/ff1.js';
import { tokenInput, tokenOf } from '../src/dataProtection/tokens.js';
import type { KeyVersion } from '../src/keys/names.js';
import { startServiceProcess, type ServiceProcess } from '../test/helpers/serviceProcess.js';
import { createSoftHsmToken, type SoftHsmToken } from '../test/helpers/softhsm.js';
import { createSoftwareBackendConfig } from '../test/helpers/software.js';
import { FLOOR_GRPC, FLOOR_REST, grpcClient, restClient, transportFloors, type GrpcClient, type RestClient } from './clients.js';
import { batchOutputs, grpcOneofError, restItemError, type Transport } from './keyOperations.js';
import { Report, SECONDS, measureLatency, ownCpuMs, type Row } from './measure.js';
import { anyPortsEnv, runRaw, softHsmServiceEnv } from './processes.js';

const SIZES = [1, 16, 256];
const SESSIONS = 8;
/**
 * Requests in flight by values a request: 16 single values (as keys.bench.ts); 8 requests of 16, one per
 * session; 2 of 256, as many values as the service takes in flight at once (tokens) or a main thread
 * busy with FF1's rounds between backend calls, while more only wait longer.
 */
const inFlight = (values: number) => (values === 1 ? 16 : values <= 16 ? SESSIONS : 2);
/** Calls whose outputs are all checked before each case is timed. */
const SAMPLES = 2;
const RADIX = 10;
const TWEAK = Buffer.from('als.msisdn').toString('hex');
const CONTEXT = 'als.participants.msisdn';
const FPE_KEY = { name: 'bench-fpe', type: 'AES_256', purpose: 'fpe' };
const TOKEN_KEY = { name: 'bench-tokens', type: 'HMAC_256', purpose: 'tokenize' };
const WRAP_KEY = { name: 'bench-datakey', type: 'AES_256', purpose: 'encrypt' };
/** 12-digit MSISDNs, as an account-lookup column holds them. */
const msisdns = Array.from({ length: 256 }, () => `2557${String(randomInt(10 ** 8)).padStart(8, '0')}`);
const valuesOf = (i: number, n: number) => Array.from({ length: n }, (_, j) => msisdns[(i * n + j) % msisdns.length]!);
const digits = (value: string) => Array.from(value, Number);

const report = new Report('node:crypto in process');
const nodeFf1Row = (n: number) => `FF1 encrypt, ${n} a call: node:crypto AES-ECB in process`;
const rawFf1Row = (n: number) => `FF1 encrypt, ${n} a call: raw pkcs11js CKM_AES_ECB, ${SESSIONS} sessions`;
const NODE_HMAC_ROW = 'token: node:crypto HMAC-SHA-256 in process';
const RAW_HMAC_ROW = `token: raw pkcs11js CKM_SHA256_HMAC, ${SESSIONS} sessions`;

async function main(): Promise<void> {
  // The load average says whether something else shared the cores: the figures are worth little then.
  console.log(`data protection bench: node ${process.version}, ${availableParallelism()} cores (load average ${loadavg()[0]!.toFixed(1)}), ${SECONDS}s per case, ${SIZES.map((n) => `${inFlight(n)} requests of ${n}`).join(', ')} values in flight; service, client and raw pkcs11js in separate processes\n`);
  await inProcessBaselines();
  const token = await createSoftHsmToken();
  const software = await createSoftwareBackendConfig();
  const services: ServiceProcess[] = [];
  try {
    const hsm = await startServiceProcess({ env: softHsmServiceEnv(token) });
    services.push(hsm);
    await benchService('SoftHSM', hsm, ['gRPC', 'REST'], true, () => rawBaselines(token));
    const soft = await startServiceProcess({ env: { ...anyPortsEnv }, config: { backend: { type: 'software', software: software.config } } });
    services.push(soft);
    await benchService('software', soft, ['gRPC'], false, async () => ({}));
  } finally {
    try {
      for (const s of services) await s.stop();
    } finally {
      await software.cleanup();
      await token.cleanup();
    }
  }
}

/** FF1 with node:crypto's AES-ECB, and the token HMAC, in this process: CPU bound, one call at a time. */
async function inProcessBaselines(): Promise<void> {
  const key = randomBytes(32);
  const tweak = Buffer.from(TWEAK, 'hex');
  const ecb = async (blocks: Buffer) => createCipheriv('aes-256-ecb', key, null).setAutoPadding(false).update(blocks);
  for (const n of SIZES) {
    report.print({ name: nodeFf1Row(n), ...(await measureLatency((i) => ff1('encrypt', ecb, RADIX, tweak, valuesOf(i, n).map(digits)), 1, { client: ownCpuMs }, n)) });
  }
  const context = Buffer.from(CONTEXT);
  const hmac = (value: string) => tokenOf(1 as KeyVersion, createHmac('sha256', key).update(tokenInput(context, value)).digest());
  report.print({ name: NODE_HMAC_ROW, ...(await measureLatency((i) => hmac(msisdns[i % msisdns.length]!), 1, { client: ownCpuMs })) });
  console.log('');
}

/** What the second implementation says each value's FF1 encryption and token are, where there is one. */
interface Expected {
  readonly ff1?: ReadonlyMap<string, string>;
  readonly tokens?: ReadonlyMap<string, string>;
}

/**
 * Runs and prints the raw pkcs11js baselines on the service's keys: FF1 with CKM_AES_ECB a call of each
 * size, and the token HMAC a value a call. Answers every MSISDN's FF1 value and token as raw makes them.
 */
async function rawBaselines(token: SoftHsmToken): Promise<Expected> {
  const ff1 = SIZES.map((batch) => ({ label: FPE_KEY.name, kind: 'FF1' as const, ff1: { radix: RADIX, tweak: TWEAK, values: msisdns, batch } }));
  const context = Buffer.from(CONTEXT);
  const raw = await runRaw({
    library: token.library,
    tokenLabel: token.tokenLabel,
    pinEnv: token.pinEnv,
    sessions: SESSIONS,
    keys: [...ff1, { label: TOKEN_KEY.name, kind: 'HMAC_SHA256' }],
    messages: msisdns.map((v) => tokenInput(context, v).toString('base64')),
    plaintexts: [],
  });
  const timing = (r: (typeof raw.results)[number]) => ({ opsPerSec: r.opsPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms, ...(r.cpuMsPerOp ? { cpuMsPerOp: r.cpuMsPerOp } : {}) });
  SIZES.forEach((n, k) => report.print({ name: rawFf1Row(n), ...timing(raw.results[k]!), baseline: nodeFf1Row(n) }));
  const macs = raw.results[SIZES.length]!;
  report.print({ name: RAW_HMAC_ROW, ...timing(macs), baseline: NODE_HMAC_ROW });
  console.log('');
  return {
    ff1: new Map(msisdns.map((v, j) => [v, raw.results[0]!.samples[j]!])),
    tokens: new Map(msisdns.map((v, j) => [v, tokenOf(1 as KeyVersion, Buffer.from(macs.samples[j]!, 'base64'))])),
  };
}

/** A request of the service: call i's outputs, in order, for its inputs. */
interface ServiceCall {
  readonly name: string;
  readonly transport: Transport;
  readonly values: number;
  call(i: number): Promise<string[]>;
  /** Throws unless `outputs` are right for call i. */
  check(i: number, outputs: string[]): Promise<void>;
  readonly baseline?: string;
  readonly raw?: string;
}


/**
 * Creates the keys on `service`, runs `baselines` (what it answers, the outputs the service's must equal),
 * then measures FF1 and tokens over each of `transports`, and data keys over gRPC when `dataKeys`.
 */
async function benchService(label: string, service: ServiceProcess, transports: readonly Transport[], dataKeys: boolean, baselines: () => Promise<Expected>): Promise<void> {
  const rest = restClient(service.restUrl, inFlight(1));
  const keys = grpcClient(service.grpcPort!, 'key_service.proto', 'KeyService');
  try {
    for (const key of [FPE_KEY, TOKEN_KEY, WRAP_KEY]) await rest.expect(201, 'POST', '/v1/keys', key);
    const expected = await baselines();
    const cpu = { service: () => service.cpuMs(), client: ownCpuMs };
    if (!report.find(FLOOR_GRPC)) for (const f of transportFloors(keys, rest)) report.print({ name: f.name, ...(await measureLatency(f.call, inFlight(1), cpu)) });
    const clients = { grpc: keys, rest };
    const calls = transports.flatMap((t) => [...SIZES.map((n) => fpeCall(label, t, n, clients, expected)), ...SIZES.map((n) => tokenCall(label, t, n, clients, expected))]);
    if (dataKeys) calls.push(dataKeyCall(label, 'gRPC', clients));
    for (const c of calls) {
      for (let i = 0; i < SAMPLES; i++) await c.check(i, await c.call(i));
      let last: { i: number; outputs: string[] } | undefined;
      const timing = await measureLatency(async (i) => {
        last = { i, outputs: await c.call(i) };
      }, inFlight(c.values), cpu, c.values);
      await c.check(last!.i, last!.outputs);
      const floor = c.transport === 'gRPC' ? { row: FLOOR_GRPC, label: 'the gRPC floor' } : { row: FLOOR_REST, label: 'the REST floor' };
      const also = [...(c.raw ? [{ row: c.raw, label: 'raw pkcs11js' }] : []), ...(c.values === 1 ? [floor] : [])];
      report.print({ name: c.name, ...timing, ...(c.baseline ? { baseline: c.baseline } : {}), also } satisfies Row);
    }
    console.log('');
  } finally {
    keys.close();
    rest.close();
  }
}

interface Clients {
  readonly grpc: GrpcClient;
  readonly rest: RestClient;
}

/** FF1 encryption of `n` MSISDNs a request, each checked against raw's or, without it, decrypted back through the service. */
function fpeCall(label: string, transport: Transport, n: number, clients: Clients, expected: Expected): ServiceCall {
  const name = FPE_KEY.name;
  const request = (values: string[]) => ({ values, radix: RADIX, tweak: TWEAK });
  const call = transport === 'gRPC'
    ? async (i: number) => batchOutputs(`FpeEncrypt ${name}`, n, (await clients.grpc.call<{ values: any[] }>('FpeEncrypt', { name, ...request(valuesOf(i, n)) })).values, grpcOneofError('value'), (r) => r.value as string)
    : async (i: number) => batchOutputs(`POST fpe/encrypt ${name}`, n, (await clients.rest.expect(200, 'POST', `/v1/keys/${name}/fpe/encrypt`, request(valuesOf(i, n)))).values, restItemError, (r) => r as string);
  return {
    name: `${label} ${transport}: FF1 encrypt, ${n} a request`,
    transport,
    values: n,
    call,
    baseline: nodeFf1Row(n),
    ...(expected.ff1 ? { raw: rawFf1Row(n) } : {}),
    async check(i, outputs) {
      const inputs = valuesOf(i, n);
      outputs.forEach((out, j) => {
        const want = expected.ff1?.get(inputs[j]!);
        if (!/^\d{12}$/.test(out) || (want !== undefined && out !== want)) throw new Error(`${label} FF1: value ${j} of call ${i} is not raw pkcs11js's encryption of the same MSISDN`);
      });
      const back = (await clients.rest.expect(200, 'POST', `/v1/keys/${name}/fpe/decrypt`, request(outputs))).values as string[];
      if (back.some((v, j) => v !== inputs[j])) throw new Error(`${label} FF1: call ${i}'s values do not decrypt back to its MSISDNs`);
    },
  };
}

/** Tokens of `n` MSISDNs a request, each checked against raw's HMAC or, without it, the token the first call gave it. */
function tokenCall(label: string, transport: Transport, n: number, clients: Clients, expected: Expected): ServiceCall {
  const name = TOKEN_KEY.name;
  const seen = new Map<string, string>();
  const call = transport === 'gRPC'
    ? async (i: number) => batchOutputs(`Tokenize ${name}`, n, (await clients.grpc.call<{ tokens: any[] }>('Tokenize', { name, values: valuesOf(i, n), context: CONTEXT })).tokens, grpcOneofError('token'), (r) => r.token as string)
    : async (i: number) => batchOutputs(`POST tokenize ${name}`, n, (await clients.rest.expect(200, 'POST', `/v1/keys/${name}/tokenize`, { values: valuesOf(i, n), context: CONTEXT })).tokens, restItemError, (r) => r as string);
  return {
    name: `${label} ${transport}: tokenize, ${n} a request`,
    transport,
    values: n,
    call,
    baseline: NODE_HMAC_ROW,
    ...(expected.tokens ? { raw: RAW_HMAC_ROW } : {}),
    async check(i, outputs) {
      valuesOf(i, n).forEach((value, j) => {
        const want = expected.tokens?.get(value) ?? seen.get(value);
        if (!/^v1:[A-Za-z0-9_-]{43}$/.test(outputs[j]!) || (want !== undefined && outputs[j] !== want)) throw new Error(`${label} tokenize: token ${j} of call ${i} is not ${expected.tokens ? "raw pkcs11js's HMAC" : 'the one the first call gave'} of the same MSISDN`);
        seen.set(value, outputs[j]!);
      });
    },
  };
}

/** A 256-bit data key a request, wrapped by an AES-256 key; its check decrypts the wrapped form through the service. */
function dataKeyCall(label: string, transport: Transport, clients: Clients): ServiceCall {
  const name = WRAP_KEY.name;
  const call = transport === 'gRPC'
    ? async () => {
        const r = await clients.grpc.call<{ plaintext: Buffer; wrapped: Buffer }>('GenerateDataKey', { name, bits: 256 });
        return [r.plaintext.toString('base64'), r.wrapped.toString('base64')];
      }
    : async () => {
        const r = await clients.rest.expect(200, 'POST', `/v1/keys/${name}/datakey`, { bits: 256 });
        return [r.plaintext as string, r.wrapped as string];
      };
  return {
    name: `${label} ${transport}: data key (AES-256 wrapper, 256 bits)`,
    transport,
    values: 1,
    call,
    async check(i, [plaintext, wrapped]) {
      const opened = await clients.rest.expect(200, 'POST', `/v1/keys/${name}/decrypt`, { ciphertext: wrapped });
      if (Buffer.from(plaintext!, 'base64').length !== 32 || opened.plaintext !== plaintext) throw new Error(`${label} data key: call ${i}'s wrapped key does not decrypt to its plaintext`);
    },
  };
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
