/**
 * Rendering docker/k8s/ with `kubectl kustomize` and checking each object against the Kubernetes API
 * schemas (kubernetes-models, and @kubernetes-models/prometheus-operator for the ServiceMonitor).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ConfigMap, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import type { IContainer, IPodSpec, IVolume } from 'kubernetes-models/v1';

export const repoRoot = join(__dirname, '..', '..');

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

/** The kinds the manifests and the chart may hold: anything else has no schema here and is refused. */
const models: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

/** Throws, naming the object and the schema violations, unless `object` is valid for its kind. */
export function validateObject(object: K8sObject): void {
  const id = `${object.kind} ${object.metadata?.name}`;
  const Model = models[`${object.apiVersion}/${object.kind}`];
  if (!Model) throw new Error(`${id}: no schema for ${object.apiVersion} ${object.kind}`);
  try {
    new Model(object as never).validate();
  } catch (e) {
    throw new Error(`${id}: ${(e as Error).message}`);
  }
}

export function kubectlAvailable(): boolean {
  return spawnSync('kubectl', ['kustomize', '--help'], { stdio: 'ignore' }).status === 0;
}

/** Parses a multi-document YAML stream, refusing any document that does not parse. */
export function parseObjects(text: string, source: string): K8sObject[] {
  return parseAllDocuments(text)
    .filter((doc) => doc.contents !== null)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${source}: ${doc.errors[0]!.message}`);
      return doc.toJS() as K8sObject;
    });
}

/** `kubectl kustomize <dir>` (relative to the repository root), parsed. */
export function kustomize(dir: string): K8sObject[] {
  const text = execFileSync('kubectl', ['kustomize', join(repoRoot, dir)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return parseObjects(text, dir);
}

export function only<T>(objects: readonly K8sObject[], kind: string): T {
  const found = objects.filter((o) => o.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`);
  return found[0] as T;
}

/** Where a path inside `container` comes from: the volume mounted over it and, for a file, its key. */
export function sourceOf(spec: IPodSpec, container: IContainer, path: string): { volume: IVolume; key?: string } | undefined {
  const mount = (container.volumeMounts ?? [])
    .filter((m) => (m.subPath ? path === m.mountPath : path === m.mountPath || path.startsWith(`${m.mountPath}/`)))
    .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  if (!mount) return undefined;
  const volume = (spec.volumes ?? []).find((v) => v.name === mount.name);
  if (!volume) return undefined;
  const inside = mount.subPath ?? path.slice(mount.mountPath.length + 1);
  const items = volume.secret?.items ?? volume.configMap?.items;
  const key = items ? items.find((i) => i.path === inside)?.key : inside;
  return key === undefined || key === '' ? { volume } : { volume, key };
}

/** A container port's number, by name or number. */
export function portNumber(container: IContainer, port: number | string | undefined): number | undefined {
  if (typeof port === 'number') return port;
  return container.ports?.find((p) => p.name === port)?.containerPort;
}
