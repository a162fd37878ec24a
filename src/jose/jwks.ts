/**
 * The JWK Set (RFC 7517 §5) of this service's public keys, for GET /.well-known/jwks.json: every version
 * of every asymmetric key that has not been destroyed, disabled ones included, so that verifiers keep
 * working across rotations and a key disabled for a while does not break the checking of what it signed.
 * Disabling stops this service from using a key; destroying it, or retiring the version (below the key's
 * minDecryptionVersion: this service no longer verifies with it), removes its public key from here.
 * Each JWK has "kid" (name:version), "use" ("sig" for signing keys, "enc" for encryption and key
 * agreement) and "alg" where exactly one fits. The import wrapping key is left out.
 */
import type { JsonWebKey } from 'node:crypto';
import { algorithmsFor } from '../algorithms/registry.js';
import { publicKeyForms } from '../keys/publicKey.js';
import { isAsymmetric, isRetired, type KeyMetadata } from '../keys/types.js';

export interface JsonWebKeySet {
  keys: JsonWebKey[];
}

export function jwksOf(keys: readonly KeyMetadata[]): JsonWebKeySet {
  const out: JsonWebKey[] = [];
  for (const meta of [...keys].sort((a, b) => a.name.localeCompare(b.name))) {
    // An RSA key of purpose wrap is the import wrapping key: not a JOSE key (GET /v1/wrapping-key publishes it).
    if (!isAsymmetric(meta.type) || meta.purpose === 'wrap') continue;
    const signing = meta.purpose === 'sign' ? algorithmsFor(meta.type, 'sign') : [];
    for (const version of meta.versions) {
      if (isRetired(meta, version.version)) continue;
      const jwk = publicKeyForms(meta, version)?.jwk;
      if (!jwk) continue;
      out.push(signing.length === 1 ? { ...jwk, alg: signing[0] } : jwk);
    }
  }
  return { keys: out };
}
