/**
 * The JSON Schemas of the REST API: fastify validates requests and serialises responses with them, and
 * openapi.ts publishes the very same objects, so the document cannot drift from what the server does.
 * Kept to the subset that OpenAPI 3.0 and ajv read alike. Algorithm, key type and purpose are plain
 * strings on purpose: the core refuses an unknown one with its own stable error code.
 */
import { allEncryptAlgorithms, allMacAlgorithms, allSignAlgorithms } from '../../algorithms/registry.js';
import { MAX_KEY_VERSION } from '../../keys/names.js';
import { allKeyTypes, keyPurposes } from '../../keys/types.js';
import { errorCodes } from '../../errors.js';

type Schema = Record<string, unknown>;

/** `format: byte` is OpenAPI's name for base64; server.ts registers it with ajv (strict base64). */
const base64 = (description: string): Schema => ({ type: 'string', format: 'byte', description });

const algorithm = (names: readonly string[]): Schema => ({
  type: 'string',
  description: `One of ${names.join(', ')}. Absent or empty: the key type's default.`,
});

const keyVersion: Schema = {
  type: 'integer',
  minimum: 1,
  maximum: MAX_KEY_VERSION,
  description: 'A key version; absent means the primary (newest) version.',
};

/** A closed object: an unknown field is a 400, never silently dropped. */
const object = (properties: Record<string, Schema>, required: string[] = []): Schema => ({
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
    primaryVersion: { type: 'integer' },
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
        },
        ['version', 'createdAt'],
      ),
    },
  },
  ['name', 'type', 'purpose', 'state', 'createdAt', 'primaryVersion', 'versions'],
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

// --- key lifecycle ---------------------------------------------------------------------------------------

export const createKeyBody = object(
  {
    name: { type: 'string', description: 'Key name: 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit.' },
    type: { type: 'string', description: `One of ${allKeyTypes.join(', ')}.` },
    purpose: { type: 'string', description: `One of ${keyPurposes.join(', ')}; default: the first the key type allows.` },
  },
  ['name', 'type'],
);

export const keyListSchema = object({ keys: { type: 'array', items: keySchema } }, ['keys']);

// --- operations --------------------------------------------------------------------------------------------

const operationResult = (extra: Record<string, Schema>): Schema =>
  object({ keyName: { type: 'string' }, keyVersion: { type: 'integer' }, algorithm: { type: 'string' }, ...extra }, [
    'keyName',
    'keyVersion',
    'algorithm',
    ...Object.keys(extra),
  ]);

const signInput = {
  algorithm: algorithm(allSignAlgorithms),
  message: base64('The message; the service hashes it. Give exactly one of message or digest.'),
  digest: base64("A digest made with the algorithm's hash. Give exactly one of message or digest."),
};

export const signBody = object(signInput);
export const signResult = operationResult({ signature: base64('JWS form: raw r||s for ECDSA.') });

export const verifyBody = object({ ...signInput, keyVersion, signature: base64('The signature to check.') }, ['signature']);
export const verifyResult = operationResult({ valid: { type: 'boolean' } });

export const encryptBody = object(
  {
    algorithm: algorithm(allEncryptAlgorithms),
    plaintext: base64('The data to encrypt.'),
    aad: base64('Additional authenticated data (AES_GCM only).'),
  },
  ['plaintext'],
);
export const encryptResult = operationResult({
  ciphertext: base64('An hsm-bridge ciphertext: it names the key version and algorithm, so decrypt needs neither.'),
});

export const decryptBody = object(
  {
    ciphertext: base64('An hsm-bridge ciphertext; or, with keyVersion, the raw output of the algorithm (AES_GCM: IV || ciphertext || tag).'),
    aad: base64('The additional authenticated data given to encrypt.'),
    keyVersion: { ...keyVersion, description: 'Only for a raw ciphertext (not made by hsm-bridge): the key version that made it.' },
    algorithm: { ...algorithm(allEncryptAlgorithms), description: 'Only with keyVersion.' },
  },
  ['ciphertext'],
);
export const decryptResult = operationResult({ plaintext: base64('The decrypted data.') });

export const macBody = object({ algorithm: algorithm(allMacAlgorithms), data: base64('The data to authenticate.') }, ['data']);
export const macResult = operationResult({ mac: base64('The MAC.') });

export const verifyMacBody = object(
  { algorithm: algorithm(allMacAlgorithms), keyVersion, data: base64('The data the MAC is over.'), mac: base64('The MAC to check.') },
  ['data', 'mac'],
);
export const verifyMacResult = operationResult({ valid: { type: 'boolean' } });

// --- system ----------------------------------------------------------------------------------------------------

export const randomBody = object({ length: { type: 'integer', description: 'Number of random bytes, from 1 to the configured maximum.' } }, ['length']);
export const randomResult = object({ random: base64('Random bytes from the backend.') }, ['random']);

const names = (values: readonly string[]): Schema => ({ type: 'array', items: { type: 'string', enum: [...values] } });
export const capabilitiesSchema = object(
  {
    keyTypes: names(allKeyTypes),
    sign: names(allSignAlgorithms),
    encrypt: names(allEncryptAlgorithms),
    mac: names(allMacAlgorithms),
    signDigest: { ...names(allSignAlgorithms), description: 'Sign algorithms that accept a precomputed digest.' },
    random: { type: 'boolean' },
  },
  ['keyTypes', 'sign', 'encrypt', 'mac', 'signDigest', 'random'],
);

export const liveSchema = object({ status: { type: 'string', enum: ['ok'] } }, ['status']);
export const readySchema = object({ status: { type: 'string', enum: ['ready', 'unavailable'] }, detail: { type: 'string' } }, ['status']);

/** Objects openapi.ts publishes once under components/schemas and refers to by $ref. */
export const namedSchemas: Record<string, Schema> = { Key: keySchema, Error: errorEnvelopeSchema };
