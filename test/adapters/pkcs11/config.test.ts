/** The PKCS#11 section's two forms (one HSM, or members), through the service's config loader and resolveConfig. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../adapters/pkcs11/config.js';
import { resolveBackend } from '../../../src/backends.js';
import { loadServiceConfig } from '../../../src/config/load.js';

const dir = mkdtempSync(join(tmpdir(), 'hsmb-pkcs11-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const section = async (yaml: string) => {
  const path = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(path, `backend:\n  type: pkcs11\n  pkcs11:\n${yaml}`);
  return resolveBackend(loadServiceConfig({ file: path, env: {} }));
};

describe('backend.pkcs11', () => {
  it('one HSM at the top level is one member, with the defaults of the deadlines and the session hygiene', async () => {
    await section('    library: /x.so\n    tokenLabel: t\n');
    const resolved = resolveConfig({ library: '/x.so', tokenLabel: 't' });
    expect(resolved.members).toEqual([{ name: 'member-1', library: '/x.so', token: { label: 't' }, pin: { env: 'HSMB_PKCS11_PIN' }, sessionPoolSize: 8, maxQueuedRequests: 32 }]);
    expect(resolved).toMatchObject({ operationTimeoutMs: 10_000, keyGenerationTimeoutMs: 60_000, reinitMinIntervalMs: 1000, idleSessionCheckMs: 60_000, replicationWaitMs: 5000 });
  });

  it('members: each with its own library, token, PIN and pool; the other fields apply to all', async () => {
    await section('    operationTimeoutMs: 5000\n    members:\n      - { name: a, library: /a.so, tokenLabel: p, pinFile: /run/pin }\n      - { name: b, library: /b.so, slot: 3, sessionPoolSize: 2 }\n');
    const resolved = resolveConfig({ operationTimeoutMs: 5000, members: [{ name: 'a', library: '/a.so', tokenLabel: 'p', pinFile: '/run/pin' }, { name: 'b', library: '/b.so', slot: 3, sessionPoolSize: 2 }] });
    expect(resolved.operationTimeoutMs).toBe(5000);
    expect(resolved.members.map((m) => [m.name, m.token, m.pin, m.sessionPoolSize])).toEqual([
      ['a', { label: 'p' }, { file: '/run/pin' }, 8],
      ['b', { slot: 3 }, { env: 'HSMB_PKCS11_PIN' }, 2],
    ]);
  });

  it('refuses both forms at once, members without a token, two PIN sources, and a name used twice', async () => {
    await expect(section('    library: /x.so\n    tokenLabel: t\n    members:\n      - { library: /a.so, tokenLabel: p }\n')).rejects.toThrow(/backend\/pkcs11/);
    await expect(section('    members:\n      - { library: /a.so }\n')).rejects.toThrow(/backend\/pkcs11/);
    await expect(section('    members:\n      - { library: /a.so, tokenLabel: p, pinEnv: X, pinFile: /f }\n')).rejects.toThrow(/backend\/pkcs11/);
    expect(() => resolveConfig({ members: [{ name: 'a', library: '/a.so', tokenLabel: 'p' }, { name: 'a', library: '/b.so', tokenLabel: 'q' }] })).toThrow(/member name a is used twice/);
    expect(() => resolveConfig({ library: '/x.so', tokenLabel: 't', members: [] })).toThrow(/either one HSM .* or members, not both/);
    expect(() => resolveConfig({ members: [{ library: '/a.so' }] })).toThrow(/members\[0\]: give exactly one of tokenLabel and slot/);
  });
});
