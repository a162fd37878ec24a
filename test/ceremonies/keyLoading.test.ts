/**
 * Key loading as a new acquirer does it, through startApp (the real composition: mutual TLS, the access
 * policy, the audit trail, the reserved wrapping key), on the software backend and on SoftHSM, over REST
 * and gRPC:
 * 1. a KBPK formed from two components, entered by two mTLS identities;
 * 2. the TR-31:2018 A.7.2.2 block imported under it (KCV 57C409);
 * 3. a zone PIN key formed from components too;
 * 4. the X9.24-1 BDK imported under the KBPK, and the X9.24-1 DUKPT PIN blocks translated to the zone key;
 * 5. the result deciphered independently with node:crypto.
 * Then the dual-control refusals, each leaving no key and no ceremony, and the audit records of it all.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { credentials as grpcCredentials, loadPackageDefinition, Metadata, type Client, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../../src/app.js';
import { loadServiceConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { setOddParity } from '../../src/payment/crypto/parity.js';
import { cmacWithKey } from '../../src/payment/crypto/cmac.js';
import { deriveKeyBlockKeys, sealKeyBlock } from '../../src/payment/tr31/keyBlock.js';
import { findProtoRoot } from '../../src/transports/grpc/protos.js';
import { httpsJson, type HttpsAnswer } from '../helpers/httpsJson.js';
import { nodeEcb, nodeKcv } from '../../src/conformance/reference/nodeBlockCiphers.js';
import { createSoftwareBackendConfig } from '../helpers/software.js';
import { tempDir } from '../identity/accessSupport.js';
import { BDK, CLEAR_PIN_BLOCK, KSN_PREFIX, initialSequence } from '../payment/dukpt/tdesVectors.js';

const hex = (s: string) => Buffer.from(s, 'hex');
const toHex = (b: Buffer) => b.toString('hex').toUpperCase();
/** TR-31:2018 A.7.2.2 (FIELD-NOTES section 5). */
const KBPK = hex('DD7515F2BFC17F85CE48F3CA25CB21F6');
const A722_BLOCK = 'B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E';
const PAN = '4012345678909';

// --- a throwaway PKI: the server, an operator and three custodians, each a client certificate ---------------

const files = tempDir();
const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: files.dir, stdio: ['ignore', 'pipe', 'pipe'] });
let serial = 1;
function leaf(name: string, cn: string, ext: string): void {
  openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-sha256', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
  writeFileSync(files.at(`${name}.ext`), ext);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', String(serial++), '-days', '2', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.pem`);
}
openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-sha256', '-days', '2', '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=key loading test CA',
  '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
leaf('server', 'localhost', 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n');
const CLIENT_EXT = 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n';
const people = ['operator', 'alice', 'bob', 'carol'] as const;
type Person = (typeof people)[number];
for (const p of people) leaf(p, `custodian-${p}`, CLIENT_EXT);
const pem = (name: string) => readFileSync(files.at(name));

const policy = `
principals:
  operator: { certSubject: "CN=custodian-operator" }
  alice: { certSubject: "CN=custodian-alice" }
  bob: { certSubject: "CN=custodian-bob" }
  carol: { certSubject: "CN=custodian-carol" }
rules:
  - principal: operator
    allow: [ceremonies.create, ceremonies.get, ceremonies.cancel, keys.get, keys.list, keys.importTr31, pin.translate]
    keys: ["*"]
${['alice', 'bob'].map((p) => `  - principal: ${p}\n    allow: [ceremonies.enterComponent, ceremonies.get]\n    keys: ["*"]\n`).join('')}  - principal: carol
    allow: [ceremonies.enterComponent, ceremonies.get]
    keys: ["zpk-*"]
`;
writeFileSync(files.at('policy.yaml'), policy);

// --- the two transports, as one small client per person ----------------------------------------------------

interface Answer {
  /** HTTP status, or the gRPC status (0 = OK). */
  readonly ok: boolean;
  readonly code?: string;
  readonly message?: string;
  readonly body?: any;
}

interface Wire {
  readonly name: 'REST' | 'gRPC';
  startCeremony(who: Person, body: Record<string, unknown>): Promise<Answer>;
  enter(who: Person, id: string, component: string, kcv: string): Promise<Answer>;
  getCeremony(who: Person, id: string): Promise<Answer>;
  cancel(who: Person, id: string): Promise<Answer>;
  importTr31(who: Person, name: string, keyBlock: string, kbpk: string): Promise<Answer>;
  translate(who: Person, bdk: string, ksn: string, pinBlock: string, zpk: string): Promise<Answer>;
  getKey(who: Person, name: string): Promise<Answer>;
}

function restWire(app: RunningApp): Wire {
  const port = Number(new URL(app.restUrl!).port);
  const call = async (who: Person, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<Answer> => {
    const r: HttpsAnswer = await httpsJson(port, method, path, body, { ca: pem('ca.pem'), cert: pem(`${who}.pem`), key: pem(`${who}.key`) });
    return r.status < 300 ? { ok: true, body: r.body } : { ok: false, code: r.body?.error?.code, message: r.body?.error?.message };
  };
  return {
    name: 'REST',
    startCeremony: (who, body) => call(who, 'POST', '/v1/ceremonies', body),
    enter: (who, id, component, kcv) => call(who, 'POST', `/v1/ceremonies/${id}/components`, { component, kcv }),
    getCeremony: (who, id) => call(who, 'GET', `/v1/ceremonies/${id}`),
    cancel: (who, id) => call(who, 'DELETE', `/v1/ceremonies/${id}`),
    importTr31: async (who, name, keyBlock, kbpk) => {
      const r = await call(who, 'POST', '/v1/keys/import/tr31', { name, keyBlock, kbpk: { keyName: kbpk } });
      return r.ok ? { ok: true, body: { name: r.body.key.name, keyCheckValue: r.body.keyCheckValue } } : r;
    },
    translate: (who, bdk, ksn, pinBlock, zpk) =>
      call(who, 'POST', '/v1/pin/translate', { incoming: { keyName: bdk, format: 'ISO_FORMAT_0', pan: PAN, dukpt: { ksn } }, outgoing: { keyName: zpk, format: 'ISO_FORMAT_0' }, pinBlock }),
    getKey: (who, name) => call(who, 'GET', `/v1/keys/${name}`),
  };
}

function grpcWire(app: RunningApp): Wire & { close(): void } {
  const definition = loadSync(['hsmbridge/v1/key_service.proto', 'hsmbridge/v1/payment_service.proto'], { includeDirs: [findProtoRoot()], keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
  const pkg = loadPackageDefinition(definition) as any;
  const clients = new Map<string, Client & Record<string, any>>();
  const client = (who: Person, service: 'KeyService' | 'PaymentService') => {
    const id = `${who}/${service}`;
    let c = clients.get(id);
    if (!c) {
      const Ctor = pkg.hsmbridge.v1[service] as ServiceClientConstructor;
      c = new Ctor(`localhost:${app.grpcPort}`, grpcCredentials.createSsl(pem('ca.pem'), pem(`${who}.key`), pem(`${who}.pem`))) as Client & Record<string, any>;
      clients.set(id, c);
    }
    return c;
  };
  const call = (who: Person, service: 'KeyService' | 'PaymentService', method: string, request: Record<string, unknown>): Promise<Answer> =>
    new Promise((resolve) => {
      client(who, service)[method](request, new Metadata(), (err: ServiceError | null, answer: unknown) => {
        if (!err) return resolve({ ok: true, body: answer });
        resolve({ ok: false, code: err.metadata.get('hsmbridge-error-code')[0] as string, message: err.details });
      });
    });
  const componentsAnswer = (r: Answer): Answer => {
    if (!r.ok || !r.body.key) return r;
    return { ok: true, body: { ...r.body.key, received: r.body.received, of: r.body.of, keyCheckValue: r.body.keyCheckValue } };
  };
  return {
    name: 'gRPC',
    startCeremony: (who, body) => call(who, 'KeyService', 'StartCeremony', body),
    enter: async (who, id, component, kcv) => componentsAnswer(await call(who, 'KeyService', 'EnterComponent', { id, component, kcv })),
    getCeremony: (who, id) => call(who, 'KeyService', 'GetCeremony', { id }),
    cancel: (who, id) => call(who, 'KeyService', 'CancelCeremony', { id }),
    importTr31: async (who, name, keyBlock, kbpk) => {
      const r = await call(who, 'PaymentService', 'ImportTr31', { name, keyBlock, kbpk: { keyName: kbpk } });
      return r.ok ? { ok: true, body: { name: r.body.key.name, keyCheckValue: r.body.keyCheckValue } } : r;
    },
    translate: async (who, bdk, ksn, pinBlock, zpk) =>
      call(who, 'PaymentService', 'TranslatePin', { incoming: { keyName: bdk, format: 'ISO_FORMAT_0', pan: PAN, dukpt: { ksn } }, outgoing: { keyName: zpk, format: 'ISO_FORMAT_0' }, pinBlock }),
    getKey: (who, name) => call(who, 'KeyService', 'GetKey', { name }),
    close: () => {
      for (const c of clients.values()) c.close();
    },
  };
}

// --- components ---------------------------------------------------------------------------------------------

/** `parts` TDES components with odd parity whose XOR is `key` up to parity bits (which DES ignores). */
function componentsOf(key: Buffer, parts: 2 | 3): Buffer[] {
  const out = Array.from({ length: parts - 1 }, () => setOddParity(randomBytes(key.length)));
  const last = Buffer.from(key);
  for (const c of out) for (let i = 0; i < last.length; i++) last[i]! ^= c[i]!;
  return [...out, setOddParity(last)];
}

/** A TR-31 version B block of `key` under the KBPK (this project's sealing, which the published vectors check). */
async function sealUnderKbpk(key: Buffer, keyUsage: string, modeOfUse: string): Promise<string> {
  const keys = await deriveKeyBlockKeys('B', KBPK.length, async (input) => cmacWithKey('tdes', KBPK, input));
  return sealKeyBlock({ version: 'B', keyUsage, algorithm: 'T', modeOfUse, keyVersionNumber: '00', exportability: 'N', optionalBlocks: [] } as never, key, keys);
}

// --- the targets ------------------------------------------------------------------------------------------

interface Target {
  readonly backend: 'software' | 'SoftHSM';
  readonly app: RunningApp;
  readonly auditFile: string;
  readonly wires: Wire[];
  /** What the backend still holds of a ceremony: on SoftHSM its token objects (plan, staged components), inspected directly; in software, mentions in the keystore file. */
  leftovers(id: string): number;
  close(): Promise<void>;
}

async function startTarget(backend: Target['backend']): Promise<Target> {
  const dir = tempDir();
  let backendSection: Record<string, unknown>;
  let cleanup: () => Promise<void>;
  let leftovers: (id: string) => number;
  if (backend === 'software') {
    const h = await createSoftwareBackendConfig();
    backendSection = { type: 'software', software: h.config };
    cleanup = () => h.cleanup();
    leftovers = (id) => readFileSync(h.config.keystorePath, 'utf8').split(id).length - 1;
  } else {
    const { createSoftHsmToken } = await import('../helpers/softhsm.js');
    const { TokenInspector } = await import('../adapters/pkcs11/tokenInspector.js');
    const token = await createSoftHsmToken();
    backendSection = { type: 'pkcs11', pkcs11: token.backendConfig() };
    cleanup = () => token.cleanup();
    const inspector = new TokenInspector(token.library, token.tokenLabel, token.pin);
    // The adapter labels a ceremony's plan (a data object) and staged components (secret objects) with its id.
    leftovers = (id) => inspector.objects(id, pkcs11js.CKO_DATA, []).length + inspector.objects(id, pkcs11js.CKO_SECRET_KEY, []).length;
  }
  const tls = { certFile: files.at('server.pem'), keyFile: files.at('server.key'), caFile: files.at('ca.pem'), requireClientCert: true };
  const auditFile = dir.at('audit.jsonl');
  writeFileSync(dir.at('config.json'), JSON.stringify({
    rest: { host: '127.0.0.1', port: 0, tls },
    grpc: { host: '127.0.0.1', port: 0, tls },
    ops: { enabled: false },
    access: { policyFile: files.at('policy.yaml') },
    audit: { file: auditFile, flushMs: 10 },
    keys: { metadataCacheTtlMs: 0 },
    backend: backendSection,
  }));
  const app = await startApp(loadServiceConfig({ file: dir.at('config.json'), env: {} }), createLogger('silent'));
  const grpc = grpcWire(app);
  return {
    backend,
    app,
    auditFile,
    wires: [restWire(app), grpc],
    leftovers,
    async close() {
      grpc.close();
      await app.close();
      await cleanup();
      dir.remove();
    },
  };
}

afterAll(() => files.remove());

/** Every component the tests entered, in hex: none may appear in an audit trail. */
const entered: string[] = [];

/** Forms a key from components entered by `by` (one custodian each); answers the last answer. */
async function ceremony(wire: Wire, plan: Record<string, unknown>, key: Buffer, by: Person[]): Promise<{ id: string; last: Answer }> {
  const started = await wire.startCeremony('operator', plan);
  expect(started, JSON.stringify(started)).toMatchObject({ ok: true });
  const id = started.body.id as string;
  const parts = componentsOf(key, by.length as 2 | 3);
  let last: Answer = started;
  for (const [i, part] of parts.entries()) {
    entered.push(toHex(part));
    last = await wire.enter(by[i]!, id, toHex(part), nodeKcv('tdes', part));
    expect(last.ok, JSON.stringify(last)).toBe(true);
  }
  return { id, last };
}

describe.each(['software', 'SoftHSM'] as const)('key loading on %s', (backendName) => {
  let started: Target | undefined;
  const target = () => started!;
  beforeAll(async () => {
    started = await startTarget(backendName);
  }, 60_000);
  afterAll(async () => {
    await started?.close();
  });

  describe.each([0, 1])('over transport %i', (w) => {
    const wire = () => target().wires[w]!;
    const n = (stem: string) => `${stem}-${backendName === 'software' ? 'sw' : 'hsm'}-${w}`;

    it('forms the KBPK and a zone PIN key from components, imports under it, and translates DUKPT blocks to the zone key', async () => {
      // 1. The KBPK, by alice and bob; its KCV is checked against the one the partner gave.
      const kbpk = await ceremony(wire(), { name: n('zmk'), type: 'TDES_2KEY', purpose: 'kbpk', keyUsage: 'K1', components: 2, expectedKcv: nodeKcv('tdes', KBPK) }, KBPK, ['alice', 'bob']);
      expect(kbpk.last.body).toMatchObject({ name: n('zmk'), type: 'TDES_2KEY', purpose: 'kbpk', state: 'enabled', keyCheckValue: nodeKcv('tdes', KBPK), received: 2, of: 2 });
      expect((await wire().getCeremony('operator', kbpk.id)).code).toBe('CEREMONY_NOT_FOUND');

      // 2. The published TR-31 block under it.
      const imported = await wire().importTr31('operator', n('tpk'), A722_BLOCK, n('zmk'));
      expect(imported).toMatchObject({ ok: true, body: { name: n('tpk'), keyCheckValue: '57C409' } });

      // 3. A zone PIN key from three components.
      const zpkValue = setOddParity(randomBytes(16));
      const zpk = await ceremony(wire(), { name: n('zpk'), type: 'TDES_2KEY', purpose: 'pin', components: 3 }, zpkValue, ['carol', 'alice', 'bob']);
      expect(zpk.last.body.keyCheckValue).toBe(nodeKcv('tdes', zpkValue));

      // 4. The X9.24-1 BDK under the KBPK, then the annex's PIN blocks translated to the zone key.
      const bdk = await wire().importTr31('operator', n('bdk'), await sealUnderKbpk(BDK, 'B0', 'X'), n('zmk'));
      expect(bdk).toMatchObject({ ok: true, body: { keyCheckValue: '08D7B4' } });
      for (const [suffix, , encrypted] of initialSequence.slice(0, 3)) {
        const r = await wire().translate('operator', n('bdk'), KSN_PREFIX + suffix, encrypted, n('zpk'));
        expect(r.ok, JSON.stringify(r)).toBe(true);
        // 5. Deciphered independently: the annex's clear block (PIN 1234, PAN 4012345678909, format 0).
        const block = typeof r.body.pinBlock === 'string' ? hex(r.body.pinBlock) : r.body.pinBlock;
        expect(toHex(nodeEcb('tdes', 'decrypt', zpkValue, block))).toBe(toHex(CLEAR_PIN_BLOCK));
      }
    });

    it('refuses what dual control and the checks refuse, leaving no key and no ceremony behind', async () => {
      const value = setOddParity(randomBytes(16));
      const [c1, c2] = componentsOf(value, 2) as [Buffer, Buffer];
      const start = async (stem: string, extra: Record<string, unknown> = {}) => {
        const r = await wire().startCeremony('operator', { name: n(stem), type: 'TDES_2KEY', purpose: 'pin', components: 2, ...extra });
        expect(r.ok, JSON.stringify(r)).toBe(true);
        return r.body.id as string;
      };
      /** No key, and nothing of the ceremony left in the backend. */
      const nothingLeft = async (stem: string, ceremonyId: string) => {
        expect((await wire().getKey('operator', n(stem))).code).toBe('KEY_NOT_FOUND');
        expect(target().leftovers(ceremonyId)).toBe(0);
      };

      // The same identity twice.
      let id = await start('twice');
      expect((await wire().enter('alice', id, toHex(c1), nodeKcv('tdes', c1))).ok).toBe(true);
      expect(await wire().enter('alice', id, toHex(c2), nodeKcv('tdes', c2))).toMatchObject({ ok: false, code: 'DUAL_CONTROL' });
      expect((await wire().getCeremony('operator', id)).body).toMatchObject({ received: 1, components: 2, entries: [{ number: 1, enteredBy: 'certificate:custodian-alice', kcv: nodeKcv('tdes', c1) }] });
      expect(target().leftovers(id)).toBeGreaterThan(0); // the plan and the staged component, until cancelled
      expect((await wire().cancel('operator', id)).ok).toBe(true);
      expect((await wire().getCeremony('operator', id)).code).toBe('CEREMONY_NOT_FOUND');
      await nothingLeft('twice', id);

      // A wrong KCV names the component; a component with even parity is refused.
      id = await start('wrongkcv');
      const wrong = await wire().enter('alice', id, toHex(c1), nodeKcv('tdes', c2));
      expect(wrong).toMatchObject({ ok: false, code: 'KCV_MISMATCH' });
      expect(wrong.message).toContain('component 1');
      const even = Buffer.from(c1);
      even[0]! ^= 1;
      expect(await wire().enter('alice', id, toHex(even), nodeKcv('tdes', even))).toMatchObject({ ok: false, code: 'INVALID_ARGUMENT' });
      expect((await wire().getCeremony('operator', id)).body.received).toBe(0);
      expect((await wire().cancel('operator', id)).ok).toBe(true);
      await nothingLeft('wrongkcv', id);

      // The combined key's KCV against expectedKcv: the ceremony ends and no key is made.
      id = await start('wrongtotal', { expectedKcv: '000000' });
      expect((await wire().enter('alice', id, toHex(c1), nodeKcv('tdes', c1))).ok).toBe(true);
      expect(await wire().enter('bob', id, toHex(c2), nodeKcv('tdes', c2))).toMatchObject({ ok: false, code: 'KCV_MISMATCH' });
      expect((await wire().getCeremony('operator', id)).code).toBe('CEREMONY_NOT_FOUND');
      await nothingLeft('wrongtotal', id);

      // A custodian may not start one, nor the operator enter a component; a custodian whose keys are
      // zpk-* may not enter a component of another key's ceremony, nor read it (the policy).
      expect((await wire().startCeremony('alice', { name: n('x'), type: 'TDES_2KEY', purpose: 'pin', components: 2 })).code).toBe('PERMISSION_DENIED');
      id = await start('policy');
      expect((await wire().enter('operator', id, toHex(c1), nodeKcv('tdes', c1))).code).toBe('PERMISSION_DENIED');
      const outOfScope = await wire().enter('carol', id, toHex(c1), nodeKcv('tdes', c1));
      expect(outOfScope).toMatchObject({ ok: false, code: 'PERMISSION_DENIED' });
      expect(outOfScope.message).toContain(n('policy'));
      expect((await wire().getCeremony('carol', id)).code).toBe('PERMISSION_DENIED');
      // Two components with one KCV (the same component twice) would cancel out.
      expect((await wire().enter('alice', id, toHex(c1), nodeKcv('tdes', c1))).ok).toBe(true);
      expect(await wire().enter('bob', id, toHex(c1), nodeKcv('tdes', c1))).toMatchObject({ ok: false, code: 'INVALID_ARGUMENT' });
      expect((await wire().cancel('operator', id)).ok).toBe(true);
    });
  });

  it('takes a custodian to be every credential it presented: a certificate with a token added is still the same custodian', async () => {
    const ceremonies = target().app.service.ceremonies;
    const value = setOddParity(randomBytes(16));
    const [c1, c2] = componentsOf(value, 2) as [Buffer, Buffer];
    const started = await ceremonies.start({ name: `faces-${backendName}`, type: 'TDES_2KEY', purpose: 'pin', components: 2 }, { authenticatedBy: 'certificate', id: 'custodian-operator' });
    const alice = { authenticatedBy: 'certificate', id: 'custodian-alice', certSubject: 'CN=custodian-alice', certSans: [] } as const;
    await ceremonies.enter({ id: started.id, component: Buffer.from(c1), kcv: nodeKcv('tdes', c1) }, alice);
    // The same certificate, now with a bearer token for someone else: the caller reads as the token's subject.
    const aliceWithToken = { ...alice, authenticatedBy: 'token', id: 'some-service', jwtClaims: { iss: 'https://idp.example', sub: 'some-service' } } as const;
    await expect(ceremonies.enter({ id: started.id, component: Buffer.from(c2), kcv: nodeKcv('tdes', c2) }, aliceWithToken)).rejects.toMatchObject({ code: 'DUAL_CONTROL' });
    // Another certificate with one SAN in common.
    const spiffe = (cn: string) => ({ authenticatedBy: 'certificate', id: cn, certSubject: `CN=${cn}`, certSans: ['URI:spiffe://bank/custodian'] }) as const;
    const other = await ceremonies.start({ name: `faces2-${backendName}`, type: 'TDES_2KEY', purpose: 'pin', components: 2 }, { authenticatedBy: 'certificate', id: 'custodian-operator' });
    await ceremonies.enter({ id: other.id, component: Buffer.from(c1), kcv: nodeKcv('tdes', c1) }, spiffe('one'));
    await expect(ceremonies.enter({ id: other.id, component: Buffer.from(c2), kcv: nodeKcv('tdes', c2) }, spiffe('two'))).rejects.toMatchObject({ code: 'DUAL_CONTROL' });
    // Anonymous callers are all the same one: no ceremony for them.
    await expect(ceremonies.start({ name: 'anon', type: 'TDES_2KEY', purpose: 'pin', components: 2 }, { authenticatedBy: 'none', id: 'anonymous' })).rejects.toMatchObject({ code: 'DUAL_CONTROL' });
    await ceremonies.cancel(started.id);
    await ceremonies.cancel(other.id);
  });

  it('expires a ceremony after ceremonies.ttlMs, destroying what was staged', async () => {
    const { app } = target();
    const value = setOddParity(randomBytes(16));
    const [c1] = componentsOf(value, 2) as [Buffer, Buffer];
    const ceremonies = app.service.ceremonies;
    const caller = { authenticatedBy: 'certificate', id: 'custodian-alice' } as const;
    const started = await ceremonies.start({ name: `expiring-${backendName}`, type: 'TDES_2KEY', purpose: 'pin', components: 2 }, { authenticatedBy: 'certificate', id: 'custodian-operator' });
    await ceremonies.enter({ id: started.id, component: Buffer.from(c1), kcv: nodeKcv('tdes', c1) }, caller);
    // The plan says when; the check compares with the clock: a ceremony whose time has passed is ended on its next use.
    const realNow = Date.now;
    Date.now = () => Date.parse(started.expiresAt) + 1;
    try {
      await expect(ceremonies.describe(started.id)).rejects.toMatchObject({ code: 'CEREMONY_EXPIRED' });
    } finally {
      Date.now = realNow;
    }
    await expect(ceremonies.describe(started.id)).rejects.toMatchObject({ code: 'CEREMONY_NOT_FOUND' });
    expect(target().leftovers(started.id)).toBe(0);

    // Unattended: the sweep ends what expired, and only that.
    const stale = await ceremonies.start({ name: `stale-${backendName}`, type: 'AES_128', purpose: 'kbpk', components: 2 }, { authenticatedBy: 'certificate', id: 'custodian-operator' });
    const aesPart = randomBytes(16);
    await ceremonies.enter({ id: stale.id, component: Buffer.from(aesPart), kcv: nodeKcv('aes', aesPart) }, caller);
    await new Promise((resolve) => setTimeout(resolve, 5)); // so that the next one expires strictly later
    const fresh = await ceremonies.start({ name: `fresh-${backendName}`, type: 'AES_128', purpose: 'kbpk', components: 2 }, { authenticatedBy: 'certificate', id: 'custodian-operator' });
    expect(target().leftovers(stale.id)).toBeGreaterThan(0);
    Date.now = () => Date.parse(stale.expiresAt) + 1;
    try {
      expect(await ceremonies.sweep()).toBeGreaterThanOrEqual(1);
    } finally {
      Date.now = realNow;
    }
    expect(target().leftovers(stale.id)).toBe(0);
    await expect(ceremonies.describe(stale.id)).rejects.toMatchObject({ code: 'CEREMONY_NOT_FOUND' });
    // The one started later has not expired: it is still there.
    expect((await ceremonies.describe(fresh.id)).received).toBe(0);
    await ceremonies.cancel(fresh.id);
  });

  it('audits every step: who started it, who entered component n, whether its KCV matched, the completion; never a component', async () => {
    const records = readFileSync(target().auditFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>).filter((r) => r.type === 'operation');
    const create = records.find((r) => r.operation === 'ceremonies.create' && r.outcome === 'ok');
    expect(create).toMatchObject({ caller: { id: 'custodian-operator', authenticatedBy: 'certificate' }, details: { ceremony: expect.stringMatching(/^[0-9a-f]{32}$/), components: 2 } });
    const entries = records.filter((r) => r.operation === 'ceremonies.enterComponent' && r.details?.ceremony === create!.details.ceremony);
    expect(entries.map((r) => [r.caller.id, r.outcome, r.details.component, r.details.kcvMatched, r.details.completed])).toEqual([
      ['custodian-alice', 'ok', 1, true, false],
      ['custodian-bob', 'ok', 2, true, true],
    ]);
    expect(entries[1]!.keys).toEqual([{ name: expect.stringMatching(/^zmk-/), version: 1 }]);
    const mismatch = records.find((r) => r.operation === 'ceremonies.enterComponent' && r.outcome === 'KCV_MISMATCH' && r.details?.kcvMatched === false);
    expect(mismatch).toMatchObject({ details: { component: 1, kcvMatched: false } });
    expect(records.some((r) => r.operation === 'ceremonies.enterComponent' && r.outcome === 'DUAL_CONTROL')).toBe(true);
    expect(records.some((r) => r.operation === 'ceremonies.expire' && r.transport === 'internal')).toBe(true);
    // No component the tests entered, in any case, anywhere in the trail, nor the keys they formed.
    const text = readFileSync(target().auditFile, 'utf8').toUpperCase();
    expect(entered.length).toBeGreaterThan(0);
    for (const part of [...entered, toHex(KBPK)]) expect(text).not.toContain(part.slice(0, 12));
  });
});
