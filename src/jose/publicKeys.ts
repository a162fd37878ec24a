/**
 * Public keys for verification and encryption in process: importing a caller's KeyObject, JWK or PEM,
 * and a bounded cache of KeyObjects for this service's key versions, so that the hot path (verifying a
 * JWS) does not parse a SubjectPublicKeyInfo on every call.
 */
import { createPublicKey, KeyObject, type JsonWebKey } from 'node:crypto';
import { HsmBridgeError, invalid } from '../errors.js';
import type { KeyMetadata, KeyVersionInfo } from '../keys/types.js';
import { keyId } from '../keys/publicKey.js';

export type PublicKeyInput = KeyObject | JsonWebKey | string;

/** A public key from a KeyObject, a public JWK or a PEM (SPKI or certificate). A private key is refused. */
export function importPublicKey(input: PublicKeyInput): KeyObject {
  if (input instanceof KeyObject) {
    if (input.type !== 'public') throw invalid('give a public key');
    return input;
  }
  try {
    if (typeof input === 'string') {
      if (input.includes('PRIVATE KEY')) throw invalid('give a public key, not a private one');
      return createPublicKey(input);
    }
    if (typeof input !== 'object' || input === null) throw invalid('a public key is a KeyObject, a JWK or a PEM');
    if (input.d !== undefined || input.k !== undefined) throw invalid('give a public JWK (this one has a private or secret part)');
    return createPublicKey({ key: input, format: 'jwk' });
  } catch (e) {
    if (e instanceof HsmBridgeError) throw e;
    throw invalid('the public key cannot be read (a JWK or PEM of an RSA, EC or Ed25519 public key is expected)');
  }
}

/**
 * KeyObjects of this service's key versions. An entry is checked against the version's SPKI on every hit,
 * so a key destroyed and created again under the same name never verifies with the old public key.
 */
export class PublicKeyCache {
  private readonly entries = new Map<string, { spki: Buffer; key: KeyObject }>();

  constructor(private readonly maxEntries = 1024) {}

  get(meta: KeyMetadata, version: KeyVersionInfo): KeyObject {
    const spki = version.publicKeySpki;
    if (!spki) throw invalid(`key ${meta.name} has no public key`);
    const id = keyId(meta.name, version.version);
    const hit = this.entries.get(id);
    if (hit && hit.spki.equals(spki)) return hit.key;
    const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    this.entries.delete(id);
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(id, { spki, key });
    return key;
  }
}
