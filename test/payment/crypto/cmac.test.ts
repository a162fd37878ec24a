import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { cmac, cmacWithKey } from '../../../src/payment/crypto/cmac.js';

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// The message of every NIST SP 800-38B Appendix D example is a prefix of this (SP 800-38A sample plaintext).
const M = h(`6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
             30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710`);

interface Example {
  readonly name: string;
  readonly family: 'aes' | 'tdes';
  readonly key: string;
  readonly lengths: readonly [number, string][];
}

// NIST SP 800-38B Appendix D (https://csrc.nist.gov/publications/detail/sp/800-38b/final), with the
// corrections NIST published for examples 14, 15, 18 and 19 ("Updated_CMAC_Examples.pdf").
// D.1 AES-128 (= RFC 4493 section 4), D.2 AES-192, D.3 AES-256, D.4 three-key TDEA, D.5/D.7 two-key TDEA.
const examples: Example[] = [
  {
    name: 'D.1 AES-128',
    family: 'aes',
    key: '2b7e151628aed2a6abf7158809cf4f3c',
    lengths: [
      [0, 'bb1d6929e95937287fa37d129b756746'],
      [16, '070a16b46b4d4144f79bdd9dd04a287c'],
      [40, 'dfa66747de9ae63030ca32611497c827'],
      [64, '51f0bebf7e3b9d92fc49741779363cfe'],
    ],
  },
  {
    name: 'D.2 AES-192',
    family: 'aes',
    key: '8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b',
    lengths: [
      [0, 'd17ddf46adaacde531cac483de7a9367'],
      [16, '9e99a7bf31e710900662f65e617c5184'],
      [40, '8a1de5be2eb31aad089a82e6ee908b0e'],
      [64, 'a1d5df0eed790f794d77589659f39a11'],
    ],
  },
  {
    name: 'D.3 AES-256',
    family: 'aes',
    key: '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4',
    lengths: [
      [0, '028962f61b7bf89efc6b551f4667d983'],
      [16, '28a7023f452e8f82bd4bf28d8c37c35c'],
      [40, 'aaf3d8f1de5640c232f5b169b9c911e6'],
      [64, 'e1992190549f6ed5696a2c056c315410'],
    ],
  },
  {
    name: 'D.4 three-key TDEA',
    family: 'tdes',
    key: '8aa83bf8cbda1062 0bc1bf19fbb6cd58 bc313d4a371ca8b5',
    lengths: [
      [0, 'b7a688e122ffaf95'],
      [8, '8e8f293136283797'],
      [20, '743ddbe0ce2dc2ed'],
      [32, '33e6b1092400eae5'],
    ],
  },
  {
    // Key3 = Key1, so the double-length form K1 K2 is the same key.
    name: 'D.5 two-key TDEA',
    family: 'tdes',
    key: '4cf15134a2850dd5 8a3d10ba80570d38',
    lengths: [
      [0, 'bd2ebf9a3ba00361'],
      [8, '4ff2ab813c53ce83'],
      [20, '62dd1b471902bd4e'],
      [32, '31b1e431dabc4eb8'],
    ],
  },
];

describe('CMAC, NIST SP 800-38B Appendix D', () => {
  for (const example of examples) {
    for (const [length, tag] of example.lengths) {
      it(`${example.name}, Mlen = ${length * 8}`, () => {
        expect(cmacWithKey(example.family, h(example.key), M.subarray(0, length)).toString('hex')).toBe(tag);
      });
    }
  }

  it('takes any one-block encryption (here node:crypto AES-128-ECB directly)', () => {
    const key = h('2b7e151628aed2a6abf7158809cf4f3c');
    const encryptBlock = (block: Buffer): Buffer => {
      const c = createCipheriv('aes-128-ecb', key, null);
      c.setAutoPadding(false);
      return Buffer.concat([c.update(block), c.final()]);
    };
    expect(cmac(encryptBlock, 16, M.subarray(0, 40)).toString('hex')).toBe('dfa66747de9ae63030ca32611497c827');
  });

  it('does not modify its input', () => {
    const data = Buffer.from(M.subarray(0, 40));
    cmacWithKey('aes', h('2b7e151628aed2a6abf7158809cf4f3c'), data);
    expect(data.equals(M.subarray(0, 40))).toBe(true);
  });
});
