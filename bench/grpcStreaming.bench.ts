/**
 * gRPC streaming against batches (issue 13): whether a `SignStream` rpc (requests in, results out, on one
 * long-lived stream) would carry steady traffic more cheaply than unary batches. It is measured on
 * grpc-js alone, with a SHA-256 of each 256-byte message standing in for the HSM, so that what differs
 * between the rows is only the transport's cost per item: unary calls (16 in flight), batches of 16 and
 * 64 (4 in flight), and 4 streams with 16 or 64 items in flight on each. Server and client are separate
 * processes (this file runs itself as the server); each row gives items/s and its ratio to the batch of
 * 64, then the server's CPU time per item, the figure least at the mercy of a busy machine.
 *
 *   npm run bench    (BENCH_SECONDS per case, default 3)
 *
 * The outcome decided the API: batches of 64 cost the server less than half what a stream costs per item,
 * so hsm-bridge has batch rpcs and no streaming form (README, "Benchmarks").
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, loadPackageDefinition, Server, ServerCredentials, type Client, type ClientDuplexStream, type ServerDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { Report, SECONDS } from './measure.js';

const PROTO = `syntax = "proto3";
package bench;
message Item { bytes message = 1; }
message Result { bytes digest = 1; }
message Batch { repeated Item items = 1; }
message Results { repeated Result results = 1; }
service Transport {
  rpc One(Item) returns (Result);
  rpc Many(Batch) returns (Results);
  rpc Stream(stream Item) returns (stream Result);
}
`;

interface Item {
  message: Buffer;
}
interface Result {
  digest: Buffer;
}

function loadTransport(): any {
  const dir = mkdtempSync(join(tmpdir(), 'hsmb-bench-proto-'));
  try {
    writeFileSync(join(dir, 'transport.proto'), PROTO);
    return (loadPackageDefinition(loadSync(join(dir, 'transport.proto'), { defaults: true })) as any).bench.Transport;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const work = (item: Item): Result => ({ digest: createHash('sha256').update(item.message).digest() });

/** The server process: prints its port, serves until killed. */
function serve(): void {
  const server = new Server();
  server.addService(loadTransport().service, {
    One: (call: { request: Item }, callback: (e: null, r: Result) => void) => callback(null, work(call.request)),
    Many: (call: { request: { items: Item[] } }, callback: (e: null, r: { results: Result[] }) => void) => callback(null, { results: call.request.items.map(work) }),
    Stream: (call: ServerDuplexStream<Item, Result>) => {
      call.on('data', (item: Item) => call.write(work(item)));
      call.on('end', () => call.end());
    },
  });
  server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, port) => {
    if (error) throw error;
    process.stdout.write(`${port}\n`);
  });
}

async function main(): Promise<void> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'serve'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.setEncoding('utf8').once('data', (d: string) => resolve(Number(d.trim())));
      child.once('exit', (code) => reject(new Error(`the server exited with ${code}`)));
    });
    await compare(port, () => serverCpuMs(child.pid!));
  } finally {
    child.kill();
  }
}

/** The server's CPU time so far (user + system, ms), from /proc. */
function serverCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function compare(port: number, cpuMs: () => number): Promise<void> {
  const client = new (loadTransport())(`127.0.0.1:${port}`, credentials.createInsecure()) as Client & Record<string, any>;
  const item = { message: Buffer.alloc(256, 7) };
  const check = (r: Result) => {
    if (!r.digest.equals(work(item).digest)) throw new Error('wrong digest');
  };
  const unary = <Req, Res>(method: string, request: Req) =>
    new Promise<Res>((resolve, reject) => client[method](request, { deadline: Date.now() + 10_000 }, (e: ServiceError | null, r: Res) => (e ? reject(e) : resolve(r))));
  const one = async () => check(await unary<Item, Result>('One', item));
  const many = (size: number) => async () => (await unary<{ items: Item[] }, { results: Result[] }>('Many', { items: Array(size).fill(item) })).results.forEach(check);

  /** `calls` loops of `op`, each carrying `perCall` items, for SECONDS after a short warm-up. */
  const closedLoop = async (calls: number, perCall: number, op: () => Promise<void>) => {
    const timed = async (ms: number) => {
      let items = 0;
      const end = performance.now() + ms;
      await Promise.all(Array.from({ length: calls }, async () => {
        while (performance.now() < end) {
          await op();
          items += perCall;
        }
      }));
      return items;
    };
    await timed(Math.min(500, SECONDS * 200));
    return measured(() => timed(SECONDS * 1000));
  };

  /** `streams` open streams, each keeping `window` items in flight, for SECONDS. */
  const streaming = (streams: number, window: number) => {
    const timed = (ms: number) =>
      new Promise<number>((resolve, reject) => {
        let items = 0;
        let open = streams;
        const end = performance.now() + ms;
        for (let s = 0; s < streams; s++) {
          const call = client.Stream() as ClientDuplexStream<Item, Result>;
          let inFlight = 0;
          const pump = () => {
            while (inFlight < window && performance.now() < end) {
              inFlight++;
              call.write(item);
            }
            if (inFlight === 0) call.end();
          };
          call.on('data', (r: Result) => {
            check(r);
            items++;
            inFlight--;
            pump();
          });
          call.on('error', reject);
          call.on('end', () => --open === 0 && resolve(items));
          pump();
        }
      });
    return (async () => {
      await timed(Math.min(500, SECONDS * 200));
      return measured(() => timed(SECONDS * 1000));
    })();
  };

  const measured = async (run: () => Promise<number>) => {
    const cpuBefore = cpuMs();
    const started = performance.now();
    const items = await run();
    return { opsPerSec: (items * 1000) / (performance.now() - started), serverUsPerItem: ((cpuMs() - cpuBefore) * 1000) / items };
  };

  const BASELINE = 'unary batches of 64, 4 in flight';
  const report = new Report('a batch of 64');
  const cpu: string[] = [];
  const row = (name: string, figures: { opsPerSec: number; serverUsPerItem: number }) => {
    report.print({ name, opsPerSec: figures.opsPerSec, ...(name === BASELINE ? {} : { baseline: BASELINE }) });
    cpu.push(`  ${name.padEnd(58)} ${figures.serverUsPerItem.toFixed(1).padStart(6)} µs`);
  };
  try {
    row(BASELINE, await closedLoop(4, 64, many(64)));
    row('unary batches of 16, 4 in flight', await closedLoop(4, 16, many(16)));
    row('unary calls, 16 in flight', await closedLoop(16, 1, one));
    row('4 streams, 16 items in flight on each', await streaming(4, 16));
    row('4 streams, 64 items in flight on each', await streaming(4, 64));
    console.log(`server CPU per item:\n${cpu.join('\n')}`);
  } finally {
    client.close();
  }
}

if (process.argv[2] === 'serve') {
  serve();
} else {
  console.log(`\ngRPC streaming against batches: grpc-js alone, a SHA-256 per item for the HSM, ${SECONDS}s per case; items/s, server CPU per item\n`);
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
