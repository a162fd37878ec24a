import { createPublicKey, type JsonWebKey } from 'node:crypto';
import type { KeyMetadata, KeyVersionInfo } from './types.js';

/** The JOSE key id of a key version. ':' cannot occur in a key name, so the id parses back unambiguously. */
export function keyId(name: string, version: number): string {
  return `${name}:${version}`;
}

export interface PublicKeyForms {
  readonly pem: string;
  readonly jwk: JsonWebKey;
}

/** PEM and JWK of one version's public key; undefined for symmetric keys. */
export function publicKeyForms(meta: KeyMetadata, version: KeyVersionInfo): PublicKeyForms | undefined {
  if (!version.publicKeySpki) return undefined;
  const key = createPublicKey({ key: version.publicKeySpki, format: 'der', type: 'spki' });
  const jwk: JsonWebKey = {
    ...key.export({ format: 'jwk' }),
    kid: keyId(meta.name, version.version),
    use: meta.purpose === 'sign' ? 'sig' : 'enc',
  };
  return { pem: key.export({ format: 'pem', type: 'spki' }).toString(), jwk };
}
