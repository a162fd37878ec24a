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
import type { Capabilities, WrappingScheme } from '../../../src/backend/port.js';
import { keyTypes } from '../../../src/keys/types.js';
import type { KeyName } from '../../../src/keys/names.js';
import type { PinSource } from '../config.js';
import { HsmBridgeError } from '../../../src/errors.js';
import { ckrName, involvesCkr, isDeviceGone, PinError, toBridgeError, unavailable } from '../errors.js';
import { endModuleGeneration, installTokenSharing, moduleGeneration, type TokenSharing } from '../tokenLock.js';
import { TRANSIENT_TTL_MS } from '../transientKeys.js';
import { CKM, TokenMechanisms } from '../mechanisms.js';
import { finalize, initialize, loadModule, type Handle, type Pkcs11Api } from '../module.js';
import { probeUnwrapsInside } from '../keyUnwrap.js';
import { probeOaepSha256 } from '../oaepProbe.js';
import { probeSingleDes } from '../paymentKeys.js';
import { destroyQuietly } from '../revisions.js';
import type { DerivedKey } from '../sessionObjects.js';
import { closeSession, findSlot, login, openSession, type TokenSelector } from '../token.js';
import { KeyOperations, type TokenProfile } from './keyOperations.js';
import { revive, unpooled, wipe, type Request, type Response, type TokenLog, type WireError } from './protocol.js';

export interface WorkerSetup {
  readonly role: 'control' | 'session';
  readonly library: string;
  readonly token: TokenSelector;
  readonly pin: PinSource;
  /** What every worker of the library in the process shares (tokenLock.ts). */
  readonly sharing: TokenSharing;
}

/** Results that are secret: the worker's copies zeroed once sent (every result goes in buffers of its own: unpooled). */
const SECRET_RESULTS = new Set(['decrypt', 'ecb', 'exportKey', 'randomBytes', 'deriveSharedSecret', 'stagedComponents']);

/** This worker could not get a working session: the connection reconnects (as for a device gone). */
class SessionLost extends HsmBridgeError {}

const port = parentPort!;
const setup = workerData as WorkerSetup;
installTokenSharing(setup.sharing);
const send = (message: Response) => port.postMessage(message);
const log: TokenLog = {
  info: (fields, message) => send({ kind: 'log', level: 'info', fields, message }),
  warn: (fields, message) => send({ kind: 'log', level: 'warn', fields, message }),
  error: (fields, message) => send({ kind: 'log', level: 'error', fields, message }),
};

let api: Pkcs11Api | undefined;
/** This thread's module instance has state of its own (see loadModule): it may finalize it alone. */
let ownInstance = false;
function loaded(): Pkcs11Api {
  if (!api) ({ api, own: ownInstance } = loadModule(setup.library));
  return api;
}

// --- control ---------------------------------------------------------------------------------------

let slot: Handle | undefined;
let anchor: Handle | undefined;

/**
 * Finds the token, opens the anchor session and logs in (at start; again after a reinitialization). An
 * older anchor is not closed: it died with the old generation, and its handle may now be another session's.
 */
async function logIn(): Promise<Handle> {
  const a = loaded();
  slot = findSlot(a, setup.token);
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
    // Wrapped import: OAEP with SHA-1 wherever the token has OAEP, with SHA-256 where it takes the parameters.
    const unwrapsInside = probeUnwrapsInside(a, session, capabilities.keyTypes, (m) => mechanisms.has(m), log);
    const wrappings: WrappingScheme[] = [];
    if (mechanisms.has(CKM.RSA_PKCS_OAEP) && mechanisms.has(CKM.AES_KEY_WRAP_PAD) && capabilities.keyTypes.some((t) => (keyTypes[t].purposes as readonly string[]).includes('wrap'))) {
      native ??= probeOaepSha256(a, session);
      if (native) wrappings.push('RSA_OAEP_SHA256_AES_KWP');
      wrappings.push('RSA_OAEP_SHA1_AES_KWP');
    }
    capabilities = { ...capabilities, keyImport: { ...capabilities.keyImport, wrappings, unwrapsInside } };
    // 0 (CK_EFFECTIVELY_INFINITE) or a number; CK_UNAVAILABLE_INFORMATION reads as a huge one.
    const maxSessions = a.C_GetTokenInfo(slot!).maxSessionCount;
    return { profile: { ...mechanisms.profile(), traits: { rawRsaDecrypt, singleDes }, oaepSha256Native: native, unwrapsInside }, capabilities, maxSessions };
  },

  /** C_GetTokenInfo: cheap, and it touches the device (a network HSM's link too). */
  probe(): void {
    loaded().C_GetTokenInfo(slot!);
  },

  /** C_Finalize + C_Initialize for the whole process, then logs in again. */
  async reinitialize(): Promise<void> {
    const a = loaded();
    anchor = undefined; // gone with the finalization
    endModuleGeneration(); // every worker's derived-key handles die with it, even a worker not reopened yet
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
/** Bumped by every reopen: handles are numbered afresh after a reinitialization. */
let epoch = 0;
/**
 * Derived keys (session objects) alive, by handle: the session that made them, and a timer that destroys
 * one nobody released (a derivation whose caller gave up at its deadline). A session is closed only once
 * it holds none (closing it would destroy them), so a replaced one may stay open a while.
 */
const derived = new Map<string, { readonly owner: Handle; readonly timer: NodeJS.Timeout; readonly generation: number }>();
const retired = new Set<Handle>();
/** Longer than the main thread's own expiry: this one only catches keys the main thread never registered. */
const DERIVED_TTL_MS = TRANSIENT_TTL_MS + 5000;

const currentSession = (): Handle => {
  if (!session) throw new SessionLost('BACKEND_UNAVAILABLE', 'HSM unavailable: the token worker has no session');
  return session;
};

const holds = (s: Handle) => [...derived.values()].some((d) => d.owner === s);

/**
 * Opens this worker's session (closing the old one first, unless derived keys still live in it) and logs
 * in on it. Most modules share login (and initialization) across the process, and answer
 * CKR_USER_ALREADY_LOGGED_IN; some give each loaded instance a connection of its own (p11-kit-client.so:
 * one server process per instance), which needs its own login and, after the HSM came back, its own
 * C_Finalize + C_Initialize. A shared module is never finalized here: the connection reinitializes it.
 */
async function openAndLogIn(): Promise<void> {
  const a = loaded();
  const old = session;
  session = undefined;
  if (old) {
    if (holds(old)) retired.add(old);
    else closeSession(a, old);
  }
  try {
    try {
      slot ??= findSlot(a, setup.token);
      session = openSession(a, slot);
    } catch (e) {
      if (!ownInstance) throw e;
      forgetAllDerived(); // this instance's handles are numbered afresh
      finalize(a);
      initialize(a);
      slot = findSlot(a, setup.token);
      session = openSession(a, slot);
    }
    await login(a, session, setup.pin);
    lastUsedAt = Date.now();
  } catch (e) {
    if (e instanceof PinError) throw e;
    const cause = e instanceof Error && e.cause !== undefined ? e.cause : e;
    throw new SessionLost('BACKEND_UNAVAILABLE', `HSM unavailable: cannot open a session (${ckrName(cause)})`, { cause: e });
  }
}

/** Every derived key is lost (a reinitialization): forgotten, never destroyed (their handles may be others' now). */
function forgetAllDerived(): void {
  epoch++;
  for (const handle of [...derived.keys()]) forgetDerived(handle);
  retired.clear();
}

function forgetDerived(handle: string): Handle | undefined {
  const entry = derived.get(handle);
  if (!entry) return undefined;
  clearTimeout(entry.timer);
  derived.delete(handle);
  return entry.owner;
}

/** Whether a derived key is alive: this worker's epoch, and no reinitialization of the module since it was made. */
function isLive(handle: Buffer, keyEpoch: number): boolean {
  const entry = derived.get(handle.toString('hex'));
  return keyEpoch === epoch && entry !== undefined && entry.generation === moduleGeneration();
}

function liveDerived(handle: Buffer, keyEpoch: number): void {
  if (!isLive(handle, keyEpoch)) throw unavailable('the derived key was lost with its HSM session; retry');
}

const sessionCalls = {
  async attach(profile: TokenProfile, idleSessionCheckMs: number): Promise<void> {
    idleCheckMs = idleSessionCheckMs;
    await openAndLogIn();
    operations = new KeyOperations(countingWrites(loaded()), currentSession, profile, log);
  },

  /** After a reinitialization: the old sessions are gone (their handles may be reused), and so are the derived keys. */
  async reopen(): Promise<void> {
    session = undefined;
    slot = undefined;
    forgetAllDerived();
    operations?.clear();
    await openAndLogIn();
  },

  /** The backend is closing: this worker's sessions go (another backend may keep the module initialized). */
  detach(): void {
    for (const handle of [...derived.keys()]) forgetDerived(handle);
    for (const s of [...retired, ...(session ? [session] : [])]) closeSession(loaded(), s);
    session = undefined;
    retired.clear();
  },

  forget(name: KeyName): void {
    operations?.forget(name);
  },

  async deriveDukpt(...args: Parameters<KeyOperations['deriveDukpt']>): Promise<DerivedKey> {
    const key = { ...(await ops().deriveDukpt(...args)), epoch };
    const id = key.handle.toString('hex');
    const timer = setTimeout(() => sessionCalls.releaseDerived(key.handle, key.epoch), DERIVED_TTL_MS);
    timer.unref();
    derived.set(id, { owner: currentSession(), timer, generation: moduleGeneration() });
    return key;
  },

  ecb(...args: Parameters<KeyOperations['ecb']>): Promise<Buffer> {
    const [key] = args;
    if ('transientHandle' in key) liveDerived(key.transientHandle, key.epoch);
    return ops().ecb(...args);
  },

  /** Destroys a derived key; its session, if replaced meanwhile and now holding nothing, is closed. */
  releaseDerived(handle: Buffer, keyEpoch: number): void {
    // Lost with a reinitialization: forgotten, not destroyed (the handle may be another object's now).
    if (!isLive(handle, keyEpoch)) {
      if (keyEpoch === epoch) forgetDerived(handle.toString('hex'));
      return;
    }
    const owner = forgetDerived(handle.toString('hex'));
    if (!owner) return;
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

/** PKCS#11 calls that change the token; counted so that a failed call can say it changed nothing. */
const WRITES = new Set(['C_CreateObject', 'C_DestroyObject', 'C_GenerateKey', 'C_GenerateKeyPair', 'C_CopyObject', 'C_SetAttributeValue', 'C_UnwrapKey', 'C_DeriveKey']);
let writes = 0;

/**
 * The module's API with its token-changing calls counted (tried, not only succeeded). A call that failed
 * before trying any write left the token as it was: the main thread may run it again after a reconnect.
 */
function countingWrites(target: Pkcs11Api): Pkcs11Api {
  // Bound once per method: the sign path reads C_SignInit and C_Sign on every call.
  const methods = new Map<PropertyKey, unknown>();
  return new Proxy(target, {
    get(t, key) {
      const value = Reflect.get(t, key) as unknown;
      if (typeof value !== 'function') return value;
      let method = methods.get(key);
      if (!method) {
        const bound = (value as (...a: unknown[]) => unknown).bind(t);
        // Counted before the call: a write whose answer is lost (a device error) may still have landed.
        method = WRITES.has(String(key))
          ? (...a: unknown[]) => {
              writes++;
              return bound(...a);
            }
          : bound;
        methods.set(key, method);
      }
      return method;
    },
  });
}

function ops(): KeyOperations {
  if (!operations) throw toBridgeError(new Error('the token worker is not attached'));
  return operations;
}

/** The KeyOperations methods the main thread may call directly (deriveDukpt and ecb go through sessionCalls). */
const OPERATIONS = [
  'create', 'rotate', 'setState', 'setMinDecryptionVersion', 'trim', 'destroy', 'describeKey', 'listKeys', 'sign', 'verify', 'encrypt', 'decrypt',
  'mac', 'verifyMac', 'randomBytes', 'publicKeySpki', 'exportKey', 'deriveSharedSecret', 'importWrapped',
  'startCeremony', 'describeCeremony', 'listCeremonies', 'stageComponent', 'stagedComponents', 'endCeremony',
] as const satisfies readonly (keyof KeyOperations)[];
/** Calls that use the session: an idle one is checked first. */
const USES_SESSION = new Set<string>([...OPERATIONS, 'deriveDukpt', 'ecb']);

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
  return { code: error.code, message: error.message, deviceGone: isDeviceGone(e) || e instanceof SessionLost, pin: e instanceof PinError };
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
  const writesBefore = writes;
  try {
    if (setup.role === 'session' && USES_SESSION.has(request.method)) await checkIdleSession();
    const run = handlerFor(request.method);
    if (!run) throw toBridgeError(new Error(`no such token worker call: ${request.method}`));
    const value = await run(...args);
    const secret = SECRET_RESULTS.has(request.method);
    const sent = unpooled(value);
    send({ kind: 'result', id: request.id, value: sent });
    if (secret) {
      wipe(value);
      wipe(sent);
    }
  } catch (e) {
    send({ kind: 'error', id: request.id, error: { ...toWire(e, request.method), unchanged: writes === writesBefore } });
    // PKCS#11 may leave an operation active after some errors: the next call gets a fresh session.
    if (setup.role === 'session' && session && involvesCkr(e) && !isDeviceGone(e)) {
      await openAndLogIn().catch(() => undefined); // without a session, the next call says so (SessionLost)
    }
  } finally {
    wipe(args);
  }
}

let queue = Promise.resolve();
port.on('message', (request: Request) => {
  queue = queue.then(() => handle(request));
});
