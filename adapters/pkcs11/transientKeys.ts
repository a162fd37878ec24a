/**
 * DUKPT transaction keys as session objects (CKA_TOKEN false): derived for one request, used through
 * the opaque TransientKey the core holds, and destroyed by releaseTransientKey. A session object lives
 * as long as the session that created it, so that session is held open (connection.ts) until the key is
 * released. The core releases in a finally block; in case it does not, a key expires after
 * TRANSIENT_TTL_MS, and at most MAX_LIVE exist at once.
 */
import pkcs11js from 'pkcs11js';
import type { TransientKey } from '../../src/backend/port.js';
import { HsmBridgeError } from '../../src/errors.js';
import { allowedMechanismsAttribute } from './allowedMechanisms.js';
import type { Connection } from './connection.js';
import { unavailable } from './errors.js';
import { CKM } from './mechanisms.js';
import type { Handle } from './module.js';
import { sessionSecretKey } from './sessionObjects.js';

const A = pkcs11js;
/** Far longer than any request; only a key the core forgot lives this long. */
export const TRANSIENT_TTL_MS = 30_000;
const MAX_LIVE = 4096;

export type WorkingKeyType = 'AES_128' | 'AES_192' | 'AES_256' | 'TDES_2KEY' | 'TDES_3KEY';

const workingKeys: Record<WorkingKeyType, { readonly family: 'aes' | 'tdes'; readonly bytes: number; readonly keyType: number }> = {
  AES_128: { family: 'aes', bytes: 16, keyType: A.CKK_AES },
  AES_192: { family: 'aes', bytes: 24, keyType: A.CKK_AES },
  AES_256: { family: 'aes', bytes: 32, keyType: A.CKK_AES },
  TDES_2KEY: { family: 'tdes', bytes: 16, keyType: A.CKK_DES2 },
  TDES_3KEY: { family: 'tdes', bytes: 24, keyType: A.CKK_DES3 },
};

export function workingKeyInfo(type: WorkingKeyType) {
  return workingKeys[type];
}

/** A session secret that never leaves the token. */
const sessionKey = (keyType: number): pkcs11js.Template => sessionSecretKey(keyType, false);

const flags = (on: readonly number[]): pkcs11js.Template =>
  [A.CKA_ENCRYPT, A.CKA_DECRYPT, A.CKA_SIGN, A.CKA_VERIFY, A.CKA_WRAP, A.CKA_UNWRAP, A.CKA_DERIVE].map((type) => ({ type, value: on.includes(type) }));

/** A PIN encryption working key: ECB encryption and decryption of PIN blocks, nothing else. */
export function workingKeyTemplate(type: WorkingKeyType): pkcs11js.Template {
  const info = workingKeys[type];
  return [
    ...sessionKey(info.keyType),
    allowedMechanismsAttribute([info.family === 'aes' ? CKM.AES_ECB : CKM.DES3_ECB]),
    ...flags([A.CKA_ENCRYPT, A.CKA_DECRYPT]),
  ];
}

/** An AES DUKPT intermediate derivation key: derives the next key, nothing else. */
export function intermediateKeyTemplate(): pkcs11js.Template {
  return [...sessionKey(A.CKK_AES), allowedMechanismsAttribute([CKM.AES_CBC_ENCRYPT_DATA]), ...flags([A.CKA_DERIVE])];
}

interface Live {
  readonly handle: Handle;
  readonly session: Handle;
  readonly timer: NodeJS.Timeout;
}

export class TransientKeys {
  private readonly live = new WeakMap<TransientKey, Live>();
  private count = 0;

  constructor(private readonly connection: Connection) {}

  /** Refuses before any HSM work when too many keys are alive (a caller that never releases). */
  checkRoom(): void {
    if (this.count >= MAX_LIVE) throw unavailable(`${MAX_LIVE} derived keys are in use; retry`);
  }

  /** Takes over `handle`, a session object created on `session`, as a TransientKey. */
  register(session: Handle, handle: Handle, family: 'aes' | 'tdes', bits: number): TransientKey {
    const key: TransientKey = Object.freeze({ transient: true as const, family, bits });
    this.connection.hold(session);
    const timer = setTimeout(() => void this.release(key), TRANSIENT_TTL_MS);
    timer.unref();
    this.live.set(key, { handle, session, timer });
    this.count++;
    return key;
  }

  /** The handle behind a TransientKey this backend made and has not released. */
  handleOf(key: TransientKey): Handle {
    const entry = this.live.get(key);
    if (!entry) throw new HsmBridgeError('INTERNAL', 'the derived key was released or was not made by this backend');
    return entry.handle;
  }

  /** Destroys the session object; never throws (a key lost with its session is gone already). */
  async release(key: TransientKey): Promise<void> {
    const entry = this.live.get(key);
    if (!entry) return;
    this.live.delete(key);
    this.count--;
    clearTimeout(entry.timer);
    try {
      await this.connection.run(async (session) => this.connection.api.C_DestroyObject(session, entry.handle));
    } catch {
      // The session (and with it the object) is gone, or the HSM is: nothing is left to destroy.
    } finally {
      this.connection.unhold(entry.session);
    }
  }
}
