/**
 * What `hsmb conformance` tells: the capability matrix (what the backend says it offers, against all that
 * hsm-bridge knows), each check's result, and the two report files: Markdown to attach to a vendor's
 * submission, JSON for a machine.
 */
import { allEncryptAlgorithms, allMacAlgorithms, allSignAlgorithms } from '../algorithms/registry.js';
import { wrappingSchemes, type Capabilities } from '../backend/port.js';
import { allKeyTypes } from '../keys/types.js';
import type { CheckResult, CheckStatus } from './runner.js';

export interface CapabilityRow {
  readonly capability: string;
  readonly offered: readonly string[];
  readonly notOffered: readonly string[];
}

const row = (capability: string, known: readonly string[], offered: readonly string[]): CapabilityRow => ({
  capability,
  offered: known.filter((k) => offered.includes(k)),
  notOffered: known.filter((k) => !offered.includes(k)),
});
const flag = (capability: string, offered: boolean): CapabilityRow => row(capability, ['yes'], offered ? ['yes'] : []);

export function capabilityMatrix(c: Capabilities): CapabilityRow[] {
  return [
    row('key types', allKeyTypes, c.keyTypes),
    row('sign', allSignAlgorithms, c.sign),
    row('sign a precomputed digest', allSignAlgorithms, c.signDigest),
    row('encrypt', allEncryptAlgorithms, c.encrypt),
    row('mac', allMacAlgorithms, c.mac),
    row('key agreement (ECDH)', allKeyTypes.filter((t) => t.startsWith('EC_')), c.keyAgreement),
    flag('random', c.random),
    flag('FF1 (format-preserving encryption)', c.fpe),
    row('wrapped import (BYOK)', wrappingSchemes, c.keyImport.wrappings),
    row('wrapped import unwrapped inside the HSM', c.keyImport.wrappings.length > 0 ? c.keyTypes : [], c.keyImport.unwrapsInside),
    flag('key ceremonies', c.keyImport.ceremonies),
    row('DUKPT', ['tdes', 'aes'], c.payment.dukpt),
    flag('payment key import (TR-31)', c.payment.importKeys),
    flag('payment key export (TR-31)', c.payment.exportKeys),
  ];
}

export interface ConformanceReport {
  readonly tool: string;
  readonly date: string;
  /** The backend's kind (pkcs11, kmip, software, or a module's own) and where its configuration came from. */
  readonly backend: { readonly kind: string; readonly config: string };
  readonly capabilities: readonly CapabilityRow[];
  readonly summary: Readonly<Record<CheckStatus, number>>;
  readonly checks: readonly CheckResult[];
}

export const summarise = (checks: readonly CheckResult[]): Record<CheckStatus, number> => ({
  pass: checks.filter((c) => c.status === 'pass').length,
  fail: checks.filter((c) => c.status === 'fail').length,
  refused: checks.filter((c) => c.status === 'refused').length,
});

/** One line of progress output. */
export const resultLine = (r: CheckResult): string =>
  `${r.status.padEnd(7)} ${r.path.join(' › ')}${r.error ? `\n          ${r.error.split('\n')[0]}` : ''}${r.refused ? `  (not offered: ${r.refused.join('; ')})` : ''}`;

export function capabilityLines(rows: readonly CapabilityRow[]): string[] {
  const width = Math.max(...rows.map((r) => r.capability.length));
  return rows.map((r) => `${r.capability.padEnd(width)}  ${r.offered.join(' ') || '-'}${r.notOffered.length && r.offered.length ? `   (not: ${r.notOffered.join(' ')})` : ''}`);
}

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function markdownReport(report: ConformanceReport): string {
  const { summary } = report;
  const lines = [
    `# hsm-bridge conformance report: ${report.backend.kind}`,
    '',
    `- Tool: ${report.tool}`,
    `- Date: ${report.date}`,
    `- Backend: \`${report.backend.kind}\`, configured by \`${report.backend.config}\``,
    `- Result: **${summary.fail === 0 ? 'PASSED' : 'FAILED'}**: ${summary.pass} pass, ${summary.refused} refused as the capabilities say, ${summary.fail} fail`,
    '',
    '## Capabilities',
    '',
    '| capability | offered | not offered |',
    '|---|---|---|',
    ...report.capabilities.map((r) => `| ${r.capability} | ${r.offered.join(', ') || '-'} | ${r.notOffered.join(', ') || '-'} |`),
    '',
    '## Checks',
    '',
    '`refused`: the check met a capability the backend does not offer and checked that it is refused (or left that to the check that does).',
    '',
    '| check | result | notes |',
    '|---|---|---|',
    ...report.checks.map((c) => `| ${cell(c.path.join(' › '))} | ${c.status} | ${cell(c.error ?? (c.refused ? `not offered: ${c.refused.join('; ')}` : ''))} |`),
    '',
  ];
  return lines.join('\n');
}
