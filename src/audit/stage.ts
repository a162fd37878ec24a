/**
 * The audit stage of the request pipeline (src/api/stages.ts): one record for every operation that
 * uses or changes a key or a participant, from its outcome.
 *
 * Audited: every declared operation that names keys or participants (`keys`, `resolveKeys`, `participants`
 * extractors) or changes state (`changesState`). Not audited: those that name neither (keys.list,
 * jose.jwks, fspiop.participants.list, system.random, system.capabilities).
 *
 * Order of a state change: `admit` refuses it with AUDIT_UNAVAILABLE, before it runs, while the trail
 * cannot be written; once it ran, its record is written and fsynced before the answer leaves, and if
 * that write fails the caller gets AUDIT_UNAVAILABLE (the change happened: its record stays queued
 * and is written when the file can be written again). Refused attempts are recorded too.
 */
import { HsmBridgeError, invalid } from '../errors.js';
import type { KeyUse, Operation } from '../api/declaration.js';
import type { Outcome, PipelineStages } from '../api/stages.js';
import type { OperationRecord, Unchained } from './record.js';
import type { AuditTrail } from './trail.js';

export const isAudited = (op: Operation): boolean => op.changesState === true || op.keys !== undefined || op.resolveKeys !== undefined || op.participants !== undefined;

/** The keys with the versions the result named, and the other names the request gave (version unknown). */
function keysOf(outcome: Outcome): KeyUse[] {
  const used = [...(outcome.keysUsed ?? [])];
  for (const name of outcome.keyNames) if (!used.some((k) => k.name === name)) used.push({ name });
  return used;
}

export function toRecord(outcome: Outcome): Unchained<OperationRecord> {
  return {
    type: 'operation',
    requestId: outcome.requestId,
    transport: outcome.transport,
    caller: { id: outcome.caller.id, authenticatedBy: outcome.caller.authenticatedBy },
    operation: outcome.operation.name,
    keys: keysOf(outcome),
    participants: outcome.participants,
    outcome: outcome.code ?? 'ok',
    ...(outcome.remoteAddress === undefined ? {} : { remoteAddress: outcome.remoteAddress }),
    ...(outcome.details === undefined ? {} : { details: outcome.details }),
  };
}

/** The audit and admit stages on a trail; `auditKeyName` is reserved: no API operation may name it. */
export function auditStages(trail: AuditTrail, auditKeyName: string): Pick<PipelineStages, 'admit' | 'audit'> {
  return {
    admit(op, keyNames) {
      if (!isAudited(op)) return;
      if (keyNames.includes(auditKeyName)) throw invalid(`the key name ${auditKeyName} is reserved for the audit trail`);
      if (trail.backlogged || (op.changesState === true && trail.failing)) {
        throw new HsmBridgeError('AUDIT_UNAVAILABLE', 'the audit trail cannot be written; retry later');
      }
    },
    audit(outcome) {
      if (!isAudited(outcome.operation)) return Promise.resolve();
      return trail.append(toRecord(outcome), outcome.operation.changesState === true);
    },
  };
}
