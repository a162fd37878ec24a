/**
 * The participant key registry: the public keys of FSPIOP participants (DFSPs), used to validate their
 * signatures ('sig') and to encrypt fields for them ('enc'). A participant may have several active keys
 * at once, so that a key rotation has an overlap in which both the old and the new key validate.
 *
 * Keys come from three places:
 * - configuration: fixed for the life of the process (PEM text or a path, read at start);
 * - a directory, rescanned on change (fs.watch, debounced) and periodically as a safety net, laid out as
 *   `<dir>/<participant>.pem`, `<dir>/<participant>/*.pem` and `<dir>/<participant>/enc/*.pem`;
 * - the API: written into that directory as `<dir>/<participant>[/enc]/<keyId>.pem` when there is one,
 *   so that they survive a restart and every replica sharing the volume sees them; otherwise held in
 *   memory only (`persistent` is false, and the service logs it at start).
 *
 * A participant has at most MAX_KEYS_PER_PARTICIPANT keys per use, all sources together, since a failed
 * validation tries every key: the API refuses one more, and a directory scan skips (and logs) the excess.
 * A file that cannot be read or is not an acceptable public key is logged (path and reason, never its
 * content) and skipped. The lookup used on every validation is one Map read.
 */
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { HsmBridgeError, invalid, quote } from '../errors.js';
import { inspectPublicKey, type KeyUse, type PublicKeyInfo } from './publicKeys.js';
import { writeFileAtomic } from '../files/writeFileAtomic.js';

/** Where a key was loaded from. API keys show as 'directory' once written there; 'api' means held in memory only. */
export type KeySource = 'config' | 'directory' | 'api';

export interface ParticipantKey extends PublicKeyInfo {
  readonly participant: string;
  readonly use: KeyUse;
  readonly source: KeySource;
  /** The file it was read from, for directory keys. */
  readonly path?: string;
  /** When it was registered (ms since the epoch; a directory key's file mtime, 0 for configuration keys). */
  readonly addedAt: number;
}

/** What the API shows of a key: no KeyObject, no file path. */
export interface ParticipantKeyView {
  readonly participant: string;
  readonly keyId: string;
  readonly use: KeyUse;
  readonly kty: 'RSA' | 'EC';
  readonly bits: number;
  readonly source: KeySource;
  readonly publicKeyPem: string;
}

export interface ParticipantView {
  readonly id: string;
  readonly keys: ParticipantKeyView[];
}

/** One participant in the configuration: keys are PEM text or paths to PEM files. */
export interface ParticipantConfig {
  readonly id: string;
  readonly keys: readonly string[];
  readonly encryptionKeys?: readonly string[];
}

export interface ParticipantRegistryOptions {
  readonly logger: Logger;
  readonly participants?: readonly ParticipantConfig[];
  readonly participantsDir?: string;
  /** Full rescan period of the directory, a safety net for missed watch events; 0 turns it off. Default 60 s. */
  readonly rescanIntervalMs?: number;
  /** Quiet time after a watch event before the rescan, so that a burst of events costs one scan. Default 100 ms. */
  readonly watchDebounceMs?: number;
}

/** FSPIOP FspId is 1 to 32 characters; we also keep it safe as a file name. */
const PARTICIPANT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;
const PEM_FILE = /^[^.].*\.pem$/;
const MAX_PEM_BYTES = 64 * 1024;
/** Per participant and use: room for a rotation overlap and then some, and a bound on the work of a failed validation. */
export const MAX_KEYS_PER_PARTICIPANT = 16;

export function isParticipantId(value: unknown): value is string {
  return typeof value === 'string' && PARTICIPANT_ID.test(value);
}

export function parseParticipantId(value: unknown): string {
  if (!isParticipantId(value)) {
    throw invalid('participant id must be 1-32 characters of A-Z a-z 0-9 . _ - and start with a letter or digit');
  }
  return value;
}

function parseUse(value: unknown): KeyUse {
  if (value === undefined || value === 'sig') return 'sig';
  if (value === 'enc') return 'enc';
  throw invalid("key use must be 'sig' or 'enc'");
}

function viewOf(key: ParticipantKey): ParticipantKeyView {
  return { participant: key.participant, keyId: key.keyId, use: key.use, kty: key.kty, bits: key.bits, source: key.source, publicKeyPem: key.pem };
}

export class ParticipantRegistry {
  private readonly logger: Logger;
  private readonly dir: string | undefined;
  private readonly configKeys: readonly ParticipantKey[];
  /** API keys when there is no directory. */
  private readonly memoryKeys: ParticipantKey[] = [];
  private directoryKeys: readonly ParticipantKey[] = [];
  private index: ReadonlyMap<string, readonly ParticipantKey[]> = new Map();
  /** The signature keys again, by key type: validation tries only keys of the signature's family. */
  private signatureIndex: ReadonlyMap<string, readonly ParticipantKey[]> = new Map();
  private readonly watchers = new Map<string, FSWatcher>();
  /** Files already reported as bad, by path + mtime + size, so a periodic rescan does not repeat the warning. */
  private reported = new Set<string>();
  private debounce: NodeJS.Timeout | undefined;
  private periodic: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private closed = false;

  private constructor(private readonly options: ParticipantRegistryOptions, configKeys: ParticipantKey[]) {
    this.logger = options.logger;
    this.dir = options.participantsDir;
    this.configKeys = configKeys;
  }

  /** Loads configuration keys (a bad one fails the start, naming it), then the directory, and starts watching. */
  static async open(options: ParticipantRegistryOptions): Promise<ParticipantRegistry> {
    const configKeys: ParticipantKey[] = [];
    for (const [i, p] of (options.participants ?? []).entries()) {
      const where = `fspiop.participants[${i}]`;
      const participant = configured(where, () => parseParticipantId(p.id));
      const add = async (entries: readonly string[] | undefined, use: KeyUse, field: string) => {
        for (const [j, entry] of (entries ?? []).entries()) {
          const pem = entry.includes('-----BEGIN') ? entry : await readFile(entry, 'utf8').catch(() => {
            throw invalid(`config: ${where}.${field}[${j}]: cannot read ${entry}`);
          });
          const info = configured(`${where}.${field}[${j}]`, () => inspectPublicKey(pem, use));
          const count = configKeys.filter((k) => k.participant === participant && k.use === use).length;
          if (count >= MAX_KEYS_PER_PARTICIPANT) throw invalid(`config: ${where}: participant ${participant} has more than ${MAX_KEYS_PER_PARTICIPANT} ${field}`);
          configKeys.push({ ...info, participant, use, source: 'config', addedAt: 0 });
        }
      };
      await add(p.keys, 'sig', 'keys');
      await add(p.encryptionKeys, 'enc', 'encryptionKeys');
    }
    const registry = new ParticipantRegistry(options, configKeys);
    if (registry.dir) {
      await mkdir(registry.dir, { recursive: true });
      await registry.rescan();
      const every = options.rescanIntervalMs ?? 60_000;
      if (every > 0) {
        registry.periodic = setInterval(() => void registry.rescan(), every);
        registry.periodic.unref();
      }
    } else {
      registry.rebuildIndex();
    }
    return registry;
  }

  /** True when API-added keys are written to the directory (and so survive restarts and reach other replicas). */
  get persistent(): boolean {
    return this.dir !== undefined;
  }

  /** The active keys of a participant for one use, oldest first. */
  keysFor(participant: string, use: KeyUse = 'sig'): readonly ParticipantKey[] {
    return this.index.get(indexKey(participant, use)) ?? [];
  }

  /** The hot path: a participant's signature keys of one type. */
  signatureKeys(participant: string, kty: 'RSA' | 'EC'): readonly ParticipantKey[] {
    return this.signatureIndex.get(`${kty}:${participant}`) ?? [];
  }

  list(): ParticipantView[] {
    const byId = new Map<string, ParticipantKeyView[]>();
    for (const keys of this.index.values()) {
      for (const key of keys) {
        let list = byId.get(key.participant);
        if (!list) byId.set(key.participant, (list = []));
        list.push(viewOf(key));
      }
    }
    return [...byId.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([id, keys]) => ({ id, keys }));
  }

  get(participant: string): ParticipantView | undefined {
    const keys = [...this.keysFor(participant, 'sig'), ...this.keysFor(participant, 'enc')].map(viewOf);
    return keys.length === 0 ? undefined : { id: participant, keys };
  }

  getKey(participant: string, keyId: string): ParticipantKeyView | undefined {
    const key = [...this.keysFor(participant, 'sig'), ...this.keysFor(participant, 'enc')].find((k) => k.keyId === keyId);
    return key && viewOf(key);
  }

  /** Registers a public key (PEM). RSA below 2048 bits, private keys and unsupported curves are refused. */
  async addKey(participantId: unknown, pem: unknown, useValue?: unknown): Promise<ParticipantKeyView> {
    const participant = parseParticipantId(participantId);
    const use = parseUse(useValue);
    if (typeof pem !== 'string' || pem.length > MAX_PEM_BYTES) throw invalid('publicKeyPem must be a PEM string');
    const info = inspectPublicKey(pem, use);
    const existing = this.keysFor(participant, use);
    if (existing.some((k) => k.keyId === info.keyId)) {
      throw new HsmBridgeError('KEY_ALREADY_EXISTS', `participant ${participant} already has key ${info.keyId} for ${use}`);
    }
    if (existing.length >= MAX_KEYS_PER_PARTICIPANT) throw tooManyKeys(participant, use);
    if (!this.dir) {
      const key: ParticipantKey = { ...info, participant, use, source: 'api', addedAt: Date.now() };
      this.memoryKeys.push(key);
      this.rebuildIndex();
      return viewOf(key);
    }
    const folder = use === 'enc' ? join(this.dir, participant, 'enc') : join(this.dir, participant);
    await mkdir(folder, { recursive: true });
    await writeFileAtomic(join(folder, `${info.keyId}.pem`), info.pem, 0o644); // public keys; the dot-named temp file is never scanned
    await this.rescan();
    const added = this.keysFor(participant, use).find((k) => k.keyId === info.keyId);
    if (!added) {
      // Another replica filled the last place between our check and our scan: take the file back.
      await unlink(join(folder, `${info.keyId}.pem`)).catch(() => undefined);
      if (this.keysFor(participant, use).length >= MAX_KEYS_PER_PARTICIPANT) throw tooManyKeys(participant, use);
      throw new HsmBridgeError('INTERNAL', 'the key was written but not read back');
    }
    return viewOf(added);
  }

  /** Removes every registration of the key (both uses); directory keys lose their file. */
  async deleteKey(participantId: unknown, keyId: unknown): Promise<void> {
    const participant = parseParticipantId(participantId);
    const matches = [...this.keysFor(participant, 'sig'), ...this.keysFor(participant, 'enc')].filter((k) => k.keyId === keyId);
    if (matches.length === 0) throw new HsmBridgeError('KEY_NOT_FOUND', `participant ${participant} has no key ${quote(keyId)}`);
    if (matches.some((k) => k.source === 'config')) {
      throw invalid(`key ${quote(keyId)} of participant ${participant} comes from the configuration: remove it there`);
    }
    for (const key of matches) {
      if (key.path) await unlink(key.path).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
    }
    for (let i = this.memoryKeys.length - 1; i >= 0; i--) {
      const k = this.memoryKeys[i]!;
      if (k.participant === participant && k.keyId === keyId) this.memoryKeys.splice(i, 1);
    }
    if (this.dir) await this.rescan();
    else this.rebuildIndex();
  }

  /**
   * Reads the directory again and swaps the directory keys in one step. Scans never overlap: a call
   * during a scan queues one more, and calls while one is queued share it.
   */
  rescan(): Promise<void> {
    if (this.queued) return this.queued;
    const previous = this.running ?? Promise.resolve();
    const next: Promise<void> = previous.then(async () => {
      this.queued = undefined;
      this.running = next;
      try {
        await this.scanOnce();
      } finally {
        if (this.running === next) this.running = undefined;
      }
    });
    this.queued = next;
    return next;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.debounce);
    clearInterval(this.periodic);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    await this.running;
  }

  // --- directory ---------------------------------------------------------------------------------

  private async scanOnce(): Promise<void> {
    if (this.closed || !this.dir) return;
    const found: ParticipantKey[] = [];
    const folders = [this.dir];
    const reported = new Set<string>();
    const entries = await readdir(this.dir, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
      this.logger.warn({ dir: this.dir, code: e.code }, 'fspiop: cannot read the participants directory');
      return [];
    });
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const path = join(this.dir, entry.name);
      if (entry.isFile() && PEM_FILE.test(entry.name)) {
        await this.load(path, entry.name.slice(0, -4), 'sig', found, reported);
      } else if (entry.isDirectory() && PARTICIPANT_ID.test(entry.name)) {
        folders.push(path);
        await this.loadFolder(path, entry.name, 'sig', found, reported);
        const enc = join(path, 'enc');
        if (await isDirectory(enc)) {
          folders.push(enc);
          await this.loadFolder(enc, entry.name, 'enc', found, reported);
        }
      }
    }
    if (this.closed) return;
    this.reported = reported;
    this.directoryKeys = found;
    this.rebuildIndex();
    this.watch(folders);
  }

  private async loadFolder(folder: string, participant: string, use: KeyUse, found: ParticipantKey[], reported: Set<string>): Promise<void> {
    const names = await readdir(folder).catch(() => [] as string[]);
    // Sorted, so that when a participant has too many keys every replica skips the same ones.
    for (const name of names.sort()) if (PEM_FILE.test(name)) await this.load(join(folder, name), participant, use, found, reported);
  }

  private async load(path: string, participant: string, use: KeyUse, found: ParticipantKey[], reported: Set<string>): Promise<void> {
    let fingerprint = path;
    try {
      const info = await stat(path);
      fingerprint = `${path}:${info.mtimeMs}:${info.size}`;
      if (!info.isFile()) return;
      if (!PARTICIPANT_ID.test(participant)) throw invalid('the file name is not a valid participant id');
      if (info.size > MAX_PEM_BYTES) throw invalid(`larger than ${MAX_PEM_BYTES} bytes`);
      const key = inspectPublicKey(await readFile(path, 'utf8'), use);
      const same = (k: ParticipantKey) => k.participant === participant && k.use === use;
      if (found.some((k) => same(k) && k.keyId === key.keyId) || this.configKeys.some((k) => same(k) && k.keyId === key.keyId)) return;
      if (found.filter(same).length + this.configKeys.filter(same).length >= MAX_KEYS_PER_PARTICIPANT) {
        throw invalid(`participant ${participant} already has ${MAX_KEYS_PER_PARTICIPANT} keys for ${use}`);
      }
      found.push({ ...key, participant, use, source: 'directory', path, addedAt: info.mtimeMs });
    } catch (e) {
      // Deleted between readdir and read: the next scan will not see it either.
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      reported.add(fingerprint);
      if (!this.reported.has(fingerprint)) {
        const reason = e instanceof HsmBridgeError ? e.message : ((e as NodeJS.ErrnoException).code ?? 'unreadable');
        this.logger.warn({ path, reason }, 'fspiop: skipped a participant key file');
      }
    }
  }

  /** Watches exactly the folders of the last scan; any event schedules one debounced rescan. */
  private watch(folders: readonly string[]): void {
    const wanted = new Set(folders);
    for (const [folder, watcher] of this.watchers) {
      if (!wanted.has(folder)) {
        watcher.close();
        this.watchers.delete(folder);
      }
    }
    for (const folder of wanted) {
      if (this.watchers.has(folder)) continue;
      try {
        const watcher = watch(folder, { persistent: false }, () => this.scheduleRescan());
        watcher.on('error', () => {
          watcher.close();
          this.watchers.delete(folder);
          this.scheduleRescan();
        });
        this.watchers.set(folder, watcher);
      } catch {
        // Gone since the scan; the next scan settles it, and the periodic rescan covers the gap.
      }
    }
  }

  private scheduleRescan(): void {
    if (this.closed) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.rescan(), this.options.watchDebounceMs ?? 100);
    this.debounce.unref();
  }

  private rebuildIndex(): void {
    const index = new Map<string, ParticipantKey[]>();
    for (const key of [...this.configKeys, ...this.directoryKeys, ...this.memoryKeys]) {
      const k = indexKey(key.participant, key.use);
      let list = index.get(k);
      if (!list) index.set(k, (list = []));
      if (!list.some((other) => other.keyId === key.keyId)) list.push(key);
    }
    // Oldest first, so that the last is the newest (the one to encrypt to); a stable sort keeps ties in load order.
    for (const list of index.values()) list.sort((a, b) => a.addedAt - b.addedAt);
    const signatureIndex = new Map<string, ParticipantKey[]>();
    for (const [k, list] of index) {
      if (!k.startsWith('sig:')) continue;
      for (const key of list) {
        const byType = `${key.kty}:${key.participant}`;
        signatureIndex.set(byType, [...(signatureIndex.get(byType) ?? []), key]);
      }
    }
    this.index = index;
    this.signatureIndex = signatureIndex;
  }
}

function indexKey(participant: string, use: KeyUse): string {
  return `${use}:${participant}`;
}

function tooManyKeys(participant: string, use: KeyUse): HsmBridgeError {
  return invalid(`participant ${participant} already has ${MAX_KEYS_PER_PARTICIPANT} ${use === 'sig' ? 'signature' : 'encryption'} keys: remove one first`);
}

function configured<T>(where: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw invalid(`config: ${where}: ${e instanceof Error ? e.message : 'invalid'}`);
  }
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isDirectory(), () => false);
}
