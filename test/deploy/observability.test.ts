/**
 * The Grafana dashboard (docker/grafana/hsm-bridge.json) and the Prometheus alert rules
 * (docker/prometheus/alerts.yaml) query only series the service really exports: the service runs as a
 * process of its own on two PKCS#11 members (one SoftHSM token, so the pool and member gauges exist), a few
 * calls make the operation series, and every metric name in every dashboard query, variable query and
 * alert expression must be in its /metrics scrape. promtool checks the rules' syntax and behaviour (.ci/run).
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { startServiceProcess, type ServiceProcess } from '../helpers/serviceProcess.js';
import { createSoftHsmToken, SOFTHSM_LIBRARY, type SoftHsmToken } from '../helpers/softhsm.js';
import { parseExposition, valueOf, type Sample } from '../metrics/exposition.js';

const root = new URL('../../', import.meta.url);
const dashboard = JSON.parse(readFileSync(new URL('docker/grafana/hsm-bridge.json', root), 'utf8')) as unknown;
const rules = parseYaml(readFileSync(new URL('docker/prometheus/alerts.yaml', root), 'utf8')) as { groups: { rules: { alert?: string; expr: string }[] }[] };

/** Words of PromQL that are not metric names where they stand bare. */
const KEYWORDS = new Set(['and', 'or', 'unless', 'offset', 'bool', 'inf', 'nan']);

/**
 * The metric names a PromQL expression selects: identifiers that are not functions, aggregations,
 * keywords, label names (in matchers and in by/without/on/ignoring/group_* lists) or parts of numbers and
 * durations. Grafana's `label_values(metric, label)` variable query counts as its metric.
 */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/label_values\(\s*([a-zA-Z_:][\w:]*)[^)]*\)/g, '$1')
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = [...bare.matchAll(/(?<![\w.:$])([a-zA-Z_:][\w:]*)\s*(\()?/g)].filter((m) => !m[2] && !KEYWORDS.has(m[1]!.toLowerCase())).map((m) => m[1]!);
  return [...new Set(names)];
}

/** Every query in the dashboard: the panels' targets (rows included) and the query variables. */
function dashboardQueries(node: unknown, found: string[] = []): string[] {
  if (Array.isArray(node)) for (const n of node) dashboardQueries(n, found);
  else if (node && typeof node === 'object') {
    const o = node as Record<string, unknown>;
    if (typeof o.expr === 'string') found.push(o.expr);
    if (o.type === 'query' && o.query && typeof o.query === 'object') found.push((o.query as { query: string }).query);
    for (const v of Object.values(o)) if (v && typeof v === 'object') dashboardQueries(v, found);
  }
  return found;
}

/** The names a query may use: every sample's, and every declared family's (a counter with no labelled series yet still has its # TYPE). */
function exportedNames(text: string, samples: readonly Sample[]): Set<string> {
  const names = new Set(samples.map((s) => s.name));
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
    else if (type === 'summary') for (const suffix of ['', '_sum', '_count']) names.add(name + suffix);
    else names.add(name!);
  }
  return names;
}

describe('the PromQL metric-name reader', () => {
  it('keeps metric names and drops functions, aggregations, labels, numbers, durations and variables', () => {
    expect(metricNames('histogram_quantile(0.99, sum by (le, operation) (rate(a_bucket{code!="OK", x=~"$instance"}[$__rate_interval]))) > 1e3 and on (instance) b offset 5m')).toEqual(['a_bucket', 'b']);
    expect(metricNames('label_values(hsmb_backend_up, instance)')).toEqual(['hsmb_backend_up']);
    expect(metricNames('changes(c[15m]) > 4 unless d')).toEqual(['c', 'd']);
  });
});

describe('the dashboard model', () => {
  it('chooses its Prometheus data source by a variable, and every panel and query uses it', () => {
    const model = dashboard as { schemaVersion: number; templating: { list: { name: string; type: string; query: unknown }[] }; panels: { type: string; datasource?: unknown; targets?: { datasource: unknown }[] }[] };
    expect(model.schemaVersion).toBeGreaterThanOrEqual(39);
    expect(model.templating.list).toContainEqual(expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }));
    const variable = { type: 'prometheus', uid: '${datasource}' };
    for (const panel of model.panels.filter((p) => p.type !== 'row')) {
      expect(panel.datasource).toEqual(variable);
      for (const target of panel.targets ?? []) expect(target.datasource).toEqual(variable);
    }
  });
});

describe('dashboard and alert rules against a scrape of the running service', () => {
  let token: SoftHsmToken;
  let service: ServiceProcess;
  let text: string;
  let samples: Sample[];
  let exported: Set<string>;

  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${service.restUrl}${path}`, { method, headers: { 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
    return { status: response.status, body: (await response.json()) as unknown };
  };

  beforeAll(async () => {
    token = await createSoftHsmToken();
    const member = (name: string) => ({ name, library: SOFTHSM_LIBRARY, tokenLabel: token.tokenLabel, pinEnv: token.pinEnv, sessionPoolSize: 2 });
    service = await startServiceProcess({
      config: {
        rest: { host: '127.0.0.1', port: 0 },
        grpc: { enabled: false },
        ops: { host: '127.0.0.1', port: 0 },
        backend: { type: 'pkcs11', pkcs11: { members: [member('a'), member('b')] } },
      },
      hardDeadlineMs: 120_000,
    });
    expect((await call('POST', '/v1/keys', { name: 'dashboard-signer', type: 'EC_P256' })).status).toBe(201);
    expect((await call('POST', '/v1/keys/dashboard-signer/sign', { message: Buffer.from('m').toString('base64'), algorithm: 'ES256' })).status).toBe(200);
    expect((await call('POST', '/v1/keys/no-such-key/sign', { message: Buffer.from('m').toString('base64'), algorithm: 'ES256' })).status).toBe(404);
    const response = await fetch(`${service.opsUrl!}/metrics`);
    expect(response.status).toBe(200);
    text = await response.text();
    samples = parseExposition(text);
    exported = exportedNames(text, samples);
  });
  afterAll(async () => {
    await service?.stop();
    await token?.cleanup();
  });

  it('has the series the dashboard groups by: operations by code, backend and members up, the pool', () => {
    expect(valueOf(samples, 'hsmb_operation_duration_seconds_count', { operation: 'keys.sign', transport: 'rest', code: 'OK' })).toBe(1);
    expect(valueOf(samples, 'hsmb_operation_duration_seconds_count', { operation: 'keys.sign', transport: 'rest', code: 'KEY_NOT_FOUND' })).toBe(1);
    expect(valueOf(samples, 'hsmb_backend_up', { backend: 'pkcs11' })).toBe(1);
    expect(valueOf(samples, 'hsmb_backend_member_up', { backend: 'pkcs11', member: 'a' })).toBe(1);
    expect(valueOf(samples, 'hsmb_backend_member_up', { backend: 'pkcs11', member: 'b' })).toBe(1);
    expect(valueOf(samples, 'hsmb_backend_pool_size', { backend: 'pkcs11' })).toBeGreaterThan(0);
    expect(valueOf(samples, 'hsmb_backend_pool_waiting', { backend: 'pkcs11' })).toBe(0);
  });

  it('the dashboard queries only metrics the service exports', () => {
    const queries = dashboardQueries(dashboard);
    expect(queries.length).toBeGreaterThan(20);
    for (const query of queries) {
      const names = metricNames(query);
      expect(names.length, query).toBeGreaterThan(0);
      expect(names.filter((n) => !exported.has(n)), query).toEqual([]);
    }
  });

  it('every alert rule queries only metrics the service exports', () => {
    const alerts = rules.groups.flatMap((g) => g.rules);
    expect(alerts.map((r) => r.alert)).toEqual(expect.arrayContaining(['HsmBridgeBackendDown', 'HsmBridgeReadinessFlapping', 'HsmBridgeLatencyHigh', 'HsmBridgeAuditSinkFailing', 'HsmBridgeAuthenticationFailuresSpike', 'HsmBridgePinFailureRateLimiting']));
    for (const { alert, expr } of alerts) {
      const names = metricNames(expr);
      expect(names.length, alert).toBeGreaterThan(0);
      expect(names.filter((n) => !exported.has(n)), `${alert}: ${expr}`).toEqual([]);
    }
  });
});
