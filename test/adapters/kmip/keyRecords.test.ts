/** The head record codec: what it accepts, and the bounds it checks before parsing what a server returns. */
import { describe, expect, it } from 'vitest';
import { decodeRecord, encodeRecord, MAX_RECORD_BYTES, MAX_VERSIONS, type HeadRecord } from '../../../adapters/kmip/keyRecords.js';
import type { KeyName } from '../../../src/keys/names.js';

const at = '2026-01-01T00:00:00.000Z';
const record: HeadRecord = {
  name: 'orders' as KeyName, type: 'AES_256', purpose: 'encrypt', state: 'enabled', createdAt: at, writtenAt: at,
  versions: { 1: { createdAt: at, uid: '17' }, 2: { createdAt: at, uid: '21' } }, basedOn: '12',
};
const json = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8');
const versions = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [String(i + 1), { createdAt: at, uid: String(1000 + i) }]));

describe('kmip head records', () => {
  it('round-trips a record, and a tombstone', () => {
    expect(decodeRecord(encodeRecord(record))).toEqual(record);
    const tombstone: HeadRecord = { ...record, destroyed: true };
    expect(decodeRecord(encodeRecord(tombstone))).toEqual(tombstone);
  });

  it('minDecryptionVersion: round-trips; absent (a head written before it existed) or 1 retires nothing; malformed is refused', () => {
    const retired: HeadRecord = { ...record, minDecryptionVersion: 2 };
    expect(decodeRecord(encodeRecord(retired))).toEqual(retired);
    expect(decodeRecord(json({ format: 1, ...record }))).not.toHaveProperty('minDecryptionVersion');
    expect(decodeRecord(json({ format: 1, ...record, minDecryptionVersion: 1 }))).toEqual(record);
    for (const bad of [0, -1, 2.5, '2', null]) expect(decodeRecord(json({ format: 1, ...record, minDecryptionVersion: bad }))).toBeUndefined();
  });

  it('minDecryptionVersion above the newest version (never set for this key) reads as none retired', () => {
    expect(decodeRecord(json({ format: 1, ...record, minDecryptionVersion: 9 }))).toEqual(record);
    expect(decodeRecord(json({ format: 1, ...record, minDecryptionVersion: 3 }))).toEqual(record);
    expect(decodeRecord(json({ format: 1, ...record, minDecryptionVersion: 2 }))).toEqual({ ...record, minDecryptionVersion: 2 });
    const one = { ...record, versions: { 1: record.versions[1]! } };
    expect(decodeRecord(json({ format: 1, ...one, minDecryptionVersion: 9 }))).toEqual(one);
  });

  it('refuses a value over the size bound without parsing it', () => {
    const big = Buffer.alloc(MAX_RECORD_BYTES + 1, 0x20);
    json({ format: 1, ...record }).copy(big);
    expect(decodeRecord(big)).toBeUndefined();
    expect(decodeRecord(Buffer.alloc(MAX_RECORD_BYTES + 1, 0x5b))).toBeUndefined(); // "[[[[...": would be deep to parse
  });

  it('refuses more versions than the bound, and accepts the bound', () => {
    expect(decodeRecord(json({ format: 1, ...record, versions: versions(MAX_VERSIONS) }))?.versions).toHaveProperty(String(MAX_VERSIONS));
    expect(decodeRecord(json({ format: 1, ...record, versions: versions(MAX_VERSIONS + 1) }))).toBeUndefined();
  });

  it('refuses malformed records', () => {
    expect(decodeRecord(Buffer.from('not json'))).toBeUndefined();
    expect(decodeRecord(json({ ...record }))).toBeUndefined(); // no format
    expect(decodeRecord(json({ format: 1, ...record, destroyed: 'yes' }))).toBeUndefined();
    const { basedOn: _, ...first } = record;
    expect(decodeRecord(json({ format: 1, ...first, destroyed: true }))).toBeUndefined(); // a tombstone ends a head
    expect(decodeRecord(json({ format: 1, ...record, versions: { '01': { createdAt: at, uid: '1' } } }))).toBeUndefined();
    expect(decodeRecord(json({ format: 1, ...record, state: 'destroyed' }))).toBeUndefined();
  });

  it('will not encode a record no reader would accept', () => {
    expect(() => encodeRecord({ ...record, versions: versions(MAX_VERSIONS * 4) })).toThrow(/bound/);
  });
});
