/**
 * Batches on the KMIP backend (a real PyKMIP server): items run concurrently over its connection pool
 * (4 connections here) and come back in order, on both transports. The full batch semantics are tested on
 * the software backend and SoftHSM (batch.test.ts); this checks that the KMIP backend carries them too.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openKmipBackend, type OpenedKmipBackend } from '../helpers/kmipBackend.js';
import { resultsOf, serve, type Served } from './batchFixture.js';

describe('batches on the KMIP backend (PyKMIP)', () => {
  let kmip: OpenedKmipBackend;
  let served: Served;
  let publicKey: KeyObject;

  beforeAll(async () => {
    kmip = await openKmipBackend(pino({ level: 'silent' }));
    served = await serve(kmip.backend, { limits: { maxDataBytes: 4096, maxRandomBytes: 256 }, maxRequestBytes: 1024 * 1024 });
    const key = await served.service.createKey({ name: 'kmip-rsa', type: 'RSA_2048' });
    publicKey = createPublicKey({ key: key.versions[0]!.publicKeySpki!, format: 'der', type: 'spki' });
    await served.service.createKey({ name: 'kmip-aes', type: 'AES_256' });
  }, 120_000);
  afterAll(async () => {
    await served?.close();
    await kmip?.backend.close();
    await kmip?.cleanup();
  });

  for (const index of [0, 1] as const) {
    it(`signs 12 messages in order, a bad item in its place (${index === 0 ? 'REST' : 'gRPC'})`, async () => {
      const wire = served.wires[index];
      const messages = Array.from({ length: 12 }, (_, i) => Buffer.from(`kmip batch item ${i}`));
      const items = messages.map((message, i) => (i === 5 ? { message, algorithm: 'ES256' } : { message }));
      const results = resultsOf(wire, await wire.batch('sign', 'kmip-rsa', items));
      expect(results).toHaveLength(12);
      results.forEach((r, i) => {
        if (i === 5) {
          expect(r).toMatchObject({ error: { code: 'INCOMPATIBLE_KEY' } });
          return;
        }
        if (!('ok' in r)) throw new Error(`item ${i} failed: ${JSON.stringify(r)}`);
        expect(verify('sha256', messages[i]!, publicKey, wire.bytes(r.ok.signature))).toBe(true);
        expect(verify('sha256', messages[(i + 1) % 12]!, publicKey, wire.bytes(r.ok.signature))).toBe(false);
      });
    });

    it(`encrypts and decrypts a batch, round trip (${index === 0 ? 'REST' : 'gRPC'})`, async () => {
      const wire = served.wires[index];
      const plaintexts = Array.from({ length: 8 }, (_, i) => Buffer.from(`secret ${i}`));
      const encrypted = resultsOf(wire, await wire.batch('encrypt', 'kmip-aes', plaintexts.map((plaintext) => ({ plaintext }))));
      const ciphertexts = encrypted.map((r) => ('ok' in r ? wire.bytes(r.ok.ciphertext) : Buffer.alloc(0)));
      const decrypted = resultsOf(wire, await wire.batch('decrypt', 'kmip-aes', ciphertexts.map((ciphertext) => ({ ciphertext }))));
      expect(decrypted.map((r) => ('ok' in r ? wire.bytes(r.ok.plaintext).toString() : r.error.code))).toEqual(plaintexts.map(String));
    });
  }
});
