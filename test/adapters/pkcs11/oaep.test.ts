/**
 * The EME-OAEP decoder against node:crypto: node encrypts (OAEP, SHA-256) and, with RSA_NO_PADDING,
 * gives us the encoded message a CKM_RSA_X_509 decryption would; the decoder must recover the plaintext,
 * and refuse every corruption with the same DECRYPTION_FAILED.
 */
import { constants, generateKeyPairSync, privateDecrypt, publicEncrypt, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { emeOaepDecode } from '../../../adapters/pkcs11/oaep.js';

const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const k = 256;

function encodedMessage(plaintext: Buffer, oaepHash = 'sha256', key: KeyObject = publicKey): Buffer {
  const c = publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, plaintext);
  return privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, c);
}

const failure = { code: 'DECRYPTION_FAILED', message: 'decryption failed' };

describe('emeOaepDecode (RFC 8017 §7.1.2)', () => {
  it('recovers what node:crypto encrypted, for empty, short and maximum-length messages', () => {
    for (const length of [0, 1, 35, k - 2 * 32 - 2]) {
      const m = Buffer.from(Array.from({ length }, (_, i) => (i * 7 + 1) & 0xff));
      const em = encodedMessage(m);
      expect(em.length).toBe(k);
      expect(emeOaepDecode(em, k, 'sha256')).toEqual(m);
    }
  });

  it('refuses a message encoded with SHA-1 (a different scheme)', () => {
    expect(() => emeOaepDecode(encodedMessage(Buffer.from('x'), 'sha1'), k, 'sha256')).toThrow(expect.objectContaining(failure));
  });

  it('refuses every corrupted byte position class with the same error', () => {
    const em = encodedMessage(Buffer.from('4111111111111111'));
    const corrupt = (i: number, x = 0x01) => {
      const c = Buffer.from(em);
      c[i]! ^= x;
      return c;
    };
    // Y (the leading byte), the masked seed, the masked DB at the lHash, PS/separator and message.
    for (const i of [0, 1, 20, 33, 40, 100, 200, k - 1]) {
      expect(() => emeOaepDecode(corrupt(i), k, 'sha256'), `byte ${i}`).toThrow(expect.objectContaining(failure));
    }
  });

  it('refuses a wrong length, a too-short modulus and a label mismatch', () => {
    const em = encodedMessage(Buffer.from('abc'));
    expect(() => emeOaepDecode(em.subarray(1), k, 'sha256')).toThrow(expect.objectContaining(failure));
    expect(() => emeOaepDecode(Buffer.alloc(60), 60, 'sha256')).toThrow(expect.objectContaining(failure));
    expect(() => emeOaepDecode(em, k, 'sha256', Buffer.from('label'))).toThrow(expect.objectContaining(failure));
  });

  it('refuses structurally bad DBs built by hand: no separator, or a non-zero byte before it', async () => {
    // Build EM = 0x00 || maskedSeed || maskedDB with chosen DB contents, using the decoder's own masking
    // relation (MGF1 from node's hash), then check the decoder's verdicts.
    const { createHash } = await import('node:crypto');
    const mgf1 = (seed: Buffer, len: number) => {
      const out: Buffer[] = [];
      for (let i = 0; out.length * 32 < len; i++) {
        const c = Buffer.alloc(4);
        c.writeUInt32BE(i);
        out.push(createHash('sha256').update(seed).update(c).digest());
      }
      return Buffer.concat(out).subarray(0, len);
    };
    const build = (db: Buffer) => {
      const seed = Buffer.alloc(32, 0x5a);
      const maskedDb = Buffer.from(db.map((b, i) => b ^ mgf1(seed, db.length)[i]!));
      const maskedSeed = Buffer.from(seed.map((b, i) => b ^ mgf1(maskedDb, 32)[i]!));
      return Buffer.concat([Buffer.from([0]), maskedSeed, maskedDb]);
    };
    const lHash = createHash('sha256').digest();
    const dbLength = k - 32 - 1;
    const good = Buffer.concat([lHash, Buffer.alloc(dbLength - 32 - 4), Buffer.from([1, 0xaa, 0xbb, 0xcc])]);
    expect(emeOaepDecode(build(good), k, 'sha256')).toEqual(Buffer.from([0xaa, 0xbb, 0xcc]));
    const noSeparator = Buffer.concat([lHash, Buffer.alloc(dbLength - 32)]);
    expect(() => emeOaepDecode(build(noSeparator), k, 'sha256')).toThrow(expect.objectContaining(failure));
    const strayByte = Buffer.from(good);
    strayByte[40] = 0x02;
    expect(() => emeOaepDecode(build(strayByte), k, 'sha256')).toThrow(expect.objectContaining(failure));
    // A 0x01 right after lHash (empty PS) is valid; the message after it is everything else.
    const emptyPs = Buffer.concat([lHash, Buffer.from([1]), Buffer.alloc(dbLength - 33, 0x01)]);
    expect(emeOaepDecode(build(emptyPs), k, 'sha256')).toEqual(Buffer.alloc(dbLength - 33, 0x01));
  });
});
