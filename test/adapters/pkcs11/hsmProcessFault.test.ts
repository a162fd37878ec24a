/**
 * The HSM in another process, really killed. A SoftHSM token is served by `p11-kit server` (a child
 * process group, see test/helpers/p11kitServer.ts); the pkcs11 backend loads p11-kit-client.so and talks
 * to it over a unix socket, and the keys are created and used through the KeyService. SIGKILL takes the
 * server and the per-connection process holding the sessions away, idle or with operations in flight.
 *
 * What must hold: a call while the HSM is away fails with BACKEND_UNAVAILABLE (no crash, no hang, no
 * other code) and fast; health() is not ready; when the server comes back the backend reconnects by
 * itself (its background timer: nothing but health() is called while waiting), and keys created before
 * the kill still sign (checked with node:crypto), verify, decrypt and MAC.
 *
 * p11-kit 0.24's RPC passes on only the mechanisms whose parameters it can serialize: through it SoftHSM
 * shows no AES_GCM, no EdDSA and no CKM_SHA*_RSA_PKCS_PSS (raw CKM_RSA_PKCS_PSS and CKM_RSA_PKCS_OAEP
 * remain). So the keys here are EC P-256 (ES256), RSA-2048 (RS256, PS256), RSA-2048 for RSA_OAEP_SHA256
 * and HMAC-256; the backend's capabilities follow the token's mechanism list by design.
 *
 * Timing figures are measured and printed, and asserted only generously (FAIL_FAST_MS): this is about
 * "does not wait on a dead device", not about speed. Every wait is bounded.
 */
import { constants, createPublicKey, randomBytes, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pkcs11BackendFactory } from '../../../adapters/pkcs11/index.js';
import type { Backend } from '../../../src/backend/port.js';
import { HsmBridgeError } from '../../../src/errors.js';
import type { KeyMetadata } from '../../../src/keys/types.js';
import { KeyService } from '../../../src/operations/keyService.js';
import { startP11KitServer, type P11KitServer } from '../../helpers/p11kitServer.js';
import { createSoftHsmToken, type SoftHsmToken } from '../../helpers/softhsm.js';

/** A call on a dead HSM must fail within this (generous: it is expected in milliseconds). */
const FAIL_FAST_MS = 2_000;
/** Bound on anything that must settle: a call never hangs past this. */
const SETTLE_MS = 15_000;
/** The background timer backs off 250 ms doubling to 10 s: after a short outage it is back well within this. */
const RECOVER_MS = 30_000;

const logger = pino({ level: 'silent' });
const message = Buffer.from('signed by a key in another process');

let token: SoftHsmToken;
let server: P11KitServer;
let backend: Backend;
let service: KeyService;
const publicKeys = new Map<string, KeyObject>();

/** Rejects if `promise` has not settled within `ms` (a hang is a failure, never a stuck test). */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms (a hang)`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `call`, expects BACKEND_UNAVAILABLE, returns how long it took. */
async function unavailableIn(what: string, call: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  const error = await within(SETTLE_MS, what, call().then(() => undefined, (e: unknown) => e));
  const ms = performance.now() - started;
  expect(error, `${what} should fail`).toBeInstanceOf(HsmBridgeError);
  expect((error as HsmBridgeError).code, `${what}: ${(error as Error).message}`).toBe('BACKEND_UNAVAILABLE');
  return ms;
}

async function waitReady(ms: number): Promise<number> {
  const started = performance.now();
  const deadline = Date.now() + ms;
  for (;;) {
    const health = await within(SETTLE_MS, 'health()', backend.health());
    if (health.ready) return performance.now() - started;
    if (Date.now() > deadline) throw new Error(`the backend did not recover within ${ms} ms (${health.detail})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** What is signed in these tests, and how node:crypto checks it. */
const signers = [
  { name: 'fault-ec', algorithm: 'ES256', check: (key: KeyObject, sig: Buffer) => nodeVerify('sha256', message, { key, dsaEncoding: 'ieee-p1363' }, sig) },
  { name: 'fault-rsa', algorithm: 'RS256', check: (key: KeyObject, sig: Buffer) => nodeVerify('sha256', message, key, sig) },
  {
    name: 'fault-rsa',
    algorithm: 'PS256',
    check: (key: KeyObject, sig: Buffer) => nodeVerify('sha256', message, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig),
  },
] as const;
type Signer = (typeof signers)[number];

/** Signs through the KeyService and checks the signature with node:crypto and the public key from creation. */
async function signsAndVerifies(signer: Signer = signers[0]): Promise<boolean> {
  const { signature } = await service.sign({ name: signer.name, algorithm: signer.algorithm, message });
  return signer.check(publicKeys.get(signer.name)!, signature);
}

/** RSA-OAEP-SHA256 through the KeyService: encrypted in process, decrypted in the HSM. */
async function decryptsRoundTrip(plaintext: Buffer = message): Promise<boolean> {
  const sealed = await service.encrypt({ name: 'fault-oaep', plaintext });
  return (await service.decrypt({ name: 'fault-oaep', ciphertext: sealed.ciphertext })).plaintext.equals(plaintext);
}

beforeAll(async () => {
  token = await createSoftHsmToken();
  server = await startP11KitServer(token);
  backend = await pkcs11BackendFactory.create(server.backendConfig({ sessionPoolSize: 4, allowRawRsaOaepFallback: true, maxQueuedRequests: 1024 }), { logger });
  // A long metadata TTL: the hot path goes straight to the HSM operation, as in production.
  service = new KeyService(backend, { limits: { maxDataBytes: 64 * 1024, maxRandomBytes: 1024 }, metadataCacheTtlMs: 60_000 });
  const created: KeyMetadata[] = await Promise.all([
    service.createKey({ name: 'fault-ec', type: 'EC_P256' }),
    service.createKey({ name: 'fault-rsa', type: 'RSA_2048', purpose: 'sign' }),
    service.createKey({ name: 'fault-oaep', type: 'RSA_2048', purpose: 'encrypt' }),
    service.createKey({ name: 'fault-hmac', type: 'HMAC_256' }),
  ]);
  for (const meta of created) {
    const spki = meta.versions[0]!.publicKeySpki;
    if (spki) publicKeys.set(meta.name, createPublicKey({ key: spki, format: 'der', type: 'spki' }));
  }
});

afterAll(async () => {
  await backend?.close();
  await server?.stop();
  await token?.cleanup();
});

describe('pkcs11 backend with the HSM in a p11-kit server process that is killed', () => {
  it('runs over p11-kit: the token is served by another process', async () => {
    expect(server.pid).toBeGreaterThan(0);
    expect(server.pid).not.toBe(process.pid);
    expect(await backend.health()).toEqual({ ready: true });
    for (const signer of signers) expect(await signsAndVerifies(signer)).toBe(true);
    expect(await decryptsRoundTrip()).toBe(true);
  });

  it('server killed and back before the next call: that call reconnects, logs in again and succeeds', async () => {
    await server.kill();
    await server.restart();
    // The old sessions answer CKR_DEVICE_ERROR: one reconnect (C_Finalize, C_Initialize, C_Login), one retry.
    expect(await within(SETTLE_MS, 'sign after a restart', signsAndVerifies())).toBe(true);
    expect(await backend.health()).toEqual({ ready: true });
    for (const signer of signers) expect(await signsAndVerifies(signer)).toBe(true);
  });

  it('killed while idle: every call fails fast with BACKEND_UNAVAILABLE, not ready; recovers by itself', async () => {
    const mac = (await service.mac({ name: 'fault-hmac', data: message })).mac;
    const sealed = (await service.encrypt({ name: 'fault-oaep', plaintext: message })).ciphertext;
    await server.kill();

    const timings: Record<string, number> = {};
    timings.sign = await unavailableIn('sign', () => service.sign({ name: 'fault-ec', message }));
    const health = await within(SETTLE_MS, 'health()', backend.health());
    expect(health.ready).toBe(false);
    expect(health.detail).toMatch(/HSM unavailable|reconnecting/);
    // Again, and for every kind of call, while the HSM stays away (the first reconnect has failed by now).
    timings.signRsa = await unavailableIn('sign RS256', () => service.sign({ name: 'fault-rsa', algorithm: 'RS256', message }));
    timings.verify = await unavailableIn('verify', () => service.verify({ name: 'fault-ec', message, signature: Buffer.alloc(64) }));
    // RSA-OAEP encryption runs in process with the public key, but still goes through the (down) connection.
    timings.encrypt = await unavailableIn('encrypt', () => service.encrypt({ name: 'fault-oaep', plaintext: message }));
    timings.decrypt = await unavailableIn('decrypt', () => service.decrypt({ name: 'fault-oaep', ciphertext: sealed }));
    timings.mac = await unavailableIn('mac', () => service.mac({ name: 'fault-hmac', data: message }));
    timings.random = await unavailableIn('random', () => service.randomBytes(16));
    timings.getKey = await unavailableIn('getKey', () => service.getKey('fault-ec'));
    timings.listKeys = await unavailableIn('listKeys', () => service.listKeys());
    timings.createKey = await unavailableIn('createKey', () => service.createKey({ name: 'fault-new', type: 'EC_P256' }));
    timings.rotateKey = await unavailableIn('rotateKey', () => service.rotateKey('fault-ec'));
    // A while later (the background timer has retried and failed meanwhile): still unavailable, still fast.
    await new Promise((r) => setTimeout(r, 1_000));
    expect((await backend.health()).ready).toBe(false);
    timings.signLater = await unavailableIn('sign, 1 s later', () => service.sign({ name: 'fault-ec', message }));
    console.info('[hsmProcessFault] idle kill, ms per failing call:', Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v)])));
    for (const [what, ms] of Object.entries(timings)) expect(ms, what).toBeLessThan(FAIL_FAST_MS);

    await server.restart();
    // Only health() from here: the reconnect must come from the backend's own timer.
    const recoveredIn = await waitReady(RECOVER_MS);
    console.info(`[hsmProcessFault] ready again ${Math.round(recoveredIn)} ms after the server restarted`);
    for (const signer of signers) expect(await signsAndVerifies(signer)).toBe(true);
    expect((await service.verifyMac({ name: 'fault-hmac', data: message, mac })).valid).toBe(true);
    expect((await service.decrypt({ name: 'fault-oaep', ciphertext: sealed })).plaintext).toEqual(message);
    expect((await service.getKey('fault-ec')).primaryVersion).toBe(1);
  });

  it('killed with operations in flight: each fails with BACKEND_UNAVAILABLE or succeeds correctly; none hangs', async () => {
    const mac = (await service.mac({ name: 'fault-hmac', data: message })).mac;
    let killedAt = 0;
    let completed = 0;
    const outcomes: { what: string; ok: boolean; error?: unknown; failedAfterKillMs?: number }[] = [];

    /** One caller in a loop, until its first failure (or a bound): what a busy client would see. */
    const worker = async (i: number) => {
      const kinds = [
        async () => expect(await signsAndVerifies(signers[i % signers.length])).toBe(true),
        async () => expect((await service.verifyMac({ name: 'fault-hmac', data: message, mac })).valid).toBe(true),
        async () => expect(await decryptsRoundTrip(randomBytes(64))).toBe(true),
      ];
      const what = `worker ${i}`;
      for (let n = 0; n < 100_000; n++) {
        try {
          await kinds[i % kinds.length]!();
          completed++;
        } catch (error) {
          outcomes.push({ what, ok: false, error, failedAfterKillMs: killedAt ? performance.now() - killedAt : undefined });
          return;
        }
      }
      outcomes.push({ what, ok: true });
    };
    const workers = Array.from({ length: 12 }, (_, i) => worker(i));

    // Kill mid-run: once the workers have been busy for a while ...
    const busyDeadline = Date.now() + SETTLE_MS;
    while (completed < 50) {
      if (Date.now() > busyDeadline) throw new Error(`only ${completed} operations completed before the kill`);
      await new Promise((r) => setTimeout(r, 5));
    }
    // ... and with a slow call surely in flight: RSA-4096 generation takes about a second or more in SoftHSM.
    const createStarted = performance.now();
    let createSettledAt = 0;
    const slowCreate = service.createKey({ name: 'fault-inflight', type: 'RSA_4096', purpose: 'sign' }).then(
      () => outcomes.push({ what: 'createKey RSA_4096', ok: true }),
      (error: unknown) => outcomes.push({ what: 'createKey RSA_4096', ok: false, error, failedAfterKillMs: performance.now() - killedAt }),
    ).finally(() => (createSettledAt = performance.now()));
    await new Promise((r) => setTimeout(r, 50));
    killedAt = performance.now();
    await server.kill();
    await within(SETTLE_MS, 'operations in flight at the kill', Promise.all([...workers, slowCreate]));
    // Only meaningful if the generation was still running at the kill; say so if the machine was that fast.
    expect(createSettledAt - createStarted, 'the RSA-4096 generation ended before the kill').toBeGreaterThan(killedAt - createStarted);

    const failures = outcomes.filter((o) => !o.ok);
    console.info(
      `[hsmProcessFault] in-flight kill: ${completed} operations completed, ${failures.length} callers failed; ms from kill to failure:`,
      failures.map((o) => `${o.what}=${Math.round(o.failedAfterKillMs ?? -1)}`).join(' '),
    );
    // Every caller ran into the dead HSM (none finished its 100,000 iterations) and saw only BACKEND_UNAVAILABLE.
    expect(failures).toHaveLength(outcomes.length);
    for (const o of failures) {
      expect(o.error, `${o.what}: ${String(o.error)}`).toBeInstanceOf(HsmBridgeError);
      expect((o.error as HsmBridgeError).code, `${o.what}: ${(o.error as Error).message}`).toBe('BACKEND_UNAVAILABLE');
      expect(o.failedAfterKillMs, o.what).toBeLessThan(FAIL_FAST_MS);
    }
    expect((await backend.health()).ready).toBe(false);
    expect(await unavailableIn('sign while down', () => service.sign({ name: 'fault-rsa', algorithm: 'RS256', message }))).toBeLessThan(FAIL_FAST_MS);

    await server.restart();
    const recoveredIn = await waitReady(RECOVER_MS);
    console.info(`[hsmProcessFault] ready again ${Math.round(recoveredIn)} ms after the server restarted`);
    for (const signer of signers) expect(await signsAndVerifies(signer)).toBe(true);
    expect((await service.verifyMac({ name: 'fault-hmac', data: message, mac })).valid).toBe(true);
    expect(await decryptsRoundTrip()).toBe(true);
    // The interrupted create left no key (its metadata, the commit point, was never written) ...
    await expect(service.getKey('fault-inflight')).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    // ... and the name can be created now (any leftover objects are cleared by that create).
    const again = await within(SETTLE_MS * 2, 'createKey after recovery', service.createKey({ name: 'fault-inflight', type: 'EC_P256' }));
    publicKeys.set('fault-inflight', createPublicKey({ key: again.versions[0]!.publicKeySpki!, format: 'der', type: 'spki' }));
    const { signature } = await service.sign({ name: 'fault-inflight', message });
    expect(nodeVerify('sha256', message, { key: publicKeys.get('fault-inflight')!, dsaEncoding: 'ieee-p1363' }, signature)).toBe(true);
  });

  it('a flapping HSM (killed and restarted three times under load): only successes or BACKEND_UNAVAILABLE, then steady', async () => {
    const mac = (await service.mac({ name: 'fault-hmac', data: message })).mac;
    let stop = false;
    const tally = { ok: 0, unavailable: 0, slowest: 0 };
    const wrong: string[] = [];
    const worker = async (i: number) => {
      while (!stop) {
        const started = performance.now();
        try {
          const good =
            i % 3 === 0 ? await signsAndVerifies(signers[i % signers.length])
            : i % 3 === 1 ? (await service.verifyMac({ name: 'fault-hmac', data: message, mac })).valid
            : await decryptsRoundTrip(randomBytes(32));
          if (good) tally.ok++;
          else wrong.push(`worker ${i}: a wrong result`);
        } catch (e) {
          if (e instanceof HsmBridgeError && e.code === 'BACKEND_UNAVAILABLE') tally.unavailable++;
          else wrong.push(`worker ${i}: ${e instanceof HsmBridgeError ? e.code : ''} ${String(e)}`);
          await new Promise((r) => setTimeout(r, 10)); // a client backing off a little, not spinning
        }
        tally.slowest = Math.max(tally.slowest, performance.now() - started);
      }
    };
    const workers = Array.from({ length: 9 }, (_, i) => worker(i));
    try {
      for (const downMs of [50, 300, 1_200]) {
        await new Promise((r) => setTimeout(r, 300));
        await server.kill();
        await new Promise((r) => setTimeout(r, downMs));
        await server.restart();
      }
      await waitReady(RECOVER_MS);
      const okBefore = tally.ok;
      await new Promise((r) => setTimeout(r, 500));
      expect(tally.ok, 'operations succeed again after the last restart').toBeGreaterThan(okBefore);
    } finally {
      stop = true;
      await within(SETTLE_MS, 'workers after the flapping', Promise.all(workers));
    }
    console.info(`[hsmProcessFault] flapping: ${tally.ok} ok, ${tally.unavailable} BACKEND_UNAVAILABLE, slowest call ${Math.round(tally.slowest)} ms`);
    expect(wrong).toEqual([]);
    expect(tally.unavailable).toBeGreaterThan(0);
    expect(tally.slowest).toBeLessThan(SETTLE_MS);
    expect(await backend.health()).toEqual({ ready: true });
    for (const signer of signers) expect(await signsAndVerifies(signer)).toBe(true);
  });
});
