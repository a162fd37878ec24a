import { describe, expect, it } from 'vitest';
import { openEnvelope, sealEnvelope, splitRaw } from '../../src/operations/ciphertext.js';
import type { KeyVersion } from '../../src/keys/names.js';

const v = (n: number) => n as KeyVersion;

describe('ciphertext envelope', () => {
  it('round-trips AES_GCM and RSA_OAEP_SHA256 with the key version', () => {
    const iv = Buffer.alloc(12, 7);
    const data = Buffer.from('ciphertext-and-16-byte-tag!!!!!!');
    const gcm = sealEnvelope('AES_GCM', v(3), { iv, data });
    expect(gcm.subarray(0, 8).toString('hex')).toBe('4842010100000003');
    expect(openEnvelope(gcm)).toEqual({ algorithm: 'AES_GCM', version: 3, raw: { iv, data } });
    const rsa = sealEnvelope('RSA_OAEP_SHA256', v(0x01020304), { data: Buffer.alloc(256, 1) });
    expect(openEnvelope(rsa)).toMatchObject({ algorithm: 'RSA_OAEP_SHA256', version: 0x01020304, raw: { data: Buffer.alloc(256, 1) } });
  });

  it('names RSA_OAEP_SHA1 (id 3) and AES_KW (id 4); neither has an IV', () => {
    const sha1 = sealEnvelope('RSA_OAEP_SHA1', v(2), { data: Buffer.alloc(256, 3) });
    expect(sha1.subarray(0, 8).toString('hex')).toBe('4842010300000002');
    expect(openEnvelope(sha1)).toEqual({ algorithm: 'RSA_OAEP_SHA1', version: 2, raw: { data: Buffer.alloc(256, 3) } });
    const kw = sealEnvelope('AES_KW', v(1), { data: Buffer.alloc(40, 4) });
    expect(kw.subarray(0, 8).toString('hex')).toBe('4842010400000001');
    expect(openEnvelope(kw)).toEqual({ algorithm: 'AES_KW', version: 1, raw: { data: Buffer.alloc(40, 4) } });
  });

  it('refuses what is not an envelope, with INVALID_ARGUMENT', () => {
    const good = sealEnvelope('AES_GCM', v(1), { iv: Buffer.alloc(12), data: Buffer.alloc(16) });
    const cases = [
      Buffer.alloc(0),
      Buffer.from('HB'),
      Buffer.concat([Buffer.from('XX'), good.subarray(2)]),
      Buffer.concat([good.subarray(0, 2), Buffer.from([2]), good.subarray(3)]), // unknown format
      Buffer.concat([good.subarray(0, 3), Buffer.from([9]), good.subarray(4)]), // unknown algorithm
      Buffer.concat([good.subarray(0, 4), Buffer.alloc(4), good.subarray(8)]), // version 0
      good.subarray(0, 8 + 12 + 15), // too short for IV + tag
    ];
    for (const c of cases) expect(() => openEnvelope(c)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('splits a raw AES-GCM ciphertext into IV and ciphertext||tag', () => {
    const body = Buffer.from(Array.from({ length: 40 }, (_, i) => i));
    expect(splitRaw('AES_GCM', body)).toEqual({ iv: body.subarray(0, 12), data: body.subarray(12) });
    expect(splitRaw('RSA_OAEP_SHA256', body)).toEqual({ data: body });
  });
});
