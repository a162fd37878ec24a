/** Scrapes the ops listener over HTTP and parses the Prometheus text exposition format (0.0.4). */
import { expect } from 'vitest';

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy;

export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    LABEL.lastIndex = 0;
    const body = m[2] ?? '';
    for (let l = LABEL.exec(body); l; l = LABEL.exec(body)) labels[l[1]!] = JSON.parse(`"${l[2]}"`) as string;
    expect(LABEL.lastIndex === 0 || LABEL.lastIndex === body.length, `labels of ${line}`).toBe(true);
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

export async function scrape(opsUrl: string): Promise<{ contentType: string | null; samples: Sample[] }> {
  const response = await fetch(`${opsUrl}/metrics`);
  expect(response.status).toBe(200);
  return { contentType: response.headers.get('content-type'), samples: parseExposition(await response.text()) };
}

/** The value of the one sample with this name and exactly these labels; undefined if there is none. */
export function valueOf(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort());
  const found = samples.filter((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want);
  expect(found.length, `${name}${want}`).toBeLessThanOrEqual(1);
  return found[0]?.value;
}
