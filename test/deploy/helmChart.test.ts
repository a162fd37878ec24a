/**
 * The Helm chart (docker/helm/hsm-bridge/). No helm binary can be had here: Debian 12 has none, and the
 * npm packages about Helm wrap a helm already installed. So the chart is not rendered in CI. Checked
 * instead: Chart.yaml and values.yaml parse; the YAML skeleton of every template parses (each template
 * uses actions, so none can be checked whole against the schemas); every `.Values` path a template reads
 * exists in values.yaml; template blocks are closed; the value fragments inserted verbatim
 * (securityContext, resources, probes) are valid against the API schemas; and the defaults are those of
 * the Kustomize base (docker/k8s/base), which CI renders and checks in full (./k8s.test.ts); and the
 * chart README's Luna, CloudHSM and KMIP examples, merged into the defaults as Helm merges values, give
 * configurations the service's loader accepts.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import type { IDeployment } from 'kubernetes-models/apps/v1';
import type { IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import type { IServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { EnvVar, PodSecurityContext, Probe, ResourceRequirements, SecurityContext, Volume, VolumeMount } from 'kubernetes-models/v1';
import { resolveBackend } from '../../src/backends.js';
import { loadServiceConfig } from '../../src/config/load.js';
import { parseObjects, repoRoot, validateObject } from './manifests.js';

const chartDir = join(repoRoot, 'docker', 'helm', 'hsm-bridge');
const baseDir = join(repoRoot, 'docker', 'k8s', 'base');
const read = (...path: string[]) => readFileSync(join(...path), 'utf8');
const chart = parseYaml(read(chartDir, 'Chart.yaml')) as Record<string, unknown>;
// values.yaml is free-form: each check below reads the part it needs.
const values = parseYaml(read(chartDir, 'values.yaml')) as Record<string, any>;
/** Helm's merge of user values into the chart's: maps merge, anything else replaces, null removes. */
function mergeValues(into: Record<string, unknown>, from: Record<string, unknown>): Record<string, unknown> {
  const out = { ...into };
  for (const [key, value] of Object.entries(from)) {
    const current = out[key];
    if (value === null) delete out[key];
    else if (isMap(value) && isMap(current)) out[key] = mergeValues(current, value);
    else out[key] = value;
  }
  return out;
}
const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const templates = readdirSync(join(chartDir, 'templates')).map((name) => ({ name, text: read(chartDir, 'templates', name) }));
const deploymentTemplate = templates.find((t) => t.name === 'deployment.yaml')!.text;

/** The template blocks open where `needle` is, outermost first: each its branches so far ("if a; else"). */
function guardsOf(text: string, needle: string): string[] {
  const at = text.indexOf(needle);
  expect(at, needle).toBeGreaterThanOrEqual(0);
  const open: string[] = [];
  for (const [, action] of text.slice(0, at).matchAll(/\{\{-?\s*((?:if|with|range|define|else|end)\b[^}]*?)\s*-?\}\}/g)) {
    if (action!.startsWith('end')) open.pop();
    else if (action!.startsWith('else')) open.push(`${open.pop()}; ${action}`);
    else open.push(action!);
  }
  return open;
}

describe('the Helm chart', () => {
  it('has a Chart.yaml for Helm 3 whose appVersion is the package version', () => {
    const pkg = JSON.parse(read(repoRoot, 'package.json')) as { version: string };
    expect(chart).toMatchObject({ apiVersion: 'v2', name: 'hsm-bridge', type: 'application', appVersion: pkg.version });
    expect(chart.version).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('parses the YAML skeleton of every template: actions on lines of their own dropped, inline ones replaced', () => {
    for (const { name, text } of templates.filter((t) => t.name.endsWith('.yaml'))) {
      const skeleton = text
        .split('\n')
        .filter((line) => !/^\s*\{\{[^}]*\}\}\s*$/.test(line))
        .join('\n')
        .replace(/\{\{[^}]*\}\}/g, 'x');
      const objects = parseObjects(skeleton, name);
      expect(objects.length, name).toBeGreaterThan(0);
      // A template without actions is rendered as it is: check it whole.
      if (!text.includes('{{')) for (const object of objects) validateObject(object);
    }
  });

  it('reads only values that values.yaml defines, and closes every template block', () => {
    for (const { name, text } of templates) {
      for (const [, path] of text.matchAll(/\.Values((?:\.[A-Za-z_]\w*)+)/g)) {
        let node: unknown = values;
        for (const key of path!.slice(1).split('.')) {
          expect(node !== null && typeof node === 'object' && key in node, `${name}: .Values${path}`).toBe(true);
          node = (node as Record<string, unknown>)[key];
        }
      }
      const opened = text.match(/\{\{-?\s*(if|with|range|define)\b/g)?.length ?? 0;
      const closed = text.match(/\{\{-?\s*end\b/g)?.length ?? 0;
      expect(closed, name).toBe(opened);
    }
  });

  it('makes the kinds the Kustomize manifests have, with the same API versions', () => {
    const kinds = (text: string) => [...text.matchAll(/^apiVersion: (\S+)\nkind: (\w+)$/gm)].map(([, v, k]) => `${v} ${k}`);
    const chartKinds = templates.flatMap((t) => kinds(t.text)).sort();
    const kustomizeKinds = [
      ...readdirSync(baseDir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').flatMap((f) => kinds(read(baseDir, f))),
      'v1 ConfigMap',
      'v1 ConfigMap',
      ...['horizontalpodautoscaler.yaml', 'servicemonitor.yaml'].flatMap((f) => kinds(read(repoRoot, 'docker', 'k8s', 'overlays', 'scaled', f))),
    ].sort();
    expect(chartKinds).toEqual(kustomizeKinds);
  });

  it('mounts the HSM PIN Secret only for a PKCS#11 backend: a KMIP pod needs none to start', () => {
    expect(deploymentTemplate).toContain('{{- $pkcs11 := eq .Values.config.backend.type "pkcs11" }}');
    expect(guardsOf(deploymentTemplate, '- { name: hsm-pin, mountPath: /run/secrets/hsm-pin')).toEqual(['if $pkcs11']);
    expect(guardsOf(deploymentTemplate, '- name: hsm-pin\n')).toEqual(['if $pkcs11']);
    expect(guardsOf(templates.find((t) => t.name === 'NOTES.txt')!.text, '{{ .Values.secrets.hsmPin }}')).toEqual(['if eq .Values.config.backend.type "pkcs11"']);
  });

  it('fails to render an audit file without the audit volume (the root filesystem is read-only)', () => {
    const fail = /\{\{- fail "([^"]*)" \}\}/.exec(deploymentTemplate)!;
    expect(fail[1]).toMatch(/config\.audit\.file .*audit\.enabled/);
    expect(guardsOf(deploymentTemplate, fail[0])).toEqual(['if .Values.audit.enabled; else if (.Values.config.audit | default dict).file']);
    // The defaults render: the trail on its volume.
    expect(values.audit.enabled).toBe(true);
    expect(values.config.audit.file).toBeTruthy();
  });

  it('inserts value fragments that are valid against the API schemas', () => {
    expect(() => new PodSecurityContext(values.podSecurityContext).validate()).not.toThrow();
    expect(() => new SecurityContext(values.securityContext).validate()).not.toThrow();
    for (const r of [values.resources, values.hsmClient.initContainer.resources, values.audit.stream.resources]) {
      expect(() => new ResourceRequirements(r).validate()).not.toThrow();
    }
    for (const p of [values.startupProbe, values.livenessProbe, values.readinessProbe]) expect(() => new Probe(p).validate()).not.toThrow();
    expect(() => new SecurityContext({ capabilities: { drop: 'ALL' } } as never).validate()).toThrow();
  });

  describe('defaults in step with the Kustomize base', () => {
    const deployment = parseYaml(read(baseDir, 'deployment.yaml')) as IDeployment;
    const pod = deployment.spec!.template.spec!;
    const container = (name: string) => [...pod.containers, ...(pod.initContainers ?? [])].find((c) => c.name === name)!;

    it('the configuration file and the policy', () => {
      expect(values.config).toEqual(parseYaml(read(baseDir, 'files', 'hsm-bridge.yaml')));
      expect(values.policy).toEqual(parseYaml(read(baseDir, 'files', 'policy.yaml')));
    });

    it('replicas, resources, security contexts and probes', () => {
      expect(values.replicaCount).toBe(deployment.spec!.replicas);
      expect(values.podSecurityContext).toEqual(pod.securityContext);
      for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) expect(values.securityContext, c.name).toEqual(c.securityContext);
      const service = container('hsm-bridge');
      expect(values.resources).toEqual(service.resources);
      expect(values.hsmClient.initContainer.resources).toEqual(container('hsm-client').resources);
      expect(values.audit.stream.resources).toEqual(container('audit-stream').resources);
      expect(values.startupProbe).toEqual(service.startupProbe);
      expect(values.livenessProbe).toEqual(service.livenessProbe);
      expect(values.readinessProbe).toEqual(service.readinessProbe);
    });

    it('the Secrets, the vendor client image and command', () => {
      const secretOf = (volume: string) => pod.volumes!.find((v) => v.name === volume)!.secret!.secretName;
      expect(values.secrets).toEqual({ tls: secretOf('tls'), clientCa: secretOf('client-ca'), hsmPin: secretOf('hsm-pin') });
      const kustomization = parseYaml(read(baseDir, 'kustomization.yaml')) as { images: { name: string; newName?: string; newTag: string }[] };
      const vendor = kustomization.images.find((i) => i.name === 'hsm-vendor-client')!;
      expect(values.hsmClient.initContainer.image).toBe(`${vendor.newName}:${vendor.newTag}`);
      expect(values.hsmClient.initContainer.command).toEqual(container('hsm-client').command);
    });

    it('the KMIP credentials copy (kmip overlay)', () => {
      const overlay = parseYaml(read(repoRoot, 'docker', 'k8s', 'overlays', 'kmip', 'deployment.yaml')) as IDeployment;
      const copier = overlay.spec!.template.spec!.initContainers!.find((c) => c.name === 'kmip-credentials')!;
      const command = /- name: kmip-credentials\n[^\n]*\n\s*command: (\[.*\])\n/.exec(deploymentTemplate)![1]!;
      expect(JSON.parse(command)).toEqual(copier.command);
      const readmeKmip = [...read(chartDir, 'README.md').matchAll(/```yaml\n([\s\S]*?)```/g)].map(([, text]) => parseYaml(text!) as Record<string, any>).find((e) => e.kmip)!;
      const overlayKmip = (parseYaml(read(repoRoot, 'docker', 'k8s', 'overlays', 'kmip', 'hsm-bridge.yaml')) as Record<string, any>).backend.kmip;
      for (const file of ['caFile', 'certFile', 'keyFile']) expect(readmeKmip.config.backend.kmip[file], file).toBe(overlayKmip[file]);
    });

    it('the NetworkPolicy, the autoscaler and the ServiceMonitor', () => {
      const policy = parseYaml(read(baseDir, 'networkpolicy.yaml')) as INetworkPolicy;
      expect(values.networkPolicy.apiNamespaces).toEqual(policy.spec!.ingress![0]!.from![0]!.namespaceSelector!.matchExpressions![0]!.values);
      expect(values.networkPolicy.monitoringNamespace).toBe(policy.spec!.ingress![1]!.from![0]!.namespaceSelector!.matchLabels!['kubernetes.io/metadata.name']);
      const overlay = (f: string) => parseYaml(read(repoRoot, 'docker', 'k8s', 'overlays', 'scaled', f));
      const hpa = overlay('horizontalpodautoscaler.yaml') as IHorizontalPodAutoscaler;
      expect(values.autoscaling).toMatchObject({ minReplicas: hpa.spec!.minReplicas, maxReplicas: hpa.spec!.maxReplicas, targetCPUUtilizationPercentage: hpa.spec!.metrics![0]!.resource!.target.averageUtilization });
      const monitor = overlay('servicemonitor.yaml') as IServiceMonitor;
      expect(values.serviceMonitor.interval).toBe(monitor.spec!.endpoints![0]!.interval);
    });
  });

  it('takes the Luna, CloudHSM and KMIP examples of its README to configurations the service accepts', async () => {
    const examples = [...read(chartDir, 'README.md').matchAll(/```yaml\n([\s\S]*?)```/g)].map(([, text]) => parseYaml(text!) as Record<string, any>);
    expect(examples.map((e) => (e.config?.backend?.pkcs11?.library ?? e.config?.backend?.type) as string)).toEqual([
      '/opt/safenet/lunaclient/lib/libCryptoki2_64.so',
      '/opt/cloudhsm/lib/libcloudhsm_pkcs11.so',
      'kmip',
    ]);
    const dir = mkdtempSync(join(tmpdir(), 'hsmb-chart-'));
    try {
      for (const example of examples) {
        const merged = mergeValues(values, example) as Record<string, any>;
        if (merged.hsmClient.initContainer.enabled !== false) expect(merged.config.backend.pkcs11.library.startsWith(`${merged.hsmClient.mountPath}/`)).toBe(true);
        writeFileSync(join(dir, 'hsm-bridge.yaml'), JSON.stringify(merged.config));
        await resolveBackend(loadServiceConfig({ file: join(dir, 'hsm-bridge.yaml'), env: {} }));
        for (const v of merged.hsmClient.extraVolumes) expect(() => new Volume(v).validate()).not.toThrow();
        for (const m of merged.hsmClient.extraVolumeMounts) expect(() => new VolumeMount(m).validate()).not.toThrow();
        for (const e of merged.hsmClient.env) expect(() => new EnvVar(e).validate()).not.toThrow();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
