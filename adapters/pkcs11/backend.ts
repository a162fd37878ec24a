/**
 * The PKCS#11 backend: implements the Backend port on a token through pkcs11js. Keys are found by name
 * and version (keyObjects.ts), every crypto call runs on libuv's thread pool (the *Async calls) on a
 * session of its own (connection.ts), and object handles are cached per key version.
 */
import { constants, createPublicKey, publicEncrypt, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { encryptAlgorithms, type EncryptAlgorithm, type MacAlgorithm, type SignAlgorithm } from '../../src/algorithms/registry.js';
import { CONFLICT, KeyChanges, type Conflict } from '../../src/backend/keyChanges.js';
import type { Backend, BackendGauges, BackendHealth, BlockKey, Capabilities, DukptDerivation, KeyRef, NewKey, RawCiphertext, SignInput, TransientKey } from '../../src/backend/port.js';
import { HsmBridgeError } from '../../src/errors.js';
import type { KeyName, KeyVersion } from '../../src/keys/names.js';
import { isAsymmetric, keyTypes, paymentAttributesOf, type KeyMetadata, type KeyState, type KeyType, type KeyVersionInfo } from '../../src/keys/types.js';
import type { ResolvedPkcs11Config } from './config.js';
import { Connection } from './connection.js';
import { gcmDecrypt, gcmEncrypt, hasGcmShape, newGcmIv } from './aesGcm.js';
import { ecbInToken } from './ecb.js';
import { CKR, ckrOf, decryptionFailed, isHandleStale, isSignatureInvalid, toBridgeError } from './errors.js';
import { deriveAesDukpt, deriveTdesDukpt } from './dukptDerivation.js';
import { exportKeyValue } from './keyExport.js';
import { HandleCache, type CachedVersion } from './handleCache.js';
import { listedVersions, listKeyNames, newKeyObjectId, readMetadata, type VersionHandles } from './keyObjects.js';
import { CKM, signatureLength, TokenMechanisms } from './mechanisms.js';
import { notNull, type Handle } from './module.js';
import { aesKeyUnwrap, aesKeyWrap, ecdhSharedSecret } from './joseMechanisms.js';
import { OaepDecryption } from './oaepDecryption.js';
import { probeOaepSha256 } from './oaepProbe.js';
import { readPublicKeySpki } from './publicKey.js';
import { commitRevision, commitWithObjects, removeKeyObjects, removeMetadata, requireMetadata, requireSettled, settledCurrent } from './revisions.js';
import { macInToken } from './paymentMacs.js';
import { probeSingleDes } from './paymentKeys.js';
import { TransientKeys } from './transientKeys.js';
import { makeVersionObjects, type TokenTraits } from './versionObjects.js';

export class Pkcs11Backend implements Backend {
  readonly kind = 'pkcs11';
  private readonly handles = new HandleCache();
  /** Lifecycle changes of one name run one at a time in this process (PKCS#11 has no transactions). */
  private readonly changes = new KeyChanges((name) => this.handles.forget(name as KeyName));
  private readonly transients: TransientKeys;

  private constructor(
    private readonly connection: Connection,
    private readonly mechanisms: TokenMechanisms,
    private readonly caps: Capabilities,
    private readonly logger: Logger,
    private readonly traits: TokenTraits,
    private readonly oaep: OaepDecryption,
  ) {
    this.transients = new TransientKeys(connection);
  }

  static async open(config: ResolvedPkcs11Config, logger: Logger): Promise<Pkcs11Backend> {
    let backend: Pkcs11Backend | undefined;
    const connection = await Connection.open(config, logger, () => backend?.handles.clear());
    try {
      const mechanisms = TokenMechanisms.discover(connection.api, connection.slot());
      const rawRsaFallback = config.allowRawRsaOaepFallback && mechanisms.has(CKM.RSA_X_509);
      let native = mechanisms.has(CKM.RSA_PKCS_OAEP) ? undefined : false;
      let caps = mechanisms.capabilities();
      if (!rawRsaFallback && caps.encrypt.includes('RSA_OAEP_SHA256')) {
        // Without the fallback, RSA_OAEP_SHA256 is offered only if the token does it: find out now.
        native ??= await connection.run((session) => probeOaepSha256(connection.api, session));
        if (!native) caps = { ...caps, encrypt: caps.encrypt.filter((a) => a !== 'RSA_OAEP_SHA256') };
      }
      const singleDes = mechanisms.has(CKM.DES_CBC) && (await connection.run(async (session) => probeSingleDes(connection.api, session)));
      backend = new Pkcs11Backend(connection, mechanisms, caps, logger, { rawRsaDecrypt: rawRsaFallback, singleDes }, new OaepDecryption(logger, rawRsaFallback, native));
      return backend;
    } catch (e) {
      await connection.close();
      throw toBridgeError(e);
    }
  }

  capabilities(): Capabilities {
    return this.caps;
  }

  gauges(): BackendGauges {
    return { sessionPool: this.connection.poolCounts() };
  }

  health(): Promise<BackendHealth> {
    return this.connection.health();
  }

  close(): Promise<void> {
    return this.connection.close();
  }

  // --- lifecycle -----------------------------------------------------------------------------------

  createKey(key: NewKey): Promise<KeyMetadata> {
    return this.createFirstVersion(key, undefined);
  }

  /** A TR-31 import: version 1 from clear material (the core checked its length, set parity, and zeroes it). */
  importKey(key: NewKey, material: Buffer): Promise<KeyMetadata> {
    return this.createFirstVersion(key, material);
  }

  private createFirstVersion(key: NewKey, material: Buffer | undefined): Promise<KeyMetadata> {
    return this.lifecycle(key.name, async (session) => {
      const api = this.connection.api;
      const stored = readMetadata(api, session, key.name);
      if (stored) {
        if (settledCurrent(stored) === CONFLICT) return CONFLICT; // a create elsewhere may still withdraw
        throw new HsmBridgeError('KEY_ALREADY_EXISTS', `key ${key.name} already exists`);
      }
      // Objects under this name without metadata are left over from an interrupted create or destroy,
      // or belong to a create running on another replica right now: only the old ones go.
      removeKeyObjects(api, session, key.name, new Set());
      this.handles.forget(key.name);
      const now = new Date().toISOString();
      const id = newKeyObjectId(1 as KeyVersion);
      const record = { type: key.type, purpose: key.purpose, ...paymentAttributesOf(key) };
      const created = await makeVersionObjects(api, session, this.logger, this.traits, record, key.name, id, material);
      const version = { createdAt: now, id: id.toString('hex'), ...(created.companions.length ? { companions: created.companions } : {}) };
      const change = { ...record, state: 'enabled', createdAt: now, versions: { 1: version } } as const;
      return this.commitWith(session, created.handles, () => commitRevision(api, session, key.name, undefined, change), key.name);
    });
  }

  rotateKey(name: KeyName): Promise<KeyMetadata> {
    return this.lifecycle(name, async (session) => {
      const api = this.connection.api;
      const base = requireSettled(api, session, name);
      if (base === CONFLICT) return CONFLICT;
      // A version number is never reused within one key (old ciphertexts name their version); the random
      // part of the ID keeps this writer's objects apart from a concurrent rotation's.
      const version = (Math.max(0, ...listedVersions(base.record)) + 1) as KeyVersion;
      const id = newKeyObjectId(version);
      const created = await makeVersionObjects(api, session, this.logger, this.traits, base.record, name, id, undefined);
      const entry = { createdAt: new Date().toISOString(), id: id.toString('hex'), ...(created.companions.length ? { companions: created.companions } : {}) };
      const versions = { ...base.record.versions, [version]: entry };
      return this.commitWith(session, created.handles, () => commitRevision(api, session, name, base, { ...base.record, versions }), name);
    });
  }

  setKeyState(name: KeyName, state: KeyState): Promise<KeyMetadata> {
    return this.lifecycle(name, async (session) => {
      const base = requireSettled(this.connection.api, session, name);
      if (base === CONFLICT) return CONFLICT;
      if (base.record.state === state) return this.describe(session, name);
      return this.commitWith(session, [], () => commitRevision(this.connection.api, session, name, base, { ...base.record, state }), name);
    });
  }

  destroyKey(name: KeyName): Promise<void> {
    /** CKA_IDs listed by metadata this call has already removed (kept across retries). */
    let removed: ReadonlySet<string> | undefined;
    return this.lifecycle(name, async (session) => {
      const api = this.connection.api;
      const stored = readMetadata(api, session, name);
      if (!stored && !removed) throw new HsmBridgeError('KEY_NOT_FOUND', `key ${name} not found`);
      if (stored) {
        const base = settledCurrent(stored);
        if (base === CONFLICT) return CONFLICT;
        // Checked under the name's lock, so an enable that ran just before cannot slip past it.
        if (base.record.state !== 'disabled') throw new HsmBridgeError('KEY_NOT_DISABLED', `key ${name} must be disabled before it is destroyed`);
        // Metadata first: from that moment the key does not exist, whatever happens to the rest.
        removed = new Set([...(removed ?? []), ...removeMetadata(api, session, stored)]);
        this.handles.forget(name);
        // A replica that committed a change (an enable) before we removed its base keeps the key alive:
        // start again from its revision (KEY_NOT_DISABLED, or destroy that one too if still disabled).
        if (readMetadata(api, session, name)) return CONFLICT;
      }
      removeKeyObjects(api, session, name, removed!);
      return undefined;
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
          if (!(e instanceof HsmBridgeError)) throw e;
          // One damaged key (a companion object missing) must not hide the others; it fails on its own.
          if (e.code === 'INTERNAL') this.logger.error({ key: name }, 'pkcs11: key objects are missing from the HSM; left out of the list');
          else if (e.code !== 'KEY_NOT_FOUND') throw e; // KEY_NOT_FOUND: destroyed meanwhile, or not ours
        }
        // The lookups are synchronous calls: let other requests run between keys.
        await new Promise<void>((resolve) => setImmediate(resolve));
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
    if (algorithm === 'RSA_OAEP_SHA256' || algorithm === 'RSA_OAEP_SHA1') {
      // Encryption needs only the public key: node:crypto does it (SoftHSM has no OAEP with SHA-256), and
      // an RSA public-key operation is cheap enough for the event loop.
      const { oaepHash } = encryptAlgorithms[algorithm];
      return this.rsaPublicKey(key).then((pub) => ({ data: publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, plaintext) }));
    }
    if (algorithm === 'AES_KW') return this.withKey(key, async (session, h) => ({ data: await aesKeyWrap(this.connection.api, session, h.key, plaintext) }));
    const iv = newGcmIv();
    return this.withKey(key, (session, h) => gcmEncrypt(this.connection.api, session, h.key, iv, plaintext, aad));
  }

  decrypt(key: KeyRef, algorithm: EncryptAlgorithm, ciphertext: RawCiphertext, aad?: Buffer): Promise<Buffer> {
    if (algorithm === 'RSA_OAEP_SHA256' || algorithm === 'RSA_OAEP_SHA1') {
      const k = keyTypes[key.type].bits / 8;
      if (ciphertext.data.length !== k) return Promise.reject(decryptionFailed());
      return this.withKey(key, (session, h) =>
        algorithm === 'RSA_OAEP_SHA1'
          ? this.oaep.sha1(this.connection.api, session, h.key, ciphertext.data, k)
          : this.oaep.sha256(this.connection.api, session, h.key, ciphertext.data, k));
    }
    if (algorithm === 'AES_KW') return this.withKey(key, (session, h) => aesKeyUnwrap(this.connection.api, session, h.key, ciphertext.data));
    if (!hasGcmShape(ciphertext)) return Promise.reject(decryptionFailed());
    const { iv, data } = ciphertext;
    return this.withKey(key, (session, h) => gcmDecrypt(this.connection.api, session, h.key, iv, data, aad));
  }

  /** Every MAC in the token (paymentMacs.ts); on payment keys also the core's check values and TR-31 derivations. */
  mac(key: KeyRef, algorithm: MacAlgorithm, data: Buffer): Promise<Buffer> {
    return this.withKey(key, (session, h) => this.macOf(session, key, h, algorithm, data));
  }

  /** Recomputes the MAC in the HSM and compares in constant time (the core has checked the length). */
  verifyMac(key: KeyRef, algorithm: MacAlgorithm, data: Buffer, mac: Buffer): Promise<boolean> {
    return this.withKey(key, async (session, h) => {
      const expected = await this.macOf(session, key, h, algorithm, data);
      try {
        return expected.length === mac.length && timingSafeEqual(expected, mac);
      } finally {
        expected.fill(0);
      }
    });
  }

  /**
   * The token has every mechanism the capabilities list, so a refusal of the mechanism comes from the
   * key's CKA_ALLOWED_MECHANISMS or usage flags: a MAC its usage does not compute (an M3 key asked for
   * ISO 9797-1 algorithm 1), or a kind of key that computes no MAC.
   */
  private async macOf(session: Handle, key: KeyRef, h: CachedVersion, algorithm: MacAlgorithm, data: Buffer): Promise<Buffer> {
    try {
      return await macInToken(this.connection.api, session, h, algorithm, data);
    } catch (e) {
      const code = ckrOf(e);
      if (code === CKR.MECHANISM_INVALID || code === CKR.KEY_FUNCTION_NOT_PERMITTED) {
        throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${key.name} does not allow ${algorithm}`, { cause: e });
      }
      throw e;
    }
  }

  /**
   * C_GenerateRandom has no async form in pkcs11js; it is a short call, made on a pooled session. It
   * fills and returns the buffer it is given: no copy of the bytes is left behind.
   */
  randomBytes(length: number): Promise<Buffer> {
    return this.call(async (session) => this.connection.api.C_GenerateRandom(session, Buffer.alloc(length)));
  }

  // --- payment primitives (README.md, "Payment keys") ---------------------------------------------------

  encryptBlocks(key: BlockKey, data: Buffer): Promise<Buffer> {
    return this.ecb(key, 'encrypt', data);
  }

  decryptBlocks(key: BlockKey, data: Buffer): Promise<Buffer> {
    return this.ecb(key, 'decrypt', data);
  }

  deriveDukptKey(bdk: KeyRef, derivation: DukptDerivation): Promise<TransientKey> {
    this.transients.checkRoom();
    const api = this.connection.api;
    return this.withKey(bdk, (session, h) => {
      if (derivation.scheme === 'tdes') {
        if (bdk.type !== 'TDES_2KEY') throw new HsmBridgeError('INCOMPATIBLE_KEY', 'TDES DUKPT needs a double-length (TDES_2KEY) BDK');
        return deriveTdesDukpt(api, session, h, derivation.ksn, this.transients);
      }
      return deriveAesDukpt(api, session, { type: bdk.type, handle: h.key }, derivation.ksn, derivation.workingKey, this.transients);
    });
  }

  releaseTransientKey(key: TransientKey): Promise<void> {
    return this.transients.release(key);
  }

  exportKey(key: KeyRef): Promise<Buffer> {
    return this.withKey(key, async (session, h) => {
      if (!requireMetadata(this.connection.api, session, key.name).current.record.exportable) {
        throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${key.name} is not exportable`);
      }
      return exportKeyValue(this.connection.api, session, h.key, keyTypes[key.type].bits / 8);
    });
  }

  /** ECB over whole blocks (the core checked the length) with a stored key version or a transient key. */
  private ecb(key: BlockKey, direction: 'encrypt' | 'decrypt', data: Buffer): Promise<Buffer> {
    const run = (session: Handle, handle: Handle, family: 'aes' | 'tdes') => ecbInToken(this.connection.api, session, handle, family, direction, data);
    if ('transient' in key) {
      return this.call(async (session) => {
        try {
          return await run(session, this.transients.handleOf(key), key.family);
        } catch (e) {
          // Its session was lost (an HSM reconnect): the request can be retried from the start.
          if (isHandleStale(e)) throw new HsmBridgeError('BACKEND_UNAVAILABLE', 'the derived key was lost with its HSM session; retry', { cause: e });
          throw e;
        }
      });
    }
    const family = keyTypes[key.type].family;
    if (family !== 'aes' && family !== 'tdes') return Promise.reject(new HsmBridgeError('INCOMPATIBLE_KEY', 'block operations need a TDES or AES key'));
    return this.withKey(key, async (session, h) => {
      try {
        return await run(session, h.key, family);
      } catch (e) {
        // The token has the mechanism (capabilities); the key's CKA_ALLOWED_MECHANISMS or usage refuse it:
        // not a payment key that does ECB (an encrypt key is no ECB oracle).
        const code = ckrOf(e);
        if (code === CKR.MECHANISM_INVALID || code === CKR.KEY_FUNCTION_NOT_PERMITTED) {
          throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${key.name} does not allow block operations`, { cause: e });
        }
        throw e;
      }
    });
  }

  /** Raw ECDH in the HSM; Z comes out through a session object (joseMechanisms.ts). The core has checked the peer key. */
  deriveSharedSecret(key: KeyRef, peerPublicKeySpki: Buffer): Promise<Buffer> {
    const fieldLength = Math.ceil(keyTypes[key.type].bits / 8);
    return this.withKey(key, (session, h) => ecdhSharedSecret(this.connection.api, session, h.key, peerPublicKeySpki, fieldLength));
  }

  // --- internals -----------------------------------------------------------------------------------

  /** A lifecycle change (src/backend/keyChanges.ts), each attempt on one session with errors mapped. */
  private lifecycle<T>(name: KeyName, change: (session: Handle) => Promise<T | Conflict>): Promise<T> {
    return this.changes.run(name, () => this.call(change));
  }

  /** Commits a change whose new key objects are `created` (removed if the commit fails or loses), and describes the key. */
  private async commitWith(session: Handle, created: readonly Handle[], commit: () => Promise<boolean>, name: KeyName): Promise<KeyMetadata | Conflict> {
    return (await commitWithObjects(this.connection.api, session, created, commit)) ? this.describe(session, name) : CONFLICT;
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
    return this.call(async (session) => {
      for (let attempt = 0; ; attempt++) {
        const handles = this.handles.of(this.connection.api, session, key);
        try {
          return await operation(session, handles);
        } catch (e) {
          if (!isHandleStale(e)) throw e;
          this.handles.delete(key.name, key.version);
          if (attempt > 0) throw new HsmBridgeError('KEY_NOT_FOUND', `key ${key.name} no longer exists`, { cause: e });
        }
      }
    });
  }

  private publicHandle(h: VersionHandles): Handle {
    if (!h.publicKey) throw new HsmBridgeError('INTERNAL', 'public key object missing');
    return h.publicKey;
  }

  private publicSpki(session: Handle, type: KeyType, h: CachedVersion): Buffer {
    h.spki ??= readPublicKeySpki(this.connection.api, session, this.publicHandle(h), type);
    return h.spki;
  }

  /** The version's public key as a KeyObject: from the cache without touching the HSM, else read once. */
  private async rsaPublicKey(key: KeyRef): Promise<KeyObject> {
    const cached = this.handles.get(key.name, key.version)?.publicKeyObject;
    if (cached) return cached;
    return this.withKey(key, async (session, h) => {
      h.publicKeyObject ??= createPublicKey({ key: this.publicSpki(session, key.type, h), format: 'der', type: 'spki' });
      return h.publicKeyObject;
    });
  }

  /**
   * The key as stored in the token (see keyObjects.ts for what counts as existing). Handles and public
   * keys come from the cache while the metadata still lists the same CKA_ID for the version (handleCache.ts).
   */
  private describe(session: Handle, name: KeyName): KeyMetadata {
    const api = this.connection.api;
    const record = requireMetadata(api, session, name).current.record;
    const asymmetric = isAsymmetric(record.type);
    const versions: KeyVersionInfo[] = [];
    for (const version of listedVersions(record)) {
      const listed = record.versions[version]!;
      const handles = this.handles.listed(api, session, name, version, listed, asymmetric);
      if (!handles) continue; // listed, but its objects are gone (an interrupted destroy)
      const { createdAt } = listed;
      versions.push(asymmetric ? { version, createdAt, publicKeySpki: this.publicSpki(session, record.type, handles) } : { version, createdAt });
    }
    const primary = versions.at(-1);
    if (!primary) throw new HsmBridgeError('KEY_NOT_FOUND', `key ${name} not found`);
    return {
      name, type: record.type, purpose: record.purpose, state: record.state, createdAt: record.createdAt,
      ...paymentAttributesOf(record),
      primaryVersion: primary.version, versions,
    };
  }
}
