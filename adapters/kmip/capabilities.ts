/** What the KMIP adapter offers, given the operations the server serves and the protocol version it speaks. */
import type { Capabilities } from '../../src/backend/port.js';
import type { KeyType } from '../../src/keys/types.js';
import type { KmipClient } from './client.js';
import { Enum } from './tags.js';

/** What this adapter does over KMIP, and the operations each needs the server to serve. */
const Op = Enum.Operation;
export const needs = {
  rsa: [Op.CreateKeyPair, Op.Get],
  aes: [Op.Create],
  hmac: [Op.Register],
  sign: [Op.Sign],
  gcm: [Op.Encrypt, Op.Decrypt],
  // FF1's AES: Encrypt in ECB mode with PKCS5 padding, the padding block dropped (backend.ts, encryptBlocks).
  fpe: [Op.Encrypt],
  mac: [Op.MAC],
  lifecycle: [Op.Register, Op.Locate, Op.Get, Op.GetAttributes, Op.Activate, Op.Revoke, Op.Destroy],
} as const;

/** What this adapter offers, given the operations the server serves and the protocol version spoken. */
export function offeredCapabilities(has: (ops: readonly number[]) => boolean, client: KmipClient): Capabilities {
  const keyTypes: KeyType[] = [];
  const fpe = has(needs.aes) && has(needs.fpe);
  if (has(needs.rsa)) keyTypes.push('RSA_2048', 'RSA_3072', 'RSA_4096');
  // AES_192 has one purpose, fpe (src/keys/types.ts).
  if (has(needs.aes)) keyTypes.push('AES_128', ...(fpe ? ['AES_192' as const] : []), 'AES_256');
  if (has(needs.hmac)) keyTypes.push('HMAC_256');
  return {
    keyTypes,
    // PKCS#1 v1.5 only: PyKMIP signs PSS with the longest salt, not the hash-long salt PS256 means.
    // Verification is local, against the public key read from the server.
    sign: has(needs.rsa) && has(needs.sign) ? ['RS256', 'RS384', 'RS512'] : [],
    // Sign takes the message; KMIP 1.4 has Digested Data only for verification.
    signDigest: [],
    // GCM's tag and AAD fields (Authenticated Encryption Tag / Additional Data) exist from KMIP 1.4 on.
    encrypt: has(needs.aes) && has(needs.gcm) && client.speaks(1, 4) ? ['AES_GCM'] : [],
    mac: has(needs.hmac) && has(needs.mac) ? ['HMAC_SHA256'] : [],
    random: false,
    keyAgreement: [],
    payment: { dukpt: [], importKeys: false, exportKeys: false },
    // Not yet: PyKMIP has no key unwrapping, so an import would be a Register of clear material.
    keyImport: { wrappings: [], unwrapsInside: [], ceremonies: false },
    fpe,
  };
}
