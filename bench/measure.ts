/** Timing and printing shared by the benchmarks: ops/s over BENCH_SECONDS, each row's ratio to a baseline row measured in the same run. */

export const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
export const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);

/**
 * Runs `op` for `ms`, `inFlight` at a time, each in-flight slot numbered (0 .. inFlight-1) so that a
 * caller can give each its own resource; pushes each call's latency to `latencies` when given.
 */
async function timedRun(op: (i: number, slot: number) => unknown, inFlight: number, ms: number, latencies?: number[]): Promise<{ count: number; opsPerSec: number }> {
  let count = 0;
  const end = performance.now() + ms;
  const worker = async (slot: number) => {
    while (performance.now() < end) {
      const t0 = performance.now();
      await op(count++, slot);
      latencies?.push(performance.now() - t0);
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: inFlight }, (_, slot) => worker(slot)));
  return { count, opsPerSec: (count * 1000) / (performance.now() - start) };
}

const warmUpMs = () => Math.min(500, SECONDS * 200);

/** The warm-up measure() and measureLatency() give each case, alone; for warming a process up across cases first. */
export async function warmUp(op: (i: number, slot: number) => unknown, inFlight: number): Promise<void> {
  await timedRun(op, inFlight, warmUpMs());
}

/** Runs `op` repeatedly for `seconds` (after a short warm-up), `inFlight` at a time; returns ops/s. */
export async function measure(op: (i: number) => unknown, inFlight = 1, seconds = SECONDS): Promise<number> {
  await timedRun(op, inFlight, Math.min(500, seconds * 200));
  return (await timedRun(op, inFlight, seconds * 1000)).opsPerSec;
}

export interface Timing {
  /** Operations (a batch's items, each) per second. */
  readonly opsPerSec: number;
  /** Latency of a call (a whole batch). */
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** CPU time per operation of each process `cpu` names, when given. */
  readonly cpuMsPerOp?: Readonly<Record<string, number>>;
}

/** The q-quantile of ascending `sorted` (nearest rank). */
const rank = (sorted: readonly number[], q: number) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] ?? NaN;

/**
 * As measure(), with the latency percentiles of the timed calls; `op` gets its in-flight slot too.
 * `cpu`, when given, names the processes doing the work, each with a reader of the CPU time (ms) it has
 * used so far: the growth over the timed calls, per call, is less at the mercy of a busy machine than ops/s.
 * A call that carries `items` operations (a batch) counts as that many in ops/s and CPU per op.
 */
export async function measureLatency(op: (i: number, slot: number) => unknown, inFlight: number, cpu?: Readonly<Record<string, () => number>>, items = 1): Promise<Timing> {
  await timedRun(op, inFlight, warmUpMs());
  const latencies: number[] = [];
  const cpuBefore = cpu && Object.entries(cpu).map(([name, read]) => ({ name, read, before: read() }));
  const { count, opsPerSec } = await timedRun(op, inFlight, SECONDS * 1000, latencies);
  const cpuMsPerOp = cpuBefore && Object.fromEntries(cpuBefore.map((p) => [p.name, (p.read() - p.before) / (count * items)]));
  latencies.sort((a, b) => a - b);
  return { opsPerSec: opsPerSec * items, p50Ms: rank(latencies, 0.5), p99Ms: rank(latencies, 0.99), ...(cpuMsPerOp ? { cpuMsPerOp } : {}) };
}

export interface OpenLoopTiming {
  /** The calls started per second, as scheduled and as they were. */
  readonly targetPerSec: number;
  readonly startedPerSec: number;
  /** Latency from each call's scheduled start to its answer, over the calls that succeeded. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly calls: number;
  /** Calls that failed (a refusal under load, a deadline): their errors are rethrown by no one. */
  readonly failed: number;
  readonly firstError?: unknown;
}

/**
 * Open loop: starts call i at start + i / perSec for `seconds`, whether or not earlier calls have answered
 * (a closed loop waits, and so hides the queue a steady arrival rate builds). Latency is measured from the
 * scheduled start, not the actual one, so a client that falls behind its schedule counts its own delay too
 * rather than omitting it. Starts the calls due on each timer tick (about 1 ms apart).
 */
export async function measureOpenLoop(op: (i: number) => Promise<unknown>, perSec: number, seconds: number): Promise<OpenLoopTiming> {
  const latencies: number[] = [];
  const pending: Promise<void>[] = [];
  let failed = 0;
  let firstError: unknown;
  const total = Math.max(1, Math.round(perSec * seconds));
  const start = performance.now();
  let next = 0;
  while (next < total) {
    const now = performance.now();
    for (; next < total && start + (next * 1000) / perSec <= now; next++) {
      const scheduled = start + (next * 1000) / perSec;
      pending.push(op(next).then(
        () => void latencies.push(performance.now() - scheduled),
        (e: unknown) => {
          failed++;
          firstError ??= e;
        },
      ));
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  const startedPerSec = (total * 1000) / (performance.now() - start);
  await Promise.all(pending);
  latencies.sort((a, b) => a - b);
  return { targetPerSec: perSec, startedPerSec, p50Ms: rank(latencies, 0.5), p99Ms: rank(latencies, 0.99), p999Ms: rank(latencies, 0.999), calls: total, failed, ...(failed ? { firstError } : {}) };
}

/** CPU time (user + system, ms) this process has used, all its threads included. */
export function ownCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

export interface Row {
  readonly name: string;
  readonly opsPerSec: number;
  /** The name of an earlier row this one is compared with. */
  readonly baseline?: string;
  /** Further earlier rows this one is compared with, each printed with its own label. */
  readonly also?: ReadonlyArray<{ readonly row: string; readonly label: string }>;
  readonly p50Ms?: number;
  readonly p99Ms?: number;
  readonly cpuMsPerOp?: Readonly<Record<string, number>>;
}

/** Collects rows and prints each as it comes, with its ratio to its baseline. */
export class Report {
  readonly rows: Row[] = [];

  constructor(private readonly baselineLabel: string) {}

  print(row: Row): void {
    this.rows.push(row);
    const ratio = (name: string | undefined, label: string) => {
      const base = name === undefined ? undefined : this.find(name);
      return base ? `${(row.opsPerSec / base.opsPerSec).toFixed(2)}x ${label}` : undefined;
    };
    const ratios = [ratio(row.baseline, this.baselineLabel), ...(row.also ?? []).map((a) => ratio(a.row, a.label))].filter((r) => r !== undefined);
    const ms = (v: number) => `${v.toFixed(1)} ms`.padStart(9);
    const latency = row.p50Ms === undefined || row.p99Ms === undefined ? '' : `  p50 ${ms(row.p50Ms)}  p99 ${ms(row.p99Ms)}`;
    const parts = Object.entries(row.cpuMsPerOp ?? {});
    const total = parts.reduce((sum, [, v]) => sum + v, 0);
    const split = parts.length > 1 ? ` (${parts.map(([name, v]) => `${name} ${v.toFixed(2)}`).join(', ')})` : '';
    const cpu = parts.length ? `  cpu ${total.toFixed(2).padStart(5)} ms/op${split}` : '';
    console.log(`${row.name.padEnd(60)} ${row.opsPerSec.toFixed(0).padStart(9)} ops/s${latency}${cpu}${ratios.length ? `  ${ratios.join(', ')}` : ''}`);
  }

  find(name: string): Row | undefined {
    return this.rows.find((r) => r.name === name);
  }
}
