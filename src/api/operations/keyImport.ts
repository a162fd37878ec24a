/**
 * Wrapped import (BYOK): the import wrapping key, and keys (or key versions) imported wrapped under it.
 * Every check is WrappedImport's (src/operations/wrappedImport.ts) and the backend's.
 */
import type { ErrorCode } from '../../errors.js';
import type { WrappingKeyView } from '../../operations/wrappedImport.js';
import { keyUse, operation, type Operation, type ServicesFor } from '../declaration.js';
import type * as msg from '../grpcMessages.js';
import { keyMessage, keyView, type KeyView } from '../keyView.js';
import { decodeBase64 } from '../base64.js';
import * as schemas from '../schemas.js';
import { grpcKeyService } from './keys.js';
import { given } from '../wire.js';

const importErrors: ErrorCode[] = ['UNSUPPORTED_BY_BACKEND', 'INCOMPATIBLE_KEY', 'DECRYPTION_FAILED', 'KEY_VERSION_NOT_FOUND', 'BACKEND_UNAVAILABLE'];
const primaryOf = (v: KeyView) => keyUse(v.name, v.primaryVersion);

const wrappingKeyRest = (v: WrappingKeyView) => ({ keyName: v.keyName, keyVersion: v.keyVersion, publicKeyPem: v.publicKey.pem, publicKeyJwk: v.publicKey.jwk, wrappings: v.wrappings });
const wrappingKeyMessage = (v: WrappingKeyView): msg.WrappingKeyMessage => ({ ...wrappingKeyRest(v), publicKeyJwk: JSON.stringify(v.publicKey.jwk), wrappings: [...v.wrappings] });
/** 0 is proto3's "not given". */
const versionGiven = (v: number) => (v === 0 ? undefined : v);

/** An operation on the import wrapping key, which answers with it. */
function wrappingKeyOperation(
  name: string,
  route: { method: 'GET' | 'POST'; path: string; rpc: string },
  doc: { summary: string; description: string },
  run: (s: ServicesFor) => Promise<WrappingKeyView>,
): Operation {
  return operation({
    name,
    tag: 'keys',
    ...doc,
    errors: ['UNSUPPORTED_BY_BACKEND', 'INCOMPATIBLE_KEY', 'KEY_DISABLED', 'BACKEND_UNAVAILABLE'],
    changesState: true,
    keysUsed: (v) => keyUse(v.keyName, v.keyVersion),
    run: (s) => run(s),
    rest: { method: route.method, path: route.path, response: schemas.wrappingKeySchema, decode: () => ({}), encode: wrappingKeyRest },
    grpc: { ...grpcKeyService(route.rpc), decode: () => ({}), encode: wrappingKeyMessage },
  });
}

export const keyImportOperations: Operation[] = [
  // The wrapping key's own group, apart from keys.*: a rule granting keys.* grants neither. Both change
  // state: the first call of either makes the key, recorded like any key creation.
  wrappingKeyOperation(
    'wrapping.getKey',
    { method: 'GET', path: '/v1/wrapping-key', rpc: 'GetWrappingKey' },
    {
      summary: 'The import wrapping key: its public key and the wrappings this backend unwraps',
      description: 'An RSA key (RSA-3072 by default) made on first use, under a reserved name no other operation may use. Wrap keys to import under its primary version.',
    },
    (s) => s.keys.wrappedImport.describeWrappingKey(),
  ),
  wrappingKeyOperation(
    'wrapping.rotateKey',
    { method: 'POST', path: '/v1/wrapping-key/rotate', rpc: 'RotateWrappingKey' },
    {
      summary: "Make the import wrapping key's next version",
      description: 'New imports are wrapped under the new version; blobs wrapped under older versions still import (give wrappingKeyVersion).',
    },
    (s) => s.keys.wrappedImport.rotateWrappingKey(),
  ),
  operation({
    name: 'keys.import',
    tag: 'keys',
    summary: 'Import a key wrapped under the import wrapping key (BYOK)',
    description:
      'Version 1 of a new key from a wrapped key: RSA-OAEP of a fresh AES-256 key, then the key wrapped with AES key wrap with padding (RFC 5649). It is unwrapped inside the HSM where the backend can (capabilities: keyImport.unwrapsInside), and gets the attributes of a generated key of its purpose.',
    errors: [...importErrors, 'KEY_ALREADY_EXISTS'],
    keys: (i) => [i.name],
    keysUsed: primaryOf,
    changesState: true,
    run: async (s, i: { name: unknown; type: unknown; purpose?: unknown; exportable?: unknown; keyUsage?: unknown; wrappedKey: Buffer; wrapping: unknown; wrappingKeyVersion?: unknown }) =>
      keyView(s.keys, await s.keys.wrappedImport.importKey(i)),
    rest: {
      method: 'POST',
      path: '/v1/keys/import',
      body: schemas.importKeyBody,
      response: schemas.keySchema,
      status: 201,
      decode: ({ body }) => ({ ...body, wrappedKey: decodeBase64('wrappedKey', body.wrappedKey) }),
      encode: (v) => v,
    },
    grpc: {
      ...grpcKeyService('ImportKey'),
      decode: (m: msg.ImportKeyRequest) => ({
        name: m.name,
        type: m.type,
        purpose: given(m.purpose),
        exportable: m.exportable,
        keyUsage: given(m.keyUsage),
        wrappedKey: m.wrappedKey,
        wrapping: m.wrapping,
        wrappingKeyVersion: versionGiven(m.wrappingKeyVersion),
      }),
      encode: (v): msg.KeyMessage => keyMessage(v),
    },
  }),
  operation({
    name: 'keys.importVersion',
    permission: 'keys.import',
    tag: 'keys',
    summary: 'Import the next version of a key, wrapped under the import wrapping key',
    description: 'Rotation by import: the new version becomes primary; older versions keep verifying and decrypting. The material must be of the key\'s type.',
    errors: [...importErrors, 'KEY_NOT_FOUND', 'KEY_DISABLED'],
    keys: (i) => [i.name],
    keysUsed: primaryOf,
    changesState: true,
    run: async (s, i: { name: unknown; wrappedKey: Buffer; wrapping: unknown; wrappingKeyVersion?: unknown }) => keyView(s.keys, await s.keys.wrappedImport.importVersion(i)),
    rest: {
      method: 'POST',
      path: '/v1/keys/:name/import',
      params: schemas.keyNameParams,
      body: schemas.importKeyVersionBody,
      response: schemas.keySchema,
      status: 201,
      decode: ({ params, body }) => ({ ...body, name: params.name, wrappedKey: decodeBase64('wrappedKey', body.wrappedKey) }),
      encode: (v) => v,
    },
    grpc: {
      ...grpcKeyService('ImportKeyVersion'),
      decode: (m: msg.ImportKeyVersionRequest) => ({ name: m.name, wrappedKey: m.wrappedKey, wrapping: m.wrapping, wrappingKeyVersion: versionGiven(m.wrappingKeyVersion) }),
      encode: (v): msg.KeyMessage => keyMessage(v),
    },
  }),
];
