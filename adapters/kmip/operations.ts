/**
 * The KMIP operations the backend uses, as typed calls: request payloads built in the order KMIP 1.4
 * defines (PyKMIP reads fields in sequence and ignores what it meets out of order), responses read
 * strictly. A response must be the answer to its request: the object it names is the one asked about,
 * and an IV it reports is the one sent; anything else is refused as INTERNAL (the detail logged), since
 * a result for another object or under another IV would be wrong without looking wrong.
 * Nothing here knows about hsm-bridge keys; backend.ts, keyHeads.ts, versionObjects.ts and keyRecords.ts do.
 */
import { HsmBridgeError } from '../../src/errors.js';
import { KmipOperationError, type KmipClient } from './client.js';
import { Enum, enumName, Tag } from './tags.js';
import { bytes, bytesOf, child, children, enm, enumOf, int, struct, text, textOf, type Ttlv } from './ttlv.js';

const Op = Enum.Operation;

/** One attribute of a template or a Locate filter. */
export type Attribute =
  | { readonly name: 'Name'; readonly value: string }
  | { readonly name: 'Object Group'; readonly value: string }
  | { readonly name: 'Cryptographic Algorithm'; readonly value: number }
  | { readonly name: 'Cryptographic Length'; readonly value: number }
  | { readonly name: 'Cryptographic Usage Mask'; readonly value: number }
  | { readonly name: 'Object Type'; readonly value: number }
  | { readonly name: 'State'; readonly value: number };

function attributeValue(a: Attribute): Ttlv {
  switch (a.name) {
    case 'Name':
      return struct(Tag.AttributeValue, text(Tag.NameValue, a.value), enm(Tag.NameType, Enum.NameType.UninterpretedTextString));
    case 'Object Group':
      return text(Tag.AttributeValue, a.value);
    case 'Cryptographic Length':
    case 'Cryptographic Usage Mask':
      return int(Tag.AttributeValue, a.value);
    default:
      return enm(Tag.AttributeValue, a.value);
  }
}

const attribute = (a: Attribute): Ttlv => struct(Tag.Attribute, text(Tag.AttributeName, a.name), attributeValue(a));
const template = (tag: number, attributes: readonly Attribute[]) => struct(tag, ...attributes.map(attribute));
const uid = (id: string) => text(Tag.UniqueIdentifier, id);

/** The parameters of a cryptographic operation, in the order of KMIP 1.4 §3.6. */
export interface CryptoParameters {
  readonly blockCipherMode?: number;
  readonly paddingMethod?: number;
  readonly hashingAlgorithm?: number;
  readonly cryptographicAlgorithm?: number;
  readonly tagLength?: number;
}

function parameters(p: CryptoParameters): Ttlv {
  const items: Ttlv[] = [];
  if (p.blockCipherMode !== undefined) items.push(enm(Tag.BlockCipherMode, p.blockCipherMode));
  if (p.paddingMethod !== undefined) items.push(enm(Tag.PaddingMethod, p.paddingMethod));
  if (p.hashingAlgorithm !== undefined) items.push(enm(Tag.HashingAlgorithm, p.hashingAlgorithm));
  if (p.cryptographicAlgorithm !== undefined) items.push(enm(Tag.CryptographicAlgorithm, p.cryptographicAlgorithm));
  if (p.tagLength !== undefined) items.push(int(Tag.TagLength, p.tagLength));
  return struct(Tag.CryptographicParameters, ...items);
}

/** A managed object's key material as Get returns it (unwrapped). */
export interface KeyBlockValue {
  readonly formatType: number;
  readonly material: Buffer;
}

function unexpected(what: string, cause?: unknown): HsmBridgeError {
  return new HsmBridgeError('INTERNAL', `unexpected answer from the KMIP server: ${what}`, cause === undefined ? undefined : { cause });
}

function payloadOf(response: Ttlv | undefined, operation: string): Ttlv {
  if (!response) throw unexpected(`${operation} returned no payload`);
  return response;
}

export const isReason = (e: unknown, ...reasons: number[]): e is KmipOperationError =>
  e instanceof KmipOperationError && e.reason !== undefined && reasons.includes(e.reason);

/** Per located identifier in a response (TTLV header and a UUID-sized text, padded), to size Locate pages. */
const LOCATED_ID_BYTES = 64;
const LOCATE_PAGE_MAX = 1000;
const LOCATE_PAGE_MIN = 16;

/** How DeriveKey makes a key: the method and its parameters (KMIP 1.4 §4.6). */
export interface Derivation {
  readonly method: number;
  readonly hashingAlgorithm: number;
  readonly derivationData: Buffer;
  readonly salt?: Buffer;
}

/** The typed operations over one client. Calls that change nothing are retried once after a transport failure. */
export class KmipOperations {
  constructor(private readonly client: KmipClient) {}

  /** The response's Unique Identifier must be the one requested. */
  private sameObject(r: Ttlv, id: string, operation: number): void {
    const answered = child(r, Tag.UniqueIdentifier);
    if (answered?.type !== 'TextString' || answered.value !== id) {
      throw this.client.unexpectedAnswer(operation, `asked about object ${id}, the answer is about ${answered?.type === 'TextString' ? answered.value : 'no object'}`);
    }
  }

  /** Calls an operation on one object; the answer must name that object. */
  private async onObject(operation: number, id: string, items: readonly Ttlv[], options?: { retry?: boolean }): Promise<Ttlv> {
    const r = payloadOf(await this.client.call(operation, struct(Tag.RequestPayload, uid(id), ...items), options), enumName('Operation', operation));
    this.sameObject(r, id, operation);
    return r;
  }

  async create(objectType: number, attributes: readonly Attribute[]): Promise<string> {
    const r = payloadOf(await this.client.call(Op.Create, struct(Tag.RequestPayload, enm(Tag.ObjectType, objectType), template(Tag.TemplateAttribute, attributes))), 'Create');
    return textOf(r, Tag.UniqueIdentifier);
  }

  async createKeyPair(common: readonly Attribute[], privateOnly: readonly Attribute[], publicOnly: readonly Attribute[]): Promise<{ privateUid: string; publicUid: string }> {
    const r = payloadOf(
      await this.client.call(
        Op.CreateKeyPair,
        struct(
          Tag.RequestPayload,
          template(Tag.CommonTemplateAttribute, common),
          template(Tag.PrivateKeyTemplateAttribute, privateOnly),
          template(Tag.PublicKeyTemplateAttribute, publicOnly),
        ),
      ),
      'CreateKeyPair',
    );
    return { privateUid: textOf(r, Tag.PrivateKeyUniqueIdentifier), publicUid: textOf(r, Tag.PublicKeyUniqueIdentifier) };
  }

  /** Registers a symmetric key from raw material (the caller zeroes it). */
  registerSymmetricKey(algorithm: number, bits: number, material: Buffer, attributes: readonly Attribute[]): Promise<string> {
    const keyBlock = struct(
      Tag.KeyBlock,
      enm(Tag.KeyFormatType, Enum.KeyFormatType.Raw),
      struct(Tag.KeyValue, bytes(Tag.KeyMaterial, material)),
      enm(Tag.CryptographicAlgorithm, algorithm),
      int(Tag.CryptographicLength, bits),
    );
    return this.register(Enum.ObjectType.SymmetricKey, attributes, struct(Tag.SymmetricKey, keyBlock));
  }

  /** Registers Secret Data (type Seed: KMIP 1.4 has no better type for a record) in the Pre-Active state. */
  registerSecretData(value: Buffer, attributes: readonly Attribute[]): Promise<string> {
    const keyBlock = struct(Tag.KeyBlock, enm(Tag.KeyFormatType, Enum.KeyFormatType.Opaque), struct(Tag.KeyValue, bytes(Tag.KeyMaterial, value)));
    return this.register(Enum.ObjectType.SecretData, attributes, struct(Tag.SecretData, enm(Tag.SecretDataType, Enum.SecretDataType.Seed), keyBlock));
  }

  private async register(objectType: number, attributes: readonly Attribute[], object: Ttlv): Promise<string> {
    const r = payloadOf(
      await this.client.call(Op.Register, struct(Tag.RequestPayload, enm(Tag.ObjectType, objectType), template(Tag.TemplateAttribute, attributes), object)),
      'Register',
    );
    return textOf(r, Tag.UniqueIdentifier);
  }

  /**
   * The unique identifiers of the objects that match every attribute (PyKMIP: newest first). From KMIP 1.3
   * on, read in pages (Maximum Items, Offset Items) sized so that no answer outgrows maxResponseBytes.
   * Pages are not a snapshot: an object made between two reads can show twice (kept once), one removed
   * between them can hide a neighbour; callers that need a decision re-read what they act on.
   */
  async locate(attributes: readonly Attribute[]): Promise<string[]> {
    const filter = attributes.map(attribute);
    if (!this.client.speaks(1, 3)) return this.locatePage(filter);
    const pageSize = Math.min(LOCATE_PAGE_MAX, Math.max(LOCATE_PAGE_MIN, Math.floor((this.client.maxResponseBytes - 512) / LOCATED_ID_BYTES)));
    const found = new Set<string>();
    for (let offset = 0; ; offset += pageSize) {
      const page = await this.locatePage(filter, pageSize, offset);
      const before = found.size;
      for (const id of page) found.add(id);
      // A short page is the last; one that adds nothing means the server ignores the offset.
      if (page.length < pageSize || found.size === before) return [...found];
    }
  }

  private async locatePage(filter: readonly Ttlv[], maximum?: number, offset?: number): Promise<string[]> {
    const paging = maximum === undefined ? [] : [int(Tag.MaximumItems, maximum), int(Tag.OffsetItems, offset ?? 0)];
    const r = await this.client.call(Op.Locate, struct(Tag.RequestPayload, ...paging, ...filter), { retry: true });
    if (!r) return [];
    const ids = children(r, Tag.UniqueIdentifier).map((item) => {
      if (item.type !== 'TextString') throw unexpected('a located identifier is not text');
      return item.value;
    });
    if (maximum !== undefined && ids.length > maximum) throw this.client.unexpectedAnswer(Op.Locate, `asked for at most ${maximum} identifiers, got ${ids.length}`);
    return ids;
  }

  /** The key material of a Symmetric Key, Public Key, Private Key or Secret Data (not wrapped). */
  async get(id: string): Promise<KeyBlockValue> {
    const r = await this.onObject(Op.Get, id, [], { retry: true });
    const object = [Tag.SymmetricKey, Tag.PublicKey, Tag.PrivateKey, Tag.SecretData].map((t) => child(r, t)).find((o) => o !== undefined);
    const keyBlock = object && child(object, Tag.KeyBlock);
    const keyValue = keyBlock && child(keyBlock, Tag.KeyValue);
    if (!keyBlock || !keyValue || keyValue.type !== 'Structure') throw unexpected('Get returned no key block with a plain key value');
    return { formatType: enumOf(keyBlock, Tag.KeyFormatType), material: bytesOf(keyValue, Tag.KeyMaterial) };
  }

  async activate(id: string): Promise<void> {
    await this.onObject(Op.Activate, id, []);
  }

  /** Revokes an active object (Active -> Deactivated). Fails with Illegal Operation when it is not active. */
  async revoke(id: string, code: number): Promise<void> {
    await this.onObject(Op.Revoke, id, [struct(Tag.RevocationReason, enm(Tag.RevocationReasonCode, code))]);
  }

  async destroy(id: string): Promise<void> {
    await this.onObject(Op.Destroy, id, []);
  }

  /**
   * A symmetric key derived by the server from the key `baseId` (which needs the Derive Key usage bit):
   * the key material never leaves the server.
   */
  async deriveKey(baseId: string, derivation: Derivation, attributes: readonly Attribute[]): Promise<string> {
    const derivationParameters = [
      parameters({ hashingAlgorithm: derivation.hashingAlgorithm }),
      bytes(Tag.DerivationData, derivation.derivationData),
      ...(derivation.salt ? [bytes(Tag.Salt, derivation.salt)] : []),
    ];
    const r = payloadOf(
      await this.client.call(
        Op.DeriveKey,
        struct(
          Tag.RequestPayload,
          enm(Tag.ObjectType, Enum.ObjectType.SymmetricKey),
          uid(baseId),
          enm(Tag.DerivationMethod, derivation.method),
          struct(Tag.DerivationParameters, ...derivationParameters),
          template(Tag.TemplateAttribute, attributes),
        ),
      ),
      'DeriveKey',
    );
    return textOf(r, Tag.UniqueIdentifier);
  }

  /**
   * Encrypts under our IV, or none (ECB): a server that used another one (its own) is refused, its
   * ciphertext would not decrypt (or would not be ECB).
   */
  async encrypt(id: string, p: CryptoParameters, data: Buffer, iv: Buffer | undefined, aad?: Buffer): Promise<{ data: Buffer; tag?: Buffer }> {
    const items = [parameters(p), bytes(Tag.Data, data)];
    if (iv) items.push(bytes(Tag.IVCounterNonce, iv));
    if (aad && aad.length > 0) items.push(bytes(Tag.AuthenticatedEncryptionAdditionalData, aad));
    const r = await this.onObject(Op.Encrypt, id, items, { retry: true });
    const answeredIv = child(r, Tag.IVCounterNonce);
    if (answeredIv && !(iv && answeredIv.type === 'ByteString' && answeredIv.value.equals(iv))) {
      throw this.client.unexpectedAnswer(Op.Encrypt, iv ? 'the server encrypted under an IV other than the one sent' : 'the server answered an IV to an encryption without one');
    }
    const tag = child(r, Tag.AuthenticatedEncryptionTag);
    return { data: bytesOf(r, Tag.Data), ...(tag ? { tag: bytesOf(r, Tag.AuthenticatedEncryptionTag) } : {}) };
  }

  async decrypt(id: string, p: CryptoParameters, data: Buffer, iv: Buffer, aad: Buffer | undefined, tag: Buffer): Promise<Buffer> {
    const items = [parameters(p), bytes(Tag.Data, data), bytes(Tag.IVCounterNonce, iv)];
    if (aad && aad.length > 0) items.push(bytes(Tag.AuthenticatedEncryptionAdditionalData, aad));
    items.push(bytes(Tag.AuthenticatedEncryptionTag, tag));
    const r = await this.onObject(Op.Decrypt, id, items, { retry: true });
    return bytesOf(r, Tag.Data);
  }

  async sign(id: string, p: CryptoParameters, data: Buffer): Promise<Buffer> {
    const r = await this.onObject(Op.Sign, id, [parameters(p), bytes(Tag.Data, data)], { retry: true });
    return bytesOf(r, Tag.SignatureData);
  }

  async mac(id: string, p: CryptoParameters, data: Buffer): Promise<Buffer> {
    const r = await this.onObject(Op.MAC, id, [parameters(p), bytes(Tag.Data, data)], { retry: true });
    return bytesOf(r, Tag.MACData);
  }

  /** The operations the server says it serves (Query Operations). */
  async queryOperations(): Promise<Set<number>> {
    const r = await this.client.call(Op.Query, struct(Tag.RequestPayload, enm(Tag.QueryFunction, Enum.QueryFunction.QueryOperations)), { retry: true });
    return new Set(r ? children(r, Tag.Operation).map((o) => (o.type === 'Enumeration' ? o.value : -1)) : []);
  }
}
