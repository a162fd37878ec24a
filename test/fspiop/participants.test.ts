/**
 * The participant key registry: configuration, a watched directory (hot reload without restart), the API
 * (persisted into the directory, seen by another replica on the same directory), and refusals.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile, unlink, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { calculateJwkThumbprint } from 'jose';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FspiopService } from '../../src/fspiop/fspiopService.js';
import { MAX_KEYS_PER_PARTICIPANT, ParticipantRegistry } from '../../src/fspiop/participants.js';
import type { KeyService } from '../../src/operations/keyService.js';
import { backendsUnderTest, eventually, generateTestKeyPair, keyServiceOn, referenceSigner, silentLogger, transferBody, type TestKeyPair } from './support.js';

function capturingLogger() {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, new Writable({ write(chunk, _enc, done) { lines.push(String(chunk)); done(); } }));
  return { logger, lines };
}

const thumbprint = (pair: TestKeyPair) => calculateJwkThumbprint(pair.publicKey.export({ format: 'jwk' }) as never);

function signedBy(pair: TestKeyPair, source: string) {
  const req = { method: 'post', uri: '/transfers', headers: { 'fspiop-source': source } as Record<string, string>, body: transferBody() as unknown };
  referenceSigner(pair.privatePem).sign(req);
  return { headers: req.headers, body: req.body as string };
}

let dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hsmb-fspiop-'));
  dirs.push(dir);
  return dir;
}

describe('ParticipantRegistry', () => {
  let keyService: KeyService;
  let cleanup: () => Promise<void>;
  const registries: ParticipantRegistry[] = [];
  const open = async (options: Parameters<typeof ParticipantRegistry.open>[0]) => {
    const r = await ParticipantRegistry.open(options);
    registries.push(r);
    return r;
  };

  beforeAll(async () => {
    const opened = await backendsUnderTest[0]!.open();
    cleanup = opened.cleanup;
    keyService = keyServiceOn(opened.backend);
  });
  afterEach(async () => {
    for (const r of registries.splice(0)) await r.close();
  });
  afterAll(async () => {
    await cleanup?.();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
    dirs = [];
  });

  it('a PEM file dropped into the watched directory is used within a bounded wait; removed, it is not', async () => {
    const dir = await tempDir();
    // Periodic rescan off: only the watch can pick the change up.
    const registry = await open({ logger: silentLogger, participantsDir: dir, rescanIntervalMs: 0, watchDebounceMs: 50 });
    const service = new FspiopService({ keyService, registry });
    const pair = generateTestKeyPair('RSA');
    const wire = signedBy(pair, 'hotfsp');
    expect(await service.validate(wire)).toMatchObject({ valid: false });

    await writeFile(join(dir, 'hotfsp.pem'), pair.publicPem);
    const took = await eventually(async () => (await service.validate(wire)).valid, 3000, 'key picked up');
    expect(took).toBeLessThan(3000);
    expect(await service.validate(wire)).toMatchObject({ valid: true, keyId: await thumbprint(pair) });

    await unlink(join(dir, 'hotfsp.pem'));
    await eventually(async () => !(await service.validate(wire)).valid, 3000, 'key dropped');
  });

  it('reads <p>.pem, <p>/*.pem and <p>/enc/*.pem; a participant folder created later is watched too', async () => {
    const dir = await tempDir();
    const a = generateTestKeyPair('RSA');
    const b = generateTestKeyPair('EC');
    const e = generateTestKeyPair('RSA');
    await writeFile(join(dir, 'fspa.pem'), a.publicPem);
    const registry = await open({ logger: silentLogger, participantsDir: dir, rescanIntervalMs: 0, watchDebounceMs: 50 });
    expect(registry.keysFor('fspa').map((k) => k.keyId)).toEqual([await thumbprint(a)]);

    await mkdir(join(dir, 'fspb', 'enc'), { recursive: true });
    await writeFile(join(dir, 'fspb', 'k1.pem'), b.publicPem);
    await eventually(() => registry.keysFor('fspb').length === 1, 3000, 'fspb signature key');
    // The enc folder existed before its first scan, but the key arrives after: its watcher must see it.
    await writeFile(join(dir, 'fspb', 'enc', 'k2.pem'), e.publicPem);
    await eventually(() => registry.keysFor('fspb', 'enc').length === 1, 3000, 'fspb encryption key');
    expect(registry.keysFor('fspb', 'enc')[0]).toMatchObject({ keyId: await thumbprint(e), use: 'enc', source: 'directory', kty: 'RSA', bits: 2048 });
    expect(registry.get('fspb')?.keys.map((k) => k.use)).toEqual(['sig', 'enc']);
    expect(registry.list().map((p) => p.id)).toEqual(['fspa', 'fspb']);
  });

  it('the periodic rescan catches what the watch missed', async () => {
    const dir = await tempDir();
    const registry = await open({ logger: silentLogger, participantsDir: dir, rescanIntervalMs: 200, watchDebounceMs: 60_000 });
    const pair = generateTestKeyPair('EC');
    await writeFile(join(dir, 'slowfsp.pem'), pair.publicPem);
    await eventually(() => registry.keysFor('slowfsp').length === 1, 3000, 'periodic rescan');
  });

  it('an unreadable or invalid file is logged (never its content) and skipped; the others still load', async () => {
    const dir = await tempDir();
    const good = generateTestKeyPair('RSA');
    const weak = generateTestKeyPair('RSA', 1024);
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const privatePem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ format: 'pem', type: 'spki' }).toString();
    await writeFile(join(dir, 'goodfsp.pem'), good.publicPem);
    await writeFile(join(dir, 'garbage.pem'), '-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n');
    await writeFile(join(dir, 'weakfsp.pem'), weak.publicPem);
    await writeFile(join(dir, 'leakfsp.pem'), privatePem);
    await writeFile(join(dir, 'p384fsp.pem'), p384);
    await writeFile(join(dir, 'bad name!.pem'), good.publicPem);
    await writeFile(join(dir, 'notes.txt'), 'ignored: not a .pem');
    await writeFile(join(dir, 'lockedfsp.pem'), good.publicPem);
    await chmod(join(dir, 'lockedfsp.pem'), 0o000);
    const { logger, lines } = capturingLogger();
    const registry = await open({ logger, participantsDir: dir, rescanIntervalMs: 0 });
    expect(registry.list().map((p) => p.id)).toEqual(process.getuid?.() === 0 ? ['goodfsp', 'lockedfsp'] : ['goodfsp']);
    const log = lines.join('');
    for (const f of ['garbage.pem', 'weakfsp.pem', 'leakfsp.pem', 'p384fsp.pem', 'bad name!.pem']) expect(log).toContain(f);
    expect(log).toContain('at least 2048 bits');
    expect(log).toContain('a private key was given');
    expect(log).not.toContain('BEGIN');
    expect(log).not.toContain(privatePem.split('\n')[1]!.slice(0, 20));
    // The same bad files are not reported again on every rescan.
    const before = lines.length;
    await registry.rescan();
    expect(lines.length).toBe(before);
  });

  it('API keys are written to the directory, survive a restart and are seen by another replica; delete removes the file', async () => {
    const dir = await tempDir();
    const one = await open({ logger: silentLogger, participantsDir: dir, rescanIntervalMs: 0, watchDebounceMs: 50 });
    const two = await open({ logger: silentLogger, participantsDir: dir, rescanIntervalMs: 0, watchDebounceMs: 50 });
    const sig = generateTestKeyPair('EC');
    const enc = generateTestKeyPair('RSA');
    expect(one.persistent).toBe(true);
    const added = await one.addKey('apifsp', sig.publicPem);
    expect(added).toMatchObject({ participant: 'apifsp', keyId: await thumbprint(sig), use: 'sig', kty: 'EC', bits: 256, source: 'directory' });
    expect(added.publicKeyPem).toBe(sig.publicPem);
    await one.addKey('apifsp', enc.publicPem, 'enc');
    expect((await readdir(join(dir, 'apifsp'))).sort()).toEqual([`${added.keyId}.pem`, 'enc'].sort());
    expect(await readFile(join(dir, 'apifsp', 'enc', `${await thumbprint(enc)}.pem`), 'utf8')).toBe(enc.publicPem);
    expect(one.keysFor('apifsp')).toHaveLength(1);

    await eventually(() => two.keysFor('apifsp').length === 1 && two.keysFor('apifsp', 'enc').length === 1, 3000, 'the other replica sees the keys');
    const restarted = await open({ logger: silentLogger, participantsDir: dir, rescanIntervalMs: 0 });
    expect(restarted.getKey('apifsp', added.keyId)).toMatchObject({ keyId: added.keyId, use: 'sig' });

    await expect(one.addKey('apifsp', sig.publicPem)).rejects.toMatchObject({ code: 'KEY_ALREADY_EXISTS' });
    await one.deleteKey('apifsp', added.keyId);
    expect(await readdir(join(dir, 'apifsp'))).toEqual(['enc']);
    expect(one.keysFor('apifsp')).toHaveLength(0);
    await eventually(() => two.keysFor('apifsp').length === 0, 3000, 'the other replica drops the key');
    await expect(one.deleteKey('apifsp', added.keyId)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
  });

  it('refuses weak RSA, private keys, unsupported keys and bad participant ids at registration', async () => {
    const registry = await open({ logger: silentLogger });
    const weak = generateTestKeyPair('RSA', 1024);
    await expect(registry.addKey('fsp', weak.publicPem)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('at least 2048 bits') });
    await expect(registry.addKey('fsp', weak.privatePem)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('private key') });
    await expect(registry.addKey('fsp', generateTestKeyPair('EC').publicPem, 'enc')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('RSA') });
    const ed = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString();
    await expect(registry.addKey('fsp', ed)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(registry.addKey('fsp', 'hello')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(registry.addKey('../etc', generateTestKeyPair('EC').publicPem)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(registry.addKey('fsp', generateTestKeyPair('EC').publicPem, 'sign')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    // Encryption goes to the newest key: the last one keysFor returns.
    const first = await registry.addKey('encfsp', generateTestKeyPair('RSA').publicPem, 'enc');
    await new Promise((r) => setTimeout(r, 5));
    const second = await registry.addKey('encfsp', generateTestKeyPair('RSA').publicPem, 'enc');
    expect(registry.keysFor('encfsp', 'enc').map((k) => k.keyId)).toEqual([first.keyId, second.keyId]);
    expect(registry.keysFor('encfsp', 'sig')).toEqual([]);
    // A PKCS#1 RSA public key is accepted and stored as SPKI.
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    const view = await registry.addKey('fsp', rsa.export({ format: 'pem', type: 'pkcs1' }).toString());
    expect(view.publicKeyPem).toBe(rsa.export({ format: 'pem', type: 'spki' }).toString());
  });

  it('configuration keys load from PEM text or a path; a bad one fails the start and is named', async () => {
    const dir = await tempDir();
    const a = generateTestKeyPair('RSA');
    const b = generateTestKeyPair('EC');
    await writeFile(join(dir, 'b.pem'), b.publicPem);
    const registry = await open({ logger: silentLogger, participants: [{ id: 'cfgfsp', keys: [a.publicPem, join(dir, 'b.pem')], encryptionKeys: [a.publicPem] }] });
    expect(registry.keysFor('cfgfsp').map((k) => k.source)).toEqual(['config', 'config']);
    expect(registry.keysFor('cfgfsp', 'enc')).toHaveLength(1);
    await expect(ParticipantRegistry.open({ logger: silentLogger, participants: [{ id: 'cfgfsp', keys: [generateTestKeyPair('RSA', 1024).publicPem] }] }))
      .rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('fspiop.participants[0].keys[0]') });
    await expect(ParticipantRegistry.open({ logger: silentLogger, participants: [{ id: 'cfgfsp', keys: [join(dir, 'missing.pem')] }] }))
      .rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('cannot read') });
    await expect(ParticipantRegistry.open({ logger: silentLogger, participants: [{ id: 'bad id', keys: [] }] }))
      .rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('fspiop.participants[0]') });
  });
  it(`a participant has at most ${MAX_KEYS_PER_PARTICIPANT} keys per use: the API, a directory scan and the configuration all hold to it`, async () => {
    const pairs = Array.from({ length: MAX_KEYS_PER_PARTICIPANT + 2 }, () => generateTestKeyPair('EC'));
    const full = pairs.slice(0, MAX_KEYS_PER_PARTICIPANT);

    // The API, in memory: the 17th signature key is refused; another use has its own count.
    const memory = await open({ logger: silentLogger });
    for (const pair of full) await memory.addKey('capfsp', pair.publicPem);
    await expect(memory.addKey('capfsp', pairs.at(-1)!.publicPem)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(`already has ${MAX_KEYS_PER_PARTICIPANT} signature keys`) });
    expect(memory.keysFor('capfsp')).toHaveLength(MAX_KEYS_PER_PARTICIPANT);
    await memory.addKey('capfsp', generateTestKeyPair('RSA').publicPem, 'enc');

    // A directory with two keys too many: every replica keeps the same 16 (by file name) and logs the others once.
    const dir = await tempDir();
    await mkdir(join(dir, 'capfsp'));
    for (const [i, pair] of pairs.entries()) await writeFile(join(dir, 'capfsp', `${String(i).padStart(2, '0')}.pem`), pair.publicPem);
    const { logger, lines } = capturingLogger();
    const scanned = await open({ logger, participantsDir: dir, rescanIntervalMs: 0 });
    expect(scanned.keysFor('capfsp').map((k) => k.path!.slice(-6))).toEqual(full.map((_, i) => `${String(i).padStart(2, '0')}.pem`));
    const skipped = lines.filter((l) => l.includes(`already has ${MAX_KEYS_PER_PARTICIPANT} keys`));
    expect(skipped.map((l) => (JSON.parse(l) as { path: string }).path.slice(-6))).toEqual(['16.pem', '17.pem']);
    await scanned.rescan();
    expect(lines.filter((l) => l.includes(`already has ${MAX_KEYS_PER_PARTICIPANT} keys`))).toHaveLength(2);
    await expect(scanned.addKey('capfsp', generateTestKeyPair('EC').publicPem)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await readdir(join(dir, 'capfsp'))).toHaveLength(pairs.length);

    // The configuration: one list, or the same participant listed twice.
    const keys = pairs.map((p) => p.publicPem);
    await expect(ParticipantRegistry.open({ logger: silentLogger, participants: [{ id: 'capfsp', keys: keys.slice(0, MAX_KEYS_PER_PARTICIPANT + 1) }] }))
      .rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(`more than ${MAX_KEYS_PER_PARTICIPANT}`) });
    await expect(ParticipantRegistry.open({ logger: silentLogger, participants: [{ id: 'capfsp', keys: keys.slice(0, 9) }, { id: 'capfsp', keys: keys.slice(9) }] }))
      .rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('fspiop.participants[1]') });
  });

  it('signature keys are indexed by type: validation tries only keys of the signature\'s family', async () => {
    const rsaPair = generateTestKeyPair('RSA');
    const ecPairs = [generateTestKeyPair('EC'), generateTestKeyPair('EC')];
    const registry = await open({ logger: silentLogger, participants: [{ id: 'mixfsp', keys: [ecPairs[0]!.publicPem, rsaPair.publicPem] }] });
    await registry.addKey('mixfsp', ecPairs[1]!.publicPem);
    expect(registry.signatureKeys('mixfsp', 'RSA').map((k) => k.keyId)).toEqual([await thumbprint(rsaPair)]);
    expect(registry.signatureKeys('mixfsp', 'EC').map((k) => k.keyId)).toEqual([await thumbprint(ecPairs[0]!), await thumbprint(ecPairs[1]!)]);
    expect(registry.signatureKeys('nobody', 'EC')).toEqual([]);
  });
});
