/** Personal-data protection: data keys, rewrap, pseudonymisation tokens, FF1 format-preserving encryption. */
import { MAX_TWEAK_BYTES } from '../../dataProtection/ff1.js';
import { MAX_ALPHABET } from '../../dataProtection/alphabet.js';
import { MAX_CONTEXT_BYTES, MAX_VALUE_BYTES } from '../../dataProtection/tokens.js';
import { base64, errorEnvelopeSchema, keyVersion, object, type Schema } from './common.js';

export const dataKeyBody = object(
  {
    bits: { type: 'integer', enum: [128, 256], description: 'The data key length: 128 or 256 bits.' },
    plaintext: { type: 'boolean', description: 'Also answer the data key in clear (default true). false: only the wrapped form, for later.' },
  },
  ['bits'],
);
export const dataKeyResult = object(
  {
    keyName: { type: 'string' },
    keyVersion: { type: 'integer' },
    algorithm: { type: 'string' },
    plaintext: base64('The data key, for encrypting locally; absent with plaintext: false. Forget it once used.'),
    wrapped: base64('The data key as an hsm-bridge ciphertext under this key: store it beside the data; POST /v1/keys/{name}/decrypt gives the data key back.'),
  },
  ['keyName', 'keyVersion', 'algorithm', 'wrapped'],
);

export const rewrapBody = object(
  {
    ciphertext: base64('An hsm-bridge ciphertext of this key, under any version not retired.'),
    aad: base64('The additional authenticated data it was made with (AES_GCM); the new ciphertext keeps it.'),
  },
  ['ciphertext'],
);
export const rewrapResult = object(
  {
    keyName: { type: 'string' },
    keyVersion: { type: 'integer', description: 'The primary version, which made the new ciphertext.' },
    algorithm: { type: 'string' },
    ciphertext: base64('The same plaintext, now under the primary version.'),
  },
  ['keyName', 'keyVersion', 'algorithm', 'ciphertext'],
);

const valueError = (errorEnvelopeSchema.properties as Record<string, Schema>).error!;
/** One result per value: a string, or {error} for a value that could not be used. */
const perValue = (description: string): Schema => ({
  type: 'array',
  items: { anyOf: [{ type: 'string' }, object({ error: valueError }, ['error'])] },
  description: `${description} In the order of values; a value that could not be used has {error: {code, message}} in its place.`,
});
const values = (description: string): Schema => ({ type: 'array', minItems: 1, items: { type: 'string' }, description: `${description} At most limits.maxBatchItems (default 256).` });

export const tokenizeBody = object(
  {
    values: values(`The values to pseudonymise, each 1 to ${MAX_VALUE_BYTES} bytes of UTF-8.`),
    context: { type: 'string', minLength: 1, description: `What the tokens are for (a table and column, a purpose), at most ${MAX_CONTEXT_BYTES} bytes: the same value gives unrelated tokens in two contexts.` },
    keyVersion: { ...keyVersion, description: 'Tokenise with this older version, to match tokens made before a rotation; absent: the primary.' },
  },
  ['values', 'context'],
);
export const tokenizeResult = object(
  {
    keyName: { type: 'string' },
    keyVersion: { type: 'integer' },
    tokens: perValue('Tokens: "v<version>:" and the HMAC-SHA-256 in base64url.'),
  },
  ['keyName', 'keyVersion', 'tokens'],
);

export const fpeBody = object(
  {
    values: values('The values, each written in the alphabet; at least as long as radix^length >= 1,000,000 needs (radix 10: 6 digits).'),
    radix: { type: 'integer', minimum: 2, maximum: 36, description: 'With the default alphabet 0-9a-z: its first radix characters (10: digits; 36: lower-case alphanumerics).' },
    alphabet: { type: 'string', minLength: 2, description: `Instead of radix: the characters of the values, ${MAX_ALPHABET} at most, each once (e.g. "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ").` },
    tweak: { type: 'string', pattern: '^(?:[0-9A-Fa-f]{2})*$', maxLength: 2 * MAX_TWEAK_BYTES, description: 'FF1 tweak, hex; default empty. The same tweak must be given to decrypt.' },
    keyVersion: { ...keyVersion, description: 'The key version: decryption needs the one that encrypted (answered as keyVersion). Absent: the primary.' },
  },
  ['values'],
);
export const fpeResult = object(
  {
    keyName: { type: 'string' },
    keyVersion: { type: 'integer' },
    values: perValue('The results, each as long as its value and in the same alphabet.'),
  },
  ['keyName', 'keyVersion', 'values'],
);

export const updateKeyBody = object(
  {
    minDecryptionVersion: {
      ...keyVersion,
      description: 'Versions below it are retired: decrypt, verify, MAC verification and every other use answer 409 KEY_VERSION_RETIRED. An existing version, at most the primary; lower it again to bring them back, until trimmed.',
    },
  },
  ['minDecryptionVersion'],
);
