/**
 * Loads the configuration: one YAML or JSON file (optional), then environment overrides, then checks
 * the whole against the schemas, so that a bad field is named before anything starts.
 *
 * Overrides: HSMB_<SECTION>__<FIELD>[__<FIELD>...]=value, e.g. HSMB_REST__PORT=9090,
 * HSMB_BACKEND__TYPE=pkcs11, HSMB_BACKEND__PKCS11__TOKEN_LABEL=payments. Segments in UPPER_SNAKE map to
 * camelCase fields. Values are typed by the schema (HSMB_REST__PORT=9090 is a number, a token label
 * of 1234 stays a string); a value that starts with '[' or '{' is read as JSON, for lists and objects.
 * Names without '__' (HSMB_PKCS11_PIN, HSMB_MASTER_KEY) are secrets read by the backends, not config.
 */
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { serviceConfigSchema, type ServiceConfig } from './schema.js';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

const ENV_PREFIX = 'HSMB_';

type Json = Record<string, unknown>;

export function readConfigFile(path: string): Json {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`config: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`config: ${path} is not valid YAML or JSON: ${(e as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`config: ${path} must hold an object`);
  return doc as Json;
}

const camel = (segment: string) => segment.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

function parseValue(raw: string): unknown {
  if (!/^\s*[[{]/.test(raw)) return raw;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/** Applies HSMB_A__B=value overrides onto a copy of the document. */
export function applyEnvOverrides(doc: Json, env: NodeJS.ProcessEnv): Json {
  const out: Json = structuredClone(doc);
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || !name.includes('__') || raw === undefined) continue;
    const path = name.slice(ENV_PREFIX.length).split('__').map(camel);
    let node = out;
    for (const segment of path.slice(0, -1)) {
      const next = node[segment];
      if (next === undefined) node[segment] = {};
      else if (typeof next !== 'object' || next === null || Array.isArray(next)) {
        throw new ConfigError(`config: ${name} overrides /${path.join('/')} but /${segment} is not an object`);
      }
      node = node[segment] as Json;
    }
    node[path.at(-1)!] = parseValue(raw);
  }
  return out;
}

// coerceTypes: environment values arrive as strings and take the type the schema gives the field.
const ajv = new Ajv({ allErrors: true, useDefaults: true, coerceTypes: true, strict: false });

function describe(errors: ErrorObject[], prefix: string): string {
  return errors
    .map((e) => {
      const at = `${prefix}${e.instancePath}` || '/';
      if (e.keyword === 'additionalProperties') return `${at}/${(e.params as { additionalProperty: string }).additionalProperty} is not a known field`;
      return `${at} ${e.message ?? 'is invalid'}`;
    })
    .join('; ');
}

/** Checks `value` against `schema`, filling defaults in place; throws ConfigError naming each bad field. */
export function validateSection<T>(schema: object, value: unknown, prefix: string): T {
  const validate = ajv.compile(schema);
  if (!validate(value)) throw new ConfigError(`config: ${describe(validate.errors ?? [], prefix)}`);
  return value as T;
}

/** The service part of the configuration, checked and with defaults filled in. */
export function loadServiceConfig(options: { file?: string; env: NodeJS.ProcessEnv }): ServiceConfig {
  const fromFile = options.file ? readConfigFile(options.file) : {};
  const config = validateSection<ServiceConfig>(serviceConfigSchema, applyEnvOverrides(fromFile, options.env), '');
  if (config.limits.maxDataBytes > config.limits.maxRequestBytes) {
    throw new ConfigError('config: /limits/maxDataBytes must be <= /limits/maxRequestBytes (a field cannot be larger than the request that carries it)');
  }
  return config;
}
