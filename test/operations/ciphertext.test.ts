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
