/**
 * Rendering docker/k8s/ with `kubectl kustomize` and checking each object against the Kubernetes API
 * schemas (kubernetes-models, and @kubernetes-models/prometheus-operator for the ServiceMonitor), and
 * for fields the API does not define.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import ts from 'typescript';
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

/** The TypeScript type of each kind, for the unknown-field check below: module and interface. */
const types: Record<string, [string, string]> = {
  'v1/ServiceAccount': ['kubernetes-models/v1', 'IServiceAccount'],
  'v1/ConfigMap': ['kubernetes-models/v1', 'IConfigMap'],
  'v1/Secret': ['kubernetes-models/v1', 'ISecret'],
  'v1/Service': ['kubernetes-models/v1', 'IService'],
  'apps/v1/Deployment': ['kubernetes-models/apps/v1', 'IDeployment'],
  'policy/v1/PodDisruptionBudget': ['kubernetes-models/policy/v1', 'IPodDisruptionBudget'],
  'networking.k8s.io/v1/NetworkPolicy': ['kubernetes-models/networking.k8s.io/v1', 'INetworkPolicy'],
  'autoscaling/v2/HorizontalPodAutoscaler': ['kubernetes-models/autoscaling/v2', 'IHorizontalPodAutoscaler'],
  'monitoring.coreos.com/v1/ServiceMonitor': ['@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1', 'IServiceMonitor'],
};

/**
 * The schemas accept fields they do not define, as the API server would not (strict field validation):
 * a misspelt `readinesProbe` would pass them. So each object is also type-checked, as an object literal,
 * against its kubernetes-models interface, whose excess-property check names every unknown field. One
 * message per problem, prefixed with the object's kind and name.
 */
export function unknownFields(objects: readonly K8sObject[]): string[] {
  const file = join(__dirname, '__rendered_manifests__.ts');
  const lines = objects.map((o, i) => {
    const type = types[`${o.apiVersion}/${o.kind}`];
    if (!type) throw new Error(`${o.kind} ${o.metadata.name}: no type for ${o.apiVersion} ${o.kind}`);
    return `export const o${i}: import(${JSON.stringify(type[0])}).${type[1]} = ${JSON.stringify(o)};`;
  });
  const options: ts.CompilerOptions = { strict: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, noEmit: true, skipLibCheck: true, types: [] };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists } = host;
  host.getSourceFile = (name, language, ...rest) => (name === file ? ts.createSourceFile(name, lines.join('\n'), language) : getSourceFile(name, language, ...rest));
  host.fileExists = (name) => name === file || fileExists(name);
  return ts.getPreEmitDiagnostics(ts.createProgram([file], options, host)).map((d) => {
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    const o = objects[line];
    return `${o ? `${o.kind} ${o.metadata.name}` : 'manifests'}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
  });
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
