/**
 * The in-process JOSE pieces against published vectors and against the rules, without a backend:
 * base64url, the Concat KDF, AES key wrap, JWS parsing and verification with external keys, and JWE
 * decryption with a vector's private key through the same orchestration the backend keys use.
 */
import { constants, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, privateDecrypt, sign as nodeSign, type KeyObject } from 'node:crypto';
import * as jose from 'jose';
import { describe, expect, it } from 'vitest';
import { HsmBridgeError } from '../../src/errors.js';
import { decode, encode } from '../../src/jose/base64url.js';
import { concatKdf } from '../../src/jose/concatKdf.js';
import { publicKeyRecipient } from '../../src/jose/joseService.js';
import { aesKeyUnwrap, aesKeyWrap, decryptJweWith, encryptJweWith, parseJwe, type JweDecryptionKey } from '../../src/jose/jwe.js';
import { buildProtectedHeader, parseJws, verifyJwsWithKey } from '../../src/jose/jws.js';
import { importPublicKey } from '../../src/jose/publicKeys.js';
import { rfc3394, rfc7515, rfc7516a1, rfc7518c, rfc7520, rfc8037 } from './vectors.js';

const code = (c: string) => expect.objectContaining({ code: c });

describe('base64url', () => {
  it('round-trips and refuses padding, standard alphabet, whitespace and non-canonical tails', () => {
    for (const n of [0, 1, 2, 3, 4, 5, 31, 32, 33]) {
      const data = Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + 11) & 0xff));
      expect(decode(encode(data), 'x')).toEqual(data);
    }
    expect(encode(Buffer.from([0xfb, 0xff]))).toBe('-_8');
    for (const bad of ['QQ==', 'ab+/', 'a b', 'A', 'QR', 'QUF', 'QUG', 42, undefined]) {
      expect(() => decode(bad, 'field')).toThrow(code('INVALID_ARGUMENT'));
    }
    expect(decode('QQ', 'x')).toEqual(Buffer.from('A'));
    expect(decode('QUE', 'x')).toEqual(Buffer.from('AA'));
  });
});

describe('Concat KDF (RFC 7518 Appendix C)', () => {
  it('Z from the appendix keys with node:crypto equals the printed Z, and the KDF gives the printed key', () => {
    const bob = createPrivateKey({ key: rfc7518c.bob, format: 'jwk' });
    const alice = createPublicKey({ key: { ...rfc7518c.alice, d: undefined }, format: 'jwk' });
    const z = diffieHellman({ privateKey: bob, publicKey: alice });
    expect([...z]).toEqual(rfc7518c.z);
    const key = concatKdf({ z, keyLength: 16, algorithmId: 'A128GCM', partyUInfo: decode(rfc7518c.apu, 'apu'), partyVInfo: decode(rfc7518c.apv, 'apv') });
    expect(encode(key)).toBe(rfc7518c.derivedKey);
    // every input matters
    expect(encode(concatKdf({ z, keyLength: 16, algorithmId: 'A256GCM', partyUInfo: Buffer.from('Alice'), partyVInfo: Buffer.from('Bob') }))).not.toBe(rfc7518c.derivedKey);
    expect(encode(concatKdf({ z, keyLength: 16, algorithmId: 'A128GCM', partyUInfo: Buffer.alloc(0), partyVInfo: Buffer.from('Bob') }))).not.toBe(rfc7518c.derivedKey);
  });

  it('longer keys take more rounds; the first 16 bytes of a 32-byte key differ (the length is in OtherInfo)', () => {
    const z = Buffer.alloc(32, 7);
    const k32 = concatKdf({ z, keyLength: 32, algorithmId: 'A256GCM', partyUInfo: Buffer.alloc(0), partyVInfo: Buffer.alloc(0) });
    const k64 = concatKdf({ z, keyLength: 64, algorithmId: 'A256GCM', partyUInfo: Buffer.alloc(0), partyVInfo: Buffer.alloc(0) });
    expect(k32).toHaveLength(32);
    expect(k64).toHaveLength(64);
    expect(k64.subarray(0, 32)).not.toEqual(k32);
  });
});

describe('AES key wrap (RFC 3394 §4)', () => {
  for (const v of rfc3394) {
    it(`${v.kek.length * 4}-bit KEK, ${v.keyData.length * 4} bits of key data`, () => {
      const kek = Buffer.from(v.kek, 'hex');
      const wrapped = aesKeyWrap(kek, Buffer.from(v.keyData, 'hex'));
      expect(wrapped.toString('hex').toUpperCase()).toBe(v.wrapped);
      expect(aesKeyUnwrap(kek, wrapped).toString('hex').toUpperCase()).toBe(v.keyData);
      const tampered = Buffer.from(wrapped);
      tampered[0]! ^= 1;
      expect(() => aesKeyUnwrap(kek, tampered)).toThrow(code('DECRYPTION_FAILED'));
    });
  }
});

describe('JWS verification with external keys (RFC 7515 A.2, A.3; RFC 8037 A.4)', () => {
  const cases = [
    ['RS256', rfc7515.rs256.jwk, `${rfc7515.rs256.protected}.${rfc7515.payload}.${rfc7515.rs256.signature}`],
    ['ES256', rfc7515.es256.jwk, `${rfc7515.es256.protected}.${rfc7515.payload}.${rfc7515.es256.signature}`],
    ['EdDSA', rfc8037.jwk, rfc8037.compact],
  ] as const;
  for (const [alg, jwk, compact] of cases) {
    it(`${alg}: the published JWS verifies; tampering and a wrong allowlist are refused`, () => {
      const key = importPublicKey(jwk);
      const r = verifyJwsWithKey(compact, key);
      expect(r).toMatchObject({ valid: true, algorithm: alg, signatureIndex: 0 });
      const [h, p, s] = compact.split('.');
      const otherPayload = encode(Buffer.from('tampered'));
      expect(verifyJwsWithKey(`${h}.${otherPayload}.${s}`, key).valid).toBe(false);
      const sig = decode(s, 's');
      sig[sig.length - 1]! ^= 1;
      expect(verifyJwsWithKey(`${h}.${p}.${encode(sig)}`, key).valid).toBe(false);
      expect(() => verifyJwsWithKey(compact, key, { algorithms: alg === 'RS256' ? ['ES256'] : ['RS256'] })).toThrow(code('INVALID_ARGUMENT'));
      // detached form of the same JWS
      expect(verifyJwsWithKey(`${h}..${s}`, key, { payload: decode(p, 'p') }).valid).toBe(true);
      // a key of another type is refused, not "invalid"
      const other = alg === 'EdDSA' ? importPublicKey(rfc7515.es256.jwk) : importPublicKey(rfc8037.jwk);
      expect(() => verifyJwsWithKey(compact, other)).toThrow(code('INCOMPATIBLE_KEY'));
    });
  }
  it('the RFC 8037 payload is the printed text', () => {
    expect(verifyJwsWithKey(rfc8037.compact, importPublicKey(rfc8037.jwk))).toMatchObject({ payload: Buffer.from(rfc8037.payload) });
  });
});

describe('JWS parsing rules', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const signedWith = (header: Record<string, unknown>, payload = 'eyJhIjoxfQ', b64 = true, key: KeyObject = privateKey) => {
    const h = encode(JSON.stringify(header));
    const input = Buffer.from(`${h}.${payload}`);
    const alg = header.alg === 'ES256' ? 'sha256' : null;
    const sig = nodeSign(alg, input, { key, dsaEncoding: 'ieee-p1363' });
    return b64 ? `${h}.${payload}.${encode(sig)}` : { protected: h, payload, signature: encode(sig) };
  };
  const refused: Array<[string, unknown, string]> = [
    ['alg none', `${encode('{"alg":"none"}')}.e30.`, 'UNSUPPORTED_ALGORITHM'],
    ['alg HS256', signedWith({ alg: 'HS256' }), 'UNSUPPORTED_ALGORITHM'],
    ['no alg', signedWith({ kid: 'x' }), 'INVALID_ARGUMENT'],
    ['alg only unprotected', { protected: '', header: { alg: 'ES256' }, payload: 'e30', signature: 'AA' }, 'INVALID_ARGUMENT'],
    ['unknown crit', signedWith({ alg: 'ES256', crit: ['exp'], exp: 1 }), 'INVALID_ARGUMENT'],
    ['crit naming an absent header', signedWith({ alg: 'ES256', crit: ['b64'] }), 'INVALID_ARGUMENT'],
    ['empty crit', signedWith({ alg: 'ES256', crit: [] }), 'INVALID_ARGUMENT'],
    ['b64 without crit', signedWith({ alg: 'ES256', b64: false }), 'INVALID_ARGUMENT'],
    ['b64 not boolean', signedWith({ alg: 'ES256', b64: 'no', crit: ['b64'] }), 'INVALID_ARGUMENT'],
    ['protected header not an object', `${encode('[1]')}.e30.AA`, 'INVALID_ARGUMENT'],
    ['protected header not JSON', `${encode('{alg')}.e30.AA`, 'INVALID_ARGUMENT'],
    ['two parts', 'a.b', 'INVALID_ARGUMENT'],
    ['padded signature', `${encode('{"alg":"ES256"}')}.e30.AA==`, 'INVALID_ARGUMENT'],
    ['payload not base64url', `${encode('{"alg":"ES256"}')}.e3+0.AA`, 'INVALID_ARGUMENT'],
    ['duplicate header names', { protected: encode('{"alg":"ES256","kid":"a"}'), header: { kid: 'b' }, payload: 'e30', signature: 'AA' }, 'INVALID_ARGUMENT'],
    ['general and flattened at once', { signatures: [], signature: 'AA' }, 'INVALID_ARGUMENT'],
    ['empty signatures', { signatures: [], payload: 'e30' }, 'INVALID_ARGUMENT'],
    ['a number', 42, 'INVALID_ARGUMENT'],
    ['kid not a string', signedWith({ alg: 'ES256', kid: 7 }), 'INVALID_ARGUMENT'],
  ];
  for (const [what, jws, c] of refused) {
    it(`refuses ${what} with ${c}`, () => {
      expect(() => verifyJwsWithKey(jws, publicKey)).toThrow(code(c));
    });
  }

  it('b64:false: the payload is signed as is; a JSON JWS carries it as text', () => {
    const header = { alg: 'ES256', b64: false, crit: ['b64'] };
    const jws = signedWith(header, '$.02', false);
    expect(verifyJwsWithKey(jws, publicKey)).toMatchObject({ valid: true, payload: Buffer.from('$.02') });
    expect(verifyJwsWithKey({ ...(jws as object), payload: '$.03' }, publicKey).valid).toBe(false);
  });

  it('a detached payload cannot be given with a carried one; a JSON JWS without payload needs it', () => {
    const jws = signedWith({ alg: 'ES256' }) as string;
    expect(() => parseJws(jws, Buffer.from('x'))).toThrow(code('INVALID_ARGUMENT'));
    const [h, , s] = jws.split('.');
    expect(() => parseJws({ protected: h, signature: s })).toThrow(code('INVALID_ARGUMENT'));
  });

  it('an RSA key under 2048 bits is refused for RS256', () => {
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const h = encode('{"alg":"RS256"}');
    const sig = nodeSign('sha256', Buffer.from(`${h}.e30`), small.privateKey);
    expect(() => verifyJwsWithKey(`${h}.e30.${encode(sig)}`, small.publicKey)).toThrow(code('INCOMPATIBLE_KEY'));
  });

  it('builds the protected header in order: alg, kid, the caller members, then b64 and crit', () => {
    const h = buildProtectedHeader('RS256', 'k:1', { 'FSPIOP-Source': 'a', typ: 'x' }, false);
    expect(JSON.stringify(h)).toBe('{"alg":"RS256","kid":"k:1","FSPIOP-Source":"a","typ":"x","b64":false,"crit":["b64"]}');
    expect(JSON.stringify(buildProtectedHeader('RS256', undefined, { 'FSPIOP-URI': '/x' }, true))).toBe('{"alg":"RS256","FSPIOP-URI":"/x"}');
    expect(JSON.stringify(buildProtectedHeader('RS256', 'k:1', { typ: 'x', kid: 'mine' }, true))).toBe('{"alg":"RS256","typ":"x","kid":"mine"}');
    expect(() => buildProtectedHeader('RS256', undefined, { alg: 'ES256' }, true)).toThrow(code('INVALID_ARGUMENT'));
    expect(() => buildProtectedHeader('RS256', undefined, { crit: ['x'] }, true)).toThrow(code('INVALID_ARGUMENT'));
    expect(() => buildProtectedHeader('RS256', undefined, { b64: true }, true)).toThrow(code('INVALID_ARGUMENT'));
  });
});

/** A recipient key held in process, for published vectors: the same interface the backend keys implement. */
function inProcessRsa(privateKey: KeyObject): JweDecryptionKey {
  return {
    async decryptCek(alg, ek) {
      try {
        return privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: alg === 'RSA-OAEP' ? 'sha1' : 'sha256' }, ek);
      } catch {
        throw new HsmBridgeError('DECRYPTION_FAILED', 'decryption failed');
      }
    },
  };
}

describe('JWE with published vectors and external keys', () => {
  it('RFC 7516 A.1 (RSA-OAEP, A256GCM) decrypts with the appendix private key; jose agrees', async () => {
    const privateKey = createPrivateKey({ key: rfc7516a1.jwk, format: 'jwk' });
    const parsed = parseJwe(rfc7516a1.compact);
    expect(parsed.enc).toBe('A256GCM');
    expect([...privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, parsed.recipients[0]!.encryptedKey)]).toEqual(rfc7516a1.cek);
    const plaintext = await decryptJweWith(parsed, parsed.recipients[0]!, inProcessRsa(privateKey));
    expect(plaintext.toString()).toBe(rfc7516a1.plaintext);
    const theirs = await jose.compactDecrypt(rfc7516a1.compact, privateKey);
    expect(Buffer.from(theirs.plaintext)).toEqual(plaintext);
  });

  it('RFC 7516 A.1 tampered anywhere gives DECRYPTION_FAILED (header, key, IV, ciphertext, tag)', async () => {
    const privateKey = createPrivateKey({ key: rfc7516a1.jwk, format: 'jwk' });
    const parts = rfc7516a1.compact.split('.');
    const flipAt = (i: number) => {
      const b = decode(parts[i], 'p');
      b[Math.floor(b.length / 2)]! ^= 1;
      return parts.map((p, j) => (j === i ? encode(b) : p)).join('.');
    };
    for (const i of [1, 2, 3, 4]) {
      const parsed = parseJwe(flipAt(i));
      await expect(decryptJweWith(parsed, parsed.recipients[0]!, inProcessRsa(privateKey))).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
    }
    // a changed protected header (still valid JSON) changes the AAD
    const header = encode('{"alg":"RSA-OAEP","enc":"A256GCM","x":1}');
    const parsed = parseJwe([header, ...parts.slice(1)].join('.'));
    await expect(decryptJweWith(parsed, parsed.recipients[0]!, inProcessRsa(privateKey))).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
  });

  it('RFC 7520 §5.6 (dir, A128GCM) and §5.8 (A128KW, A128GCM) decrypt with the cookbook keys held in process', async () => {
    const dirKey = decode(rfc7520.dir.k, 'k');
    const dir = parseJwe(rfc7520.dir.compact);
    expect(dir.recipients[0]).toMatchObject({ alg: 'dir', kid: rfc7520.dir.kid });
    const inProcessDir: JweDecryptionKey = {
      async decryptContent(_enc, iv, data, aad) {
        const d = createDecipheriv('aes-128-gcm', dirKey, iv);
        d.setAAD(aad);
        d.setAuthTag(data.subarray(-16));
        return Buffer.concat([d.update(data.subarray(0, -16)), d.final()]);
      },
    };
    expect((await decryptJweWith(dir, dir.recipients[0]!, inProcessDir)).toString()).toBe(rfc7520.plaintext);

    const kek = decode(rfc7520.a128kw.k, 'k');
    const kw = parseJwe(rfc7520.a128kw.compact);
    const inProcessKw: JweDecryptionKey = { decryptCek: async (_alg, ek) => aesKeyUnwrap(kek, ek) };
    expect((await decryptJweWith(kw, kw.recipients[0]!, inProcessKw)).toString()).toBe(rfc7520.plaintext);
    // the wrong KEK: the CEK does not unwrap, and the answer is the one DECRYPTION_FAILED
    const wrongKek: JweDecryptionKey = { decryptCek: async (_alg, ek) => aesKeyUnwrap(Buffer.alloc(16, 1), ek) };
    await expect(decryptJweWith(kw, kw.recipients[0]!, wrongKek)).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
  });

  it('ECDH-ES and ECDH-ES+A256KW to an external P-256 JWK: jose decrypts (apu/apv from the caller enter the KDF)', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    for (const alg of ['ECDH-ES', 'ECDH-ES+A256KW', 'ECDH-ES+A128KW'] as const) {
      const jwe = await encryptJweWith(
        { alg, enc: 'A256GCM', plaintext: Buffer.from('to an external key'), serialization: 'compact', protectedHeader: { apu: 'QWxpY2U', apv: 'Qm9i' } },
        { agreementPublicKey: publicKey },
      );
      const r = await jose.compactDecrypt(jwe as string, privateKey);
      expect(Buffer.from(r.plaintext).toString()).toBe('to an external key');
      expect(r.protectedHeader).toMatchObject({ alg, enc: 'A256GCM', apu: 'QWxpY2U', apv: 'Qm9i', epk: { kty: 'EC', crv: 'P-256' } });
    }
  });

  it('A192GCM (24-byte CEK) both ways with keys held in process: jose encrypts, we decrypt; we encrypt (RSA-OAEP-256, ECDH-ES), jose decrypts', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const plaintext = Buffer.from('content under AES-192-GCM');
    const theirs = parseJwe(await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg: 'RSA-OAEP-256', enc: 'A192GCM' }).encrypt(rsa.publicKey));
    expect(theirs.enc).toBe('A192GCM');
    expect(await decryptJweWith(theirs, theirs.recipients[0]!, inProcessRsa(rsa.privateKey))).toEqual(plaintext);
    const ours = (await encryptJweWith({ alg: 'RSA-OAEP-256', enc: 'A192GCM', plaintext, serialization: 'compact' }, publicKeyRecipient('RSA-OAEP-256', rsa.publicKey))) as string;
    expect(privateDecrypt({ key: rsa.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, decode(ours.split('.')[1], 'ek'))).toHaveLength(24);
    const r = await jose.compactDecrypt(ours, rsa.privateKey);
    expect(Buffer.from(r.plaintext)).toEqual(plaintext);
    expect(r.protectedHeader).toEqual({ alg: 'RSA-OAEP-256', enc: 'A192GCM' });
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const agreed = (await encryptJweWith({ alg: 'ECDH-ES', enc: 'A192GCM', plaintext, serialization: 'compact' }, { agreementPublicKey: ec.publicKey })) as string;
    expect(Buffer.from((await jose.compactDecrypt(agreed, ec.privateKey)).plaintext)).toEqual(plaintext);
  });

  it('refuses malformed JWE with INVALID_ARGUMENT', () => {
    const [h, ek, iv, ct, tag] = rfc7516a1.compact.split('.');
    const cases: unknown[] = [
      'a.b.c.d',
      [h, ek, iv, ct].join('.') + '.',
      [encode('{"alg":"RSA-OAEP","enc":"A256GCM","zip":"DEF"}'), ek, iv, ct, tag].join('.'),
      [encode('{"alg":"RSA-OAEP","enc":"A256GCM","crit":["x"],"x":1}'), ek, iv, ct, tag].join('.'),
      [encode('{"alg":"RSA-OAEP"}'), ek, iv, ct, tag].join('.'),
      [encode('{"alg":"RSA-OAEP","enc":"A256GCM"}'), ek, encode(Buffer.alloc(16)), ct, tag].join('.'),
      [encode('{"alg":"RSA-OAEP","enc":"A256GCM"}'), '', iv, ct, tag].join('.'),
      [encode('{"alg":"dir","enc":"A256GCM"}'), ek, iv, ct, tag].join('.'),
      [encode('{"alg":"ECDH-ES","enc":"A256GCM"}'), ek, iv, ct, tag].join('.'),
      [encode('{"alg":"A256KW","enc":"A256GCM"}'), encode(Buffer.alloc(32)), iv, ct, tag].join('.'),
      { protected: h, header: { alg: 'RSA-OAEP' }, encrypted_key: ek, iv, ciphertext: ct, tag },
      { protected: encode('{"alg":"RSA-OAEP"}'), unprotected: { enc: 'A256GCM' }, encrypted_key: ek, iv, ciphertext: ct, tag },
      { protected: h, unprotected: { alg: 'RSA-OAEP' }, encrypted_key: ek, iv, ciphertext: ct, tag },
      { protected: h, recipients: [], iv, ciphertext: ct, tag },
      { protected: h, recipients: [{ encrypted_key: ek }], encrypted_key: ek, iv, ciphertext: ct, tag },
      null,
    ];
    for (const c of cases) expect(() => parseJwe(c), JSON.stringify(c)).toThrow(code('INVALID_ARGUMENT'));
    expect(() => parseJwe([encode('{"alg":"RSA1_5","enc":"A256GCM"}'), ek, iv, ct, tag].join('.'))).toThrow(code('UNSUPPORTED_ALGORITHM'));
    expect(() => parseJwe([encode('{"alg":"RSA-OAEP","enc":"A128CBC-HS256"}'), ek, iv, ct, tag].join('.'))).toThrow(code('UNSUPPORTED_ALGORITHM'));
  });
});
