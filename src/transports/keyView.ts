import type { JsonWebKey } from 'node:crypto';
import { publicKeyForms } from '../keys/publicKey.js';
import type { KeyMetadata } from '../keys/types.js';

/**
 * The Key as callers see it, the same on every transport: metadata plus each version's public key as
 * PEM and JWK (asymmetric keys only). gRPC carries the JWK as a JSON string; REST as an object.
 * The SPKI DER itself stays internal.
 */
export interface KeyVersionView {
  version: number;
  createdAt: string;
  publicKeyPem?: string;
  publicKeyJwk?: JsonWebKey;
}

export interface KeyView {
  name: string;
  type: string;
  purpose: string;
  state: string;
  createdAt: string;
  primaryVersion: number;
  versions: KeyVersionView[];
}

export function keyView(meta: KeyMetadata): KeyView {
  return {
    name: meta.name,
    type: meta.type,
    purpose: meta.purpose,
    state: meta.state,
    createdAt: meta.createdAt,
    primaryVersion: meta.primaryVersion,
    versions: meta.versions.map((v) => {
      const forms = publicKeyForms(meta, v);
      const view: KeyVersionView = { version: v.version, createdAt: v.createdAt };
      if (forms) {
        view.publicKeyPem = forms.pem;
        view.publicKeyJwk = forms.jwk;
      }
      return view;
    }),
  };
}
