/**
 * The baseline of keys.bench.ts, run as a process of its own: signing with bare pkcs11js on the token the
 * service uses, with the private keys the service created (found by CKA_CLASS + CKA_LABEL = key name,
 * the adapter's documented object mapping). C_Initialize with CKF_OS_LOCKING_OK, one session per
 * in-flight slot, C_SignInit + C_SignAsync, the same mechanisms as the adapter takes on SoftHSM:
 * CKM_SHA256_RSA_PKCS over the message for RS256, the SHA-256 digest (in process) with CKM_ECDSA for ES256.
 *
 * Reads its task (RawSignTask, JSON) from stdin; writes RawSignResult as JSON, one line, to stdout.
 */
import { createHash } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { measureLatency, ownCpuMs, type Timing } from './measure.js';

export interface RawSignTask {
  readonly library: string;
  readonly tokenLabel: string;
  readonly pinEnv: string;
  readonly inFlight: number;
  readonly keys: ReadonlyArray<{ readonly label: string; readonly algorithm: 'RS256' | 'ES256' }>;
  /** Base64; call i signs message i % length. */
  readonly messages: readonly string[];
}

export interface RawSignResult {
  readonly results: ReadonlyArray<Timing & { readonly label: string; readonly samples: ReadonlyArray<{ readonly message: number; readonly signature: string }> }>;
}

const SAMPLES = 4;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function main(): Promise<void> {
  const task = JSON.parse(await readStdin()) as RawSignTask;
  const pin = process.env[task.pinEnv];
  if (!pin) throw new Error(`${task.pinEnv} is not set`);
  const messages = task.messages.map((m) => Buffer.from(m, 'base64'));
  const p11 = new pkcs11js.PKCS11();
  p11.load(task.library);
  p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  try {
    const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === task.tokenLabel);
    if (slot === undefined) throw new Error(`no token labelled ${task.tokenLabel}`);
    const sessions = Array.from({ length: task.inFlight }, () => p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION));
    p11.C_Login(sessions[0]!, pkcs11js.CKU_USER, pin);
    const results: RawSignResult['results'][number][] = [];
    for (const key of task.keys) {
      p11.C_FindObjectsInit(sessions[0]!, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }, { type: pkcs11js.CKA_LABEL, value: key.label }]);
      const found = p11.C_FindObjects(sessions[0]!, 2);
      p11.C_FindObjectsFinal(sessions[0]!);
      if (found.length !== 1) throw new Error(`expected one private key labelled ${key.label}, found ${found.length}`);
      const handle = found[0]!;
      const rsa = key.algorithm === 'RS256';
      const mechanism = { mechanism: rsa ? pkcs11js.CKM_SHA256_RSA_PKCS : pkcs11js.CKM_ECDSA };
      const sign = (i: number, slot: number) => {
        const session = sessions[slot]!;
        const message = messages[i % messages.length]!;
        p11.C_SignInit(session, mechanism, handle);
        return p11.C_SignAsync(session, rsa ? message : createHash('sha256').update(message).digest(), Buffer.alloc(rsa ? 256 : 64));
      };
      const samples = [];
      for (let i = 0; i < SAMPLES; i++) samples.push({ message: i, signature: (await sign(i, 0)).toString('base64') });
      results.push({ label: key.label, ...(await measureLatency(sign, task.inFlight, { raw: ownCpuMs })), samples });
    }
    p11.C_Logout(sessions[0]!);
    for (const s of sessions) p11.C_CloseSession(s);
    process.stdout.write(`${JSON.stringify({ results } satisfies RawSignResult)}\n`);
  } finally {
    p11.C_Finalize();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
