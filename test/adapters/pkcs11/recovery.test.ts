/**
 * Resilience on a real SoftHSM token. An HSM restart is simulated by closing every session of the
 * process on the token (C_CloseAllSessions through an independent pkcs11js handle, which also logs the
 * user out); an HSM that stays away by hiding the token's directory while the adapter reinitializes.
 */
import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import { mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pkcs11BackendFactory } from '../../../adapters/pkcs11/index.js';
import type { Backend, KeyRef } from '../../../src/backend/port.js';
import { parseKeyName, type KeyVersion } from '../../../src/keys/names.js';
import { createSoftHsmToken, type SoftHsmToken } from '../../helpers/softhsm.js';
import { TokenInspector } from './tokenInspector.js';

const logger = pino({ level: 'silent' });
let token: SoftHsmToken;
let backend: Backend;
let inspector: TokenInspector;
let key: KeyRef;
let publicKey: ReturnType<typeof createPublicKey>;
const message = Buffer.from('still signing after the HSM came back');

async function signsAndVerifies(): Promise<boolean> {
  const signature = await backend.sign(key, 'ES256', { kind: 'message', data: message });
  return nodeVerify('sha256', message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature);
}

beforeAll(async () => {
  token = await createSoftHsmToken();
  backend = await pkcs11BackendFactory.create(token.backendConfig({ sessionPoolSize: 2 }), { logger });
  inspector = new TokenInspector(token.library, token.tokenLabel, token.pin);
  const name = parseKeyName('recovery-key');
  const meta = await backend.createKey({ name, type: 'EC_P256', purpose: 'sign' });
  key = { name, type: 'EC_P256', version: 1 as KeyVersion };
  publicKey = createPublicKey({ key: meta.versions[0]!.publicKeySpki!, format: 'der', type: 'spki' });
});
afterAll(async () => {
  await backend?.close();
  await token?.cleanup();
});

describe('pkcs11 backend resilience', () => {
  it('sessions closed under it (an HSM restart): reconnects, logs in again and the call succeeds', async () => {
    expect(await signsAndVerifies()).toBe(true);
    inspector.closeAllSessions();
    // Several calls at once: one reconnect serves them all, each retried once.
    const results = await Promise.all(Array.from({ length: 6 }, () => signsAndVerifies()));
    expect(results).toEqual(Array(6).fill(true));
    expect(await backend.health()).toEqual({ ready: true });
    expect((await backend.describeKey(key.name)).primaryVersion).toBe(1);
  });

  it('an HSM that stays away: fail fast with BACKEND_UNAVAILABLE, not ready, then recovers by itself', async () => {
    const tokensDir = join(token.dir, 'tokens');
    const entries = await readdir(tokensDir);
    const hidden = join(token.dir, 'hidden');
    // Find this token's directory: the only one, since this file's process made one token.
    expect(entries).toHaveLength(1);
    inspector.closeAllSessions();
    await rename(join(tokensDir, entries[0]!), hidden);
    try {
      await expect(signsAndVerifies()).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
      const health = await backend.health();
      expect(health.ready).toBe(false);
      expect(health.detail).toMatch(/HSM unavailable|reconnecting/);
      const started = Date.now();
      await expect(backend.randomBytes(8)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
      expect(Date.now() - started).toBeLessThan(100); // fails fast, no waiting on a dead device
    } finally {
      await rename(hidden, join(tokensDir, entries[0]!));
    }
    const deadline = Date.now() + 15_000;
    while (!(await backend.health()).ready) {
      if (Date.now() > deadline) throw new Error('the backend did not recover within 15 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await signsAndVerifies()).toBe(true);
  });

  it('a session found dead after sitting idle is replaced before use, without a reconnect (idleSessionCheckMs)', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const watched = await pkcs11BackendFactory.create(token.backendConfig({ sessionPoolSize: 1, idleSessionCheckMs: 1 }), { logger: log });
    try {
      const sign = () => watched.sign(key, 'ES256', { kind: 'message', data: message });
      await sign();
      inspector.closeAllSessions();
      await new Promise((r) => setTimeout(r, 20));
      const signature = await sign();
      expect(nodeVerify('sha256', message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature)).toBe(true);
      const messages = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
      expect(messages).toContain('pkcs11: an idle session was gone; opening another');
      expect(messages).not.toContain('pkcs11: HSM connection lost; reconnecting');
    } finally {
      await watched.close();
    }
  });

  it('a derived DUKPT key from before a reconnect is refused, never confused with a later key given the same handle', async () => {
    const bdk = parseKeyName('recovery-bdk');
    await backend.importKey({ name: bdk, type: 'TDES_2KEY', purpose: 'bdk' }, Buffer.from('0123456789ABCDEFFEDCBA9876543210', 'hex'));
    const ref = { name: bdk, type: 'TDES_2KEY' as const, version: 1 as KeyVersion };
    const derive = (counter: string) => backend.deriveDukptKey(ref, { scheme: 'tdes', ksn: Buffer.from(`FFFF9876543210E0000${counter}`, 'hex') });
    const before = await derive('1');
    const block = Buffer.from('041274EDCBA9876F', 'hex');
    const underBefore = await backend.encryptBlocks(before, block);
    inspector.closeAllSessions(); // an HSM restart: the module is reinitialized and handles are numbered afresh
    expect(await signsAndVerifies()).toBe(true);
    const after = await derive('2');
    const underAfter = await backend.encryptBlocks(after, block);
    expect(underAfter.equals(underBefore)).toBe(false);
    await expect(backend.encryptBlocks(before, block)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    await backend.releaseTransientKey(before); // must not destroy the later key
    expect((await backend.encryptBlocks(after, block)).equals(underAfter)).toBe(true);
    await backend.releaseTransientKey(after);
  });

  it('a session worker that stops (an exception outside any call) is replaced on its next use', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const single = await pkcs11BackendFactory.create(token.backendConfig({ sessionPoolSize: 1 }), { logger: log });
    try {
      expect(await single.randomBytes(8)).toHaveLength(8);
      // The only way to stop a worker from outside: its thread, reached through the backend's internals.
      type Internals = { members: { members: { connection: { slots: { link: { terminate(): Promise<void> } }[] } }[] } };
      await (single as unknown as Internals).members.members[0]!.connection.slots[0]!.link.terminate();
      const signature = await single.sign(key, 'ES256', { kind: 'message', data: message });
      expect(nodeVerify('sha256', message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature)).toBe(true);
      expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toContain('pkcs11: replacing a token worker that stopped');
    } finally {
      await single.close();
    }
  });

  it('a PIN that turns wrong at a reconnect: not ready with the reason, and never tried again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hsmb-pin-'));
    const pinFile = join(dir, 'pin');
    await writeFile(pinFile, token.pin);
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const { pinEnv: _env, ...config } = token.backendConfig({ sessionPoolSize: 1, pinFile });
    const pinned = await pkcs11BackendFactory.create(config, { logger: log });
    try {
      await writeFile(pinFile, '0000');
      inspector.closeAllSessions();
      await expect(pinned.randomBytes(8)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
      const health = await pinned.health();
      expect(health.ready).toBe(false);
      expect(health.detail).toContain('the user PIN is incorrect');
      // The right PIN is back, but nothing logs in again by itself: an operator restarts the service.
      await writeFile(pinFile, token.pin);
      await new Promise((r) => setTimeout(r, 3000));
      expect((await pinned.health()).ready).toBe(false);
      await expect(pinned.randomBytes(8)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
      const messages = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
      expect(messages.filter((m) => m === 'pkcs11: HSM still unavailable')).toEqual([]);
    } finally {
      await pinned.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 20_000);

  it('reinitializes the module at most once per reinitMinIntervalMs, however often the HSM goes away', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const limited = await pkcs11BackendFactory.create(token.backendConfig({ sessionPoolSize: 1, reinitMinIntervalMs: 1500 }), { logger: log });
    try {
      for (let i = 0; i < 2; i++) {
        inspector.closeAllSessions();
        expect((await limited.randomBytes(8)).length).toBe(8); // the call reconnects, then is retried
      }
      const reconnects = lines.map((l) => JSON.parse(l) as { msg: string; time: number }).filter((e) => e.msg === 'pkcs11: reconnected to the HSM');
      expect(reconnects).toHaveLength(2);
      expect(reconnects[1]!.time - reconnects[0]!.time).toBeGreaterThanOrEqual(1400);
    } finally {
      await limited.close();
    }
  }, 20_000);
});
