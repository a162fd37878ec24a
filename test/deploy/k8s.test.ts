/**
 * The Kubernetes manifests (docker/k8s/), rendered as an operator would with `kubectl kustomize`: every
 * object valid against the Kubernetes API schemas, the pod hardened, the configuration accepted by the
 * service's own loader, files where the configuration says they are, no secret inlined, probes on what
 * the ops listener serves. CI installs kubectl (scripts/ensure-kubectl.sh), so there it fails without it.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IDeployment } from 'kubernetes-models/apps/v1';
import type { IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1';
import type { IConfigMap, IContainer, IPodSpec, IService, IServiceAccount } from 'kubernetes-models/v1';
import type { IServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { permissionOf } from '../../src/api/declaration.js';
import { operations } from '../../src/api/operations/index.js';
import { resolveBackend } from '../../src/backends.js';
import { loadServiceConfig } from '../../src/config/load.js';
import type { ServiceConfig } from '../../src/config/schema.js';
import { METRICS_PATH, startOpsServer } from '../../src/ops/opsServer.js';
import { Policy } from '../../src/policy/policy.js';
import { kubectlAvailable, kustomize, only, portNumber, repoRoot, sourceOf, unknownFields, validateObject, type K8sObject } from './manifests.js';

const missing = !kubectlAvailable();
const skip = missing && !process.env.CI;

describe.skipIf(skip)(`docker/k8s rendered with kubectl kustomize${skip ? ' (SKIPPED: no kubectl; run bash scripts/ensure-kubectl.sh)' : ''}`, () => {
  let base: K8sObject[];
  let scaled: K8sObject[];
  let kmip: K8sObject[];
  let deployment: IDeployment;
  let pod: IPodSpec;
  let service: IContainer;
  let config: ServiceConfig;
  let env: Record<string, string>;
  const dir = mkdtempSync(join(tmpdir(), 'hsmb-k8s-'));

  /** A rendering's pod, its service container, and the configuration the service would load there. */
  function deployed(objects: readonly K8sObject[], name: string) {
    const deployment = only<IDeployment>(objects, 'Deployment');
    const pod = deployment.spec!.template.spec!;
    const service = pod.containers.find((c) => c.name === 'hsm-bridge')!;
    // The container's environment as Kubernetes expands it, with a pod name for $(POD_NAME).
    const env: Record<string, string> = { POD_NAME: 'hsm-bridge-7d9f-abcde' };
    for (const e of service.env ?? []) if (e.value !== undefined) env[e.name] = e.value.replace(/\$\((\w+)\)/g, (_, n: string) => env[n] ?? '');
    const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('hsm-bridge-config')) as IConfigMap;
    writeFileSync(join(dir, `${name}.yaml`), configMap.data!['hsm-bridge.yaml']!);
    return { deployment, pod, service, env, config: loadServiceConfig({ file: join(dir, `${name}.yaml`), env }) };
  }

  beforeAll(async () => {
    if (missing) throw new Error('kubectl is not installed: CI installs it with bash scripts/ensure-kubectl.sh');
    base = kustomize('docker/k8s/base');
    scaled = kustomize('docker/k8s/overlays/scaled');
    kmip = kustomize('docker/k8s/overlays/kmip');
    ({ deployment, pod, service, env, config } = deployed(base, 'base'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('renders the base and the overlays, every object valid against the Kubernetes API schemas', () => {
    expect(base.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'ConfigMap', 'Deployment', 'NetworkPolicy', 'PodDisruptionBudget', 'Service', 'ServiceAccount']);
    expect(scaled.map((o) => o.kind).sort()).toEqual([...base.map((o) => o.kind), 'HorizontalPodAutoscaler', 'ServiceMonitor'].sort());
    expect(kmip.map((o) => o.kind).sort()).toEqual(base.map((o) => o.kind).sort());
    for (const object of [...base, ...scaled, ...kmip]) {
      expect(() => validateObject(object)).not.toThrow();
      expect(object.metadata.namespace).toBe('hsm-bridge');
      expect(object.metadata.labels?.['app.kubernetes.io/name']).toBe('hsm-bridge');
    }
  });

  it('names every image with a tag or digest, the service image the same everywhere', () => {
    for (const objects of [base, scaled, kmip]) {
      const spec = only<IDeployment>(objects, 'Deployment').spec!.template.spec!;
      const images = [...spec.containers, ...(spec.initContainers ?? [])].map((c) => c.image!);
      // Never an implicit :latest.
      for (const image of images) expect(image).toMatch(/^[^:@\s]+(:[\w.-]+|@sha256:[0-9a-f]{64}|:[\w.-]+@sha256:[0-9a-f]{64})$/);
      expect(new Set(images.filter((i) => /^([^/]*\/)*hsm-bridge[:@]/.test(i))).size).toBe(1);
    }
  });

  it('has no field the API does not define', () => {
    expect(unknownFields([...base, ...scaled, ...kmip])).toEqual([]);
  });

  it('fails on a broken manifest: the check can fail', () => {
    const broken = structuredClone(deployment) as unknown as K8sObject & IDeployment;
    broken.spec!.template.spec!.containers[0]!.ports![0]!.containerPort = 'https' as unknown as number;
    expect(() => validateObject(broken)).toThrow(/Deployment hsm-bridge: .*containerPort must be integer/);
    const noSelector = structuredClone(deployment) as unknown as K8sObject & IDeployment;
    delete (noSelector.spec as Partial<typeof noSelector.spec>)!.selector;
    expect(() => validateObject(noSelector)).toThrow(/selector/);
    expect(() => validateObject({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' } })).toThrow(/no schema for v1 Pod/);
    const misspelt = structuredClone(deployment) as unknown as K8sObject & IDeployment;
    const container = misspelt.spec!.template.spec!.containers[0]! as unknown as Record<string, unknown>;
    container.readinesProbe = container.readinessProbe;
    delete container.readinessProbe;
    expect(() => validateObject(misspelt)).not.toThrow(); // what the schemas let through
    expect(unknownFields([misspelt])).toEqual([expect.stringMatching(/^Deployment hsm-bridge: .*'"readinesProbe"' does not exist in type 'IContainer'/)]);
  });

  it('runs 2 replicas with resources, spread over nodes, under a PodDisruptionBudget', () => {
    expect(deployment.spec!.replicas).toBe(2);
    expect(deployment.spec!.strategy?.rollingUpdate?.maxUnavailable).toBe(0);
    for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
      expect(c.resources?.requests?.cpu, c.name).toBeDefined();
      expect(c.resources?.limits?.memory, c.name).toBeDefined();
    }
    const labels = pod.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution?.[0]?.podAffinityTerm.labelSelector?.matchLabels;
    expect(labels).toEqual(deployment.spec!.selector.matchLabels);
    const pdb = only<IPodDisruptionBudget>(base, 'PodDisruptionBudget');
    expect(pdb.spec!.selector!.matchLabels).toEqual(deployment.spec!.selector.matchLabels);
    expect(pdb.spec!.minAvailable).toBe(1);
  });

  it('hardens every container: non-root numeric user, read-only root, no capabilities, RuntimeDefault seccomp, no escalation', () => {
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.securityContext!.runAsUser).toBeGreaterThan(0);
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(only<IServiceAccount>(base, 'ServiceAccount').automountServiceAccountToken).toBe(false);
    expect(pod.hostNetwork ?? false).toBe(false);
    // The user the released image runs as (its runtime stage's USER).
    const runtime = /^FROM \S+ AS runtime$([\s\S]*?)^FROM /m.exec(readFileSync(join(repoRoot, 'docker', 'Dockerfile'), 'utf8'))![1]!;
    const user = [...runtime.matchAll(/^USER (\S+)$/gm)].at(-1)![1];
    expect(user).toBe(`${pod.securityContext!.runAsUser}:${pod.securityContext!.runAsGroup}`);
    const pods = [base, kmip].map((objects) => only<IDeployment>(objects, 'Deployment').spec!.template.spec!);
    for (const c of pods.flatMap((p) => [...p.containers, ...(p.initContainers ?? [])])) {
      const s = c.securityContext!;
      expect(s, c.name).toMatchObject({ runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, seccompProfile: { type: 'RuntimeDefault' } });
      expect(Number.isInteger(s.runAsUser) && s.runAsUser! > 0, c.name).toBe(true);
      expect(s.capabilities?.drop, c.name).toEqual(['ALL']);
      expect(s.capabilities?.add, c.name).toBeUndefined();
      expect(s.privileged ?? false, c.name).toBe(false);
    }
  });

  it('configures the service with a file its own loader accepts, and a policy it accepts', async () => {
    expect(service.args).toEqual(['--config', '/etc/hsm-bridge/hsm-bridge.yaml']);
    expect(sourceOf(pod, service, '/etc/hsm-bridge/hsm-bridge.yaml')).toMatchObject({ volume: { configMap: { name: expect.stringMatching(/^hsm-bridge-config-/) } }, key: 'hsm-bridge.yaml' });
    await resolveBackend(config); // the pkcs11 section against the adapter's own schema
    expect(config.backend.type).toBe('pkcs11');
    const policyFrom = sourceOf(pod, service, config.access.policyFile!)!;
    const policyMap = base.find((o) => o.metadata.name === policyFrom.volume.configMap?.name) as IConfigMap;
    const names = [...new Set(operations.map(permissionOf))];
    expect(() => Policy.parse(policyMap.data![policyFrom.key!]!, names)).not.toThrow();
  });

  it('mounts every file the configuration names from the right Secret or volume', () => {
    const secret = (path: string) => {
      const from = sourceOf(pod, service, path);
      return from?.volume.secret ? `${from.volume.secret.secretName}/${from.key}` : undefined;
    };
    for (const listener of [config.rest, config.grpc]) {
      expect(secret(listener.tls!.certFile)).toBe('hsm-bridge-tls/tls.crt');
      expect(secret(listener.tls!.keyFile)).toBe('hsm-bridge-tls/tls.key');
      expect(secret(listener.tls!.caFile!)).toBe('hsm-bridge-client-ca/ca.crt');
      expect(listener.tls!.requireClientCert).toBe(true);
    }
    const pkcs11 = config.backend.pkcs11 as { library: string; pinFile?: string; pinEnv?: string };
    expect(pkcs11.pinEnv).toBeUndefined();
    expect(secret(pkcs11.pinFile!)).toBe('hsm-bridge-hsm-pin/pin');
    // The vendor library: copied by the init container into the volume the service reads it from.
    const library = sourceOf(pod, service, pkcs11.library)!;
    expect(library.volume.emptyDir).toBeDefined();
    const init = pod.initContainers!.find((c) => c.volumeMounts?.some((m) => m.name === library.volume.name));
    expect(init?.name).toBe('hsm-client');
    // The audit trail: one file per pod on the audit volume, streamed to stdout by a second container.
    expect(config.audit!.file).toBe(`/var/lib/hsm-bridge/audit/${env.POD_NAME}.jsonl`);
    const audit = sourceOf(pod, service, config.audit!.file)!;
    expect(audit.volume.name).toBe('audit');
    const stream = pod.containers.find((c) => c.name === 'audit-stream')!;
    expect(sourceOf(pod, stream, config.audit!.file)?.volume.name).toBe('audit');
    expect(stream.command?.at(-1)).toBe('/var/lib/hsm-bridge/audit/$(POD_NAME).jsonl');
  });

  it('mounts only the Secrets its configuration reads (a missing Secret keeps the pod from starting)', () => {
    for (const [name, objects] of [['base', base], ['scaled', scaled], ['kmip', kmip]] as const) {
      const { pod, service, config } = deployed(objects, name);
      const paths: string[] = [];
      const walk = (v: unknown): void => {
        if (typeof v === 'string' && v.startsWith('/')) paths.push(v);
        else if (v !== null && typeof v === 'object') Object.values(v).forEach(walk);
      };
      walk(config);
      const read = new Set(paths.map((p) => sourceOf(pod, service, p)?.volume.name).filter((v) => v !== undefined));
      // An init container that fills a volume the service reads (the KMIP credentials copy) reads its own.
      for (const init of pod.initContainers ?? []) {
        const mounts = (init.volumeMounts ?? []).map((m) => m.name);
        if (mounts.some((m) => read.has(m))) mounts.forEach((m) => read.add(m));
      }
      const secrets = pod.volumes!.filter((v) => v.secret).map((v) => v.name);
      expect(secrets.filter((v) => !read.has(v)), name).toEqual([]);
      expect(secrets.includes('hsm-pin'), name).toBe(config.backend.type === 'pkcs11');
    }
  });

  it('inlines no secret: no Secret object, no secret in the environment, the PIN a file only', () => {
    for (const object of [...base, ...scaled, ...kmip]) expect(object.kind).not.toBe('Secret');
    for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
      expect(c.envFrom, c.name).toBeUndefined();
      for (const e of c.env ?? []) {
        expect(e.valueFrom?.secretKeyRef, `${c.name} ${e.name}`).toBeUndefined();
        expect(e.name, c.name).not.toMatch(/PIN|PASSWORD|SECRET|TOKEN|MASTER_KEY/);
      }
    }
    const configText = (base.find((o) => o.metadata.name.startsWith('hsm-bridge-config')) as IConfigMap).data!['hsm-bridge.yaml']!;
    expect(configText).not.toMatch(/^\s*pin:|BEGIN [A-Z ]*PRIVATE KEY/m);
  });

  it('probes the ops listener on the paths it serves', async () => {
    expect(config.ops).toMatchObject({ enabled: true, host: '0.0.0.0' });
    const ops = await startOpsServer({
      host: '127.0.0.1',
      port: 0,
      metrics: { exposition: async () => ({ contentType: 'text/plain', text: '' }) },
      health: async () => ({ ready: true }),
      logger: pino({ level: 'silent' }),
    });
    try {
      for (const probe of [service.startupProbe, service.livenessProbe, service.readinessProbe]) {
        expect(portNumber(service, probe?.httpGet?.port)).toBe(config.ops.port);
        expect((await fetch(`${ops.url}${probe!.httpGet!.path}`)).status).toBe(200);
      }
    } finally {
      await ops.close();
    }
    expect(service.livenessProbe!.httpGet!.path).toBe('/health/live');
    expect(service.readinessProbe!.httpGet!.path).toBe('/health/ready');
  });

  it('exposes the listeners on the configured ports through the Service', () => {
    const svc = only<IService>(base, 'Service');
    expect(svc.spec!.selector).toEqual(deployment.spec!.template.metadata!.labels);
    const target = (name: string) => portNumber(service, svc.spec!.ports!.find((p) => p.name === name)?.targetPort);
    expect(target('https')).toBe(config.rest.port);
    expect(target('grpc')).toBe(config.grpc.port);
    expect(target('ops')).toBe(config.ops.port);
  });

  it('admits the API from the named namespaces only, and the ops listener from monitoring only', () => {
    const policy = only<INetworkPolicy>(base, 'NetworkPolicy');
    expect(policy.spec!.podSelector?.matchLabels).toEqual(deployment.spec!.selector.matchLabels);
    expect(policy.spec!.policyTypes).toContain('Ingress');
    const rules = policy.spec!.ingress!;
    const ports = (i: number) => rules[i]!.ports!.map((p) => portNumber(service, p.port)).sort();
    const namespaces = (i: number) =>
      rules[i]!.from!.map((peer) => {
        expect(peer.podSelector).toBeUndefined();
        expect(peer.ipBlock).toBeUndefined();
        const sel = peer.namespaceSelector!;
        return sel.matchLabels?.['kubernetes.io/metadata.name'] ?? sel.matchExpressions?.find((e) => e.key === 'kubernetes.io/metadata.name' && e.operator === 'In')?.values;
      });
    expect(rules).toHaveLength(2);
    expect(ports(0)).toEqual([config.rest.port, config.grpc.port].sort());
    expect(namespaces(0)).toEqual([['mojaloop']]);
    expect(ports(1)).toEqual([config.ops.port]);
    expect(namespaces(1)).toEqual(['monitoring']);
  });

  it('autoscales from 2 replicas and is scraped on the ops port (scaled overlay)', () => {
    const hpa = only<IHorizontalPodAutoscaler>(scaled, 'HorizontalPodAutoscaler');
    expect(hpa.spec!.scaleTargetRef).toMatchObject({ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata!.name });
    expect(hpa.spec!.minReplicas).toBe(2);
    const monitor = only<IServiceMonitor>(scaled, 'ServiceMonitor');
    const svc = only<IService>(scaled, 'Service');
    expect(monitor.spec.selector.matchLabels).toEqual(svc.metadata!.labels);
    expect(monitor.spec.endpoints).toEqual([expect.objectContaining({ port: 'ops', path: METRICS_PATH })]);
  });

  it('configures KMIP with the base configuration but for the backend (kmip overlay)', () => {
    const file = (...path: string[]) => parseYaml(readFileSync(join(repoRoot, 'docker', 'k8s', ...path), 'utf8')) as Record<string, unknown>;
    const { backend: baseBackend, ...baseRest } = file('base', 'files', 'hsm-bridge.yaml');
    const { backend: kmipBackend, ...kmipRest } = file('overlays', 'kmip', 'hsm-bridge.yaml');
    expect(kmipRest).toEqual(baseRest);
    expect(kmipBackend).not.toEqual(baseBackend);
  });

  it('runs on KMIP with the client credentials copied from their Secret, the key at 0600 (kmip overlay)', async () => {
    const { pod, service, config } = deployed(kmip, 'kmip');
    await resolveBackend(config);
    expect(config.backend.type).toBe('kmip');
    expect(pod.initContainers!.map((c) => c.name)).toEqual(['kmip-credentials']);
    expect(service.volumeMounts!.some((m) => m.mountPath === '/opt/hsm')).toBe(false);
    expect(pod.volumes!.some((v) => v.name === 'hsm-client')).toBe(false);
    const copier = pod.initContainers![0]!;
    const secretDir = copier.volumeMounts!.find((m) => pod.volumes!.find((v) => v.name === m.name)?.secret?.secretName === 'hsm-bridge-kmip')!.mountPath;
    const { caFile, certFile, keyFile } = config.backend.kmip as { caFile: string; certFile: string; keyFile: string };
    for (const [file, mode] of [[caFile, '0644'], [certFile, '0644'], [keyFile, '0600']] as const) {
      const from = sourceOf(pod, service, file)!;
      expect(from.volume.emptyDir?.medium, file).toBe('Memory');
      const into = copier.volumeMounts!.find((m) => m.name === from.volume.name)!.mountPath;
      const name = file.split('/').at(-1)!;
      // `install -m MODE <secret dir>/<name> ... <volume>/`: the copy, with that mode.
      expect(copier.command!.join(' '), file).toMatch(new RegExp(`install -m ${mode} [^&]*${secretDir}/${name}[^&]* ${into}/`));
    }
  });
});
