/**
 * The `audit` section of the service configuration (src/config/schema.ts): its type and JSON Schema,
 * with the defaults.
 */

/** The reserved name of the audit MAC key; callers of the API cannot use it. */
export const DEFAULT_AUDIT_KEY_NAME = 'hsmb-audit';

export interface AuditConfig {
  /** The audit trail: JSON lines, appended. The service does not start when it cannot be opened. */
  file: string;
  /** A checkpoint (an HMAC over the chain head, computed in the backend) after this many records... */
  checkpointRecords: number;
  /** ...and at least this often while records are written. */
  checkpointMs: number;
  /** Data-plane records are written in batches of at most this many records... */
  flushRecords: number;
  /** ...or after at most this long. Lifecycle changes are written and fsynced before their answer. */
  flushMs: number;
  /** Records waiting while the file cannot be written beyond which every audited operation is refused. */
  maxPendingRecords: number;
  /** The HMAC_256 key the checkpoints are computed with, created on first start. */
  keyName: string;
}

export const auditConfigSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['file'],
  properties: {
    file: { type: 'string', minLength: 1 },
    checkpointRecords: { type: 'integer', minimum: 1, maximum: 1_000_000, default: 1000 },
    checkpointMs: { type: 'integer', minimum: 100, maximum: 86_400_000, default: 60_000 },
    flushRecords: { type: 'integer', minimum: 1, maximum: 100_000, default: 256 },
    flushMs: { type: 'integer', minimum: 1, maximum: 60_000, default: 200 },
    maxPendingRecords: { type: 'integer', minimum: 1, maximum: 10_000_000, default: 100_000 },
    keyName: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$', default: DEFAULT_AUDIT_KEY_NAME },
  },
} as const;
