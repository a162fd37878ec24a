/** The `audit` configuration section: defaults filled in, a missing file or a bad key name named. */
import { describe, expect, it } from 'vitest';
import { auditConfigSchema, type AuditConfig } from '../../src/audit/config.js';
import { validateSection } from '../../src/config/load.js';

describe('the audit configuration section', () => {
  it('fills in the defaults', () => {
    expect(validateSection<AuditConfig>(auditConfigSchema, { file: '/var/lib/hsm-bridge/audit.jsonl' }, '/audit')).toEqual({
      file: '/var/lib/hsm-bridge/audit.jsonl',
      checkpointRecords: 1000,
      checkpointMs: 60000,
      flushRecords: 256,
      flushMs: 200,
      maxPendingRecords: 100000,
      keyName: 'hsmb-audit',
    });
  });

  it.each([
    [{}, "/audit must have required property 'file'"],
    [{ file: 'a', keyName: 'bad name' }, '/audit/keyName must match pattern'],
    [{ file: 'a', checkpointRecords: 0 }, '/audit/checkpointRecords must be >= 1'],
    [{ file: 'a', flushEvery: 3 }, '/audit/flushEvery is not a known field'],
  ])('refuses %j', (section, message) => {
    expect(() => validateSection(auditConfigSchema, section, '/audit')).toThrow(message);
  });
});
