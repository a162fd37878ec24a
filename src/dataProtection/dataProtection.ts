/**
 * Personal-data protection on the keys of KeyService: data keys for envelope encryption, rewrapping
 * ciphertexts under a key's primary version, pseudonymisation tokens (./tokens.ts) and FF1
 * format-preserving encryption (./ff1.ts). Every check on the key (exists, enabled, purpose, version not
 * retired) is KeyResolver's, as for the other operations.
 *
 * What exists in this process, and for how long: a data key from its generation until the answer is
 * encoded (zeroed then; at once when the caller asked for the wrapped form only); a rewrapped plaintext
 * between the decryption and the encryption (zeroed in a finally). Token and FPE values are strings, as
 * JSON and protobuf deliver them, which JavaScript cannot wipe: they are never logged or audited, and the
 * HMAC inputs and numerals made from them are zeroed after use. Keys stay in the backend throughout.
 */
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import type { Backend, Capabilities, KeyRef } from '../backend/port.js';
import { HsmBridgeError, invalid } from '../errors.js';
import type { KeyVersion } from '../keys/names.js';
import { keyTypes, type KeyMetadata } from '../keys/types.js';
import type { ConcurrencyLimit } from '../operations/concurrencyLimit.js';
import { refTo, type KeyResolver } from '../operations/keyResolver.js';
import type { DecryptRequest, DecryptResult, EncryptRequest, EncryptResult } from '../operations/requests.js';
import { alphabetOf, numeralsOf, textOf } from './alphabet.js';
import { ff1, MAX_TWEAK_BYTES, type Ff1Direction } from './ff1.js';
import { checkContext, tokenInput, tokenOf } from './tokens.js';

/** One value's outcome: a value that cannot be used fails alone. */
export type ValueResult<T> = { readonly ok: T } | { readonly failed: HsmBridgeError };

export interface DataKeyRequest { name: unknown; bits: unknown; plaintext?: unknown }
/** plaintext is absent when the caller asked for the wrapped key only; it is secret (zeroed once encoded). */
export interface DataKeyResult { keyVersion: KeyVersion; algorithm: string; wrapped: Buffer; plaintext?: Buffer }
export interface RewrapRequest { name: unknown; ciphertext: Buffer; aad?: Buffer }
export interface RewrapResult extends EncryptResult { fromVersion: KeyVersion }
export interface TokenizeRequest { name: unknown; values: readonly unknown[]; context: unknown; keyVersion?: unknown }
export interface TokenizeResult { keyVersion: KeyVersion; tokens: ValueResult<string>[] }
/** radix 2-36 with the default alphabet (0-9a-z), or an alphabet of the caller's; tweak in hex. Decryption needs the version that encrypted (default: primary). */
export interface FpeRequest { name: unknown; values: readonly unknown[]; radix?: unknown; alphabet?: unknown; tweak?: unknown; keyVersion?: unknown }
export interface FpeResult { keyVersion: KeyVersion; values: ValueResult<string>[] }

/** What this needs of KeyService: its envelope encryption. */
export interface Ciphers {
  encrypt(req: EncryptRequest): Promise<EncryptResult>;
  decrypt(req: DecryptRequest): Promise<DecryptResult>;
}

const DATA_KEY_BITS = [128, 256];

export class DataProtection {
  constructor(
    private readonly backend: Backend,
    private readonly caps: Capabilities,
    private readonly keys: KeyResolver,
    private readonly ciphers: Ciphers,
    private readonly concurrency: ConcurrencyLimit,
    private readonly maxValues: () => number,
  ) {}

  /**
   * A fresh data key (from the backend's generator; node's CSPRNG where the backend has none, as a KMIP
   * server without RNG) wrapped as an hsm-bridge ciphertext by the named AES key of purpose encrypt.
   */
  async dataKey(req: DataKeyRequest): Promise<DataKeyResult> {
    if (typeof req.bits !== 'number' || !DATA_KEY_BITS.includes(req.bits)) throw invalid('bits must be 128 or 256');
    if (req.plaintext !== undefined && typeof req.plaintext !== 'boolean') throw invalid('plaintext must be true or false');
    checkDataKeyWrapper(await this.keys.usableKey(req.name, 'encrypt'));
    const bytes = req.bits / 8;
    const dataKey = this.caps.random ? await this.backend.randomBytes(bytes) : nodeRandomBytes(bytes);
    const keep = req.plaintext !== false;
    let answered = false;
    try {
      const sealed = await this.ciphers.encrypt({ name: req.name, plaintext: dataKey });
      answered = keep;
      return { keyVersion: sealed.keyVersion, algorithm: sealed.algorithm, wrapped: sealed.ciphertext, ...(keep ? { plaintext: dataKey } : {}) };
    } finally {
      // An answered data key is zeroed once encoded (the operation's secret output); any other, now.
      if (!answered) dataKey.fill(0);
    }
  }

  /**
   * The ciphertext's plaintext under the key's primary version, with the same algorithm and aad; the
   * plaintext never leaves. fromVersion: the version that decrypted, for the audit record.
   */
  async rewrap(req: RewrapRequest): Promise<RewrapResult> {
    const opened = await this.ciphers.decrypt({ name: req.name, ciphertext: req.ciphertext, ...(req.aad ? { aad: req.aad } : {}) });
    try {
      const sealed = await this.ciphers.encrypt({ name: req.name, algorithm: opened.algorithm, plaintext: opened.plaintext, ...(req.aad ? { aad: req.aad } : {}) });
      return { ...sealed, fromVersion: opened.keyVersion };
    } finally {
      opened.plaintext.fill(0);
    }
  }

  /** A token per value (./tokens.ts) with the key's primary version, or an older one to re-tokenise with. */
  async tokenize(req: TokenizeRequest): Promise<TokenizeResult> {
    this.checkValues(req.values);
    const context = checkContext(req.context);
    const meta = await this.keys.usableKey(req.name, 'tokenize');
    if (!this.caps.mac.includes('HMAC_SHA256')) throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend has no HMAC-SHA-256`);
    const key = refTo(meta, await this.keys.version(meta, req.keyVersion));
    const tokens = await Promise.all(
      req.values.map(async (value): Promise<ValueResult<string>> => {
        let input: Buffer;
        try {
          input = tokenInput(context, value);
        } catch (e) {
          return { failed: e as HsmBridgeError };
        }
        try {
          const mac = await this.concurrency.run(() => this.keys.run(key, () => this.backend.mac(key, 'HMAC_SHA256', input)));
          return { ok: tokenOf(key.version, mac) };
        } finally {
          input.fill(0);
        }
      }),
    );
    return { keyVersion: key.version, tokens };
  }

  /**
   * FF1 over every value that can be used, in one pass: the backend's AES-ECB carries the blocks of all
   * values at each step (./ff1.ts), so a request costs a few dozen backend calls however many values.
   */
  async fpe(direction: Ff1Direction, req: FpeRequest): Promise<FpeResult> {
    this.checkValues(req.values);
    const alphabet = alphabetOf(req.radix, req.alphabet);
    const tweak = tweakOf(req.tweak);
    const meta = await this.keys.usableKey(req.name, 'fpe');
    if (!this.caps.fpe) throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backend.kind} backend cannot do FF1 (AES-ECB with a key of purpose fpe)`);
    const key: KeyRef = refTo(meta, await this.keys.version(meta, req.keyVersion));
    const results: ValueResult<string>[] = new Array(req.values.length);
    const usable: { index: number; numerals: number[] }[] = [];
    req.values.forEach((value, index) => {
      try {
        usable.push({ index, numerals: numeralsOf(alphabet, value) });
      } catch (e) {
        results[index] = { failed: e as HsmBridgeError };
      }
    });
    if (usable.length > 0) {
      const ecb = (blocks: Buffer) => this.keys.run(key, () => this.backend.encryptBlocks(key, blocks));
      const out = await ff1(direction, ecb, alphabet.radix, tweak, usable.map((u) => u.numerals));
      usable.forEach((u, i) => {
        results[u.index] = { ok: textOf(alphabet, out[i]!) };
        u.numerals.fill(0);
        out[i]!.fill(0);
      });
    }
    return { keyVersion: key.version, values: results };
  }

  private checkValues(values: readonly unknown[]): void {
    if (!Array.isArray(values) || values.length === 0) throw invalid('values must be a non-empty list');
    const max = this.maxValues();
    if (values.length > max) throw new HsmBridgeError('PAYLOAD_TOO_LARGE', `at most ${max} values per request (limits.maxBatchItems)`);
  }
}

/** Data keys are wrapped by AES keys (purpose encrypt): an RSA encryption key is for small secrets sent to its owner. */
export function checkDataKeyWrapper(meta: KeyMetadata): void {
  if (keyTypes[meta.type].family !== 'aes') throw new HsmBridgeError('INCOMPATIBLE_KEY', `data keys are wrapped by an AES key; ${meta.name} is ${meta.type}`);
}

function tweakOf(tweak: unknown): Buffer {
  if (tweak === undefined || tweak === '') return Buffer.alloc(0);
  if (typeof tweak !== 'string' || !/^(?:[0-9A-Fa-f]{2})+$/.test(tweak)) throw invalid('tweak must be hex (an even number of 0-9 A-F)');
  if (tweak.length / 2 > MAX_TWEAK_BYTES) throw invalid(`the tweak is at most ${MAX_TWEAK_BYTES} bytes`);
  return Buffer.from(tweak, 'hex');
}
