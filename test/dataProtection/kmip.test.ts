/**
 * Personal-data protection on a KMIP server (PyKMIP), over REST and gRPC: data keys, rewrap, retiring and
 * trimming, tokens and FF1 work as on the other backends (FF1 through ECB with PKCS5, which PyKMIP does;
 * a server without it refuses fpe keys with UNSUPPORTED_BY_BACKEND, as its capabilities say). KMIP has no
 * wrapped import, so tokens are checked for determinism and separation, not against a known key
 * (dataProtection.test.ts does that, and test/adapters/kmip/dataProtection.test.ts checks FF1's blocks).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KeyServiceLimits } from '../../src/operations/keyService.js';
import { serve, type Served } from '../transports/batchFixture.js';
import { freshName, kmipTarget } from '../transports/rest/restFixture.js';
import { failed, okBody, ops, wiresOf, type Wire } from './wires.js';

const LIMITS: KeyServiceLimits = { maxDataBytes: 4096, maxRandomBytes: 256 };

describe('personal-data protection on the kmip (PyKMIP) backend', () => {
  let opened: Awaited<ReturnType<typeof kmipTarget.open>>;
  let served: Served;
  let wires: Wire[];

  beforeAll(async () => {
    opened = await kmipTarget.open();
    served = await serve(opened.backend, { limits: LIMITS, maxRequestBytes: 256 * 1024 });
    wires = wiresOf(served);
  }, 120_000);
  afterAll(async () => {
    await served?.close();
    await opened?.backend.close();
    await opened?.cleanup();
  });

  for (const wireName of ['REST', 'gRPC'] as const) {
    const on = () => ops(wires.find((w) => w.name === wireName)!);

    it(`${wireName}: data keys and rewrap after a rotation; the wrapped key decrypts to the plaintext`, async () => {
      const name = freshName('kmip-dk');
      okBody(await on().create(name, 'AES_256', 'encrypt'));
      const dk = okBody(await on().datakey(name, 256));
      expect(dk.plaintext.length).toBe(32);
      okBody(await on().rotate(name));
      const rewrapped = okBody(await on().rewrap(name, dk.wrapped));
      expect(rewrapped.keyVersion).toBe(2);
      const recovered = okBody(await on().decrypt(name, rewrapped.ciphertext)).plaintext as Buffer;
      expect(recovered).toEqual(dk.plaintext);
    });

    it(`${wireName}: retiring refuses the old version with KEY_VERSION_RETIRED; trim destroys it on the server`, async () => {
      const name = freshName('kmip-retire');
      okBody(await on().create(name, 'AES_256', 'encrypt'));
      const old = okBody(await on().encrypt(name, Buffer.from('old row'))).ciphertext as Buffer;
      okBody(await on().rotate(name));
      okBody(await on().update(name, 2));
      expect(failed(await on().decrypt(name, old))).toMatchObject({ code: 'KEY_VERSION_RETIRED' });
      const trimmed = okBody(await on().trim(name));
      expect(trimmed.versions.map((v: { version: number }) => v.version)).toEqual([2]);
      expect((await opened.backend.describeKey(name as never)).versions.map((v) => v.version)).toEqual([2]);
      expect(failed(await on().decrypt(name, old))).toMatchObject({ code: 'KEY_VERSION_NOT_FOUND' });
    });

    it(`${wireName}: tokens are deterministic per context and version`, async () => {
      const name = freshName('kmip-tokens');
      okBody(await on().create(name, 'HMAC_256', 'tokenize'));
      const values = ['255700000003', '255700000003', 'Baraka'];
      const t = okBody(await on().tokenize(name, { values, context: 'a' }));
      expect(t.tokens[0]).toMatch(/^v1:[A-Za-z0-9_-]{43}$/);
      expect(t.tokens[1]).toBe(t.tokens[0]);
      expect(t.tokens[2]).not.toBe(t.tokens[0]);
      expect(okBody(await on().tokenize(name, { values, context: 'b' })).tokens[0]).not.toBe(t.tokens[0]);
      okBody(await on().rotate(name));
      expect(okBody(await on().tokenize(name, { values, context: 'a' })).tokens[0]).toMatch(/^v2:/);
      expect(okBody(await on().tokenize(name, { values, context: 'a', keyVersion: 1 })).tokens).toEqual(t.tokens);
    });

    it(`${wireName}: FF1 as the capabilities say: a round trip, or UNSUPPORTED_BY_BACKEND when the server cannot`, async () => {
      const name = freshName('kmip-fpe');
      const created = await on().create(name, 'AES_128', 'fpe');
      if (!served.service.capabilities().fpe) {
        expect(failed(created)).toMatchObject({ code: 'UNSUPPORTED_BY_BACKEND' });
        return;
      }
      okBody(created);
      const values = ['255700000004', '0123456789'];
      const enc = okBody(await on().fpe('encrypt', name, { values, radix: 10 }));
      for (const [i, v] of (enc.values as string[]).entries()) expect(v).toMatch(new RegExp(`^\\d{${values[i]!.length}}$`));
      expect(okBody(await on().fpe('decrypt', name, { values: enc.values, radix: 10 })).values).toEqual(values);
    });
  }
});
