/**
 * FF1 format-preserving encryption (NIST SP 800-38G, Algorithms 7 and 8) over numeral strings, for many
 * values at once. AES is not done here: every block goes through `ecb`, AES encryption with the key in
 * the backend (on PKCS#11, CKM_AES_ECB inside the HSM). The values of one call move through the ten
 * rounds together, so that each step of a round is one `ecb` call for all of them: per round, one call
 * per block of P || Q that changes with the round (the CBC-MAC chains; the blocks before, once for all
 * rounds), and one more where S needs more than a block; however many values there are.
 */
import { invalid } from '../errors.js';

/** AES encryption of whole 16-byte blocks (ECB), one key. */
export type Ecb = (blocks: Buffer) => Promise<Buffer>;

export type Ff1Direction = 'encrypt' | 'decrypt';

/** FF1's minimum domain, radix^length (SP 800-38G: at least one million). */
export const MIN_DOMAIN = 1_000_000n;
/** Longest value taken, in numerals: far past MSISDNs and account ids, and P || Q stays a few blocks. */
export const MAX_NUMERALS = 256;
export const MAX_TWEAK_BYTES = 256;

const ROUNDS = 10;
const BLOCK = 16;

/** Checks radix, tweak, lengths and numerals against FF1's limits: INVALID_ARGUMENT naming what is wrong. */
export function checkFf1Input(radix: number, tweak: Buffer, values: readonly (readonly number[])[]): void {
  if (!Number.isInteger(radix) || radix < 2 || radix > 65536) throw invalid('radix must be a whole number from 2 to 65536');
  if (tweak.length > MAX_TWEAK_BYTES) throw invalid(`the tweak is at most ${MAX_TWEAK_BYTES} bytes`);
  values.forEach((value, i) => {
    if (value.length > MAX_NUMERALS) throw invalid(`value ${i} is longer than ${MAX_NUMERALS} characters`);
    if (value.length < 2 || BigInt(radix) ** BigInt(value.length) < MIN_DOMAIN) {
      throw invalid(`value ${i} is too short for FF1: radix^length must be at least 1,000,000 (radix ${radix}: at least ${minLength(radix)} characters)`);
    }
    if (value.some((n) => !Number.isInteger(n) || n < 0 || n >= radix)) throw invalid(`value ${i} has a numeral outside radix ${radix}`);
  });
}

/** The shortest value FF1 takes in `radix`. */
export function minLength(radix: number): number {
  let length = 2;
  while (BigInt(radix) ** BigInt(length) < MIN_DOMAIN) length++;
  return length;
}

/** One value on its way through the rounds: its two halves, and what its length fixes. */
interface Value {
  readonly radix: bigint;
  readonly u: number;
  readonly v: number;
  /** The bytes NUM(B) takes in Q. */
  readonly numBytes: number;
  /** The bytes of S. */
  readonly d: number;
  /** P, the first block of the CBC-MAC: it depends on the radix, the lengths and the tweak's length only. */
  readonly p: Buffer;
  /** The bytes of P || Q before the block holding the round number: the same in every round. */
  readonly fixed: number;
  a: number[];
  b: number[];
}

/** Encrypts or decrypts every value (numerals, most significant first) under one key, radix and tweak. */
export async function ff1(direction: Ff1Direction, ecb: Ecb, radix: number, tweak: Buffer, values: readonly (readonly number[])[]): Promise<number[][]> {
  checkFf1Input(radix, tweak, values);
  const states = values.map((value) => begin(radix, tweak, value));
  // P and the blocks of Q before the one holding the round number are the same in every round: their
  // CBC-MAC is computed once, and each round goes on from it (an MSISDN: 11 backend calls, not 20).
  const message = (s: Value, round: number, half: readonly number[]) => Buffer.concat([s.p, q(s, tweak, round, half)]);
  const prefixes = await cbcMac(ecb, states.map((s) => message(s, 0, s.b).subarray(0, s.fixed)));
  for (let step = 0; step < ROUNDS; step++) {
    const round = direction === 'encrypt' ? step : ROUNDS - 1 - step;
    // Q carries the half this round leaves as it is: B when encrypting, A when decrypting.
    const r = await cbcMac(ecb, states.map((s) => message(s, round, direction === 'encrypt' ? s.b : s.a).subarray(s.fixed)), prefixes);
    const y = await expand(ecb, r, states.map((s) => s.d));
    states.forEach((s, k) => {
      const m = round % 2 === 0 ? s.u : s.v;
      const modulus = s.radix ** BigInt(m);
      if (direction === 'encrypt') {
        const c = str(mod(num(s.a, s.radix) + y[k]!, modulus), s.radix, m);
        s.a = s.b;
        s.b = c;
      } else {
        const c = str(mod(num(s.b, s.radix) - y[k]!, modulus), s.radix, m);
        s.b = s.a;
        s.a = c;
      }
    });
  }
  return states.map((s) => [...s.a, ...s.b]);
}

function begin(radix: number, tweak: Buffer, value: readonly number[]): Value {
  const n = value.length;
  const u = Math.floor(n / 2);
  const v = n - u;
  const big = BigInt(radix);
  // b = ceil(ceil(v * log2(radix)) / 8), computed exactly: the bytes of radix^v - 1.
  const numBytes = Math.ceil((big ** BigInt(v) - 1n).toString(2).length / 8);
  const p = Buffer.alloc(BLOCK);
  p.set([1, 2, 1], 0);
  p.writeUIntBE(radix, 3, 3);
  p[6] = 10;
  p[7] = u % 256;
  p.writeUInt32BE(n, 8);
  p.writeUInt32BE(tweak.length, 12);
  const zeros = Number(mod(BigInt(-tweak.length - numBytes - 1), 16n));
  const fixed = Math.floor((BLOCK + tweak.length + zeros) / BLOCK) * BLOCK;
  return { radix: big, u, v, numBytes, d: 4 * Math.ceil(numBytes / 4) + 4, p, fixed, a: value.slice(0, u), b: value.slice(u) };
}

/** Q = T || [0]^((-t-b-1) mod 16) || [round] || [NUM(half)]^b. */
function q(s: Value, tweak: Buffer, round: number, half: readonly number[]): Buffer {
  const zeros = mod(BigInt(-tweak.length - s.numBytes - 1), 16n);
  const out = Buffer.alloc(tweak.length + Number(zeros) + 1 + s.numBytes);
  tweak.copy(out, 0);
  out[tweak.length + Number(zeros)] = round;
  bytesOf(num(half, s.radix), s.numBytes).copy(out, out.length - s.numBytes);
  return out;
}

/**
 * PRF: the CBC-MAC of each message (whole blocks) with a zero IV, or going on from `from` (the MAC of the
 * blocks before), all messages a block at a time.
 */
async function cbcMac(ecb: Ecb, messages: readonly Buffer[], from?: readonly Buffer[]): Promise<Buffer[]> {
  const chains: Buffer[] = messages.map((_, k) => from?.[k] ?? Buffer.alloc(BLOCK));
  const longest = Math.max(...messages.map((m) => m.length / BLOCK));
  for (let j = 0; j < longest; j++) {
    const live = messages.flatMap((m, k) => (m.length > j * BLOCK ? [k] : []));
    const input = Buffer.concat(live.map((k) => xor(chains[k]!, messages[k]!.subarray(j * BLOCK, (j + 1) * BLOCK))));
    const output = await ecb(input);
    live.forEach((k, i) => (chains[k] = output.subarray(i * BLOCK, (i + 1) * BLOCK)));
  }
  return chains;
}

/** y = NUM(S), S the first d bytes of R || CIPH(R xor [1]) || CIPH(R xor [2]) || ... */
async function expand(ecb: Ecb, r: readonly Buffer[], d: readonly number[]): Promise<bigint[]> {
  const extra = d.map((bytes) => Math.ceil(bytes / BLOCK) - 1);
  const input = Buffer.concat(r.flatMap((block, k) => Array.from({ length: extra[k]! }, (_, j) => xor(block, counter(j + 1)))));
  const output = input.length > 0 ? await ecb(input) : Buffer.alloc(0);
  let at = 0;
  return r.map((block, k) => {
    const more = output.subarray(at, at + extra[k]! * BLOCK);
    at += extra[k]! * BLOCK;
    return BigInt(`0x${Buffer.concat([block, more]).subarray(0, d[k]).toString('hex')}`);
  });
}

const counter = (j: number): Buffer => {
  const block = Buffer.alloc(BLOCK);
  block.writeUInt32BE(j, BLOCK - 4);
  return block;
};

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(BLOCK);
  for (let i = 0; i < BLOCK; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

const mod = (x: bigint, m: bigint): bigint => ((x % m) + m) % m;

/** NUM_radix: the numerals as a number, most significant first. */
function num(numerals: readonly number[], radix: bigint): bigint {
  let x = 0n;
  for (const n of numerals) x = x * radix + BigInt(n);
  return x;
}

/** STR^m_radix: x as m numerals. */
function str(x: bigint, radix: bigint, m: number): number[] {
  const out = new Array<number>(m);
  for (let i = m - 1; i >= 0; i--) {
    out[i] = Number(x % radix);
    x /= radix;
  }
  return out;
}

/** x as `length` big-endian bytes. */
function bytesOf(x: bigint, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = length - 1; i >= 0 && x > 0n; i--) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}
