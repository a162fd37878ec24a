/** What the REST API's JSON Schemas share: field builders, the key and error objects, name rules. */
import { MAX_KEY_VERSION } from '../../keys/names.js';
import { allKeyTypes, keyPurposes, keyUsages, modesOfUse } from '../../keys/types.js';
import { errorCodes } from '../../errors.js';

export type Schema = Record<string, unknown>;

/** `format: byte` is OpenAPI's name for base64; server.ts registers it with ajv (strict base64). */
export const base64 = (description: string): Schema => ({ type: 'string', format: 'byte', description });

/** A key check value: 6 hex digits, upper case. */
export const kcv = (description: string): Schema => ({ type: 'string', pattern: '^[0-9A-F]{6}$', description });

export const algorithm = (names: readonly string[]): Schema => ({
  type: 'string',
  description: `One of ${names.join(', ')}. Absent or empty: the key type's default.`,
});

export const keyVersion: Schema = {
  type: 'integer',
  minimum: 1,
  maximum: MAX_KEY_VERSION,
  description: 'A key version; absent means the primary (newest) version.',
};

/** A closed object: an unknown field is a 400, never silently dropped. */
export const object = (properties: Record<string, Schema>, required: string[] = []): Schema => ({
  type: 'object',
  additionalProperties: false,
  ...(required.length > 0 ? { required } : {}),
  properties,
});

// --- parameters --------------------------------------------------------------------------------------

export const keyNameParams = object(
  { name: { type: 'string', description: 'Key name: 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit.' } },
  ['name'],
);

// --- shared objects -------------------------------------------------------------------------------------

export const keySchema = object(
  {
    name: { type: 'string' },
    type: { type: 'string', enum: [...allKeyTypes] },
    purpose: { type: 'string', enum: [...keyPurposes] },
    state: { type: 'string', enum: ['enabled', 'disabled'] },
    createdAt: { type: 'string', format: 'date-time' },
    exportable: { type: 'boolean', description: 'Whether the key may leave the backend in a TR-31 key block (payment keys only).' },
    modeOfUse: { type: 'string', enum: [...modesOfUse], description: 'The X9.143 mode of use a TR-31 import gave the key; absent: whatever its purpose allows.' },
    keyUsage: { type: 'string', enum: [...keyUsages], description: 'Payment keys: the X9.143 key usage given at creation or by a TR-31 import; absent: the purpose\'s general kind.' },
    primaryVersion: { type: 'integer' },
    minDecryptionVersion: { type: 'integer', description: 'Versions below it are retired (KEY_VERSION_RETIRED); absent: none is.' },
    versions: {
      type: 'array',
      items: object(
        {
          version: { type: 'integer' },
          createdAt: { type: 'string', format: 'date-time' },
          publicKeyPem: { type: 'string', description: 'SubjectPublicKeyInfo PEM; asymmetric keys only.' },
          publicKeyJwk: {
            type: 'object',
            additionalProperties: true,
            description: 'The public key as a JWK (RFC 7517) with kid "<name>:<version>"; asymmetric keys only.',
          },
          keyCheckValue: kcv('Payment keys (purpose pin, mac, bdk, kbpk) only: the key check value of this version.'),
        },
        ['version', 'createdAt'],
      ),
    },
  },
  ['name', 'type', 'purpose', 'state', 'createdAt', 'exportable', 'primaryVersion', 'versions'],
);

export const errorEnvelopeSchema = object(
  {
    error: object(
      {
        code: { type: 'string', enum: [...errorCodes] },
        message: { type: 'string' },
      },
      ['code', 'message'],
    ),
  },
  ['error'],
);

// --- JOSE: JWS, JWE, JWKS ---------------------------------------------------------------------------------------
// JOSE headers and JSON serializations travel as JSON objects; compact serializations as strings.

export const KEY_NAME = 'A key of this service: 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit.';
export const keyName = (description: string): Schema => ({ type: 'string', description: `${description} ${KEY_NAME}` });
export const jsonObject = (description: string): Schema => ({ type: 'object', additionalProperties: true, description });
/** A compact serialization (string) or a JSON serialization (object). */
export const stringOrObject = (description: string): Schema => ({
  oneOf: [{ type: 'string' }, { type: 'object', additionalProperties: true }],
  description,
});
export const allowed = (values: readonly string[], description: string): Schema => ({
  type: 'array',
  minItems: 1,
  maxItems: values.length,
  items: { type: 'string' },
  description: `${description} Any of ${values.join(', ')}.`,
});
export const kid: Schema = { type: 'string', description: 'The JWKS "kid" of the key version used: "<name>:<version>".' };

export const PARTICIPANT_ID = 'An FSPIOP participant id (FspId): 1-32 characters of A-Z a-z 0-9 . _ - starting with a letter or digit.';
export const participantId = (description: string): Schema => ({ type: 'string', description: `${description} ${PARTICIPANT_ID}` });

export const stringList = (description: string): Schema => ({ type: 'array', items: { type: 'string' }, description });
