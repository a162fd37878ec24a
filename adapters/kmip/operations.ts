/**
 * The KMIP operations the backend uses, as typed calls: request payloads built in the order KMIP 1.4
 * defines (PyKMIP reads fields in sequence and ignores what it meets out of order), responses read
 * strictly. Nothing here knows about hsm-bridge keys; backend.ts and keyRecords.ts do.
 */
import { HsmBridgeError } from '../../src/errors.js';
import { KmipOperationError, type KmipClient } from './client.js';
import { Enum, Tag } from './tags.js';
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

/** The typed operations over one client. Calls that change nothing are retried once after a transport failure. */
export class KmipOperations {
  constructor(private readonly client: KmipClient) {}

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

  /** The unique identifiers of the objects that match every attribute (PyKMIP: newest first). */
  async locate(attributes: readonly Attribute[]): Promise<string[]> {
    const r = await this.client.call(Op.Locate, struct(Tag.RequestPayload, ...attributes.map(attribute)), { retry: true });
    if (!r) return [];
    return children(r, Tag.UniqueIdentifier).map((item) => {
      if (item.type !== 'TextString') throw unexpected('a located identifier is not text');
      return item.value;
    });
  }

  /** The key material of a Symmetric Key, Public Key, Private Key or Secret Data (not wrapped). */
  async get(id: string): Promise<KeyBlockValue> {
    const r = payloadOf(await this.client.call(Op.Get, struct(Tag.RequestPayload, uid(id)), { retry: true }), 'Get');
    const object = [Tag.SymmetricKey, Tag.PublicKey, Tag.PrivateKey, Tag.SecretData].map((t) => child(r, t)).find((o) => o !== undefined);
    const keyBlock = object && child(object, Tag.KeyBlock);
    const keyValue = keyBlock && child(keyBlock, Tag.KeyValue);
    if (!keyBlock || !keyValue || keyValue.type !== 'Structure') throw unexpected('Get returned no key block with a plain key value');
    return { formatType: enumOf(keyBlock, Tag.KeyFormatType), material: bytesOf(keyValue, Tag.KeyMaterial) };
  }

  async activate(id: string): Promise<void> {
    await this.client.call(Op.Activate, struct(Tag.RequestPayload, uid(id)));
  }

  /** Revokes an active object (Active -> Deactivated). Fails with Illegal Operation when it is not active. */
  async revoke(id: string, code: number): Promise<void> {
    await this.client.call(Op.Revoke, struct(Tag.RequestPayload, uid(id), struct(Tag.RevocationReason, enm(Tag.RevocationReasonCode, code))));
  }

  async destroy(id: string): Promise<void> {
    await this.client.call(Op.Destroy, struct(Tag.RequestPayload, uid(id)));
  }

  async encrypt(id: string, p: CryptoParameters, data: Buffer, iv: Buffer, aad?: Buffer): Promise<{ data: Buffer; tag?: Buffer }> {
    const items = [uid(id), parameters(p), bytes(Tag.Data, data), bytes(Tag.IVCounterNonce, iv)];
    if (aad && aad.length > 0) items.push(bytes(Tag.AuthenticatedEncryptionAdditionalData, aad));
    const r = payloadOf(await this.client.call(Op.Encrypt, struct(Tag.RequestPayload, ...items), { retry: true }), 'Encrypt');
    const tag = child(r, Tag.AuthenticatedEncryptionTag);
    return { data: bytesOf(r, Tag.Data), ...(tag ? { tag: bytesOf(r, Tag.AuthenticatedEncryptionTag) } : {}) };
  }

  async decrypt(id: string, p: CryptoParameters, data: Buffer, iv: Buffer, aad: Buffer | undefined, tag: Buffer): Promise<Buffer> {
    const items = [uid(id), parameters(p), bytes(Tag.Data, data), bytes(Tag.IVCounterNonce, iv)];
    if (aad && aad.length > 0) items.push(bytes(Tag.AuthenticatedEncryptionAdditionalData, aad));
    items.push(bytes(Tag.AuthenticatedEncryptionTag, tag));
    const r = payloadOf(await this.client.call(Op.Decrypt, struct(Tag.RequestPayload, ...items), { retry: true }), 'Decrypt');
    return bytesOf(r, Tag.Data);
  }

  async sign(id: string, p: CryptoParameters, data: Buffer): Promise<Buffer> {
    const r = payloadOf(await this.client.call(Op.Sign, struct(Tag.RequestPayload, uid(id), parameters(p), bytes(Tag.Data, data)), { retry: true }), 'Sign');
    return bytesOf(r, Tag.SignatureData);
  }

  async signatureVerify(id: string, p: CryptoParameters, data: Buffer, signature: Buffer): Promise<boolean> {
    const r = payloadOf(
      await this.client.call(Op.SignatureVerify, struct(Tag.RequestPayload, uid(id), parameters(p), bytes(Tag.Data, data), bytes(Tag.SignatureData, signature)), { retry: true }),
      'SignatureVerify',
    );
    const validity = enumOf(r, Tag.ValidityIndicator);
    if (validity === Enum.ValidityIndicator.Valid) return true;
    if (validity === Enum.ValidityIndicator.Invalid) return false;
    throw unexpected('SignatureVerify could not decide');
  }

  async mac(id: string, p: CryptoParameters, data: Buffer): Promise<Buffer> {
    const r = payloadOf(await this.client.call(Op.MAC, struct(Tag.RequestPayload, uid(id), parameters(p), bytes(Tag.Data, data)), { retry: true }), 'MAC');
    return bytesOf(r, Tag.MACData);
  }

  /** The operations the server says it serves (Query Operations). */
  async queryOperations(): Promise<Set<number>> {
    const r = await this.client.call(Op.Query, struct(Tag.RequestPayload, enm(Tag.QueryFunction, Enum.QueryFunction.QueryOperations)), { retry: true });
    return new Set(r ? children(r, Tag.Operation).map((o) => (o.type === 'Enumeration' ? o.value : -1)) : []);
  }
}
