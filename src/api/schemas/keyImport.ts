/** Bringing keys in: wrapped import (BYOK), the import wrapping key, and key ceremonies. */
import { wrappingSchemes } from '../../backend/port.js';
import { allKeyTypes, keyPurposes, keyUsages } from '../../keys/types.js';
import { keySchema, type Schema, base64, kcv, keyVersion, object } from './common.js';

// --- wrapped import (BYOK) ---------------------------------------------------------------------------------

const wrappedKeyFields = {
  wrappedKey: base64(
    'The key wrapped in the CKM_RSA_AES_KEY_WRAP layout: a fresh AES-256 key encrypted with RSA-OAEP under the wrapping key (as long as its modulus), followed by the key wrapped with AES key wrap with padding (RFC 5649) under that AES key. Private keys as PKCS#8 DER, secret keys as raw bytes.',
  ),
  wrapping: { type: 'string', enum: [...wrappingSchemes], description: 'How it is wrapped: the OAEP hash (MGF1 with the same hash, no label). GET /v1/wrapping-key lists those this backend unwraps.' },
  wrappingKeyVersion: { ...keyVersion, description: 'The wrapping key version it is wrapped under; absent: the primary one.' },
};

export const importKeyBody = object(
  {
    name: { type: 'string', description: 'Key name: 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit.' },
    type: { type: 'string', description: `One of ${allKeyTypes.join(', ')}: the material must be a key of this type.` },
    purpose: { type: 'string', description: `One of ${keyPurposes.join(', ')}; default: the first the key type allows.` },
    exportable: { type: 'boolean', description: 'Payment keys only: the key may later be exported in a TR-31 key block. Default false.' },
    keyUsage: { type: 'string', enum: [...keyUsages], description: 'Payment keys only: the X9.143 key usage.' },
    ...wrappedKeyFields,
  },
  ['name', 'type', 'wrappedKey', 'wrapping'],
);

export const importKeyVersionBody = object(wrappedKeyFields, ['wrappedKey', 'wrapping']);

export const wrappingKeySchema = object(
  {
    keyName: { type: 'string' },
    keyVersion: { type: 'integer', description: 'The version to wrap new imports under.' },
    publicKeyPem: { type: 'string', description: 'Its public key, SubjectPublicKeyInfo PEM.' },
    publicKeyJwk: { type: 'object', additionalProperties: true, description: 'The same public key as a JWK.' },
    wrappings: { type: 'array', items: { type: 'string', enum: [...wrappingSchemes] }, description: 'The wrappings this backend unwraps.' },
  },
  ['keyName', 'keyVersion', 'publicKeyPem', 'publicKeyJwk', 'wrappings'],
);

// --- key ceremonies ----------------------------------------------------------------------------------------

/** A component as custodians' forms show it: hex, 16, 24 or 32 bytes. */
export const COMPONENT_HEX_PATTERN = '^(?:[0-9A-Fa-f]{32}|[0-9A-Fa-f]{48}|[0-9A-Fa-f]{64})$';

export const ceremonyIdParams = object({ id: { type: 'string', pattern: '^[0-9a-f]{32}$', description: 'The ceremony id.' } }, ['id']);

export const startCeremonyBody = object(
  {
    name: { type: 'string', description: 'The name of the key the components will form.' },
    type: { type: 'string', description: 'TDES_2KEY, TDES_3KEY, AES_128 or AES_256.' },
    purpose: { type: 'string', description: 'pin, bdk, kbpk or mac.' },
    keyUsage: { type: 'string', enum: [...keyUsages], description: 'The X9.143 key usage, one the purpose allows.' },
    exportable: { type: 'boolean', description: 'The key may later be exported in a TR-31 key block. Default false.' },
    components: { type: 'integer', enum: [2, 3], description: 'How many components form the key, each entered by a different custodian.' },
    expectedKcv: { type: 'string', pattern: '^[0-9A-Fa-f]{6}$', description: "The combined key's KCV, when known: the key is made only if it matches." },
  },
  ['name', 'type', 'purpose', 'components'],
);

export const enterComponentBody = object(
  {
    component: { type: 'string', pattern: COMPONENT_HEX_PATTERN, description: 'The clear component in hex; TDES components with odd parity. Never logged; staged in the backend, not kept in this process between requests.' },
    kcv: { type: 'string', pattern: '^[0-9A-Fa-f]{6}$', description: "The component's KCV from its form: the component is refused when it does not match." },
  },
  ['component', 'kcv'],
);

const entrySchema = object(
  {
    number: { type: 'integer' },
    enteredBy: { type: 'string', description: 'The custodian: how it authenticated and its id.' },
    enteredAt: { type: 'string', format: 'date-time' },
    kcv: kcv("The component's KCV."),
  },
  ['number', 'enteredBy', 'enteredAt', 'kcv'],
);

export const ceremonySchema = object(
  {
    id: { type: 'string' },
    name: { type: 'string' },
    type: { type: 'string' },
    purpose: { type: 'string' },
    keyUsage: { type: 'string' },
    exportable: { type: 'boolean' },
    components: { type: 'integer' },
    received: { type: 'integer' },
    expectedKcv: kcv('The KCV the combined key must have.'),
    startedBy: { type: 'string' },
    startedAt: { type: 'string', format: 'date-time' },
    expiresAt: { type: 'string', format: 'date-time' },
    entries: { type: 'array', items: entrySchema },
  },
  ['id', 'name', 'type', 'purpose', 'exportable', 'components', 'received', 'startedBy', 'startedAt', 'expiresAt', 'entries'],
);

/** Progress ({received, of}); after the last component, also the new key as GET /v1/keys/{name} shows it, and its KCV. */
export const enterComponentResult: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['received', 'of'],
  properties: {
    received: { type: 'integer' },
    of: { type: 'integer' },
    ...(keySchema.properties as Record<string, Schema>),
    keyCheckValue: kcv('The new key\'s KCV (after the last component).'),
  },
};
