/**
 * Verifies an audit trail: the hash chain record by record, then each checkpoint's HMAC (with the
 * audit key, through `checkMac`). Reports the first problem found, in file order:
 *   - a record removed (a gap in the sequence), or out of order (a sequence number that comes later);
 *   - a record changed (the next record does not chain to it; or a line that is no record);
 *   - a checkpoint whose HMAC does not verify: the chain was rewritten after a change;
 *   - a last line without its newline: a truncated file.
 * Records after the last checkpoint are intact as a chain but not sealed: counted as `unsealed` (a chain
 * rewritten without the key is only detected where a checkpoint seals it, so the CLI fails on them
 * unless told the service is running).
 * Each checkpoint must seal a later record than the one before it.
 */
import { checkpointMacInput, GENESIS, hashLine } from './record.js';

export type ProblemKind = 'changed' | 'removed' | 'reordered' | 'checkpoint' | 'truncated';

export interface Problem {
  readonly kind: ProblemKind;
  /** 1-based line of the file where it shows. */
  readonly line: number;
  readonly message: string;
}

export interface VerifyReport {
  readonly records: number;
  readonly checkpoints: number;
  /** Operation records after the last checkpoint's covered record. */
  readonly unsealed: number;
  readonly problem?: Problem;
}

/** Whether `mac` is the audit key's (at `version`) HMAC of `data`. */
export type MacCheck = (data: Buffer, version: number, mac: Buffer) => Promise<boolean>;

interface Parsed {
  seq?: unknown;
  prev?: unknown;
  type?: unknown;
  covers?: { seq?: unknown; hash?: unknown };
  key?: { version?: unknown };
  mac?: unknown;
}

function parse(line: Buffer): Parsed | undefined {
  try {
    const value: unknown = JSON.parse(line.toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Parsed) : undefined;
  } catch {
    return undefined;
  }
}

function splitLines(content: Buffer): { lines: Buffer[]; partial: boolean } {
  const lines: Buffer[] = [];
  let start = 0;
  for (let end = content.indexOf(0x0a); end !== -1; end = content.indexOf(0x0a, start)) {
    lines.push(content.subarray(start, end));
    start = end + 1;
  }
  return { lines, partial: start < content.length };
}

export async function verifyTrail(content: Buffer, checkMac: MacCheck): Promise<VerifyReport> {
  const { lines, partial } = splitLines(content);
  const records = lines.map(parse);
  const hashes = new Map<number, string>();
  let prevHash = GENESIS;
  let checkpoints = 0;
  let sealedUpTo = 0;
  /** The sequence numbers of operation records, to count those no checkpoint covers. */
  const operations: number[] = [];
  const unsealed = () => operations.filter((seq) => seq > sealedUpTo).length;
  const report = (problem: Problem): VerifyReport => ({ records: hashes.size, checkpoints, unsealed: unsealed(), problem });

  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const expected = i + 1;
    const record = records[i];
    if (record === undefined || typeof record.seq !== 'number' || typeof record.prev !== 'string') {
      return report({ kind: 'changed', line, message: `line ${line} is not an audit record: record ${expected} was changed` });
    }
    if (record.seq !== expected) {
      const later = records.slice(i + 1).some((r) => r?.seq === expected);
      return record.seq > expected && !later
        ? report({ kind: 'removed', line, message: `record ${expected} was removed (line ${line} holds record ${record.seq})` })
        : report({ kind: 'reordered', line, message: `records are out of order: line ${line} holds record ${record.seq} where record ${expected} belongs` });
    }
    if (record.prev !== prevHash) {
      return i === 0
        ? report({ kind: 'changed', line, message: 'record 1 was changed: it does not start the chain' })
        : report({ kind: 'changed', line: line - 1, message: `record ${expected - 1} (line ${line - 1}) was changed: record ${expected} does not chain to it` });
    }
    prevHash = hashLine(lines[i]!);
    hashes.set(expected, prevHash);
    if (record.type === 'checkpoint') {
      const covered = record.covers?.seq;
      const coveredHash = record.covers?.hash;
      const version = record.key?.version;
      const fail = (why: string) => report({ kind: 'checkpoint', line, message: `checkpoint ${expected} (line ${line}) ${why}: a record after record ${sealedUpTo} and up to record ${String(covered)} was changed and the chain after it rewritten, or the checkpoint was forged` });
      if (typeof covered !== 'number' || typeof coveredHash !== 'string' || covered >= expected || coveredHash !== hashes.get(covered)) return fail('does not match the chain');
      // Each checkpoint seals a later head than the one before: an old checkpoint copied further down is refused.
      if (covered <= sealedUpTo) return fail('seals no record after the previous checkpoint');
      if (typeof version !== 'number' || typeof record.mac !== 'string' || !(await checkMac(checkpointMacInput(covered, coveredHash), version, Buffer.from(record.mac, 'base64')))) {
        return fail('has an HMAC that does not verify');
      }
      checkpoints++;
      sealedUpTo = covered;
    } else {
      operations.push(expected);
    }
  }
  if (partial) return report({ kind: 'truncated', line: lines.length + 1, message: `the file is truncated: line ${lines.length + 1} is an incomplete record` });
  return { records: hashes.size, checkpoints, unsealed: unsealed() };
}
