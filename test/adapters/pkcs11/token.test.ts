/** How many session workers a token gets (pure logic; the SoftHSM suites check the rest of token.ts). */
import { describe, expect, it } from 'vitest';
import { sessionPoolSizeFor } from '../../../adapters/pkcs11/token.js';

describe('sessionPoolSizeFor', () => {
  it('a token without a limit (ulMaxSessionCount 0, as SoftHSM reports) gets the configured size', () => {
    expect(sessionPoolSizeFor(8, 0)).toBe(8);
  });

  it('never more sessions than the token allows, counting the control worker\'s session', () => {
    expect(sessionPoolSizeFor(8, 16)).toBe(8);
    expect(sessionPoolSizeFor(16, 16)).toBe(15); // a YubiHSM 2: 16 sessions in all
    expect(sessionPoolSizeFor(8, 2)).toBe(1);
  });

  it('none on a token of one session: that one keeps the login (the backend then refuses to start)', () => {
    expect(sessionPoolSizeFor(8, 1)).toBe(0);
  });

  it('CK_UNAVAILABLE_INFORMATION (all bits set) is no limit in practice', () => {
    expect(sessionPoolSizeFor(8, 2 ** 64 - 1)).toBe(8);
  });
});
