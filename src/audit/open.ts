/**
 * Opens the audit trail at start: the file (appended; the service must not start without it), the
 * chain head from its last record (the chain continues across restarts), and the audit MAC key,
 * created in the backend on first start.
 */
import { open } from 'node:fs/promises';
import type { Logger } from 'pino';
import { HsmBridgeError } from '../errors.js';
import type { KeyService } from '../operations/keyService.js';
import type { AuditConfig } from './config.js';
import { GENESIS, hashLine } from './record.js';
import { AuditTrail, FileSink, type ChainHead, type CheckpointSigner, type TrailHooks } from './trail.js';

/** The trail cannot be opened: the service refuses to start. */
export class AuditStartError extends Error {
  override readonly name = 'AuditStartError';
}

/** Records are far shorter; a last line longer than this is not one of ours. */
const TAIL_BYTES = 64 * 1024;

/** The last record's sequence number and hash; GENESIS for an empty file. */
export async function readChainHead(path: string): Promise<ChainHead> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    if (size === 0) return { seq: 0, hash: GENESIS };
    const length = Math.min(size, TAIL_BYTES);
    const tail = Buffer.alloc(length);
    await handle.read(tail, 0, length, size - length);
    if (tail[length - 1] !== 0x0a) throw new AuditStartError(`audit: ${path} ends inside a record (a write was cut short, or the file was truncated); check it with "hsmb audit verify ${path}" and move it aside`);
    const start = tail.lastIndexOf(0x0a, length - 2) + 1;
    if (start === 0 && size > length) throw new AuditStartError(`audit: the last line of ${path} is not an audit record`);
    const line = tail.subarray(start, length - 1);
    let seq: unknown;
    try {
      seq = (JSON.parse(line.toString('utf8')) as { seq?: unknown }).seq;
    } catch {
      seq = undefined;
    }
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) throw new AuditStartError(`audit: the last line of ${path} is not an audit record`);
    return { seq, hash: hashLine(line) };
  } finally {
    await handle.close();
  }
}

/** The audit MAC key (HMAC_256, purpose mac), created when absent; a key of that name that is anything else is refused. */
async function auditSigner(keys: KeyService, keyName: string, logger: Logger): Promise<CheckpointSigner> {
  let meta;
  try {
    meta = await keys.getKey(keyName);
  } catch (e) {
    if (!(e instanceof HsmBridgeError && e.code === 'KEY_NOT_FOUND')) throw e;
    meta = await keys.createKey({ name: keyName, type: 'HMAC_256', purpose: 'mac' });
    logger.info({ keyName }, 'audit: created the audit MAC key');
  }
  if (meta.type !== 'HMAC_256' || meta.purpose !== 'mac') throw new AuditStartError(`audit: key ${keyName} exists but is not an HMAC_256 key of purpose mac`);
  // A disabled key would make every checkpoint fail with no more than a warning: the trail would go unsealed.
  if (meta.state !== 'enabled') throw new AuditStartError(`audit: key ${keyName} is disabled, so no checkpoint could be sealed`);
  return {
    keyName,
    async mac(data) {
      const r = await keys.mac({ name: keyName, data });
      return { version: r.keyVersion, mac: r.mac };
    },
  };
}

/** Opens the trail: throws AuditStartError (the service must not start) when the file cannot be opened or read. */
export async function openAuditTrail(config: AuditConfig, keys: KeyService, logger: Logger, hooks: TrailHooks = {}): Promise<AuditTrail> {
  let sink: FileSink;
  try {
    sink = await FileSink.open(config.file);
  } catch (e) {
    throw new AuditStartError(`audit: cannot open ${config.file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  try {
    const head = await readChainHead(config.file);
    const signer = await auditSigner(keys, config.keyName, logger);
    logger.info({ file: config.file, seq: head.seq }, 'audit: trail open');
    return new AuditTrail(sink, head, signer, config, logger, hooks);
  } catch (e) {
    await sink.close();
    throw e;
  }
}
