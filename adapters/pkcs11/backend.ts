/**
 * The PKCS#11 backend: implements the Backend port on a token through pkcs11js. Keys are found by name
 * and version (keyObjects.ts), every crypto call runs on libuv's thread pool (the *Async calls) on a
 * session of its own (connection.ts), and object handles are cached per key version.
 */
import { constants, createPublicKey, publicEncrypt, randomBytes as nodeRandomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import pkcs11js from 'pkcs11js';
import type { EncryptAlgorithm, MacAlgorithm, SignAlgorithm } from '../../src/algorithms/registry.js';
import type { Backend, BackendHealth, Capabilities, KeyRef, NewKey, RawCiphertext, SignInput } from '../../src/backend/port.js';
import { HsmBridgeError } from '../../src/errors.js';
import type { KeyName, KeyVersion } from '../../src/keys/names.js';
import { isAsymmetric, keyTypes, type KeyMetadata, type KeyPurpose, type KeyState, type KeyType, type KeyVersionInfo } from '../../src/keys/types.js';
import type { ResolvedPkcs11Config } from './config.js';
import { Connection } from './connection.js';
import { CKR, ckrOf, isDeviceGone, isHandleStale, isSignatureInvalid, toBridgeError } from './errors.js';
import {
  findKeyObjects,
  findVersion,
  keyObjectId,
  listedVersions,
  listKeyNames,
  readMetadata,
  writeMetadata,
  type MetadataRecord,
  type VersionHandles,
} from './keyObjects.js';
import { CKM, CKZ_DATA_SPECIFIED, hashMechanism, signatureLength, TokenMechanisms } from './mechanisms.js';
import type { Handle } from './module.js';
import { emeOaepDecode } from './oaep.js';
import { readPublicKeySpki } from './publicKey.js';
import { generationFor } from './templates.js';

const A = pkcs11js;
const GCM_IV_BYTES = 12;
const GCM_TAG_BYTES = 16;

/**
 * pkcs11js passes an empty Buffer as a NULL pointer, which tokens refuse (CKR_ARGUMENTS_BAD) even
 * where a zero length is valid (an empty plaintext, an HMAC of nothing). An empty view of a non-empty
 * buffer has a real pointer.
 */
const notNull = (b: Buffer) => (b.length > 0 ? b : Buffer.alloc(1).subarray(0, 0));

const decryptionFailed = (cause?: unknown) => new HsmBridgeError('DECRYPTION_FAILED', 'decryption failed', cause === undefined ? undefined : { cause });

/** Handles of one version, plus its public key once read (public keys never change). */
interface CachedVersion extends VersionHandles {
  spki?: Buffer;
}

export class Pkcs11Backend implements Backend {
  readonly kind = 'pkcs11';
  private readonly handles = new Map<string, CachedVersion>();
  /** Lifecycle changes of one name run one at a time in this process (PKCS#11 has no transactions). */
  private readonly locks = new Map<KeyName, Promise<unknown>>();
  /** Whether the token does OAEP with SHA-256 itself; learnt on the first RSA decryption. */
  private nativeOaepSha256: boolean | undefined;

  private constructor(
    private readonly connection: Connection,
    private readonly mechanisms: TokenMechanisms,
    private readonly caps: Capabilities,
    private readonly logger: Logger,
  ) {}

  static async open(config: ResolvedPkcs11Config, logger: Logger): Promise<Pkcs11Backend> {
    let backend: Pkcs11Backend | undefined;
    const connection = await Connection.open(config, logger, () => backend?.handles.clear());
    try {
      const mechanisms = TokenMechanisms.discover(connection.api, connection.slot());
      backend = new Pkcs11Backend(connection, mechanisms, mechanisms.capabilities(), logger);
      if (!mechanisms.has(CKM.RSA_PKCS_OAEP)) backend.nativeOaepSha256 = false;
      return backend;
    } catch (e) {
      await connection.close();
      throw toBridgeError(e);
    }
  }

  capabilities(): Capabilities {
    return this.caps;
  }

  health(): Promise<BackendHealth> {
    return this.connection.health();
  }

  close(): Promise<void> {
    return this.connection.close();
  }

  // --- lifecycle -----------------------------------------------------------------------------------

  createKey(key: NewKey): Promise<KeyMetadata> {
    return this.lifecycle(key.name, async (session) => {
      const api = this.connection.api;
      if (readMetadata(api, session, key.name)) throw new HsmBridgeError('KEY_ALREADY_EXISTS', `key ${key.name} already exists`);
      // Objects under this name without metadata are left over from an interrupted create or destroy.
      for (const o of findKeyObjects(api, session, key.name)) api.C_DestroyObject(session, o.handle);
      this.forgetHandles(key.name);
      const now = new Date().toISOString();
      const created = await this.generate(session, key.type, key.purpose, key.name, 1 as KeyVersion);
      try {
        writeMetadata(api, session, key.name, { revision: 0, type: key.type, purpose: key.purpose, state: 'enabled', createdAt: now, versions: { 1: now } });
      } catch (e) {
        for (const h of created) api.C_DestroyObject(session, h);
        throw e;
      }
      return this.describe(session, key.name);
    });
  }

  rotateKey(name: KeyName): Promise<KeyMetadata> {
    return this.lifecycle(name, async (session) => {
      const api = this.connection.api;
      const stored = this.requireMetadata(session, name);
      // Past every version listed or left behind, so an orphan of an interrupted rotation is never reused.
      const next = Math.max(0, ...listedVersions(stored.record), ...findKeyObjects(api, session, name).map((o) => o.version)) + 1;
      const version = next as KeyVersion;
      const created = await this.generate(session, stored.record.type, stored.record.purpose, name, version);
      try {
        this.replaceMetadata(session, name, stored, { versions: { ...stored.record.versions, [version]: new Date().toISOString() } });
      } catch (e) {
        for (const h of created) api.C_DestroyObject(session, h);
        throw e;
      }
      return this.describe(session, name);
    });
  }

  setKeyState(name: KeyName, state: KeyState): Promise<KeyMetadata> {
    return this.lifecycle(name, async (session) => {
      const stored = this.requireMetadata(session, name);
      if (stored.record.state !== state) this.replaceMetadata(session, name, stored, { state });
      return this.describe(session, name);
    });
  }

  destroyKey(name: KeyName): Promise<void> {
    return this.lifecycle(name, async (session) => {
      const api = this.connection.api;
      const stored = this.requireMetadata(session, name);
      // Metadata first: from that moment the key does not exist, whatever happens to the rest.
      for (const h of stored.handles) api.C_DestroyObject(session, h);
      this.forgetHandles(name);
      for (const o of findKeyObjects(api, session, name)) api.C_DestroyObject(session, o.handle);
    });
  }

  describeKey(name: KeyName): Promise<KeyMetadata> {
    return this.call((session) => Promise.resolve(this.describe(session, name)));
  }

  listKeys(): Promise<KeyMetadata[]> {
    return this.call(async (session) => {
      const keys: KeyMetadata[] = [];
      for (const name of listKeyNames(this.connection.api, session)) {
        try {
          keys.push(this.describe(session, name as KeyName));
        } catch (e) {
          if (!(e instanceof HsmBridgeError && e.code === 'KEY_NOT_FOUND')) throw e; // destroyed meanwhile, or not ours
        }
      }
      return keys;
    });
  }

  // --- operations ----------------------------------------------------------------------------------

  sign(key: KeyRef, algorithm: SignAlgorithm, input: SignInput): Promise<Buffer> {
    const plan = this.mechanisms.signPlan(algorithm, input);
    return this.withKey(key, async (session, h) => {
      this.connection.api.C_SignInit(session, plan.mechanism, h.key);
      return this.connection.api.C_SignAsync(session, notNull(plan.data), Buffer.alloc(signatureLength(key.type)));
    });
  }

  /**
   * Verification runs in the HSM, with the public key object: the same mechanism path as signing, so
   * digest input works for every algorithm exactly as it does for sign (node:crypto cannot verify PSS or
   * PKCS#1 over a precomputed digest), and the call runs off the event loop like every other.
   */
  verify(key: KeyRef, algorithm: SignAlgorithm, input: SignInput, signature: Buffer): Promise<boolean> {
    if (signature.length !== signatureLength(key.type)) return Promise.resolve(false);
    const plan = this.mechanisms.signPlan(algorithm, input);
    return this.withKey(key, async (session, h) => {
      this.connection.api.C_VerifyInit(session, plan.mechanism, this.publicHandle(h));
      try {
        return await this.connection.api.C_VerifyAsync(session, notNull(plan.data), signature);
      } catch (e) {
        if (isSignatureInvalid(e)) return false;
        throw e;
      }
    });
  }

  encrypt(key: KeyRef, algorithm: EncryptAlgorithm, plaintext: Buffer, aad?: Buffer): Promise<RawCiphertext> {
    if (algorithm === 'RSA_OAEP_SHA256') {
      // Encryption needs only the public key: node:crypto does it (SoftHSM has no OAEP with SHA-256), and
      // an RSA public-key operation is cheap enough for the event loop.
      return this.withKey(key, async (session, h) => {
        const spki = this.publicSpki(session, key, h);
        const pub = createPublicKey({ key: spki, format: 'der', type: 'spki' });
        return { data: publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, plaintext) };
      });
    }
    // A random 96-bit IV per message from node's CSPRNG; 2^32 messages per key stay far below the GCM bound.
    const iv = nodeRandomBytes(GCM_IV_BYTES);
    return this.withKey(key, async (session, h) => {
      this.connection.api.C_EncryptInit(session, gcm(iv, aad), h.key);
      const data = await this.connection.api.C_EncryptAsync(session, notNull(plaintext), Buffer.alloc(plaintext.length + GCM_TAG_BYTES));
      return { iv, data };
    });
  }

  decrypt(key: KeyRef, algorithm: EncryptAlgorithm, ciphertext: RawCiphertext, aad?: Buffer): Promise<Buffer> {
    if (algorithm === 'RSA_OAEP_SHA256') return this.decryptOaep(key, ciphertext.data);
    const iv = ciphertext.iv;
    if (!iv || iv.length !== GCM_IV_BYTES || ciphertext.data.length < GCM_TAG_BYTES) return Promise.reject(decryptionFailed());
    return this.withKey(key, async (session, h) => {
      const api = this.connection.api;
      try {
        api.C_DecryptInit(session, gcm(iv, aad), h.key);
        return await api.C_DecryptAsync(session, ciphertext.data, Buffer.alloc(ciphertext.data.length));
      } catch (e) {
        // SoftHSM reports a wrong tag as CKR_GENERAL_ERROR, others as CKR_ENCRYPTED_DATA_INVALID or
        // CKR_AEAD_DECRYPT_FAILED: every failure that is not about the device or the handle is one answer.
        throw isDeviceGone(e) || isHandleStale(e) ? e : decryptionFailed(e);
      }
    });
  }

  mac(key: KeyRef, _algorithm: MacAlgorithm, data: Buffer): Promise<Buffer> {
    return this.withKey(key, (session, h) => this.hmac(session, h, data));
  }

  /** Recomputes the MAC in the HSM and compares in constant time (the core has checked the length). */
  verifyMac(key: KeyRef, _algorithm: MacAlgorithm, data: Buffer, mac: Buffer): Promise<boolean> {
    return this.withKey(key, async (session, h) => {
      const expected = await this.hmac(session, h, data);
      try {
        return expected.length === mac.length && timingSafeEqual(expected, mac);
      } finally {
        expected.fill(0);
      }
    });
  }

  /** C_GenerateRandom has no async form in pkcs11js; it is a short call, made on a pooled session. */
  randomBytes(length: number): Promise<Buffer> {
    return this.call(async (session) => Buffer.from(this.connection.api.C_GenerateRandom(session, Buffer.alloc(length))));
  }

  // --- internals -----------------------------------------------------------------------------------

  private hmac(session: Handle, h: VersionHandles, data: Buffer): Promise<Buffer> {
    this.connection.api.C_SignInit(session, { mechanism: CKM.SHA256_HMAC }, h.key);
    return this.connection.api.C_SignAsync(session, notNull(data), Buffer.alloc(32));
  }

  private decryptOaep(key: KeyRef, data: Buffer): Promise<Buffer> {
    const k = keyTypes[key.type].bits / 8;
    if (data.length !== k) return Promise.reject(decryptionFailed());
    return this.withKey(key, async (session, h) => {
      const api = this.connection.api;
      if (this.nativeOaepSha256 !== false) {
        try {
          api.C_DecryptInit(session, oaepSha256, h.key);
          this.nativeOaepSha256 = true;
        } catch (e) {
          const code = ckrOf(e);
          if (this.nativeOaepSha256 === true || (code !== CKR.ARGUMENTS_BAD && code !== CKR.MECHANISM_PARAM_INVALID && code !== CKR.MECHANISM_INVALID)) throw e;
          this.nativeOaepSha256 = false;
          this.logger.info('pkcs11: the token refuses OAEP with SHA-256; decrypting with CKM_RSA_X_509 and removing the padding in process');
        }
        if (this.nativeOaepSha256) {
          try {
            return await api.C_DecryptAsync(session, data, Buffer.alloc(k));
          } catch (e) {
            throw isDeviceGone(e) || isHandleStale(e) ? e : decryptionFailed(e);
          }
        }
      }
      if (!this.mechanisms.has(CKM.RSA_X_509)) throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', 'this token can decrypt neither OAEP with SHA-256 nor raw RSA');
      const out = Buffer.alloc(k);
      let em: Buffer;
      try {
        api.C_DecryptInit(session, { mechanism: CKM.RSA_X_509 }, h.key);
        em = await api.C_DecryptAsync(session, data, out);
      } catch (e) {
        out.fill(0);
        throw isDeviceGone(e) || isHandleStale(e) ? e : decryptionFailed(e);
      }
      // The raw result is k bytes; a token that drops leading zeros gets them back.
      const padded = em.length === k ? em : Buffer.concat([Buffer.alloc(k - em.length), em]);
      try {
        return emeOaepDecode(padded, k, 'sha256');
      } finally {
        out.fill(0);
        padded.fill(0);
      }
    });
  }

  /** A lifecycle change: one at a time per name in this process, on one session, errors mapped. */
  private lifecycle<T>(name: KeyName, change: (session: Handle) => Promise<T>): Promise<T> {
    const previous = this.locks.get(name) ?? Promise.resolve();
    const result = previous.catch(() => undefined).then(() => this.call(change));
    const tail = result.catch(() => undefined);
    this.locks.set(name, tail);
    void tail.then(() => {
      if (this.locks.get(name) === tail) this.locks.delete(name);
    });
    return result;
  }

  /** Runs on a pooled session and maps every failure to an HsmBridgeError. */
  private async call<T>(operation: (session: Handle) => Promise<T>): Promise<T> {
    try {
      return await this.connection.run(operation);
    } catch (e) {
      const error = toBridgeError(e);
      if (error.code === 'INTERNAL') this.logger.error({ err: e }, 'pkcs11: unexpected HSM error');
      throw error;
    }
  }

  /**
   * Runs an operation with the handles of a key version, from the cache or found anew. A handle the HSM
   * calls invalid (the object was deleted, or recreated by another replica) is looked up once more.
   */
  private withKey<T>(key: KeyRef, operation: (session: Handle, handles: CachedVersion) => Promise<T>): Promise<T> {
    const cacheKey = `${key.name}\u0000${key.version}`;
    return this.call(async (session) => {
      for (let attempt = 0; ; attempt++) {
        let handles = this.handles.get(cacheKey);
        if (!handles) {
          handles = this.lookUp(session, key);
          this.handles.set(cacheKey, handles);
        }
        try {
          return await operation(session, handles);
        } catch (e) {
          if (!isHandleStale(e)) throw e;
          this.handles.delete(cacheKey);
          if (attempt > 0) throw new HsmBridgeError('KEY_NOT_FOUND', `key ${key.name} no longer exists`, { cause: e });
        }
      }
    });
  }

  private lookUp(session: Handle, key: KeyRef): CachedVersion {
    const api = this.connection.api;
    const found = findVersion(api, session, key.name, key.version);
    if (found) return found;
    if (!readMetadata(api, session, key.name)) throw new HsmBridgeError('KEY_NOT_FOUND', `key ${key.name} not found`);
    throw new HsmBridgeError('KEY_VERSION_NOT_FOUND', `key ${key.name} has no version ${key.version}`);
  }

  private publicHandle(h: VersionHandles): Handle {
    if (!h.publicKey) throw new HsmBridgeError('INTERNAL', 'public key object missing');
    return h.publicKey;
  }

  private publicSpki(session: Handle, key: KeyRef, h: CachedVersion): Buffer {
    h.spki ??= readPublicKeySpki(this.connection.api, session, this.publicHandle(h), key.type);
    return h.spki;
  }

  private forgetHandles(name: KeyName): void {
    const prefix = `${name}\u0000`;
    for (const k of this.handles.keys()) if (k.startsWith(prefix)) this.handles.delete(k);
  }

  private requireMetadata(session: Handle, name: KeyName) {
    const stored = readMetadata(this.connection.api, session, name);
    if (!stored) throw new HsmBridgeError('KEY_NOT_FOUND', `key ${name} not found`);
    return stored;
  }

  /** Writes the next revision, then removes the older objects (readers take the highest revision). */
  private replaceMetadata(session: Handle, name: KeyName, stored: { record: MetadataRecord; handles: readonly Handle[] }, change: Partial<MetadataRecord>): void {
    const api = this.connection.api;
    writeMetadata(api, session, name, { ...stored.record, ...change, revision: stored.record.revision + 1 });
    for (const h of stored.handles) api.C_DestroyObject(session, h);
  }

  /** Generates the objects of one key version; returns their handles (for cleanup if the commit fails). */
  private async generate(session: Handle, type: KeyType, purpose: KeyPurpose, name: KeyName, version: KeyVersion): Promise<Handle[]> {
    const api = this.connection.api;
    const g = generationFor(type, purpose, name, keyObjectId(version));
    if (g.kind === 'secret') return [await api.C_GenerateKeyAsync(session, { mechanism: g.mechanism }, g.secretKey)];
    const pair = await api.C_GenerateKeyPairAsync(session, { mechanism: g.mechanism }, g.publicKey, g.privateKey);
    return [pair.publicKey, pair.privateKey];
  }

  /** The key as stored in the token (see keyObjects.ts for what counts as existing). */
  private describe(session: Handle, name: KeyName): KeyMetadata {
    const api = this.connection.api;
    const stored = readMetadata(api, session, name);
    if (!stored) throw new HsmBridgeError('KEY_NOT_FOUND', `key ${name} not found`);
    const { record } = stored;
    const objects = findKeyObjects(api, session, name);
    const versions: KeyVersionInfo[] = [];
    for (const version of listedVersions(record)) {
      const mine = objects.filter((o) => o.version === version);
      if (!mine.some((o) => o.objectClass === A.CKO_SECRET_KEY || o.objectClass === A.CKO_PRIVATE_KEY)) continue;
      const createdAt = record.versions[version]!;
      if (!isAsymmetric(record.type)) {
        versions.push({ version, createdAt });
        continue;
      }
      const pub = mine.find((o) => o.objectClass === A.CKO_PUBLIC_KEY);
      if (!pub) continue;
      versions.push({ version, createdAt, publicKeySpki: readPublicKeySpki(api, session, pub.handle, record.type) });
    }
    const primary = versions.at(-1);
    if (!primary) throw new HsmBridgeError('KEY_NOT_FOUND', `key ${name} not found`);
    return { name, type: record.type, purpose: record.purpose, state: record.state, createdAt: record.createdAt, primaryVersion: primary.version, versions };
  }
}

function gcm(iv: Buffer, aad?: Buffer): pkcs11js.Mechanism {
  const parameter: pkcs11js.AesGCM = { type: A.CK_PARAMS_AES_GCM, iv, ivBits: GCM_IV_BYTES * 8, tagBits: GCM_TAG_BYTES * 8 };
  if (aad && aad.length > 0) parameter.aad = aad;
  return { mechanism: CKM.AES_GCM, parameter };
}

const oaepSha256: pkcs11js.Mechanism = {
  mechanism: CKM.RSA_PKCS_OAEP,
  parameter: { type: A.CK_PARAMS_RSA_OAEP, hashAlg: hashMechanism.sha256.hash, mgf: hashMechanism.sha256.mgf, source: CKZ_DATA_SPECIFIED } as pkcs11js.RsaOAEP,
};
