/**
 * Shared pieces of the FSPIOP tests: our KeyService on the software backend and on SoftHSM, the
 * reference client's JWS module (loaded on its own, as Mojaloop services load it), and key helpers.
 */
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';
import { pkcs11BackendFactory } from '../../adapters/pkcs11/index.js';
import { softwareBackendFactory } from '../../adapters/software/index.js';
import type { Backend } from '../../src/backend/port.js';
import { publicKeyForms } from '../../src/keys/publicKey.js';
import { KeyService } from '../../src/operations/keyService.js';
import { createSoftHsmToken } from '../helpers/softhsm.js';
import { createSoftwareBackendConfig } from '../helpers/software.js';

const require = createRequire(import.meta.url);

export const silentLogger: Logger = pino({ level: 'silent' });

export interface RefRequest {
  headers: Record<string, string>;
  body?: unknown;
}
interface JwsSignerInstance {
  sign(req: { method: string; uri: string; headers: Record<string, string>; body: unknown }): void;
}
interface JwsValidatorInstance {
  validate(req: RefRequest): true;
}
export interface ReferenceJws {
  signer: new (config: { signingKey: string; logger?: unknown }) => JwsSignerInstance;
  validator: new (config: { validationKeys: Record<string, string>; logger?: unknown }) => JwsValidatorInstance;
}

export const referenceJws = require('@mojaloop/sdk-standard-components/src/lib/jws') as ReferenceJws;
export const safeStableStringify = require('safe-stable-stringify') as (value: unknown) => string;

/** The reference client logs every refusal at error level through config.logger.child(); keep it quiet. */
const quiet = { debug() {}, info() {}, warn() {}, error() {}, isDebugEnabled: false };
export const referenceLogger = { child: () => quiet };

export function referenceValidator(keys: Record<string, string>): JwsValidatorInstance {
  return new referenceJws.validator({ validationKeys: keys, logger: referenceLogger });
}

export function referenceSigner(privatePem: string): JwsSignerInstance {
  return new referenceJws.signer({ signingKey: privatePem, logger: referenceLogger });
}

/** Whether the reference validator accepts a request (it throws to refuse). */
export function referenceAccepts(keys: Record<string, string>, req: RefRequest): boolean {
  try {
    return referenceValidator(keys).validate(req);
  } catch {
    return false;
  }
}

export interface TestKeyPair {
  readonly privatePem: string;
  readonly publicPem: string;
  readonly publicKey: KeyObject;
}

/** A key pair in the PEM forms the reference signer needs (it picks ES256 only for a "BEGIN EC" key). */
export function generateTestKeyPair(kind: 'RSA' | 'EC', bits = 2048): TestKeyPair {
  const { privateKey, publicKey } =
    kind === 'RSA' ? generateKeyPairSync('rsa', { modulusLength: bits }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    privatePem: privateKey.export({ format: 'pem', type: kind === 'RSA' ? 'pkcs1' : 'sec1' }).toString(),
    publicPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    publicKey,
  };
}

export interface BackendUnderTest {
  readonly label: string;
  open(): Promise<{ backend: Backend; cleanup(): Promise<void> }>;
}

export const backendsUnderTest: BackendUnderTest[] = [
  {
    label: 'software',
    async open() {
      const h = await createSoftwareBackendConfig();
      const backend = await softwareBackendFactory.create(h.config, { logger: silentLogger });
      return { backend, cleanup: async () => { await backend.close(); await h.cleanup(); } };
    },
  },
  {
    label: 'SoftHSM',
    async open() {
      const token = await createSoftHsmToken();
      const backend = await pkcs11BackendFactory.create(token.backendConfig(), { logger: silentLogger });
      return { backend, cleanup: async () => { await backend.close(); await token.cleanup(); } };
    },
  },
];

export function keyServiceOn(backend: Backend): KeyService {
  return new KeyService(backend, { limits: { maxDataBytes: 512 * 1024, maxRandomBytes: 1024 }, metadataCacheTtlMs: 1000 });
}

/** The public PEM of a key's primary version, as GET /v1/keys/{name} shows it. */
export async function publicPemOf(keyService: KeyService, name: string): Promise<string> {
  const meta = await keyService.getKey(name);
  const version = meta.versions.find((v) => v.version === meta.primaryVersion)!;
  return publicKeyForms(meta, version)!.pem;
}

export function publicKeyOfPem(pem: string): KeyObject {
  return createPublicKey(pem);
}

/** Waits until `check` holds, polling; fails after `timeoutMs`. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A typical FSPIOP body (POST /transfers), members deliberately not in sorted order. */
export function transferBody(id = '0a3c5d2e-7f3b-4a4e-9b8e-6f0f3f1b2c3d'): Record<string, unknown> {
  return {
    transferId: id,
    payerFsp: 'payerfsp',
    payeeFsp: 'payeefsp',
    amount: { currency: 'USD', amount: '123.45' },
    ilpPacket: 'AYIBgQAAAAAAAASwNGxldmVsb25lLmRmc3AxLm1lci45OGZmYmU',
    condition: 'f5sqb7tBTWPd5Y8BDFdMm9BJR_MNI4isf8p8n4D5pHA',
    expiration: '2026-12-31T23:59:59.999Z',
    extensionList: { extension: [{ key: 'note', value: 'café ☕ \u2028 "quoted"' }] },
  };
}
