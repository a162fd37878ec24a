/** Timing and printing shared by the benchmarks: ops/s over BENCH_SECONDS, each row's ratio to a baseline row measured in the same run. */

export const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
export const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);

/** Runs `op` repeatedly for `seconds` (after a short warm-up), `inFlight` at a time; returns ops/s. */
export async function measure(op: (i: number) => unknown, inFlight = 1, seconds = SECONDS): Promise<number> {
  const run = async (ms: number) => {
    let count = 0;
    const end = performance.now() + ms;
    const worker = async () => {
      while (performance.now() < end) await op(count++);
    };
    const start = performance.now();
    await Promise.all(Array.from({ length: inFlight }, worker));
    return (count * 1000) / (performance.now() - start);
  };
  await run(Math.min(500, seconds * 200));
  return run(seconds * 1000);
}

export interface Row {
  readonly name: string;
  readonly opsPerSec: number;
  /** The name of an earlier row this one is compared with. */
  readonly baseline?: string;
}

/** Collects rows and prints each as it comes, with its ratio to its baseline. */
export class Report {
  readonly rows: Row[] = [];

  constructor(private readonly baselineLabel: string) {}

  print(row: Row): void {
    this.rows.push(row);
    const base = row.baseline ? this.rows.find((r) => r.name === row.baseline) : undefined;
    const ratio = base ? `  ${(row.opsPerSec / base.opsPerSec).toFixed(2)}x ${this.baselineLabel}` : '';
    console.log(`${row.name.padEnd(60)} ${row.opsPerSec.toFixed(0).padStart(9)} ops/s${ratio}`);
  }

  find(name: string): Row | undefined {
    return this.rows.find((r) => r.name === name);
  }
}
