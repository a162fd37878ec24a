/**
 * The service's resident memory and event-loop delay across a long run of operations, read from its own
 * Prometheus series on the ops listener (prom-client default metrics, prefix hsmb_). Every scrape resets the
 * event-loop delay histogram (monitorEventLoopDelay): the run starts with one, then scrapes after each tenth
 * of it, so that the memory's course shows (a leak climbs to the end, a heap finding its size levels off)
 * and each figure of delay covers one tenth. The delay series count the sampling interval too
 * (EVENT_LOOP_SAMPLE_MS, what an idle loop reads); the figures here are the delay beyond it.
 */
import { EVENT_LOOP_SAMPLE_MS } from '../src/metrics/metrics.js';
import { CALL_TIMEOUT_MS } from './clients.js';

export interface ServiceFigures {
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
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
    heapUsedBytes: value('hsmb_nodejs_heap_size_used_bytes'),
    eventLoopP99Ms: beyondSampling(value('hsmb_nodejs_eventloop_lag_p99_seconds')),
    eventLoopMaxMs: beyondSampling(value('hsmb_nodejs_eventloop_lag_max_seconds')),
  };
}

const beyondSampling = (seconds: number) => Math.max(0, seconds * 1000 - EVENT_LOOP_SAMPLE_MS);

/**
 * How many calls of `operation` over `transport` the service has answered within each bound of its
 * duration histogram (hsmb_operation_duration_seconds, cumulative, by upper bound in ms): taken before
 * and after a run, the difference is the run's own latency inside the service, from request to answer.
 */
export async function scrapeOperationDurations(opsUrl: string, operation: string, transport: 'grpc' | 'rest'): Promise<Map<number, number>> {
  const response = await fetch(`${opsUrl}/metrics`, { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
  if (response.status !== 200) throw new Error(`GET ${opsUrl}/metrics: ${response.status}`);
  const counts = new Map<number, number>();
  for (const line of (await response.text()).split('\n')) {
    if (!line.startsWith('hsmb_operation_duration_seconds_bucket{') || !line.includes(`operation="${operation}"`) || !line.includes(`transport="${transport}"`)) continue;
    const bound = /le="([^"]+)"/.exec(line)![1]!;
    const ms = bound === '+Inf' ? Infinity : Number(bound) * 1000;
    counts.set(ms, (counts.get(ms) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return counts;
}

/** The smallest histogram bound under which a fraction `q` of the calls between two scrapes fall. */
export function durationBound(before: ReadonlyMap<number, number>, after: ReadonlyMap<number, number>, q: number): number {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  return bounds.find((b) => (after.get(b)! - (before.get(b) ?? 0)) >= q * total) ?? Infinity;
}

export interface LongRun {
  readonly operations: number;
  readonly opsPerSec: number;
  readonly before: ServiceFigures;
  /** After each tenth of the run. */
  readonly tenths: readonly ServiceFigures[];
  /** RSS after the last tenth / after the first - 1: from a heap already sized for the work (the scrape before still holds the warm-up's garbage). */
  readonly rssGrowth: number;
  /** The highest p99 and max of event-loop delay over the tenths. */
  readonly eventLoopP99Ms: number;
  readonly eventLoopMaxMs: number;
}

/**
 * Runs `operations` operations as calls of `batch` items (call(i) for i = 0, 1, ...), `inFlight` at a
 * time, between scrapes of the service's figures. The service should be warm: the first scrape is the
 * baseline.
 */
export async function measureLongRun(opsUrl: string, operations: number, batch: number, inFlight: number, call: (i: number) => Promise<unknown>): Promise<LongRun> {
  const calls = Math.ceil(operations / batch);
  const before = await scrapeServiceFigures(opsUrl);
  const tenths: ServiceFigures[] = [];
  const start = performance.now();
  let next = 0;
  for (let tenth = 1; tenth <= 10; tenth++) {
    const end = Math.round((calls * tenth) / 10);
    const worker = async () => {
      while (next < end) await call(next++);
    };
    await Promise.all(Array.from({ length: inFlight }, worker));
    tenths.push(await scrapeServiceFigures(opsUrl));
  }
  const opsPerSec = (calls * batch * 1000) / (performance.now() - start);
  return {
    operations: calls * batch,
    opsPerSec,
    before,
    tenths,
    rssGrowth: tenths.at(-1)!.rssBytes / tenths[0]!.rssBytes - 1,
    eventLoopP99Ms: Math.max(...tenths.map((t) => t.eventLoopP99Ms)),
    eventLoopMaxMs: Math.max(...tenths.map((t) => t.eventLoopMaxMs)),
  };
}
