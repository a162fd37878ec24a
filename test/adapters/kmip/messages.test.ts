import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { decodeResponse, encodeRequest, type KmipResponse } from '../../../adapters/kmip/messages.js';
import { Enum, Tag } from '../../../adapters/kmip/tags.js';
import {
  bytes,
  bytesOf,
  dateTime,
  decodeTtlv,
  encodeTtlv,
  enm,
  enumOf,
  int,
  intOf,
  KmipProtocolError,
  struct,
  structOf,
  text,
  textOf,
  type Ttlv,
} from '../../../adapters/kmip/ttlv.js';
import { mutate, prng } from './fuzz.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s/g, ''), 'hex');

/**
 * Messages from the KMIP Test Cases documents, as bytes. Source for each: PyKMIP's unit tests
 * (github.com/OpenKMIP/PyKMIP, kmip/tests/unit/core/messages/test_messages.py, TestRequestMessage /
 * TestResponseMessage), which carry the test-case encodings; the comment on each names the case.
 */
const vectors = {
  /** Create of an AES key (128 bits, Encrypt|Decrypt), KMIP 1.1 ("create" in test_messages.py). */
  createRequest: hex(`
    42007801 00000120 42007701 00000038 42006901 00000020 42006A02 00000004 00000001 00000000
    42006B02 00000004 00000001 00000000 42000D02 00000004 00000001 00000000 42000F01 000000D8
    42005C05 00000004 00000001 00000000 42007901 000000C0 42005705 00000004 00000002 00000000
    42009101 000000A8 42000801 00000030 42000A07 00000017 43727970 746F6772 61706869 6320416C
    676F7269 74686D00 42000B05 00000004 00000003 00000000 42000801 00000030 42000A07 00000014
    43727970 746F6772 61706869 63204C65 6E677468 00000000 42000B02 00000004 00000080 00000000
    42000801 00000030 42000A07 00000018 43727970 746F6772 61706869 63205573 61676520 4D61736B
    42000B02 00000004 0000000C 00000000`),
  /** Get by Unique Identifier, KMIP 1.1 ("get"). */
  getRequest: hex(`
    42007801 00000090 42007701 00000038 42006901 00000020 42006A02 00000004 00000001 00000000
    42006B02 00000004 00000001 00000000 42000D02 00000004 00000001 00000000 42000F01 00000048
    42005C05 00000004 0000000A 00000000 42007901 00000030 42009407 00000024 34396131 63613838
    2D366265 612D3466 62322D62 3435302D 37653538 38303263 33303338 00000000`),
  /** Locate a symmetric key by Name "Key1": KMIP 1.1 Test Cases §3.1.3 ("locate"). */
  locateRequest: hex(`
    42007801 000000d0 42007701 00000038 42006901 00000020 42006a02 00000004 00000001 00000000
    42006b02 00000004 00000001 00000000 42000d02 00000004 00000001 00000000 42000f01 00000088
    42005c05 00000004 00000008 00000000 42007901 00000070 42000801 00000028 42000a07 0000000b
    4f626a65 63742054 79706500 00000000 42000b05 00000004 00000002 00000000 42000801 00000038
    42000a07 00000004 4e616d65 00000000 42000b01 00000020 42005507 00000004 4b657931 00000000
    42005405 00000004 00000001 00000000`),
  /** MAC with HMAC-SHA512 over 00..0f, KMIP 1.2 ("mac"). */
  macRequest: hex(`
    42007801 000000a0 42007701 00000038 42006901 00000020 42006a02 00000004 00000001 00000000
    42006b02 00000004 00000002 00000000 42000d02 00000004 00000001 00000000 42000f01 00000058
    42005c05 00000004 00000023 00000000 42007901 00000040 42009407 00000001 31000000 00000000
    42002b01 00000010 42002805 00000004 0000000b 00000000 4200c208 00000010 00010203 04050607
    08090a0b 0c0d0e0f`),
  /** Create response, time stamp 0x4F9A54E5 (Fri Apr 27 2012), KMIP 1.1 ("create"). */
  createResponse: hex(`
    42007B01 000000C0 42007A01 00000048 42006901 00000020 42006A02 00000004 00000001 00000000
    42006B02 00000004 00000001 00000000 42009209 00000008 00000000 4F9A54E5 42000D02 00000004
    00000001 00000000 42000F01 00000068 42005C05 00000004 00000001 00000000 42007F05 00000004
    00000000 00000000 42007C01 00000040 42005705 00000004 00000002 00000000 42009407 00000024
    66623462 35623963 2D363138 382D3463 36332D38 3134322D 66653963 33323831 32396663 00000000`),
  /** Get response carrying a Triple-DES (168-bit) symmetric key in Raw format, KMIP 1.1 ("get"). */
  getResponse: hex(`
    42007B01 00000128 42007A01 00000048 42006901 00000020 42006A02 00000004 00000001 00000000
    42006B02 00000004 00000001 00000000 42009209 00000008 00000000 4F9A54E7 42000D02 00000004
    00000001 00000000 42000F01 000000D0 42005C05 00000004 0000000A 00000000 42007F05 00000004
    00000000 00000000 42007C01 000000A8 42005705 00000004 00000002 00000000 42009407 00000024
    34396131 63613838 2D366265 612D3466 62322D62 3435302D 37653538 38303263 33303338 00000000
    42008F01 00000060 42004001 00000058 42004205 00000004 00000001 00000000 42004501 00000020
    42004308 00000018 73675780 51012A6D 134A855E 25C8CD5E 4CA13145 5729D3C8 42002805 00000004
    00000002 00000000 42002A02 00000004 000000A8 00000000`),
  /** Locate response: KMIP 1.1 Test Cases §3.1.3 ("locate"). */
  locateResponse: hex(`
    42007b01 000000b0 42007a01 00000048 42006901 00000020 42006a02 00000004 00000001 00000000
    42006b02 00000004 00000001 00000000 42009209 00000008 00000000 4f9a54e6 42000d02 00000004
    00000001 00000000 42000f01 00000058 42005c05 00000004 00000008 00000000 42007f05 00000004
    00000000 00000000 42007c01 00000030 42009407 00000024 34396131 63613838 2d366265 612d3466
    62322d62 3435302d 37653538 38303263 33303338 00000000`),
  /** MAC response (64-byte HMAC-SHA512), KMIP 1.2 ("mac"). */
  macResponse: hex(`
    42007b01 000000d8 42007a01 00000048 42006901 00000020 42006a02 00000004 00000001 00000000
    42006b02 00000004 00000002 00000000 42009209 00000008 00000000 588a3f23 42000d02 00000004
    00000001 00000000 42000f01 00000080 42005c05 00000004 00000023 00000000 42007f05 00000004
    00000000 00000000 42007c01 00000058 42009407 00000001 31000000 00000000 4200c608 00000040
    998b5559 909b8587 5b906313 12bb329f 6ac4ed97 6eac99e5 2153c419 28f22a5b ef79a4be 053b3149
    19e07523 b9bec823 35607e49 baa97ee0 9e6b3d55 f451ff7c`),
  /** A failure without an Operation: Invalid Message, "Default response. No operations supported." */
  invalidMessageResponse: hex(`
    42007b01 000000b0 42007a01 00000048 42006901 00000020 42006a02 00000004 00000001 00000000
    42006b02 00000004 00000001 00000000 42009209 00000008 00000000 56fa43bd 42000d02 00000004
    00000001 00000000 42000f01 00000058 42007f05 00000004 00000001 00000000 42007e05 00000004
    00000004 00000000 42007d07 0000002a 44656661 756c7420 72657370 6f6e7365 2e204e6f 206f7065
    72617469 6f6e7320 73757070 6f727465 642e0000 00000000`),
};

const attribute = (name: string, value: Ttlv): Ttlv => struct(Tag.Attribute, text(Tag.AttributeName, name), { ...value, tag: Tag.AttributeValue });
const v11 = { major: 1, minor: 1 };

describe('encodeRequest: byte-exact against the test-case messages', () => {
  it('Create of an AES key (template attributes)', () => {
    const payload = struct(
      Tag.RequestPayload,
      enm(Tag.ObjectType, Enum.ObjectType.SymmetricKey),
      struct(
        Tag.TemplateAttribute,
        attribute('Cryptographic Algorithm', enm(0, Enum.CryptographicAlgorithm.AES)),
        attribute('Cryptographic Length', int(0, 128)),
        attribute('Cryptographic Usage Mask', int(0, Enum.CryptographicUsageMask.Encrypt | Enum.CryptographicUsageMask.Decrypt)),
      ),
    );
    expect(encodeRequest(v11, Enum.Operation.Create, payload).toString('hex')).toBe(vectors.createRequest.toString('hex'));
  });

  it('Get by Unique Identifier', () => {
    const payload = struct(Tag.RequestPayload, text(Tag.UniqueIdentifier, '49a1ca88-6bea-4fb2-b450-7e58802c3038'));
    expect(encodeRequest(v11, Enum.Operation.Get, payload).toString('hex')).toBe(vectors.getRequest.toString('hex'));
  });

  it('Locate by Object Type and Name (TC 3.1.3)', () => {
    const payload = struct(
      Tag.RequestPayload,
      attribute('Object Type', enm(0, Enum.ObjectType.SymmetricKey)),
      attribute('Name', struct(0, text(Tag.NameValue, 'Key1'), enm(Tag.NameType, Enum.NameType.UninterpretedTextString))),
    );
    expect(encodeRequest(v11, Enum.Operation.Locate, payload).toString('hex')).toBe(vectors.locateRequest.toString('hex'));
  });

  it('MAC with cryptographic parameters (KMIP 1.2)', () => {
    const payload = struct(
      Tag.RequestPayload,
      text(Tag.UniqueIdentifier, '1'),
      struct(Tag.CryptographicParameters, enm(Tag.CryptographicAlgorithm, Enum.CryptographicAlgorithm.HMAC_SHA512)),
      bytes(Tag.Data, Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex')),
    );
    expect(encodeRequest({ major: 1, minor: 2 }, Enum.Operation.MAC, payload).toString('hex')).toBe(vectors.macRequest.toString('hex'));
  });

  it('writes MaximumResponseSize between ProtocolVersion and BatchCount when asked', () => {
    const encoded = encodeRequest({ major: 1, minor: 4 }, Enum.Operation.Query, struct(Tag.RequestPayload), { maximumResponseSize: 4096 });
    const header = structOf(decodeTtlv(encoded), Tag.RequestHeader);
    expect(header.value.map((c) => c.tag)).toEqual([Tag.ProtocolVersion, Tag.MaximumResponseSize, Tag.BatchCount]);
    expect(intOf(header, Tag.MaximumResponseSize)).toBe(4096);
  });

  it('refuses a payload that is not a RequestPayload structure', () => {
    expect(() => encodeRequest(v11, Enum.Operation.Get, text(Tag.UniqueIdentifier, 'x'))).toThrow(TypeError);
    expect(() => encodeRequest(v11, Enum.Operation.Get, struct(Tag.ResponsePayload))).toThrow(/RequestPayload/);
  });
});

describe('payload vectors (KMIP 1.1 Test Cases §12.1 Query; DiscoverVersions)', () => {
  // From PyKMIP kmip/tests/unit/core/messages/payloads/test_query.py ("Sections 12.1 and 12.2 of the
  // KMIP 1.1 Test Cases") and test_discover_versions.py.
  it('Query request: Operations, Objects, Server Information', () => {
    const payload = struct(
      Tag.RequestPayload,
      enm(Tag.QueryFunction, Enum.QueryFunction.QueryOperations),
      enm(Tag.QueryFunction, Enum.QueryFunction.QueryObjects),
      enm(Tag.QueryFunction, Enum.QueryFunction.QueryServerInformation),
    );
    expect(encodeTtlv(payload).toString('hex')).toBe(
      hex(`42007901 00000030 42007405 00000004 00000001 00000000 42007405 00000004 00000002 00000000
           42007405 00000004 00000003 00000000`).toString('hex'),
    );
  });
  it('DiscoverVersions request listing 1.1 then 1.0', () => {
    const pv = (minor: number) => struct(Tag.ProtocolVersion, int(Tag.ProtocolVersionMajor, 1), int(Tag.ProtocolVersionMinor, minor));
    expect(encodeTtlv(struct(Tag.RequestPayload, pv(1), pv(0))).toString('hex')).toBe(
      hex(`42007901 00000050 42006901 00000020 42006A02 00000004 00000001 00000000 42006B02 00000004
           00000001 00000000 42006901 00000020 42006A02 00000004 00000001 00000000 42006B02 00000004
           00000000 00000000`).toString('hex'),
    );
    expect(encodeTtlv(struct(Tag.RequestPayload)).toString('hex')).toBe('4200790100000000');
  });
});

describe('decodeResponse: the test-case responses', () => {
  it('Create response', () => {
    const r = decodeResponse(vectors.createResponse);
    expect(r).toMatchObject({ version: v11, operation: Enum.Operation.Create, status: 'success' });
    expect(enumOf(r.payload!, Tag.ObjectType)).toBe(Enum.ObjectType.SymmetricKey);
    expect(textOf(r.payload!, Tag.UniqueIdentifier)).toBe('fb4b5b9c-6188-4c63-8142-fe9c328129fc');
    expect(r.reason).toBeUndefined();
    expect(r.message).toBeUndefined();
  });

  it('Get response with the key material', () => {
    const r = decodeResponse(vectors.getResponse);
    expect(r).toMatchObject({ version: v11, operation: Enum.Operation.Get, status: 'success' });
    const block = structOf(structOf(r.payload!, Tag.SymmetricKey), Tag.KeyBlock);
    expect(enumOf(block, Tag.KeyFormatType)).toBe(Enum.KeyFormatType.Raw);
    expect(bytesOf(structOf(block, Tag.KeyValue), Tag.KeyMaterial).toString('hex')).toBe('7367578051012a6d134a855e25c8cd5e4ca131455729d3c8');
    expect(enumOf(block, Tag.CryptographicAlgorithm)).toBe(Enum.CryptographicAlgorithm.TripleDES);
    expect(intOf(block, Tag.CryptographicLength)).toBe(168);
  });

  it('Locate response', () => {
    const r = decodeResponse(vectors.locateResponse);
    expect(r).toMatchObject({ operation: Enum.Operation.Locate, status: 'success' });
    expect(textOf(r.payload!, Tag.UniqueIdentifier)).toBe('49a1ca88-6bea-4fb2-b450-7e58802c3038');
  });

  it('MAC response (KMIP 1.2)', () => {
    const r = decodeResponse(vectors.macResponse);
    expect(r).toMatchObject({ version: { major: 1, minor: 2 }, operation: Enum.Operation.MAC, status: 'success' });
    expect(bytesOf(r.payload!, Tag.MACData)).toHaveLength(64);
  });

  it('a failure that names no operation', () => {
    const r = decodeResponse(vectors.invalidMessageResponse);
    expect(r).toEqual<KmipResponse>({
      version: v11,
      status: 'failed',
      reason: Enum.ResultReason.InvalidMessage,
      message: 'Default response. No operations supported.',
    });
  });
});

// ---------------------------------------------------------------------------------------------------
// Shapes decodeResponse must refuse. Built from a valid response so each case changes one thing.

const header = (...extra: Ttlv[]): Ttlv =>
  struct(
    Tag.ResponseHeader,
    struct(Tag.ProtocolVersion, int(Tag.ProtocolVersionMajor, 1), int(Tag.ProtocolVersionMinor, 4)),
    dateTime(Tag.TimeStamp, 1_700_000_000n),
    ...extra,
    int(Tag.BatchCount, 1),
  );
const okItem = (...extra: Ttlv[]): Ttlv =>
  struct(Tag.BatchItem, enm(Tag.Operation, Enum.Operation.Get), enm(Tag.ResultStatus, Enum.ResultStatus.Success), ...extra);
const message = (...parts: Ttlv[]) => encodeTtlv(struct(Tag.ResponseMessage, ...parts));

describe('decodeResponse: strict about the message shape', () => {
  it('accepts the optional 1.2-1.4 header fields and a pending status', () => {
    const r = decodeResponse(
      message(
        header(bytes(Tag.ClientCorrelationValue, Buffer.from('c')), text(Tag.ServerCorrelationValue, 's')),
        struct(Tag.BatchItem, enm(Tag.Operation, Enum.Operation.Get), enm(Tag.ResultStatus, Enum.ResultStatus.OperationPending), bytes(Tag.AsynchronousCorrelationValue, Buffer.from('01', 'hex'))),
      ),
    );
    expect(r.status).toBe('pending');
    expect(decodeResponse(message(header(), okItem())).payload).toBeUndefined();
  });

  const refused: Array<[string, Buffer, RegExp]> = [
    ['a RequestMessage', encodeTtlv(struct(Tag.RequestMessage, header(), okItem())), /expected ResponseMessage/],
    ['a top-level item that is not a structure', encodeTtlv(text(Tag.ResponseMessage, 'x')), /Structure/],
    ['no header', message(okItem()), /ResponseHeader missing/],
    ['no batch item', message(struct(Tag.ResponseHeader, struct(Tag.ProtocolVersion, int(Tag.ProtocolVersionMajor, 1), int(Tag.ProtocolVersionMinor, 4)), dateTime(Tag.TimeStamp, 0n), int(Tag.BatchCount, 0))), /expected one batch item/],
    ['two batch items', message(header(), okItem(), okItem()), /expected one batch item/],
    ['two headers', message(header(), header(), okItem()), /occurs 2 times/],
    ['no time stamp', message(struct(Tag.ResponseHeader, struct(Tag.ProtocolVersion, int(Tag.ProtocolVersionMajor, 1), int(Tag.ProtocolVersionMinor, 4)), int(Tag.BatchCount, 1)), okItem()), /TimeStamp missing/],
    ['a time stamp of the wrong type', message(struct(Tag.ResponseHeader, struct(Tag.ProtocolVersion, int(Tag.ProtocolVersionMajor, 1), int(Tag.ProtocolVersionMinor, 4)), int(Tag.TimeStamp, 5), int(Tag.BatchCount, 1)), okItem()), /TimeStamp is a Integer/],
    ['a version without minor', message(struct(Tag.ResponseHeader, struct(Tag.ProtocolVersion, int(Tag.ProtocolVersionMajor, 1)), dateTime(Tag.TimeStamp, 0n), int(Tag.BatchCount, 1)), okItem()), /ProtocolVersionMinor missing/],
    ['an unexpected field in the header', message(header(text(Tag.UniqueIdentifier, 'x')), okItem()), /unexpected UniqueIdentifier in ResponseHeader/],
    ['an unexpected field in the batch item', message(header(), okItem(text(Tag.UniqueIdentifier, 'x'))), /unexpected UniqueIdentifier in BatchItem/],
    ['an unexpected field in the message', message(header(), okItem(), int(Tag.BatchCount, 1)), /unexpected BatchCount in ResponseMessage/],
    ['an unknown result status', message(header(), struct(Tag.BatchItem, enm(Tag.Operation, 1), enm(Tag.ResultStatus, 9))), /unknown ResultStatus/],
    ['no result status', message(header(), struct(Tag.BatchItem, enm(Tag.Operation, 1))), /ResultStatus missing/],
    ['a success without its operation', message(header(), struct(Tag.BatchItem, enm(Tag.ResultStatus, 0))), /Operation missing/],
    ['a failure without a reason', message(header(), struct(Tag.BatchItem, enm(Tag.Operation, 1), enm(Tag.ResultStatus, 1))), /ResultReason missing/],
    ['a payload that is not a structure', message(header(), okItem(text(Tag.ResponsePayload, 'x'))), /ResponsePayload is a TextString/],
    ['a result message that is not text', message(header(), okItem(int(Tag.ResultMessage, 1))), /ResultMessage is a Integer/],
  ];
  it.each(refused)('refuses %s', (_, data, why) => {
    expect(() => decodeResponse(data)).toThrow(KmipProtocolError);
    expect(() => decodeResponse(data)).toThrow(why);
  });

  it('applies the decode limits', () => {
    expect(() => decodeResponse(vectors.getResponse, { maxBytes: 100 })).toThrow(/exceeds the limit/);
    expect(() => decodeResponse(vectors.getResponse, { maxDepth: 4 })).toThrow(/nesting/);
  });

  it('fuzz: mutated responses only ever produce KmipProtocolError', () => {
    const seeds = Object.values(vectors);
    const rnd = prng(0x5eed_0002);
    for (let i = 0; i < 20_000; i++) {
      const input = mutate(seeds[i % seeds.length]!, rnd);
      try {
        decodeResponse(input);
      } catch (e) {
        if (!(e instanceof KmipProtocolError)) throw new Error(`iteration ${i} threw ${String(e)} for ${input.toString('hex')}`);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------------
// An independent implementation: the Debian python3-pykmip library (the same package the integration
// tests run as the server) parses what we encode, and encodes what we parse.

const PYTHON = '/usr/bin/python3';
const python = (script: string, ...args: string[]): string => {
  try {
    return execFileSync(PYTHON, ['-c', script, ...args], { encoding: 'utf8', timeout: 30_000 });
  } catch (e) {
    throw new Error(`PyKMIP call failed (this test needs python3-pykmip: apt-get install python3-pykmip): ${String(e)}`);
  }
};

describe('interoperability with PyKMIP', () => {
  it('PyKMIP parses our requests', () => {
    const script = `
import sys, json, binascii
from kmip.core import enums, utils
from kmip.core.messages import messages
m = messages.RequestMessage()
m.read(utils.BytearrayStream(binascii.unhexlify(sys.argv[1])), kmip_version=enums.KMIPVersion.KMIP_1_4)
h, b = m.request_header, m.batch_items[0]
p = b.request_payload
print(json.dumps({"version": [h.protocol_version.major, h.protocol_version.minor],
  "maxResponseSize": h.maximum_response_size.value, "batchCount": h.batch_count.value,
  "operation": b.operation.value.name, "uid": p.unique_identifier.value,
  "algorithm": p.cryptographic_parameters.cryptographic_algorithm.name, "data": binascii.hexlify(p.data.value).decode()}))
`;
    const request = encodeRequest(
      { major: 1, minor: 4 },
      Enum.Operation.MAC,
      struct(
        Tag.RequestPayload,
        text(Tag.UniqueIdentifier, 'key-42'),
        struct(Tag.CryptographicParameters, enm(Tag.CryptographicAlgorithm, Enum.CryptographicAlgorithm.HMAC_SHA256)),
        bytes(Tag.Data, Buffer.from('payments')),
      ),
      { maximumResponseSize: 65536 },
    );
    expect(JSON.parse(python(script, request.toString('hex')))).toEqual({
      version: [1, 4],
      maxResponseSize: 65536,
      batchCount: 1,
      operation: 'MAC',
      uid: 'key-42',
      algorithm: 'HMAC_SHA256',
      data: Buffer.from('payments').toString('hex'),
    });
  });

  it('we parse PyKMIP’s responses: success, failure, DiscoverVersions', () => {
    const script = `
import json, binascii
from kmip.core import enums, utils
from kmip.core.messages import messages, contents, payloads
def encode(minor, item):
    s = utils.BytearrayStream()
    h = messages.ResponseHeader(protocol_version=contents.ProtocolVersion(1, minor), time_stamp=contents.TimeStamp(1700000000), batch_count=contents.BatchCount(1))
    messages.ResponseMessage(response_header=h, batch_items=[item]).write(s, kmip_version=enums.KMIPVersion.KMIP_1_4)
    return binascii.hexlify(s.buffer).decode()
print(json.dumps({
  "create": encode(4, messages.ResponseBatchItem(operation=contents.Operation(enums.Operation.CREATE),
      result_status=contents.ResultStatus(enums.ResultStatus.SUCCESS),
      response_payload=payloads.CreateResponsePayload(object_type=enums.ObjectType.SYMMETRIC_KEY, unique_identifier='7'))),
  "failed": encode(4, messages.ResponseBatchItem(operation=contents.Operation(enums.Operation.GET),
      result_status=contents.ResultStatus(enums.ResultStatus.OPERATION_FAILED),
      result_reason=contents.ResultReason(enums.ResultReason.ITEM_NOT_FOUND),
      result_message=contents.ResultMessage('Could not locate object: 99'))),
  "discover": encode(2, messages.ResponseBatchItem(operation=contents.Operation(enums.Operation.DISCOVER_VERSIONS),
      result_status=contents.ResultStatus(enums.ResultStatus.SUCCESS),
      response_payload=payloads.DiscoverVersionsResponsePayload(protocol_versions=[contents.ProtocolVersion(1, m) for m in (4, 3, 2)]))),
}))
`;
    const out = JSON.parse(python(script)) as Record<'create' | 'failed' | 'discover', string>;

    const created = decodeResponse(Buffer.from(out.create, 'hex'));
    expect(created).toMatchObject({ version: { major: 1, minor: 4 }, operation: Enum.Operation.Create, status: 'success' });
    expect(textOf(created.payload!, Tag.UniqueIdentifier)).toBe('7');

    expect(decodeResponse(Buffer.from(out.failed, 'hex'))).toEqual<KmipResponse>({
      version: { major: 1, minor: 4 },
      operation: Enum.Operation.Get,
      status: 'failed',
      reason: Enum.ResultReason.ItemNotFound,
      message: 'Could not locate object: 99',
    });

    const discovered = decodeResponse(Buffer.from(out.discover, 'hex'));
    expect(discovered.version).toEqual({ major: 1, minor: 2 });
    const versions = (discovered.payload as Extract<Ttlv, { type: 'Structure' }>).value.map((pv) => [intOf(pv, Tag.ProtocolVersionMajor), intOf(pv, Tag.ProtocolVersionMinor)]);
    expect(versions).toEqual([
      [1, 4],
      [1, 3],
      [1, 2],
    ]);
  });
});
