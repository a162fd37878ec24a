import type { JsonWebKey } from 'node:crypto';
import { publicKeyForms } from '../keys/publicKey.js';
import type { KeyMetadata } from '../keys/types.js';
import type { KeyService } from '../operations/keyService.js';

/**
 * The Key as callers see it, the same on every transport: metadata plus each version's public key as
 * PEM and JWK (asymmetric keys only) or key check value (payment keys only). gRPC carries the JWK as a
 * JSON string; REST as an object. The SPKI DER itself stays internal.
 */
export interface KeyVersionView {
  version: number;
  createdAt: string;
  publicKeyPem?: string;
  publicKeyJwk?: JsonWebKey;
  /** Payment keys (TDES, AES of purpose pin, mac, bdk, kbpk): the version's KCV, 6 hex digits. */
  keyCheckValue?: string;
}

export interface KeyView {
  name: string;
  type: string;
  purpose: string;
  state: string;
  createdAt: string;
  /** Whether the key may leave the backend in a TR-31 key block. */
  exportable: boolean;
  /** The X9.143 mode of use, when the key has one (a TR-31 import sets it). */
  modeOfUse?: string;
  /** The X9.143 key usage (P0, B0, K0, K1, M0, M1, M3, M6), when the key has one. */
  keyUsage?: string;
  primaryVersion: number;
  /** Versions below it are retired; absent when none is. */
  minDecryptionVersion?: number;
  versions: KeyVersionView[];
}

/**
 * The view of a key, with the KCV of each version of a payment key (computed by the backend once per
 * version, then cached by KeyService).
 */
export async function keyView(service: KeyService, meta: KeyMetadata): Promise<KeyView> {
  const versions = await Promise.all(
    meta.versions.map(async (v) => {
      const view: KeyVersionView = { version: v.version, createdAt: v.createdAt };
      const forms = publicKeyForms(meta, v);
      if (forms) {
        view.publicKeyPem = forms.pem;
        view.publicKeyJwk = forms.jwk;
      }
      const kcv = await service.keyCheckValue(meta, v);
      if (kcv !== undefined) view.keyCheckValue = kcv;
      return view;
    }),
  );
  return {
    name: meta.name,
    type: meta.type,
    purpose: meta.purpose,
    state: meta.state,
    createdAt: meta.createdAt,
    exportable: meta.exportable === true,
    ...(meta.modeOfUse === undefined ? {} : { modeOfUse: meta.modeOfUse }),
    ...(meta.keyUsage === undefined ? {} : { keyUsage: meta.keyUsage }),
    primaryVersion: meta.primaryVersion,
    ...((meta.minDecryptionVersion ?? 1) > 1 ? { minDecryptionVersion: meta.minDecryptionVersion } : {}),
    versions,
  };
}

/** The Key view as gRPC carries it: each JWK as a JSON string (proto has no free-form object). */
export function keyMessage(view: KeyView) {
  return {
    ...view,
    versions: view.versions.map(({ publicKeyJwk, ...version }) => (publicKeyJwk ? { ...version, publicKeyJwk: JSON.stringify(publicKeyJwk) } : version)),
  };
}
