/**
 * Which backend to build, from configuration. Built-in adapters are imported lazily, so a service on the
 * software backend never loads the native PKCS#11 module. `type: module` loads an adapter of your own:
 * a module whose default export is a BackendFactory.
 */
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BackendContext, BackendFactory } from './backend/factory.js';
import type { Backend } from './backend/port.js';
import { ConfigError, validateSection } from './config/load.js';
import { moduleBackendSchema, type ServiceConfig } from './config/schema.js';

const builtin: Record<string, () => Promise<BackendFactory<never>>> = {
  software: async () => (await import('../adapters/software/index.js')).softwareBackendFactory as BackendFactory<never>,
  pkcs11: async () => (await import('../adapters/pkcs11/index.js')).pkcs11BackendFactory as BackendFactory<never>,
  kmip: async () => (await import('../adapters/kmip/index.js')).kmipBackendFactory as BackendFactory<never>,
};

function isFactory(value: unknown): value is BackendFactory<never> {
  const f = value as BackendFactory | undefined;
  return typeof f === 'object' && f !== null && typeof f.kind === 'string' && typeof f.create === 'function' && typeof f.configSchema === 'object';
}

async function loadModuleFactory(path: string): Promise<BackendFactory<never>> {
  const specifier = path.startsWith('.') || isAbsolute(path) ? pathToFileURL(resolve(path)).href : path;
  let mod: { default?: unknown };
  try {
    mod = (await import(specifier)) as { default?: unknown };
  } catch (e) {
    throw new ConfigError(`config: /backend/module/path: cannot load ${path}: ${(e as Error).message}`);
  }
  if (!isFactory(mod.default)) {
    throw new ConfigError(`config: /backend/module/path: ${path} has no default export that is a BackendFactory {kind, configSchema, create}`);
  }
  return mod.default;
}

/** Checks the chosen backend's section against its schema, before anything is created. */
export async function resolveBackend(config: ServiceConfig): Promise<{ factory: BackendFactory<never>; section: unknown }> {
  const type = config.backend.type;
  if (type === 'module') {
    const m = validateSection<{ path: string; config: unknown }>(moduleBackendSchema, config.backend.module ?? {}, '/backend/module');
    const factory = await loadModuleFactory(m.path);
    return { factory, section: validateSection(factory.configSchema, m.config, '/backend/module/config') };
  }
  const load = builtin[type];
  if (!load) throw new ConfigError(`config: /backend/type must be one of ${[...Object.keys(builtin), 'module'].join(', ')}`);
  const factory = await load();
  return { factory, section: validateSection(factory.configSchema, config.backend[type] ?? {}, `/backend/${type}`) };
}

export async function createBackend(config: ServiceConfig, context: BackendContext): Promise<Backend> {
  const { factory, section } = await resolveBackend(config);
  return factory.create(section as never, context);
}
