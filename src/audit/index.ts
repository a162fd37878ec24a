/**
 * The audit trail, as src/app.ts wires it: `openAudit(config.audit, keyService, logger)` after the
 * KeyService exists and before the listeners (it throws AuditStartError, and the service must not
 * start, when the file cannot be opened); its `stages` go into the pipeline stages; `close()` runs
 * after the listeners closed and before the backend closes (it seals the trail with a checkpoint).
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { KeyUse } from '../api/declaration.js';
import type { PipelineStages } from '../api/stages.js';
import type { AuditDetails } from '../errors.js';
import type { KeyService } from '../operations/keyService.js';
import type { AuditConfig } from './config.js';
import { openAuditTrail } from './open.js';
import { auditStages } from './stage.js';
import type { AuditTrail, TrailHooks } from './trail.js';

export { auditConfigSchema, DEFAULT_AUDIT_KEY_NAME, type AuditConfig } from './config.js';
export { AuditStartError } from './open.js';

export interface Audit {
  readonly trail: AuditTrail;
  /** The audit and admit stages, to compose with the others: `{ ...identityStages, ...audit.stages, observe }`. */
  readonly stages: Pick<PipelineStages, 'admit' | 'audit'>;
  /** Records what the service did by itself, without a request (a ceremony that expired); a write that fails is logged. */
  recordInternal(operation: string, keys: readonly KeyUse[], details: AuditDetails): void;
  close(): Promise<void>;
}

export async function openAudit(config: AuditConfig, keys: KeyService, logger: Logger, hooks: TrailHooks = {}): Promise<Audit> {
  const trail = await openAuditTrail(config, keys, logger, hooks);
  return {
    trail,
    stages: auditStages(trail, config.keyName),
    recordInternal: (operation, keys, details) => {
      const record = { type: 'operation', requestId: randomUUID(), transport: 'internal', caller: { id: 'hsm-bridge', authenticatedBy: 'service' }, operation, keys, participants: [], outcome: 'ok', details } as const;
      trail.append(record, true).catch((e: unknown) => logger.error({ err: e, operation }, 'audit: an internal record could not be written'));
    },
    close: () => trail.close(),
  };
}
