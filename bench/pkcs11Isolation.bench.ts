/**
 * PKCS#11 isolation benchmark (issue 11): what it costs to keep every PKCS#11 call off the main event loop.
 * In one run, on a fresh SoftHSM token holding one RSA-2048 and one P-256 key (sensitive, non-extractable):
 *   - the former adapter's shape: pkcs11js on the main thread, C_SignInit there and C_SignAsync on the libuv pool, 8
 *     sessions; and the raw synchronous C_Sign in a loop;
 *   - worker threads, W = 2 and 4, each owning one session and signing synchronously; the main thread
 *     posts {id, key, data} to the least busy one;
 *   - one child process that alone loads the module (async calls or W workers inside), reached over the
 *     fork channel (serialization 'advanced') or over stdin/stdout with our own length-prefixed frames.
 * Throughput is with IN_FLIGHT calls outstanding, as a ratio to the former adapter's shape. Per-call overhead is the
 * sequential round trip (1 in flight, median call) minus the raw sync C_Sign call (median). Last, the
 * child is killed with SIGSEGV (for its parent that is what a vendor library faulting looks like) and a
 * new one is started. The same fault in a worker thread's native code ends the whole process (tried apart
 * with a PKCS#11-shaped library whose C_Sign dereferences NULL: exit by SIGSEGV, no worker 'exit' or
 * 'error' event), so it is not reproduced here.
 *
 *   npm run bench    (BENCH_SECONDS per case, default 3)
 *
 * Every path's signatures are checked with node:crypto before anything is timed. The worker and child
 * entries are compiled files next to this one (dist/bench-build/bench/pkcs11Isolation/).
 */
import { createHash, createPublicKey, randomBytes, verify, type KeyObject } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { createSoftHsmToken } from '../test/helpers/softhsm.js';
import { ChildSigner } from './pkcs11Isolation/childSigner.js';
import { KEY_LABELS, Token, type KeyIndex, type TokenRef } from './pkcs11Isolation/signer.js';
import { WorkerPool } from './pkcs11Isolation/workerPool.js';
import { Report, SECONDS, measure } from './measure.js';

const IN_FLIGHT = 16;
/** Each case runs in ROUNDS slices interleaved with the others and reports the median, so that load from elsewhere on the machine hits every case alike. */
const ROUNDS = 3;
const MESSAGES = 64;
const ALGS = [
  { key: 0, name: 'RSA-2048' },
  { key: 1, name: 'P-256' },
] as const;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/** The median duration of one call in µs, calls made one after another for `seconds`: unlike a mean, it shrugs off the calls that load elsewhere preempted. */
async function medianLatencyUs(op: (i: number) => unknown, seconds: number): Promise<number> {
  const times: number[] = [];
  const end = performance.now() + seconds * 1000;
  for (let i = 0; performance.now() < end; i++) {
    const start = performance.now();
    await op(i);
    times.push((performance.now() - start) * 1000);
  }
  return median(times);
}

interface Path {
  readonly name: string;
  sign(key: KeyIndex, input: Buffer): Uint8Array | Promise<Uint8Array>;
  close(): Promise<void>;
}

/** Generates the two bench keys as token objects (so a child process finds them too) and returns their public halves. */
function generateKeys(api: pkcs11js.PKCS11, session: pkcs11js.Handle): KeyObject[] {
  const priv = (label: string) => [
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_SIGN, value: true },
    { type: pkcs11js.CKA_LABEL, value: label },
  ];
  const rsa = api.C_GenerateKeyPair(
    session,
    { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN },
    [
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_VERIFY, value: true },
      { type: pkcs11js.CKA_MODULUS_BITS, value: 2048 },
      { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
    ],
    priv(KEY_LABELS[0]),
  );
  const ec = api.C_GenerateKeyPair(
    session,
    { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
    [
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_VERIFY, value: true },
      { type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from('06082a8648ce3d030107', 'hex') }, // prime256v1
    ],
    priv(KEY_LABELS[1]),
  );
  const attr = (h: pkcs11js.Handle, type: number) => api.C_GetAttributeValue(session, h, [{ type }])[0]!.value as Buffer;
  const b64u = (b: Buffer) => b.toString('base64url');
  const point = attr(ec.publicKey, pkcs11js.CKA_EC_POINT).subarray(2); // DER OCTET STRING around 04 || x || y
  return [
    createPublicKey({ format: 'jwk', key: { kty: 'RSA', n: b64u(attr(rsa.publicKey, pkcs11js.CKA_MODULUS)), e: b64u(attr(rsa.publicKey, pkcs11js.CKA_PUBLIC_EXPONENT)) } }),
    createPublicKey({ format: 'jwk', key: { kty: 'EC', crv: 'P-256', x: b64u(point.subarray(1, 33)), y: b64u(point.subarray(33, 65)) } }),
  ];
}

async function openPaths(main: Token, ref: TokenRef): Promise<Path[]> {
  const session = main.openSession();
  const pool = main.asyncPool(8);
  const paths: Path[] = [
    { name: 'main thread, sync C_Sign', sign: (key, input) => main.signSync(session, key, input), close: async () => {} },
    { name: 'main thread, C_SignAsync, 8 sessions', sign: pool, close: async () => {} },
  ];
  for (const w of [2, 4]) {
    const workers = await WorkerPool.start(w, ref);
    paths.push({ name: `worker threads, W=${w}`, sign: (key, input) => workers.sign(key, input), close: () => workers.close() });
  }
  // Inside the child: async calls, or W=2 sign workers (W=4 and workers behind the pipe measured no better on 2 cores).
  for (const [transport, inner] of [['ipc', 'async'], ['ipc', 2], ['pipe', 'async']] as const) {
    const child = await ChildSigner.start(transport, inner, ref);
    const label = transport === 'ipc' ? 'fork channel' : 'pipe frames';
    paths.push({ name: `child (${label}), ${inner === 'async' ? 'async inside' : `W=${inner} inside`}`, sign: (key, input) => child.sign(key, input), close: () => child.close() });
  }
  return paths;
}

async function main(): Promise<void> {
  console.log(`PKCS#11 isolation bench: node ${process.version}, ${SECONDS}s per case (median of ${ROUNDS} interleaved slices), ${IN_FLIGHT} in flight, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? 4}\n`);
  const token = await createSoftHsmToken();
  const ref: TokenRef = { library: token.library, tokenLabel: token.tokenLabel, pin: token.pin };
  const main = new Token(ref);
  const setup = main.api.C_OpenSession(main.slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  main.api.C_Login(setup, pkcs11js.CKU_USER, token.pin);
  const publicKeys = generateKeys(main.api, setup);
  const data = Array.from({ length: MESSAGES }, () => randomBytes(256));
  // RSA signs the data (CKM_SHA256_RSA_PKCS); P-256 signs its SHA-256 digest (CKM_ECDSA: SoftHSM has no ECDSA_SHA256).
  const inputs = [data, data.map((d) => createHash('sha256').update(d).digest())];
  const verifies = (key: KeyIndex, i: number, sig: Uint8Array) =>
    verify('sha256', data[i]!, key === 0 ? publicKeys[0]! : { key: publicKeys[1]!, dsaEncoding: 'ieee-p1363' }, sig);

  const paths = await openPaths(main, ref);
  const report = new Report('former adapter (main thread, async)');
  const latency = new Map<string, number>(); // median µs per call, 1 in flight
  try {
    for (const path of paths) {
      for (const { key } of ALGS) {
        if (!verifies(key, 0, await path.sign(key, inputs[key]![0]!))) throw new Error(`${path.name}: a signature does not verify`);
      }
    }
    for (const { key, name } of ALGS) {
      const baseline = `${name}: ${paths[1]!.name}, ${IN_FLIGHT} in flight`;
      // The sync loop has no 16-in-flight form: the event loop runs one call at a time.
      const cases = paths.map((path) => ({ path, inFlight: path === paths[0] ? 1 : IN_FLIGHT, runs: [] as number[], latencies: [] as number[] }));
      for (let round = 0; round < ROUNDS; round++) {
        for (const c of cases) {
          const op = (i: number) => c.path.sign(key, inputs[key]![i % MESSAGES]!);
          c.runs.push(await measure(op, c.inFlight, SECONDS / ROUNDS));
          c.latencies.push(await medianLatencyUs(op, SECONDS / ROUNDS));
        }
      }
      for (const { path, inFlight, runs, latencies } of cases) {
        latency.set(`${name}: ${path.name}`, median(latencies));
        report.print({ name: `${name}: ${path.name}, ${inFlight} in flight`, baseline, opsPerSec: median(runs) });
      }
      console.log('');
    }
  } finally {
    for (const path of paths) await path.close();
  }

  const sync = paths[0]!.name;
  console.log(`per-call latency, 1 in flight (median call), and overhead over the sync C_Sign, µs`);
  console.log(`${''.padEnd(44)} ${ALGS.map((a) => `${a.name} call`.padStart(15) + 'overhead'.padStart(10)).join('')}`);
  for (const path of paths) {
    const cells = ALGS.map(({ name }) => {
      const us = latency.get(`${name}: ${path.name}`)!;
      return us.toFixed(0).padStart(15) + (path.name === sync ? '' : (us - latency.get(`${name}: ${sync}`)!).toFixed(0)).padStart(10);
    });
    console.log(`${path.name.padEnd(44)} ${cells.join('')}`);
  }

  // Crash: the child dies by a signal, as with a fault in the vendor library; the parent carries on and starts another.
  const child = await ChildSigner.start('ipc', 2, ref);
  const killedAt = performance.now();
  child.kill('SIGSEGV');
  const { signal } = await child.exited;
  const exitedAt = performance.now();
  const next = await ChildSigner.start('ipc', 2, ref);
  if (!verifies(1, 1, await next.sign(1, inputs[1]![1]!))) throw new Error('the respawned child signed wrongly');
  const servingAt = performance.now();
  await next.close();
  console.log(
    `\nchild (fork channel, W=2) killed with SIGSEGV: parent saw signal ${signal} after ${(exitedAt - killedAt).toFixed(1)} ms; ` +
      `a new child signed ${(servingAt - exitedAt).toFixed(0)} ms later`,
  );

  main.api.C_Finalize();
  await token.cleanup();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
