/**
 * A token worker: a thread that makes PKCS#11 calls, so that the main thread never does (README.md,
 * "Threads"). Every call here is synchronous and blocks only this thread: a frozen HSM freezes the
 * workers waiting on it, while the main thread keeps answering and times them out.
 *
 * Two roles, set at spawn:
 * - `control`: finds the token, logs in and keeps one session open (closing the token's last session
 *   logs the user out), learns the token's mechanisms, probes its health, and finalizes and initializes
 *   the module when the main thread says so.
 * - `session`: owns one session and runs key operations and lifecycle attempts on it (keyOperations.ts).
 *
 * Requests are handled one at a time, in order, whatever the handlers await.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Capabilities } from '../../../src/backend/port.js';
import type { KeyName } from '../../../src/keys/names.js';
import type { PinSource } from '../config.js';
import { ckrName, involvesCkr, isDeviceGone, PinError, toBridgeError } from '../errors.js';
import { CKM, TokenMechanisms } from '../mechanisms.js';
import { finalize, initialize, loadModule, type Handle, type Pkcs11Api } from '../module.js';
import { probeOaepSha256 } from '../oaepProbe.js';
import { probeSingleDes } from '../paymentKeys.js';
import { destroyQuietly } from '../revisions.js';
import type { DerivedKey } from '../sessionObjects.js';
import { closeSession, findSlot, login, openSession, type TokenSelector } from '../token.js';
import { KeyOperations, type TokenProfile } from './keyOperations.js';
import { revive, wipe, type Request, type Response, type TokenLog, type WireError } from './protocol.js';

export interface WorkerSetup {
  readonly role: 'control' | 'session';
  readonly library: string;
  readonly token: TokenSelector;
  readonly pin: PinSource;
}

/** Results that are secret: the worker's copy is zeroed once sent. */
const SECRET_RESULTS = new Set(['decrypt', 'exportKey', 'randomBytes', 'deriveSharedSecret']);

const port = parentPort!;
const setup = workerData as WorkerSetup;
const send = (message: Response) => port.postMessage(message);
const log: TokenLog = {
  info: (fields, message) => send({ kind: 'log', level: 'info', fields, message }),
  warn: (fields, message) => send({ kind: 'log', level: 'warn', fields, message }),
  error: (fields, message) => send({ kind: 'log', level: 'error', fields, message }),
};

let api: Pkcs11Api | undefined;
const loaded = () => (api ??= loadModule(setup.library));

// --- control ---------------------------------------------------------------------------------------

let slot: Handle | undefined;
let anchor: Handle | undefined;

/** Finds the token, opens the anchor session and logs in (once per process; again after a reinitialization). */
async function logIn(): Promise<Handle> {
  const a = loaded();
  slot = findSlot(a, setup.token);
  if (anchor) closeSession(a, anchor);
  anchor = openSession(a, slot);
  await login(a, anchor, setup.pin);
  return anchor;
}

const control = {
  /** Logs in and learns what the token can do; the profile goes to every session worker. */
  async connect(allowRawRsaOaepFallback: boolean): Promise<{ profile: TokenProfile; capabilities: Capabilities; maxSessions: number }> {
    const session = await logIn();
    const a = loaded();
    const mechanisms = TokenMechanisms.discover(a, slot!);
    const rawRsaDecrypt = allowRawRsaOaepFallback && mechanisms.has(CKM.RSA_X_509);
    let native = mechanisms.has(CKM.RSA_PKCS_OAEP) ? undefined : false;
    let capabilities = mechanisms.capabilities();
    if (!rawRsaDecrypt && capabilities.encrypt.includes('RSA_OAEP_SHA256')) {
      // Without the fallback, RSA_OAEP_SHA256 is offered only if the token does it: find out now.
      native ??= probeOaepSha256(a, session);
      if (!native) capabilities = { ...capabilities, encrypt: capabilities.encrypt.filter((e) => e !== 'RSA_OAEP_SHA256') };
    }
    const singleDes = mechanisms.has(CKM.DES_CBC) && probeSingleDes(a, session);
    // 0 (CK_EFFECTIVELY_INFINITE) or a number; CK_UNAVAILABLE_INFORMATION reads as a huge one.
    const maxSessions = a.C_GetTokenInfo(slot!).maxSessionCount;
    return { profile: { ...mechanisms.profile(), traits: { rawRsaDecrypt, singleDes }, oaepSha256Native: native }, capabilities, maxSessions };
  },

  /** C_GetTokenInfo: cheap, and it touches the device (a network HSM's link too). */
  probe(): void {
    loaded().C_GetTokenInfo(slot!);
  },

  /** C_Finalize + C_Initialize for the whole process, then logs in again. */
  async reinitialize(): Promise<void> {
    const a = loaded();
    anchor = undefined; // gone with the finalization
    finalize(a);
    initialize(a);
    await logIn();
  },

  /** Logs in again without finalizing (another backend on the same library reinitialized the module). */
  async relogin(): Promise<void> {
    await logIn();
  },

  finalize(): void {
    if (anchor) closeSession(loaded(), anchor);
    anchor = undefined;
    finalize(loaded());
  },
};

// --- session ---------------------------------------------------------------------------------------

let session: Handle | undefined;
let operations: KeyOperations | undefined;
/** A session idle this long is checked before use (attach's idleCheckMs). */
let idleCheckMs = Infinity;
let lastUsedAt = 0;
/**
 * Derived keys (session objects) alive, by handle, with the session that made them: a session is
 * closed only once it holds none (closing it would destroy them), so a replaced one may stay open a while.
 */
const derived = new Map<string, Handle>();
const retired = new Set<Handle>();

const currentSession = (): Handle => {
  if (!session) throw toBridgeError(new Error('the token worker has no session'));
  return session;
};

const holds = (s: Handle) => [...derived.values()].some((owner) => owner === s);

function retire(s: Handle): void {
  if (holds(s)) retired.add(s);
  else closeSession(loaded(), s);
}

/** A new session for this worker: opened before the old one closes (closing a token's last session logs out). */
function replaceSession(): void {
  const a = loaded();
  slot ??= findSlot(a, setup.token);
  const old = session;
  session = openSession(a, slot);
  if (old) retire(old);
}

/**
 * Opens this worker's session and logs in on it. Most modules share login (and initialization) across
 * the process, and answer CKR_USER_ALREADY_LOGGED_IN; some give each loaded instance a connection of its
 * own (p11-kit-client.so: one server process per instance), which needs its own login, and, after the
 * HSM came back, its own C_Finalize + C_Initialize (until then it shows no slot, or fails): done only when
 * opening a session fails.
 */
async function openAndLogIn(): Promise<void> {
  try {
    replaceSession();
  } catch {
    finalize(loaded());
    initialize(loaded());
    slot = undefined;
    replaceSession();
  }
  await login(loaded(), currentSession(), setup.pin);
}

const sessionCalls = {
  async attach(profile: TokenProfile, idleSessionCheckMs: number): Promise<void> {
    idleCheckMs = idleSessionCheckMs;
    await openAndLogIn();
    operations = new KeyOperations(loaded(), currentSession, profile, log);
  },

  /** After a reinitialization: the old sessions are gone, and so are the derived keys. */
  async reopen(): Promise<void> {
    session = undefined;
    slot = undefined;
    derived.clear();
    retired.clear();
    operations?.clear();
    await openAndLogIn();
  },

  /** The backend is closing: this worker's sessions go (another backend may keep the module initialized). */
  detach(): void {
    for (const s of [...retired, ...(session ? [session] : [])]) closeSession(loaded(), s);
    session = undefined;
    retired.clear();
    derived.clear();
  },

  forget(name: KeyName): void {
    operations?.forget(name);
  },

  async deriveDukpt(...args: Parameters<KeyOperations['deriveDukpt']>): Promise<DerivedKey> {
    const key = await ops().deriveDukpt(...args);
    derived.set(key.handle.toString('hex'), currentSession());
    return key;
  },

  /** Destroys a derived key; its session, if replaced meanwhile and now holding nothing, is closed. */
  releaseDerived(handle: Buffer): void {
    const owner = derived.get(handle.toString('hex'));
    if (!owner) return; // lost with a reconnect
    derived.delete(handle.toString('hex'));
    try {
      destroyQuietly(loaded(), owner, handle);
    } catch {
      // The session (and with it the object) is gone, or the HSM is: nothing is left to destroy.
    }
    if (retired.has(owner) && !holds(owner)) {
      retired.delete(owner);
      closeSession(loaded(), owner);
    }
  },
};

function ops(): KeyOperations {
  if (!operations) throw toBridgeError(new Error('the token worker is not attached'));
  return operations;
}

/** The KeyOperations methods the main thread may call (deriveDukpt goes through sessionCalls). */
const OPERATIONS = [
  'create', 'rotate', 'setState', 'destroy', 'describeKey', 'listKeys', 'sign', 'verify', 'encrypt', 'decrypt',
  'mac', 'verifyMac', 'randomBytes', 'publicKeySpki', 'ecb', 'exportKey', 'deriveSharedSecret',
] as const satisfies readonly (keyof KeyOperations)[];

function handlerFor(method: string): ((...args: never[]) => unknown) | undefined {
  if (setup.role === 'control') return Object.hasOwn(control, method) ? control[method as keyof typeof control] : undefined;
  if (Object.hasOwn(sessionCalls, method)) return sessionCalls[method as keyof typeof sessionCalls] as (...args: never[]) => unknown;
  if ((OPERATIONS as readonly string[]).includes(method)) {
    const o = ops();
    return (o[method as (typeof OPERATIONS)[number]] as (...args: never[]) => unknown).bind(o);
  }
  return undefined;
}

function toWire(e: unknown, method: string): WireError {
  const error = toBridgeError(e);
  if (error.code === 'INTERNAL') log.error({ method, ckr: ckrName(e), detail: e instanceof Error ? e.message : String(e) }, 'pkcs11: unexpected HSM error');
  return { code: error.code, message: error.message, deviceGone: isDeviceGone(e), pin: e instanceof PinError };
}

/**
 * A session that sat idle may have been closed under us (an HSM's idle timeout, a network client that
 * reconnected): C_GetSessionInfo tells, and a dead one is replaced before the call uses it.
 */
async function checkIdleSession(): Promise<void> {
  const now = Date.now();
  const idle = now - lastUsedAt;
  lastUsedAt = now;
  if (!session || idle < idleCheckMs) return;
  try {
    loaded().C_GetSessionInfo(session);
  } catch {
    log.info({ idleMs: idle }, 'pkcs11: an idle session was gone; opening another');
    await openAndLogIn();
  }
}

async function handle(request: Request): Promise<void> {
  const args = revive(request.args) as never[];
  try {
    if (setup.role === 'session' && (OPERATIONS as readonly string[]).includes(request.method)) await checkIdleSession();
    const run = handlerFor(request.method);
    if (!run) throw toBridgeError(new Error(`no such token worker call: ${request.method}`));
    const value = await run(...args);
    send({ kind: 'result', id: request.id, value });
    if (SECRET_RESULTS.has(request.method)) wipe(value);
  } catch (e) {
    send({ kind: 'error', id: request.id, error: toWire(e, request.method) });
    // PKCS#11 may leave an operation active after some errors: the next call gets a fresh session.
    if (setup.role === 'session' && session && involvesCkr(e) && !isDeviceGone(e)) {
      try {
        replaceSession();
      } catch {
        // Cannot open a replacement: keep the old session; if the device is gone the main thread reconnects.
      }
    }
  } finally {
    wipe(args);
  }
}

let queue = Promise.resolve();
port.on('message', (request: Request) => {
  queue = queue.then(() => handle(request));
});
