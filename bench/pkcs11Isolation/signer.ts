/**
 * The PKCS#11 side of the isolation bench, the same in every place it runs (main thread, worker thread,
 * child process): open the token, log in once per process, find the two bench keys, and sign with them
 * synchronously on one session or asynchronously over a pool of sessions.
 */
import pkcs11js from 'pkcs11js';
import { CKR, ckrOf } from '../../adapters/pkcs11/errors.js';

export interface TokenRef {
  readonly library: string;
  readonly tokenLabel: string;
  readonly pin: string;
}

/** Index 0 signs with the RSA-2048 key (CKM_SHA256_RSA_PKCS over the data), 1 with P-256 (CKM_ECDSA over a SHA-256 digest). */
export type KeyIndex = 0 | 1;
export const KEY_LABELS = ['iso-rsa-2048', 'iso-p256'] as const;
const MECHANISMS = [{ mechanism: pkcs11js.CKM_SHA256_RSA_PKCS }, { mechanism: pkcs11js.CKM_ECDSA }];
const SIGNATURE_BYTES = 256;
const CKS_RW_USER_FUNCTIONS = 3; // session state once the user is logged in (pkcs11js has no constant for it)

/** A process's view of the token: C_Initialize that tolerates another thread having done it, the slot, the key handles. */
export class Token {
  readonly api = new pkcs11js.PKCS11();
  readonly slot: pkcs11js.Handle;
  private keys: pkcs11js.Handle[] = [];

  constructor(private readonly ref: TokenRef) {
    this.api.load(ref.library);
    try {
      this.api.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (e) {
      // Another thread of this process initialized the module: Cryptoki state is process-wide.
      if (ckrOf(e) !== CKR.CRYPTOKI_ALREADY_INITIALIZED) throw e;
    }
    const slot = this.api.C_GetSlotList(true).find((s) => this.api.C_GetTokenInfo(s).label.trim() === ref.tokenLabel);
    if (!slot) throw new Error(`token ${ref.tokenLabel} not found`);
    this.slot = slot;
  }

  /** A new session, logged in unless the process already is (login state belongs to the token, not the session). */
  openSession(): pkcs11js.Handle {
    const session = this.api.C_OpenSession(this.slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    if (this.api.C_GetSessionInfo(session).state !== CKS_RW_USER_FUNCTIONS) {
      try {
        this.api.C_Login(session, pkcs11js.CKU_USER, this.ref.pin);
      } catch (e) {
        if (ckrOf(e) !== CKR.USER_ALREADY_LOGGED_IN) throw e; // a racing thread logged in first
      }
    }
    if (this.keys.length === 0) this.keys = KEY_LABELS.map((label) => this.find(session, label));
    return session;
  }

  private find(session: pkcs11js.Handle, label: string): pkcs11js.Handle {
    this.api.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_LABEL, value: label },
    ]);
    const [handle] = this.api.C_FindObjects(session, 1);
    this.api.C_FindObjectsFinal(session);
    if (!handle) throw new Error(`key ${label} not found`);
    return handle;
  }

  signSync(session: pkcs11js.Handle, key: KeyIndex, data: Buffer): Buffer {
    this.api.C_SignInit(session, MECHANISMS[key]!, this.keys[key]!);
    return this.api.C_Sign(session, data, Buffer.allocUnsafe(SIGNATURE_BYTES));
  }

  /** The former adapter's shape: C_SignInit on the calling thread, C_SignAsync on the libuv pool. */
  signAsync(session: pkcs11js.Handle, key: KeyIndex, data: Buffer): Promise<Buffer> {
    this.api.C_SignInit(session, MECHANISMS[key]!, this.keys[key]!);
    return this.api.C_SignAsync(session, data, Buffer.allocUnsafe(SIGNATURE_BYTES));
  }

  /** A pool of `size` sessions for async signing: a call waits for a free session (one operation per session). */
  asyncPool(size: number): (key: KeyIndex, data: Buffer) => Promise<Buffer> {
    const free = Array.from({ length: size }, () => this.openSession());
    const waiting: Array<(s: pkcs11js.Handle) => void> = [];
    return async (key, data) => {
      const session = free.pop() ?? (await new Promise<pkcs11js.Handle>((resolve) => waiting.push(resolve)));
      try {
        return await this.signAsync(session, key, data);
      } finally {
        const next = waiting.shift();
        if (next) next(session);
        else free.push(session);
      }
    };
  }
}

/** A Buffer over a structured-cloned Uint8Array without copying (pkcs11js takes Buffers only). */
export const asBuffer = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
