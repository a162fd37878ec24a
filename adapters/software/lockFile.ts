/**
 * One process per keystore: an exclusive lock file holding the owner's pid. Two processes writing the
 * same keystore would each overwrite the other's keys. A lock left by a process that has died is taken
 * over, so a crash never needs a manual clean-up.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, open, readFile, rename, unlink } from 'node:fs/promises';

export interface HeldLock {
  release(): Promise<void>;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to another user.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readOwner(path: string): Promise<number | undefined> {
  try {
    const pid = Number.parseInt((await readFile(path, 'utf8')).trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

async function tryCreate(path: string): Promise<boolean> {
  try {
    const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      await handle.writeFile(`${process.pid}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

/**
 * Moves a dead owner's lock aside atomically. If another process took it over in between, the lock now
 * moved aside is theirs: it is put back (link does not overwrite) and we lose the race.
 */
async function takeOverStale(path: string, deadPid: number | undefined): Promise<void> {
  const aside = `${path}.stale-${randomBytes(6).toString('hex')}`;
  try {
    await rename(path, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if ((await readOwner(aside)) !== deadPid) await link(aside, path).catch(() => undefined);
  await unlink(aside);
}

export async function acquireLock(path: string): Promise<HeldLock> {
  for (let attempt = 0; attempt < 3; attempt++) {
    if (await tryCreate(path)) {
      let released = false;
      return {
        async release() {
          if (released) return;
          released = true;
          await unlink(path).catch(() => undefined);
        },
      };
    }
    const owner = await readOwner(path);
    if (owner !== undefined && isAlive(owner)) {
      throw new Error(
        `software backend: the keystore is in use by process ${owner} (lock file ${path}); ` +
          'only one hsm-bridge process may use a software keystore',
      );
    }
    await takeOverStale(path, owner);
  }
  throw new Error(`software backend: could not take the keystore lock ${path}; another process keeps taking it`);
}
