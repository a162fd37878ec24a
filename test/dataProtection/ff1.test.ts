/**
 * FF1 against the NIST SP 800-38G samples (AES-128, -192, -256; radix 10 and 36), with AES-ECB from
 * node:crypto standing in for the backend, and the properties a caller relies on: decryption inverts,
 * the format is kept, values of different lengths go together in one call, FF1's limits are refused.
 */
import { createCipheriv, randomBytes, randomInt } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { nodeEcb } from '../../src/conformance/reference/nodeBlockCiphers.js';
import { ff1, minLength, type Ecb } from '../../src/dataProtection/ff1.js';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';
const numerals = (text: string) => [...text].map((c) => ALPHABET.indexOf(c));
const text = (values: readonly number[]) => values.map((n) => ALPHABET[n]).join('');

/** AES-ECB with `keyHex`, counting its calls. */
function aesEcb(keyHex: string): Ecb & { calls: number } {
  const key = Buffer.from(keyHex, 'hex');
  const ecb = Object.assign(
    async (blocks: Buffer) => {
      ecb.calls++;
      return nodeEcb('aes', 'encrypt', key, blocks);
    },
    { calls: 0 },
  );
  return ecb;
}

const K128 = '2B7E151628AED2A6ABF7158809CF4F3C';
const K192 = '2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F';
const K256 = '2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94';

const samples = [
  { sample: 1, key: K128, radix: 10, plaintext: '0123456789', tweak: '', ciphertext: '2433477484' },
  { sample: 2, key: K128, radix: 10, plaintext: '0123456789', tweak: '39383736353433323130', ciphertext: '6124200773' },
  { sample: 3, key: K128, radix: 36, plaintext: '0123456789abcdefghi', tweak: '3737373770717273373737', ciphertext: 'a9tv40mll9kdu509eum' },
  { sample: 4, key: K192, radix: 10, plaintext: '0123456789', tweak: '', ciphertext: '2830668132' },
  { sample: 5, key: K192, radix: 10, plaintext: '0123456789', tweak: '39383736353433323130', ciphertext: '2496655549' },
  { sample: 6, key: K192, radix: 36, plaintext: '0123456789abcdefghi', tweak: '3737373770717273373737', ciphertext: 'xbj3kv35jrawxv32ysr' },
  { sample: 7, key: K256, radix: 10, plaintext: '0123456789', tweak: '', ciphertext: '6657667009' },
  { sample: 8, key: K256, radix: 10, plaintext: '0123456789', tweak: '39383736353433323130', ciphertext: '1001623463' },
  { sample: 9, key: K256, radix: 36, plaintext: '0123456789abcdefghi', tweak: '3737373770717273373737', ciphertext: 'xs8a0azh2avyalyzuwd' },
];

describe('FF1 (SP 800-38G)', () => {
  it.each(samples)('NIST sample $sample: encrypts to the published ciphertext and decrypts back', async ({ key, radix, plaintext, tweak, ciphertext }) => {
    const ecb = aesEcb(key);
    const t = Buffer.from(tweak, 'hex');
    const [encrypted] = await ff1('encrypt', ecb, radix, t, [numerals(plaintext)]);
    expect(text(encrypted!)).toBe(ciphertext);
    const [decrypted] = await ff1('decrypt', ecb, radix, t, [numerals(ciphertext)]);
    expect(text(decrypted!)).toBe(plaintext);
  });

  it('values of different lengths in one call: each as if alone, in one AES call per step of a round', async () => {
    const ecb = aesEcb(K128);
    const tweak = Buffer.from('39383736353433323130', 'hex');
    const msisdns = Array.from({ length: 50 }, () => Array.from({ length: randomInt(10, 16) }, () => randomInt(10)));
    const together = await ff1('encrypt', ecb, 10, tweak, msisdns);
    const calls = ecb.calls;
    for (const [i, msisdn] of msisdns.entries()) expect((await ff1('encrypt', ecb, 10, tweak, [msisdn]))[0]).toEqual(together[i]);
    // P || Q is two blocks for these lengths and S one: P's AES once, then one call a round, for all 50 values.
    expect(calls).toBe(11);
    expect(together.map((v) => v.length)).toEqual(msisdns.map((v) => v.length));
    expect(await ff1('decrypt', ecb, 10, tweak, together)).toEqual(msisdns);
  });

  it('equals FF1 written straight from SP 800-38G (node AES-CBC as PRF, one value at a time) for long tweaks and radixes', async () => {
    for (const [radix, keyHex, tweakBytes, length] of [[10, K128, 40, 12], [36, K256, 33, 50], [2, K192, 0, 24], [65536, K128, 16, 3], [10, K256, 15, 200]] as const) {
      const key = Buffer.from(keyHex, 'hex');
      const tweak = randomBytes(tweakBytes);
      const value = Array.from({ length }, () => randomInt(radix));
      expect((await ff1('encrypt', aesEcb(keyHex), radix, tweak, [value]))[0], `radix ${radix}, tweak ${tweakBytes} bytes`).toEqual(referenceFf1Encrypt(key, radix, tweak, value));
    }
  });

  it('round trips random values of radix 36 with a long tweak (S over more than one block)', async () => {
    const ecb = aesEcb(randomBytes(32).toString('hex'));
    const tweak = randomBytes(40);
    const values = Array.from({ length: 10 }, () => Array.from({ length: randomInt(30, 80) }, () => randomInt(36)));
    const encrypted = await ff1('encrypt', ecb, 36, tweak, values);
    expect(encrypted).not.toEqual(values);
    expect(await ff1('decrypt', ecb, 36, tweak, encrypted)).toEqual(values);
  });

  it('refuses what FF1 does not take, naming it: a domain under one million, a numeral outside the radix, a bad radix', async () => {
    const ecb = aesEcb(K128);
    expect(minLength(10)).toBe(6);
    expect(minLength(36)).toBe(4);
    await expect(ff1('encrypt', ecb, 10, Buffer.alloc(0), [numerals('12345')])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('at least 6 characters') });
    await expect(ff1('encrypt', ecb, 10, Buffer.alloc(0), [numerals('12345a')])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('outside radix 10') });
    await expect(ff1('encrypt', ecb, 1, Buffer.alloc(0), [[0, 0, 0, 0, 0, 0]])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(ecb.calls).toBe(0);
  });
});

/** FF1.Encrypt (SP 800-38G Algorithm 7) as the standard writes it, for one value: PRF is AES-CBC with a zero IV. */
function referenceFf1Encrypt(key: Buffer, radix: number, tweak: Buffer, x: readonly number[]): number[] {
  const aes = (mode: 'cbc' | 'ecb', data: Buffer) => {
    const c = createCipheriv(`aes-${key.length * 8}-${mode}`, key, mode === 'cbc' ? Buffer.alloc(16) : null).setAutoPadding(false);
    return Buffer.concat([c.update(data), c.final()]);
  };
  const R = BigInt(radix);
  const num = (xs: readonly number[]) => xs.reduce((acc, d) => acc * R + BigInt(d), 0n);
  const str = (v: bigint, m: number) => Array.from({ length: m }, (_, i) => Number((v / R ** BigInt(m - 1 - i)) % R));
  const bytes = (v: bigint, n: number) => Buffer.from(v.toString(16).padStart(2 * n, '0'), 'hex');
  const n = x.length;
  const u = Math.floor(n / 2);
  const v = n - u;
  let A = x.slice(0, u);
  let B = x.slice(u);
  const b = Math.ceil(Math.ceil(v * Math.log2(radix)) / 8);
  const d = 4 * Math.ceil(b / 4) + 4;
  const t = tweak.length;
  const P = Buffer.concat([Buffer.from([1, 2, 1]), bytes(R, 3), Buffer.from([10, u % 256]), bytes(BigInt(n), 4), bytes(BigInt(t), 4)]);
  for (let i = 0; i < 10; i++) {
    const Q = Buffer.concat([tweak, Buffer.alloc((((-t - b - 1) % 16) + 16) % 16), Buffer.from([i]), bytes(num(B), b)]);
    const cbc = aes('cbc', Buffer.concat([P, Q]));
    const Rb = cbc.subarray(cbc.length - 16);
    const blocks = [Rb];
    for (let j = 1; j < Math.ceil(d / 16); j++) blocks.push(aes('ecb', Buffer.from(Rb.map((byte, k) => byte ^ (k >= 12 ? (j >>> (8 * (15 - k))) & 0xff : 0)))));
    const y = BigInt(`0x${Buffer.concat(blocks).subarray(0, d).toString('hex')}`);
    const m = i % 2 === 0 ? u : v;
    const c = (num(A) + y) % R ** BigInt(m);
    A = B;
    B = str(c, m);
  }
  return [...A, ...B];
}
