/**
 * The baseline of keys.bench.ts, run as a process of its own: bare pkcs11js on the token the service uses,
 * with the keys the service created (found by CKA_CLASS + CKA_LABEL = key name, the adapter's documented
 * object mapping; a fresh key has one version, so one object of its class). C_Initialize with
 * CKF_OS_LOCKING_OK, `sessions` sessions, one call in flight on each, the *Init call then the Async form,
 * the mechanisms the adapter takes on SoftHSM: CKM_SHA256_RSA_PKCS over the message for RS256, the SHA-256
 * digest (in process) with CKM_ECDSA for ES256, CKM_AES_GCM (12-byte IV, 128-bit tag) for AES_GCM,
 * CKM_SHA256_HMAC for HMAC_SHA256; for FF1, the service's FF1 (src/dataProtection/ff1.ts) with its AES
 * blocks through CKM_AES_ECB, `batch` values a call as one request of the service carries them.
 *
 * Besides the figures it answers the checks keys.bench.ts needs a second implementation for: the outputs
 * of the first inputs (every message's MAC, so that each of the service's MACs can be compared), and the
 * plaintexts of AES-GCM ciphertexts the service made.
 *
 * Reads its task (RawTask, JSON) from stdin; writes RawResult as JSON, one line, to stdout.
 */
import { createHash, randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { alphabetOf, numeralsOf, textOf } from '../src/dataProtection/alphabet.js';
import { ff1 } from '../src/dataProtection/ff1.js';
import { measureLatency, ownCpuMs, type Timing } from './measure.js';

export type RawKind = 'RS256' | 'ES256' | 'AES_GCM' | 'HMAC_SHA256';

export interface RawTask {
  readonly library: string;
  readonly tokenLabel: string;
  readonly pinEnv: string;
  readonly sessions: number;
  readonly keys: ReadonlyArray<{
    readonly label: string;
    readonly kind: RawKind | 'FF1';
    /** AES_GCM only: IV (12) || ciphertext || tag (16), base64, to decrypt with the key. */
    readonly decrypt?: readonly string[];
    /** FF1 only: encrypt `batch` values a call, call i values i*batch .. (mod length), in the default alphabet of `radix`. */
    readonly ff1?: { readonly radix: number; readonly tweak: string; readonly values: readonly string[]; readonly batch: number };
  }>;
  /** Base64; call i works on input i % length: `plaintexts` for AES_GCM, `messages` for the others. */
  readonly messages: readonly string[];
  readonly plaintexts: readonly string[];
}

export interface RawKeyResult extends Timing {
  readonly label: string;
  /** Base64 outputs for inputs 0, 1, ...: SAMPLES of them, every message's for HMAC_SHA256. AES_GCM: IV || ciphertext || tag. FF1: every value's encryption, as text. */
  readonly samples: readonly string[];
  /** The plaintexts (base64) of the task's `decrypt`, in order. */
  readonly decrypted?: readonly string[];
}

export interface RawResult {
  readonly results: readonly RawKeyResult[];
}

const SAMPLES = 4;
const GCM_IV_BYTES = 12;
const GCM_TAG_BITS = 128;

const gcm = (iv: Buffer): pkcs11js.Mechanism => ({ mechanism: pkcs11js.CKM_AES_GCM, parameter: { type: pkcs11js.CK_PARAMS_AES_GCM, iv, ivBits: GCM_IV_BYTES * 8, tagBits: GCM_TAG_BITS } as pkcs11js.AesGCM });

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function main(): Promise<void> {
  const task = JSON.parse(await readStdin()) as RawTask;
  const pin = process.env[task.pinEnv];
  if (!pin) throw new Error(`${task.pinEnv} is not set`);
  const messages = task.messages.map((m) => Buffer.from(m, 'base64'));
  const plaintexts = task.plaintexts.map((m) => Buffer.from(m, 'base64'));
  const p11 = new pkcs11js.PKCS11();
  p11.load(task.library);
  p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  try {
    const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === task.tokenLabel);
    if (slot === undefined) throw new Error(`no token labelled ${task.tokenLabel}`);
    const sessions = Array.from({ length: task.sessions }, () => p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION));
    const session0 = sessions[0]!;
    p11.C_Login(session0, pkcs11js.CKU_USER, pin);
    const results: RawKeyResult[] = [];
    for (const key of task.keys) {
      const secret = key.kind !== 'RS256' && key.kind !== 'ES256';
      p11.C_FindObjectsInit(session0, [{ type: pkcs11js.CKA_CLASS, value: secret ? pkcs11js.CKO_SECRET_KEY : pkcs11js.CKO_PRIVATE_KEY }, { type: pkcs11js.CKA_LABEL, value: key.label }]);
      const found = p11.C_FindObjects(session0, 2);
      p11.C_FindObjectsFinal(session0);
      if (found.length !== 1) throw new Error(`expected one ${secret ? 'secret' : 'private'} key labelled ${key.label}, found ${found.length}`);
      const handle = found[0]!;
      if (key.kind === 'FF1') {
        if (!key.ff1) throw new Error(`FF1 key ${key.label}: no ff1 task`);
        const ff1 = ff1Operation(p11, handle, key.ff1);
        const samples = await ff1.all(session0);
        results.push({ label: key.label, ...(await measureLatency((i, slot) => ff1.run(sessions[slot]!, i), task.sessions, { raw: ownCpuMs }, key.ff1.batch)), samples });
        continue;
      }
      const run = operation(p11, key.kind, handle, messages, plaintexts);
      const op = (i: number, slot: number) => run(sessions[slot]!, i);
      const samples = [];
      for (let i = 0; i < (key.kind === 'HMAC_SHA256' ? messages.length : SAMPLES); i++) samples.push((await op(i, 0)).toString('base64'));
      const decrypted = key.decrypt?.map((c) => {
        const raw = Buffer.from(c, 'base64');
        p11.C_DecryptInit(session0, gcm(raw.subarray(0, GCM_IV_BYTES)), handle);
        return p11.C_Decrypt(session0, raw.subarray(GCM_IV_BYTES), Buffer.alloc(raw.length)).toString('base64');
      });
      results.push({ label: key.label, ...(await measureLatency(op, task.sessions, { raw: ownCpuMs })), samples, ...(decrypted ? { decrypted } : {}) });
    }
    p11.C_Logout(session0);
    for (const s of sessions) p11.C_CloseSession(s);
    process.stdout.write(`${JSON.stringify({ results } satisfies RawResult)}\n`);
  } finally {
    p11.C_Finalize();
  }
}

/** One call of `kind` with the key `handle` on input i: the *Init, then the Async form (on the libuv pool). */
function operation(p11: pkcs11js.PKCS11, kind: RawKind, handle: pkcs11js.Handle, messages: readonly Buffer[], plaintexts: readonly Buffer[]) {
  const message = (i: number) => messages[i % messages.length]!;
  switch (kind) {
    case 'RS256':
      return (session: pkcs11js.Handle, i: number) => {
        p11.C_SignInit(session, { mechanism: pkcs11js.CKM_SHA256_RSA_PKCS }, handle);
        return p11.C_SignAsync(session, message(i), Buffer.alloc(256));
      };
    case 'ES256':
      return (session: pkcs11js.Handle, i: number) => {
        p11.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, handle);
        return p11.C_SignAsync(session, createHash('sha256').update(message(i)).digest(), Buffer.alloc(64));
      };
    case 'HMAC_SHA256':
      return (session: pkcs11js.Handle, i: number) => {
        p11.C_SignInit(session, { mechanism: pkcs11js.CKM_SHA256_HMAC }, handle);
        return p11.C_SignAsync(session, message(i), Buffer.alloc(32));
      };
    case 'AES_GCM':
      // The IV from node's CSPRNG per message, as the adapter does; the output as the service's body: IV || ciphertext || tag.
      return async (session: pkcs11js.Handle, i: number) => {
        const plaintext = plaintexts[i % plaintexts.length]!;
        const iv = randomBytes(GCM_IV_BYTES);
        p11.C_EncryptInit(session, gcm(iv), handle);
        return Buffer.concat([iv, await p11.C_EncryptAsync(session, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BITS / 8))]);
      };
  }
}

/** FF1 encryption with the AES blocks through CKM_AES_ECB on a session: `batch` values a call, or all of them (the samples). */
function ff1Operation(p11: pkcs11js.PKCS11, handle: pkcs11js.Handle, task: NonNullable<RawTask['keys'][number]['ff1']>) {
  const alphabet = alphabetOf(task.radix, undefined);
  const values = task.values.map((v) => numeralsOf(alphabet, v));
  const tweak = Buffer.from(task.tweak, 'hex');
  const encrypt = async (session: pkcs11js.Handle, batch: number[][]) => {
    const ecb = (blocks: Buffer) => {
      p11.C_EncryptInit(session, { mechanism: pkcs11js.CKM_AES_ECB }, handle);
      return p11.C_EncryptAsync(session, blocks, Buffer.alloc(blocks.length));
    };
    return (await ff1('encrypt', ecb, alphabet.radix, tweak, batch)).map((n) => textOf(alphabet, n));
  };
  return {
    run: (session: pkcs11js.Handle, i: number) => encrypt(session, Array.from({ length: task.batch }, (_, j) => values[(i * task.batch + j) % values.length]!)),
    all: (session: pkcs11js.Handle) => encrypt(session, values),
  };
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
