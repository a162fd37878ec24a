/**
 * The service configuration: its JSON Schema (the single source of defaults and rules) and its type.
 * Each backend's own section is described by that backend's factory (BackendFactory.configSchema).
 */
import { fspiopConfigSchema, type FspiopConfig } from '../fspiop/config.js';
import { auditConfigSchema, type AuditConfig } from '../audit/config.js';
import { accessConfigSchema, type AccessConfig } from '../identity/config.js';
import { metricsConfigSchema, type MetricsConfig } from '../metrics/config.js';
import { maxPinFailuresPerMinuteSchema, type OpsConfig } from '../ops/config.js';
import { OTP_KEY_ENTRY_PATTERN } from '../payment/pin/otpKeys.js';

/** TLS for one listener; absent means plain TCP. Files are PEM and are read once, at start. */
export interface TlsConfig {
  /** The server certificate, optionally followed by its intermediates. */
  certFile: string;
  /** The server certificate's private key, unencrypted. */
  keyFile: string;
  /** The CA certificates that client certificates must chain to; required with requireClientCert. */
  caFile?: string;
  /** Mutual TLS: refuse, during the handshake, any client without a certificate from caFile's CAs. Default false. */
  requireClientCert: boolean;
}

export interface ListenConfig {
  enabled: boolean;
  host: string;
  port: number;
  tls?: TlsConfig;
}

export interface ServiceConfig {
  rest: ListenConfig;
  grpc: ListenConfig;
  limits: {
    /** Largest REST body or gRPC message, in bytes. */
    maxRequestBytes: number;
    /** Largest decoded message, plaintext, ciphertext or MAC input, in bytes. */
    maxDataBytes: number;
    maxRandomBytes: number;
    /** Most items in one batch request (sign/batch, ...). */
    maxBatchItems: number;
  };
  keys: {
    /** How long key metadata is cached in each replica; 0 turns the cache off. */
    metadataCacheTtlMs: number;
  };
  /** Key ceremonies: keys formed from components under dual control. */
  ceremonies: {
    /** How long a ceremony may take from its start; then it expires and its staged components are destroyed. */
    ttlMs: number;
  };
  /** Wrapped import (BYOK): the import wrapping key, made on first use under a reserved name. */
  keyImport: {
    wrappingKeyName: string;
    wrappingKeyType: 'RSA_3072' | 'RSA_4096';
  };
  log: { level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
  /** Who may call (mTLS certificates, bearer JWTs) and what they may do (the policy file). */
  access: AccessConfig;
  /** The tamper-evident audit trail; absent: no trail is written. */
  audit?: AuditConfig;
  /** The operations listener: /metrics and the health probes, never the API. */
  ops: OpsConfig;
  metrics: MetricsConfig;
  /** Mojaloop FSPIOP signatures: participant keys and validation rules; every field has a default. */
  fspiop: FspiopConfig;
  payment: {
    /**
     * The PIN keys and BDKs kept for OTP entry: the only ones whose blocks the OTP flow (/v1/pin/to-jwe)
     * may decipher into a JWE, and never a translation's outgoing key. `name`, or `name:KCV` to pin the
     * entry to one key value. Empty (the default) closes the flow.
     */
    otpIncomingKeys: string[];
    /** PIN blocks that do not decode, per caller and per key and minute; beyond that, 429 RATE_LIMITED for the rest of the minute. */
    maxPinFailuresPerMinute: number;
  };
  backend: {
    /** A built-in backend ('software', 'pkcs11', 'kmip') or 'module' for an adapter module of your own. */
    type: string;
    /** The section of the chosen backend; the others are ignored. */
    [section: string]: unknown;
  };
}

const tls = {
  type: 'object',
  additionalProperties: false,
  required: ['certFile', 'keyFile'],
  properties: {
    certFile: { type: 'string', minLength: 1 },
    keyFile: { type: 'string', minLength: 1 },
    caFile: { type: 'string', minLength: 1 },
    requireClientCert: { type: 'boolean', default: false },
  },
  // Client certificates are checked against caFile only: never against the system's public CAs.
  // 'type' first, so that an environment value "true" is coerced before it is compared.
  if: { properties: { requireClientCert: { type: 'boolean', const: true } }, required: ['requireClientCert'] },
  then: { required: ['caFile'] },
} as const;

/** A listener: on by default, on loopback by default. */
const endpoint = (port: number) => ({
  enabled: { type: 'boolean', default: true },
  host: { type: 'string', minLength: 1, default: '127.0.0.1' },
  port: { type: 'integer', minimum: 0, maximum: 65535, default: port },
});

const listen = (port: number) => ({
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: { ...endpoint(port), tls },
});

export const serviceConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    rest: listen(8080),
    grpc: listen(50051),
    limits: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxRequestBytes: { type: 'integer', minimum: 1024, maximum: 64 * 1024 * 1024, default: 1024 * 1024 },
        maxDataBytes: { type: 'integer', minimum: 1, maximum: 48 * 1024 * 1024, default: 512 * 1024 },
        maxRandomBytes: { type: 'integer', minimum: 1, maximum: 65536, default: 1024 },
        maxBatchItems: { type: 'integer', minimum: 1, maximum: 10_000, default: 256 },
      },
    },
    keys: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        metadataCacheTtlMs: { type: 'integer', minimum: 0, maximum: 3_600_000, default: 2000 },
      },
    },
    ceremonies: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        ttlMs: { type: 'integer', minimum: 1000, maximum: 7 * 24 * 3_600_000, default: 3_600_000 },
      },
    },
    keyImport: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        wrappingKeyName: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$', default: 'hsm-bridge-import' },
        wrappingKeyType: { enum: ['RSA_3072', 'RSA_4096'], default: 'RSA_3072' },
      },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
      },
    },
    access: accessConfigSchema,
    audit: auditConfigSchema,
    // Plain HTTP, /metrics and the health probes only (src/ops/opsServer.ts).
    ops: { type: 'object', additionalProperties: false, default: {}, properties: endpoint(9464) },
    metrics: metricsConfigSchema,
    fspiop: fspiopConfigSchema,
    payment: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        otpIncomingKeys: { type: 'array', items: { type: 'string', pattern: OTP_KEY_ENTRY_PATTERN }, maxItems: 1024, uniqueItems: true, default: [] },
        maxPinFailuresPerMinute: maxPinFailuresPerMinuteSchema,
      },
    },
    backend: {
      type: 'object',
      default: {},
      properties: {
        type: { type: 'string', minLength: 1, default: 'software' },
      },
    },
  },
} as const;

/** The `backend.module` section: an adapter module of your own, loaded with import(). */
export const moduleBackendSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['path'],
  properties: {
    /** A path (relative to the working directory) or package name whose default export is a BackendFactory. */
    path: { type: 'string', minLength: 1 },
    /** That factory's own configuration, checked against its configSchema. */
    config: { type: 'object', default: {} },
  },
} as const;
