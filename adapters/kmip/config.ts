/**
 * The KMIP backend's configuration section. Certificates and the client key are read from files at start;
 * the key file must be readable by the service only (it authenticates the service to the key manager),
 * so a key file that group or others can read is refused rather than silently used.
 */
import { readFile, stat } from 'node:fs/promises';
import { HsmBridgeError } from '../../src/errors.js';
import type { KmipClientOptions } from './client.js';

export interface KmipConfig {
  /** The KMIP server's host name or IP address. */
  readonly host: string;
  /** Default 5696 (the IANA KMIP port). */
  readonly port?: number;
  /** The name the server certificate must carry; the host when absent. */
  readonly serverName?: string;
  /** PEM file of the CA(s) that issued the server certificate. */
  readonly caFile: string;
  /** PEM file of the client certificate (extendedKeyUsage clientAuth) presented to the server. */
  readonly certFile: string;
  /** PEM file of the client certificate's private key; mode 0600 or stricter. */
  readonly keyFile: string;
  /** Default 5000. */
  readonly connectTimeoutMs?: number;
  /** Default 10000. */
  readonly requestTimeoutMs?: number;
  /** TLS connections to the server: the number of KMIP requests in flight at once. Default 4. */
  readonly poolSize?: number;
  /** Larger responses are refused before they are read. Default 1 MiB. */
  readonly maxResponseBytes?: number;
}

export const DEFAULT_KMIP_PORT = 5696;
const DEFAULTS = { connectTimeoutMs: 5000, requestTimeoutMs: 10_000, poolSize: 4, maxResponseBytes: 1024 * 1024 } as const;

export const kmipConfigSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['host', 'caFile', 'certFile', 'keyFile'],
  properties: {
    host: { type: 'string', minLength: 1, maxLength: 255 },
    port: { type: 'integer', minimum: 1, maximum: 65535, default: DEFAULT_KMIP_PORT },
    serverName: { type: 'string', minLength: 1, maxLength: 255 },
    caFile: { type: 'string', minLength: 1 },
    certFile: { type: 'string', minLength: 1 },
    keyFile: { type: 'string', minLength: 1 },
    connectTimeoutMs: { type: 'integer', minimum: 1, maximum: 600_000, default: DEFAULTS.connectTimeoutMs },
    requestTimeoutMs: { type: 'integer', minimum: 1, maximum: 600_000, default: DEFAULTS.requestTimeoutMs },
    poolSize: { type: 'integer', minimum: 1, maximum: 256, default: DEFAULTS.poolSize },
    maxResponseBytes: { type: 'integer', minimum: 4096, maximum: 64 * 1024 * 1024, default: DEFAULTS.maxResponseBytes },
  },
} as const;

const bad = (m: string) => new HsmBridgeError('INVALID_ARGUMENT', `kmip config: ${m}`);

/** Checks what the schema checks too (create() may be called directly) and reads the PEM files. */
export async function resolveConfig(config: KmipConfig): Promise<KmipClientOptions> {
  const text = (v: unknown, field: string) => {
    if (typeof v !== 'string' || v === '') throw bad(`${field} is required`);
    return v;
  };
  const whole = (v: number | undefined, field: string, min: number, max: number, fallback: number) => {
    if (v === undefined) return fallback;
    if (!Number.isInteger(v) || v < min || v > max) throw bad(`${field} must be a whole number from ${min} to ${max}`);
    return v;
  };
  const host = text(config.host, 'host');
  const keyFile = text(config.keyFile, 'keyFile');
  if (config.serverName !== undefined) text(config.serverName, 'serverName');
  const mode = await stat(keyFile).then((s) => s.mode, () => undefined);
  if (mode === undefined) throw bad(`cannot read keyFile ${keyFile}`);
  if ((mode & 0o077) !== 0) throw bad(`keyFile ${keyFile} is readable by others (mode ${(mode & 0o777).toString(8)}); make it 0600`);
  const read = (file: string, field: string) => readFile(file).catch((e: NodeJS.ErrnoException) => {
    throw bad(`cannot read ${field} ${file}: ${e.code ?? 'error'}`);
  });
  const [ca, cert, key] = await Promise.all([
    read(text(config.caFile, 'caFile'), 'caFile'),
    read(text(config.certFile, 'certFile'), 'certFile'),
    read(keyFile, 'keyFile'),
  ]);
  return {
    host,
    port: whole(config.port, 'port', 1, 65535, DEFAULT_KMIP_PORT),
    ...(config.serverName !== undefined ? { serverName: config.serverName } : {}),
    ca, cert, key,
    connectTimeoutMs: whole(config.connectTimeoutMs, 'connectTimeoutMs', 1, 600_000, DEFAULTS.connectTimeoutMs),
    requestTimeoutMs: whole(config.requestTimeoutMs, 'requestTimeoutMs', 1, 600_000, DEFAULTS.requestTimeoutMs),
    poolSize: whole(config.poolSize, 'poolSize', 1, 256, DEFAULTS.poolSize),
    maxResponseBytes: whole(config.maxResponseBytes, 'maxResponseBytes', 4096, 64 * 1024 * 1024, DEFAULTS.maxResponseBytes),
  };
}
