/**
 * KMIP request and response messages (KMIP 1.4 §7), one batch item each: hsm-bridge never batches, so
 * a response that carries anything other than exactly one batch item is refused rather than guessed at.
 */
import { Enum, Tag, tagName } from './tags.js';
import {
  children,
  decodeTtlv,
  encodeTtlv,
  enm,
  int,
  KmipProtocolError,
  struct,
  type DecodeLimits,
  type Ttlv,
} from './ttlv.js';

export interface ProtocolVersion {
  major: number;
  minor: number;
}

export type ResultStatus = 'success' | 'failed' | 'pending' | 'undone';

export interface KmipResponse {
  version: ProtocolVersion;
  /** Absent only on a failure the server could not tie to an operation (e.g. a request it could not parse). */
  operation?: number;
  status: ResultStatus;
  /** A ResultReason value; always present on failure. */
  reason?: number;
  /** The server's own text. Never echo it to callers unfiltered: it may quote request fields. */
  message?: string;
  payload?: Ttlv;
}

export const protocolVersion = (v: ProtocolVersion): Ttlv =>
  struct(Tag.ProtocolVersion, int(Tag.ProtocolVersionMajor, v.major), int(Tag.ProtocolVersionMinor, v.minor));

/**
 * One RequestMessage with one batch item. `payload` is the RequestPayload structure itself (tag
 * Tag.RequestPayload); the operations differ only in its contents.
 */
export function encodeRequest(version: ProtocolVersion, operation: number, payload: Ttlv, options?: { maximumResponseSize?: number }): Buffer {
  if (payload.tag !== Tag.RequestPayload || payload.type !== 'Structure') {
    throw new TypeError(`request payload must be a RequestPayload structure, got ${tagName(payload.tag)} (${payload.type})`);
  }
  const header: Ttlv[] = [protocolVersion(version)];
  if (options?.maximumResponseSize !== undefined) header.push(int(Tag.MaximumResponseSize, options.maximumResponseSize));
  header.push(int(Tag.BatchCount, 1));
  return encodeTtlv(
    struct(Tag.RequestMessage, struct(Tag.RequestHeader, ...header), struct(Tag.BatchItem, enm(Tag.Operation, operation), payload)),
  );
}

const statusOf = new Map<number, ResultStatus>([
  [Enum.ResultStatus.Success, 'success'],
  [Enum.ResultStatus.OperationFailed, 'failed'],
  [Enum.ResultStatus.OperationPending, 'pending'],
  [Enum.ResultStatus.OperationUndone, 'undone'],
]);

/** Fields a KMIP 1.0-1.4 response header may carry (§7.2, Table 272 in 1.4). */
const headerFields = new Set<number>([
  Tag.ProtocolVersion,
  Tag.TimeStamp,
  Tag.Nonce,
  Tag.AttestationType,
  Tag.ClientCorrelationValue,
  Tag.ServerCorrelationValue,
  Tag.BatchCount,
]);

/** Fields a response batch item may carry (§7.2). */
const batchItemFields = new Set<number>([
  Tag.Operation,
  Tag.UniqueBatchItemID,
  Tag.ResultStatus,
  Tag.ResultReason,
  Tag.ResultMessage,
  Tag.AsynchronousCorrelationValue,
  Tag.ResponsePayload,
  Tag.MessageExtension,
]);

/** Decodes a ResponseMessage strictly: well-formed TTLV, the §7 shape, one batch item. */
export function decodeResponse(data: Buffer, limits?: Partial<DecodeLimits>): KmipResponse {
  const message = decodeTtlv(data, limits);
  expect(message, Tag.ResponseMessage, 'Structure');
  onlyFields(message, new Set([Tag.ResponseHeader, Tag.BatchItem]));

  const header = one(message, Tag.ResponseHeader, 'Structure');
  onlyFields(header, headerFields);
  const pv = one(header, Tag.ProtocolVersion, 'Structure');
  onlyFields(pv, new Set([Tag.ProtocolVersionMajor, Tag.ProtocolVersionMinor]));
  const version = { major: one(pv, Tag.ProtocolVersionMajor, 'Integer').value, minor: one(pv, Tag.ProtocolVersionMinor, 'Integer').value };
  if (version.major < 0 || version.minor < 0) throw new KmipProtocolError(`negative protocol version ${version.major}.${version.minor}`);
  one(header, Tag.TimeStamp, 'DateTime');
  const batchCount = one(header, Tag.BatchCount, 'Integer').value;
  const items = children(message, Tag.BatchItem);
  if (batchCount !== 1 || items.length !== 1) {
    throw new KmipProtocolError(`expected one batch item, header says ${batchCount} and the message has ${items.length}`);
  }

  const item = items[0]!;
  expect(item, Tag.BatchItem, 'Structure');
  onlyFields(item, batchItemFields);
  const status = statusOf.get(one(item, Tag.ResultStatus, 'Enumeration').value);
  if (status === undefined) throw new KmipProtocolError('unknown ResultStatus');
  const operation = optional(item, Tag.Operation, 'Enumeration')?.value;
  // We always name the operation, so the server must echo it (§7.2: "Yes, if specified in Request").
  if (operation === undefined && status !== 'failed') throw new KmipProtocolError('Operation missing from a response that did not fail');
  const reason = optional(item, Tag.ResultReason, 'Enumeration')?.value;
  if (reason === undefined && status === 'failed') throw new KmipProtocolError('ResultReason missing from a failed response');
  const resultMessage = optional(item, Tag.ResultMessage, 'TextString')?.value;
  const payload = optional(item, Tag.ResponsePayload, 'Structure');

  const response: KmipResponse = { version, status };
  if (operation !== undefined) response.operation = operation;
  if (reason !== undefined) response.reason = reason;
  if (resultMessage !== undefined) response.message = resultMessage;
  if (payload !== undefined) response.payload = payload;
  return response;
}

type ItemOf<T extends Ttlv['type']> = Extract<Ttlv, { type: T }>;

function expect<T extends Ttlv['type']>(item: Ttlv, tag: number, type: T): asserts item is ItemOf<T> {
  if (item.tag !== tag) throw new KmipProtocolError(`expected ${tagName(tag)}, got ${tagName(item.tag)}`);
  if (item.type !== type) throw new KmipProtocolError(`${tagName(tag)} is a ${item.type}, expected ${type}`);
}

function optional<T extends Ttlv['type']>(parent: Ttlv, tag: number, type: T): ItemOf<T> | undefined {
  const found = children(parent, tag);
  if (found.length > 1) throw new KmipProtocolError(`${tagName(tag)} occurs ${found.length} times in ${tagName(parent.tag)}`);
  const item = found[0];
  if (item === undefined) return undefined;
  expect(item, tag, type);
  return item;
}

function one<T extends Ttlv['type']>(parent: Ttlv, tag: number, type: T): ItemOf<T> {
  const found = optional(parent, tag, type);
  if (found === undefined) throw new KmipProtocolError(`${tagName(tag)} missing from ${tagName(parent.tag)}`);
  return found;
}

function onlyFields(item: ItemOf<'Structure'>, allowed: ReadonlySet<number>): void {
  for (const c of item.value) if (!allowed.has(c.tag)) throw new KmipProtocolError(`unexpected ${tagName(c.tag)} in ${tagName(item.tag)}`);
}
