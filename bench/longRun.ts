/**
 * The service's resident memory and event-loop delay across a long run of operations, read from its own
 * Prometheus series on the ops listener (prom-client default metrics, prefix hsmb_): the run starts with
 * a scrape, which also resets the event-loop delay histogram (monitorEventLoopDelay), and ends with one,
 * which then covers exactly the run.
 */
import { CALL_TIMEOUT_MS } from './clients.js';

export interface ServiceFigures {
  readonly rssBytes: number;
  /** Event-loop delay since the previous scrape. */
  readonly eventLoopP99Ms: number;
  readonly eventLoopMaxMs: number;
}

export async function scrapeServiceFigures(opsUrl: string): Promise<ServiceFigures> {
  const response = await fetch(`${opsUrl}/metrics`, { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
  if (response.status !== 200) throw new Error(`GET ${opsUrl}/metrics: ${response.status}`);
  const text = await response.text();
  const value = (name: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    if (line === undefined) throw new Error(`${opsUrl}/metrics has no ${name}`);
    return Number(line.slice(name.length + 1));
  };
  return {
    rssBytes: value('hsmb_process_resident_memory_bytes'),
    eventLoopP99Ms: value('hsmb_nodejs_eventloop_lag_p99_seconds') * 1000,
    eventLoopMaxMs: value('hsmb_nodejs_eventloop_lag_max_seconds') * 1000,
  };
}

export interface LongRun {
  readonly operations: number;
  readonly opsPerSec: number;
  readonly before: ServiceFigures;
  readonly after: ServiceFigures;
  /** RSS after / before - 1. */
  readonly rssGrowth: number;
}

/**
 * Runs `operations` operations as calls of `batch` items (call(i) for i = 0, 1, ...), `inFlight` at a
 * time, between two scrapes of the service's figures. The service should be warm: the first scrape is
 * the baseline.
 */
export async function measureLongRun(opsUrl: string, operations: number, batch: number, inFlight: number, call: (i: number) => Promise<unknown>): Promise<LongRun> {
  const calls = Math.ceil(operations / batch);
  const before = await scrapeServiceFigures(opsUrl);
  const start = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < calls) await call(next++);
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const opsPerSec = (calls * batch * 1000) / (performance.now() - start);
  const after = await scrapeServiceFigures(opsUrl);
  return { operations: calls * batch, opsPerSec, before, after, rssGrowth: after.rssBytes / before.rssBytes - 1 };
}
