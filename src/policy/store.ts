/**
 * The policy file, loaded at start (an invalid one stops the start) and reloaded when it changes: fs.watch
 * for promptness, a slow poll for the changes it misses (a file replaced by rename, network file systems),
 * and SIGHUP. An invalid new file is refused with a log line and the policy before it stays.
 */
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import { Policy } from './policy.js';

export interface PolicyStore {
  /** The policy in force. */
  current(): Policy;
  /** Reads the file again now; true when a new policy took effect. */
  reload(why: string): boolean;
  close(): void;
}

export const POLICY_POLL_MS = 5_000;

/** Changes closer together than this are one reload. */
const SETTLE_MS = 250;

export function openPolicyStore(path: string, operationNames: readonly string[], logger: Logger, pollMs = POLICY_POLL_MS): PolicyStore {
  let text = readFileSync(path, 'utf8');
  let policy = Policy.parse(text, operationNames);
  const reload = (why: string): boolean => {
    let next: string;
    try {
      next = readFileSync(path, 'utf8');
    } catch (e) {
      logger.error({ file: path, why, reason: (e as NodeJS.ErrnoException).code ?? String(e) }, 'access: cannot read the policy file; the previous policy stays');
      return false;
    }
    if (next === text) return false;
    try {
      policy = Policy.parse(next, operationNames);
    } catch (e) {
      logger.error({ file: path, why, reason: (e as Error).message }, 'access: the new policy file is refused; the previous policy stays');
      text = next; // logged once, not at every poll
      return false;
    }
    text = next;
    logger.info({ file: path, why }, 'access: policy reloaded');
    return true;
  };
  // The directory is watched, not the file: editors and config management replace files by rename.
  let watcher: FSWatcher | undefined;
  let settling: NodeJS.Timeout | undefined;
  try {
    watcher = watch(dirname(path), { persistent: false }, (_event, name) => {
      if (name !== null && name !== basename(path)) return;
      // A file written in place arrives in pieces: read it once the writes have settled, never half-written.
      clearTimeout(settling);
      settling = setTimeout(() => reload('changed'), SETTLE_MS);
      settling.unref();
    });
    watcher.on('error', () => undefined);
  } catch {
    watcher = undefined; // the poll still sees changes
  }
  const poll = setInterval(() => reload('poll'), pollMs);
  poll.unref();
  const onHup = () => reload('SIGHUP');
  process.on('SIGHUP', onHup);
  return {
    current: () => policy,
    reload,
    close: () => {
      clearTimeout(settling);
      watcher?.close();
      clearInterval(poll);
      process.off('SIGHUP', onHup);
    },
  };
}
