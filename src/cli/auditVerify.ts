/**
 * `hsmb audit verify FILE [--config CONFIG]`: checks an audit trail's hash chain and checkpoints. The
 * service's configuration (--config or HSMB_CONFIG, with the same environment overrides) names the
 * backend and the audit key; the checkpoint HMACs are verified in the backend, with that key.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { DEFAULT_AUDIT_KEY_NAME, type AuditConfig } from '../audit/config.js';
import { verifyTrail } from '../audit/verify.js';
import { createBackend } from '../backends.js';
import { loadServiceConfig } from '../config/load.js';
import type { ServiceConfig } from '../config/schema.js';
import { KeyService } from '../operations/keyService.js';
import { EXIT_FAILED, EXIT_USAGE, type Command } from './command.js';

/** The audit key's name: the configuration's audit.keyName once the service's schema has the section. */
const auditKeyName = (config: ServiceConfig): string => (config as ServiceConfig & { audit?: Partial<AuditConfig> }).audit?.keyName ?? DEFAULT_AUDIT_KEY_NAME;

export const auditVerify: Command = {
  usage: 'FILE [--config CONFIG] [--live]',
  summary:
    'check the audit trail FILE: its hash chain and the checkpoint HMACs (with the audit key in the backend); exit 0 only when intact and every record is sealed by a checkpoint (--live: records after the last checkpoint of a running service are reported, not failed)',
  async run(args, io) {
    const { values, positionals } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, live: { type: 'boolean' } }, allowPositionals: true, strict: true });
    const [file, ...extra] = positionals;
    if (file === undefined || extra.length > 0) {
      io.err(`usage: hsmb audit verify ${this.usage}`);
      return EXIT_USAGE;
    }
    const content = await readFile(file);
    const config = loadServiceConfig({ file: values.config ?? io.env.HSMB_CONFIG, env: io.env });
    const keyName = auditKeyName(config);
    const backend = await createBackend(config, { logger: pino({ level: 'silent' }) });
    try {
      const keys = new KeyService(backend, { limits: config.limits, metadataCacheTtlMs: 0 });
      const report = await verifyTrail(content, async (data, version, mac) => {
        try {
          return (await keys.verifyMac({ name: keyName, keyVersion: version, data, mac })).valid;
        } catch {
          return false; // no such key or version: the checkpoint was not made with the audit key
        }
      });
      const summary = `${report.records} records, ${report.checkpoints} checkpoints verified with key ${keyName}`;
      if (report.problem) {
        io.out(`${file}: NOT INTACT: ${report.problem.message}`);
        io.out(`${file}: ${report.problem.kind} at line ${report.problem.line}; before it: ${summary}`);
        return EXIT_FAILED;
      }
      if (report.unsealed > 0 && !values.live) {
        // A service that stopped cleanly sealed its trail; unsealed records were cut off or written after it, or could have been rewritten.
        io.out(`${file}: NOT SEALED: the last ${report.unsealed} records come after the last checkpoint, so a rewrite of them could not be detected (use --live for the file of a running service); ${summary}`);
        return EXIT_FAILED;
      }
      io.out(`${file}: intact: ${summary}`);
      if (report.unsealed > 0) io.out(`${file}: the last ${report.unsealed} records come after the last checkpoint: chained, not yet sealed by an HMAC`);
      return 0;
    } finally {
      await backend.close();
    }
  },
};
