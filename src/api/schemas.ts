/**
 * The JSON Schemas of the REST API: fastify validates requests and serialises responses with them, and
 * openapi.ts publishes the very same objects, so the document cannot drift from what the server does.
 * Kept to the subset that OpenAPI 3.0 and ajv read alike. Algorithm, key type and purpose are plain
 * strings on purpose: the core refuses an unknown one with its own stable error code.
 */
import { allEncryptAlgorithms, allMacAlgorithms, allSignAlgorithms } from '../algorithms/registry.js';
import { MAX_KEY_VERSION } from '../keys/names.js';
import { allKeyTypes, keyPurposes, keyUsages, modesOfUse } from '../keys/types.js';
import { errorCodes } from '../errors.js';
import { fspiopAlgorithms } from '../fspiop/config.js';
import { jweContentEncryptions, jweKeyManagements, jwsAlgorithms } from '../jose/registry.js';
import { MAX_REFERENCES } from '../payment/pin/otpToJwe.js';
import { aesDukptWorkingKeys, pinBlockFormats } from '../payment/pin/pinService.js';
import { MAX_PAN_DIGITS, MIN_PAN_DIGITS } from '../payment/pin/pan.js';
import { KEY_BLOCK_PATTERN, KSN_HEX_DIGITS, MAX_KEY_BLOCK_CHARS, MAX_NAME_CHARS, PAN_PATTERN, PIN_BLOCK_HEX_DIGITS } from './paymentWire.js';

type Schema = Record<string, unknown>;

/** `format: byte` is OpenAPI's name for base64; server.ts registers it with ajv (strict base64). */
const base64 = (description: string): Schema => ({ type: 'string', format: 'byte', description });

/** A key check value: 6 hex digits, upper case. */
const kcv = (description: string): Schema => ({ type: 'string', pattern: '^[0-9A-F]{6}$', description });

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
    exportable: { type: 'boolean', description: 'Whether the key may leave the backend in a TR-31 key block (payment keys only).' },
    modeOfUse: { type: 'string', enum: [...modesOfUse], description: 'The X9.143 mode of use a TR-31 import gave the key; absent: whatever its purpose allows.' },
    keyUsage: { type: 'string', enum: [...keyUsages], description: 'Payment keys: the X9.143 key usage given at creation or by a TR-31 import; absent: the purpose\'s general kind.' },
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

// --- key lifecycle ---------------------------------------------------------------------------------------

export const createKeyBody = object(
  {
    name: { type: 'string', description: 'Key name: 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit.' },
    type: { type: 'string', description: `One of ${allKeyTypes.join(', ')}.` },
    purpose: { type: 'string', description: `One of ${keyPurposes.join(', ')}; default: the first the key type allows.` },
    exportable: { type: 'boolean', description: 'Payment keys only: the key may later be exported in a TR-31 key block. Default false; fixed at creation.' },
    keyUsage: { type: 'string', enum: [...keyUsages], description: 'Payment keys only: the X9.143 key usage, one the purpose allows (pin: P0; bdk: B0; kbpk: K0, K1; mac: M0, M1, M3 (retail MAC, double-length TDES), M6 (CMAC)). Absent: the purpose\'s general kind.' },
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
const macKcv = { keyCheckValue: kcv('Payment MAC keys (TDES, AES) only: the KCV of the key version used.') };
/** A MAC in hex, as ISO 8583 and the payments world write it: at most 64 bytes (HMAC-SHA-256 is 32). */
const MAC_HEX_PATTERN = '^(?:[0-9A-Fa-f]{2}){1,64}$';
export const macResult = object(
  {
    keyName: { type: 'string' },
    keyVersion: { type: 'integer' },
    algorithm: { type: 'string' },
    mac: base64('The MAC.'),
    macHex: { type: 'string', pattern: '^[0-9A-F]+$', description: 'The same MAC in hex, upper case.' },
    ...macKcv,
  },
  ['keyName', 'keyVersion', 'algorithm', 'mac', 'macHex'],
);

export const verifyMacBody = object(
  {
    algorithm: algorithm(allMacAlgorithms),
    keyVersion,
    data: base64('The data the MAC is over.'),
    mac: base64('The MAC to check (give mac or macHex). The payment MACs (ISO 9797-1, CMAC) may be truncated to their leftmost 4 bytes or more.'),
    macHex: { type: 'string', pattern: MAC_HEX_PATTERN, description: 'The MAC to check in hex, either case (give mac or macHex).' },
  },
  ['data'],
);
export const verifyMacResult = object(
  { keyName: { type: 'string' }, keyVersion: { type: 'integer' }, algorithm: { type: 'string' }, valid: { type: 'boolean' }, ...macKcv },
  ['keyName', 'keyVersion', 'algorithm', 'valid'],
);

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
    keyAgreement: { ...names(allKeyTypes), description: 'Key types that can do ECDH (purpose agree; JWE ECDH-ES).' },
    payment: object(
      {
        dukpt: { ...names(['tdes', 'aes']), description: 'DUKPT schemes PIN translation can take blocks from: tdes (X9.24-1), aes (X9.24-3).' },
        importKeys: { type: 'boolean', description: 'TR-31 import works.' },
        exportKeys: { type: 'boolean', description: 'TR-31 export of exportable keys works.' },
      },
      ['dukpt', 'importKeys', 'exportKeys'],
    ),
  },
  ['keyTypes', 'sign', 'encrypt', 'mac', 'signDigest', 'random'],
);

export const liveSchema = object({ status: { type: 'string', enum: ['ok'] } }, ['status']);
export const readySchema = object({ status: { type: 'string', enum: ['ready', 'unavailable'] }, detail: { type: 'string' } }, ['status']);

// --- JOSE: JWS, JWE, JWKS ---------------------------------------------------------------------------------------
// JOSE headers and JSON serializations travel as JSON objects; compact serializations as strings.

const KEY_NAME = 'A key of this service: 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit.';
const keyName = (description: string): Schema => ({ type: 'string', description: `${description} ${KEY_NAME}` });
const jsonObject = (description: string): Schema => ({ type: 'object', additionalProperties: true, description });
/** A compact serialization (string) or a JSON serialization (object). */
const stringOrObject = (description: string): Schema => ({
  oneOf: [{ type: 'string' }, { type: 'object', additionalProperties: true }],
  description,
});
const allowed = (values: readonly string[], description: string): Schema => ({
  type: 'array',
  minItems: 1,
  maxItems: values.length,
  items: { type: 'string' },
  description: `${description} Any of ${values.join(', ')}.`,
});
const kid: Schema = { type: 'string', description: 'The JWKS "kid" of the key version used: "<name>:<version>".' };

export const signJwsBody = object(
  {
    key: keyName('The signing key (purpose sign); the JWS is signed by its primary version.'),
    algorithm: { type: 'string', description: `One of ${jwsAlgorithms.join(', ')}. Absent: the key type's default.` },
    payload: base64('The payload bytes.'),
    protectedHeader: jsonObject('Members added to the protected header after "alg" and "kid" (a "kid" here replaces "<name>:<version>"); not "b64" or "crit".'),
    unprotectedHeader: jsonObject('The unprotected header; JSON serializations only.'),
    detached: { type: 'boolean', description: 'Leave the payload out of the JWS (RFC 7515 appendix F); default false.' },
    b64: { type: 'boolean', description: 'false: an unencoded payload (RFC 7797: adds "b64": false and "crit": ["b64"]); default true.' },
    serialization: { type: 'string', enum: ['compact', 'flattened', 'general'], description: 'Default compact.' },
  },
  ['key', 'payload'],
);
export const signJwsResult = object(
  {
    jws: stringOrObject('The JWS: a string in compact serialization, an object in the JSON ones.'),
    kid: { type: 'string', description: 'The "kid" in the protected header.' },
    keyName: { type: 'string' },
    keyVersion: { type: 'integer' },
    algorithm: { type: 'string' },
  },
  ['jws', 'keyName', 'keyVersion', 'algorithm'],
);

export const verifyJwsBody = object(
  {
    jws: stringOrObject('A JWS in compact (string), flattened or general (object) serialization.'),
    payload: base64('The payload of a detached JWS.'),
    algorithms: allowed(jwsAlgorithms, 'The "alg" values accepted; default all.'),
    key: keyName('The key to verify with; absent: each signature\'s "kid" ("<name>:<version>") names it.'),
  },
  ['jws'],
);
export const verifyJwsResult = object(
  {
    valid: { type: 'boolean', description: 'false: no signature verifies (a malformed JWS is a 400 instead).' },
    reason: { type: 'string', description: 'Why it is not valid.' },
    kid,
    keyName: { type: 'string' },
    keyVersion: { type: 'integer' },
    algorithm: { type: 'string' },
    protectedHeader: jsonObject('The protected header of the signature that verified.'),
    unprotectedHeader: jsonObject('Its unprotected header, if any.'),
    payload: base64('The payload.'),
  },
  ['valid'],
);

export const encryptJweBody = object(
  {
    recipient: object(
      {
        key: keyName('A key of this service (purpose encrypt: RSA for RSA-OAEP*, AES for dir; wrap: AES for A128KW/A256KW; agree: EC for ECDH-ES).'),
        keyVersion: { ...keyVersion, description: 'With key: the version to encrypt to; absent means the primary.' },
        jwk: jsonObject("Instead of key: an external recipient's public JWK (RSA or EC)."),
      },
    ),
    alg: { type: 'string', description: `One of ${Object.keys(jweKeyManagements).join(', ')}.` },
    enc: { type: 'string', description: `One of ${Object.keys(jweContentEncryptions).join(', ')}.` },
    plaintext: base64('The data to encrypt.'),
    protectedHeader: jsonObject('Members added to the protected header; not alg, enc, epk, zip or crit.'),
    aad: base64('Additional authenticated data (JSON serialization only).'),
    serialization: { type: 'string', enum: ['compact', 'json'], description: 'Default compact.' },
  },
  ['recipient', 'alg', 'enc', 'plaintext'],
);
export const encryptJweResult = object(
  {
    jwe: stringOrObject('The JWE: a string in compact serialization, an object (flattened) in JSON.'),
    kid: { type: 'string', description: 'With a key recipient: the "kid" of the key version encrypted to.' },
    keyName: { type: 'string' },
    keyVersion: { type: 'integer' },
  },
  ['jwe'],
);

export const decryptJweBody = object(
  {
    jwe: stringOrObject('A JWE in compact (string) or flattened JSON (object) serialization.'),
    key: keyName('The key to decrypt with; absent: the recipient\'s "kid" ("<name>:<version>") names it.'),
    algorithms: allowed(Object.keys(jweKeyManagements), 'The "alg" values accepted; default all.'),
  },
  ['jwe'],
);
export const decryptJweResult = object(
  {
    plaintext: base64('The decrypted data.'),
    protectedHeader: jsonObject('The JWE protected header.'),
    kid,
    keyName: { type: 'string' },
    keyVersion: { type: 'integer' },
    alg: { type: 'string' },
    enc: { type: 'string' },
  },
  ['plaintext', 'protectedHeader', 'kid', 'keyName', 'keyVersion', 'alg', 'enc'],
);

export const jwksSchema = object(
  { keys: { type: 'array', items: jsonObject('A public JWK with "kid" ("<name>:<version>"), "use" and, where one fits, "alg".') } },
  ['keys'],
);

// --- FSPIOP signatures (Mojaloop API Signature v1.1) and participant keys ------------------------------------------

const PARTICIPANT_ID = 'An FSPIOP participant id (FspId): 1-32 characters of A-Z a-z 0-9 . _ - starting with a letter or digit.';
const participantId = (description: string): Schema => ({ type: 'string', description: `${description} ${PARTICIPANT_ID}` });

export const fspiopSignBody = object(
  {
    key: keyName('Our signing key: RSA (signs RS256) or EC P-256 (ES256).'),
    method: { type: 'string', description: 'The HTTP method, e.g. PUT.' },
    uri: { type: 'string', description: 'The request URI or path; FSPIOP-URI is the part from the resource on.' },
    source: participantId('FSPIOP-Source.'),
    destination: participantId('FSPIOP-Destination, when the request has that header.'),
    date: { type: 'string', description: 'The Date header, when the request has one.' },
    body: {
      oneOf: [{ type: 'string' }, { type: 'object', additionalProperties: true }],
      description: 'The request body: JSON text or a JSON object. It is signed, and returned, in canonical form.',
    },
    encryptFields: object(
      {
        fields: { type: 'array', minItems: 1, maxItems: 64, items: { type: 'string' }, description: 'Dot paths of the fields to encrypt.' },
        recipient: participantId('The participant whose registered encryption key the fields are encrypted to.'),
      },
      ['fields', 'recipient'],
    ),
  },
  ['key', 'method', 'uri', 'source', 'body'],
);
export const fspiopSignResult = object(
  {
    headers: {
      type: 'object',
      additionalProperties: { type: 'string' },
      description: 'Headers to send: fspiop-signature, fspiop-uri, fspiop-http-method, and fspiop-encryption when fields were encrypted.',
    },
    body: { type: 'string', description: 'The exact body to send (canonical JSON): the bytes the signature covers.' },
  },
  ['headers', 'body'],
);

export const fspiopValidateBody = object(
  {
    headers: {
      type: 'object',
      maxProperties: 128,
      additionalProperties: { type: 'string' },
      description: 'The request headers as received, names in any letter case (FSPIOP-Signature, FSPIOP-Source, ...).',
    },
    body: { type: 'string', description: 'The body as received, exactly.' },
    decryptWith: keyName('Our RSA key (purpose encrypt) to decrypt the fields FSPIOP-Encryption lists; the result then carries the body.'),
  },
  ['headers', 'body'],
);
export const fspiopValidateResult = object(
  {
    valid: { type: 'boolean', description: 'A refused signature is an answer (200), not an error.' },
    participant: { type: 'string' },
    keyId: { type: 'string', description: "The participant key that verified (its RFC 7638 thumbprint)." },
    algorithm: { type: 'string', enum: [...fspiopAlgorithms] },
    body: { description: 'With decryptWith: the body, its encrypted fields decrypted.' },
    errorCode: { type: 'string', enum: ['3105'], description: 'The FSPIOP error code to answer with.' },
    reason: { type: 'string' },
  },
  ['valid'],
);

export const participantKeySchema = object(
  {
    participant: { type: 'string' },
    keyId: { type: 'string', description: 'RFC 7638 JWK thumbprint (SHA-256, base64url).' },
    use: { type: 'string', enum: ['sig', 'enc'], description: 'sig: validates the participant\'s signatures; enc: fields are encrypted to it.' },
    kty: { type: 'string', enum: ['RSA', 'EC'] },
    bits: { type: 'integer' },
    source: { type: 'string', enum: ['config', 'directory', 'api'], description: 'api: held in memory only (no participantsDir).' },
    publicKeyPem: { type: 'string' },
  },
  ['participant', 'keyId', 'use', 'kty', 'bits', 'source', 'publicKeyPem'],
);
export const participantListSchema = object(
  {
    participants: {
      type: 'array',
      items: object({ id: { type: 'string' }, keys: { type: 'array', items: participantKeySchema } }, ['id', 'keys']),
    },
  },
  ['participants'],
);
export const addParticipantKeyBody = object(
  {
    id: participantId('The participant.'),
    publicKeyPem: { type: 'string', maxLength: 65536, description: 'The public key, PEM (RSA of at least 2048 bits, or EC P-256 for sig).' },
    use: { type: 'string', enum: ['sig', 'enc'], description: 'Default sig.' },
  },
  ['id', 'publicKeyPem'],
);
export const participantKeyParams = object(
  {
    id: { type: 'string', description: PARTICIPANT_ID },
    keyId: { type: 'string', description: 'The key id (RFC 7638 thumbprint) as the participant list shows it.' },
  },
  ['id', 'keyId'],
);

// --- payments: PIN translation, PIN to JWE, TR-31 key exchange -------------------------------------------------
// PIN blocks, KSNs and KCVs are hex (either case in, upper case out); key blocks are text.

const hexOf = (digits: readonly number[]): string => `^(?:${digits.map((n) => `[0-9A-Fa-f]{${n}}`).join('|')})$`;
const PIN_BLOCK_PATTERN = hexOf(PIN_BLOCK_HEX_DIGITS);
const KSN_PATTERN = hexOf(KSN_HEX_DIGITS);

/** What each pattern means, for the 400 message (ajv's own would quote the regular expression). */
export const patternMeanings: Readonly<Record<string, string>> = {
  [PIN_BLOCK_PATTERN]: `a PIN block: ${PIN_BLOCK_HEX_DIGITS.join(' or ')} hex digits`,
  [KSN_PATTERN]: `a key serial number: ${KSN_HEX_DIGITS.join(' or ')} hex digits`,
  [PAN_PATTERN]: `${MIN_PAN_DIGITS} to ${MAX_PAN_DIGITS} decimal digits`,
  [KEY_BLOCK_PATTERN]: 'a TR-31 key block: printable ASCII text',
  [MAC_HEX_PATTERN]: 'a MAC: 2 to 128 hex digits',
};

const shortName = (description: string): Schema => ({ type: 'string', maxLength: MAX_NAME_CHARS, description });
const pinBlock = (description: string): Schema => ({ type: 'string', pattern: PIN_BLOCK_PATTERN, description });
const pan: Schema = {
  type: 'string',
  pattern: PAN_PATTERN,
  description: 'The card number, for the formats that bind the PIN to it (ISO_FORMAT_0, 3 and 4); omit it for ISO_FORMAT_1.',
};
const pinFormat = shortName(`The ISO 9564-1 PIN block format: one of ${pinBlockFormats.join(', ')} (ISO_FORMAT_4 under AES keys, the others under TDES keys). ISO_FORMAT_2 is refused.`);
const paymentKeyVersion: Schema = { ...keyVersion, description: 'The key version; absent means the primary (newest) version.' };

/** A key of this service and its version, as a payment answer names it (X9.24 style: with its KCV). */
const keyUsedSchema = object(
  { keyName: { type: 'string' }, keyVersion: { type: 'integer' }, keyCheckValue: kcv('The KCV of the key version used.') },
  ['keyName', 'keyVersion', 'keyCheckValue'],
);

const incomingPin = object(
  {
    keyName: keyName('The key the PIN block is enciphered under (purpose pin), or with dukpt the terminal\'s BDK (purpose bdk).'),
    keyVersion: paymentKeyVersion,
    format: pinFormat,
    pan,
    dukpt: object(
      {
        ksn: { type: 'string', pattern: KSN_PATTERN, description: 'The terminal\'s key serial number: 20 hex digits for TDES DUKPT (X9.24-1), 24 for AES DUKPT (X9.24-3); the BDK\'s type decides.' },
        workingKey: shortName(`AES DUKPT only: the PIN working key type, one of ${aesDukptWorkingKeys.join(', ')}; default AES_128 for ISO_FORMAT_4, TDES_2KEY otherwise.`),
      },
      ['ksn'],
    ),
  },
  ['keyName', 'format'],
);
const outgoingPin = object(
  {
    keyName: keyName('The key to encipher the PIN block under (purpose pin).'),
    keyVersion: paymentKeyVersion,
    format: pinFormat,
    pan: { ...pan, description: 'For ISO_FORMAT_1 -> PAN-bound formats only; otherwise it must equal incoming.pan (default).' },
  },
  ['keyName', 'format'],
);

export const translatePinBody = object(
  { incoming: incomingPin, outgoing: outgoingPin, pinBlock: pinBlock('The enciphered PIN block, hex: 16 digits (TDES) or 32 (AES, ISO_FORMAT_4).') },
  ['incoming', 'outgoing', 'pinBlock'],
);
export const translatePinResult = object(
  { pinBlock: pinBlock('The PIN block enciphered under the outgoing key, hex, upper case.'), incoming: keyUsedSchema, outgoing: keyUsedSchema },
  ['pinBlock', 'incoming', 'outgoing'],
);

export const pinToJweBody = object(
  {
    incoming: incomingPin,
    pinBlock: pinBlock('The enciphered PIN block holding the OTP, hex.'),
    recipient: {
      ...object({
        key: keyName('A key of this service to encrypt to (RSA encrypt, EC agree, AES wrap).'),
        keyVersion: { ...keyVersion, description: 'With key: the version to encrypt to; absent means the primary.' },
        participant: participantId('A registered FSPIOP participant: the JWE goes to its encryption key (its newest, or keyId).'),
        keyId: { type: 'string', maxLength: 128, description: "With participant: the participant key's id (RFC 7638 thumbprint)." },
      }),
      minProperties: 1,
      description: 'Exactly one of {key, keyVersion?} or {participant, keyId?}: never a key the caller brings, since whoever decrypts the JWE reads the OTP.',
    },
    alg: shortName(`The JWE key management algorithm, one of ${Object.keys(jweKeyManagements).join(', ')}; default by the recipient key: RSA-OAEP-256 (RSA), ECDH-ES (EC), A128KW/A256KW (AES).`),
    enc: shortName(`The JWE content encryption, one of ${Object.keys(jweContentEncryptions).join(', ')}; default A256GCM.`),
    references: {
      type: 'object',
      maxProperties: MAX_REFERENCES,
      additionalProperties: { type: 'string', maxLength: 256 },
      description: `Up to ${MAX_REFERENCES} string fields put in the JWE payload beside "otp" (names: a letter, then letters, digits, _ . -; at most 64 characters; not "otp").`,
    },
  },
  ['incoming', 'pinBlock', 'recipient'],
);
export const pinToJweResult = object(
  {
    jwe: { type: 'string', description: 'The JWE, compact serialization; its payload is {"otp": "<digits>", ...references}.' },
    incoming: keyUsedSchema,
    kid: { type: 'string', description: "The recipient key's kid, when it has one." },
  },
  ['jwe', 'incoming'],
);

const kbpkRef = object(
  { keyName: keyName('The key block protection key (purpose kbpk): TDES for version B blocks, AES for version D.'), keyVersion: paymentKeyVersion },
  ['keyName'],
);
const keyBlock = (description: string): Schema => ({ type: 'string', minLength: 1, maxLength: MAX_KEY_BLOCK_CHARS, pattern: KEY_BLOCK_PATTERN, description });

export const importTr31Body = object(
  {
    name: keyName('The name of the new key.'),
    keyBlock: keyBlock('The TR-31 / X9.143 key block, version B (TDES KBPK) or D (AES KBPK). Its header sets the key\'s purpose, type, mode of use and exportability.'),
    kbpk: kbpkRef,
  },
  ['name', 'keyBlock', 'kbpk'],
);
export const importTr31Result = object(
  { key: keySchema, keyCheckValue: kcv('The KCV of the imported key, to compare with the sender\'s.'), kbpk: keyUsedSchema },
  ['key', 'keyCheckValue', 'kbpk'],
);

export const exportTr31Body = object(
  {
    kbpk: kbpkRef,
    keyVersion: { ...keyVersion, description: 'The version to export; absent means the primary.' },
    exportability: { type: 'string', enum: ['E', 'N', 'S'], description: 'The block\'s exportability: E (the receiver may export it again), N (never; default), S (sensitive).' },
  },
  ['kbpk'],
);
export const exportTr31Result = object(
  {
    keyBlock: { type: 'string', description: 'The key block: version B under a TDES KBPK, D under an AES one.' },
    keyName: { type: 'string' },
    keyVersion: { type: 'integer' },
    keyCheckValue: kcv('The KCV of the exported key version.'),
    kbpk: keyUsedSchema,
  },
  ['keyBlock', 'keyName', 'keyVersion', 'keyCheckValue', 'kbpk'],
);

/** Objects openapi.ts publishes once under components/schemas and refers to by $ref. */
export const namedSchemas: Record<string, Schema> = { Key: keySchema, Error: errorEnvelopeSchema, ParticipantKey: participantKeySchema, KeyUsed: keyUsedSchema };

const stringList = (description: string): Schema => ({ type: 'array', items: { type: 'string' }, description });
export const whoamiResult = object(
  {
    id: { type: 'string', description: 'The certificate\'s CN (or first SAN), or the token\'s sub (or client_id); "anonymous" without credentials.' },
    authenticatedBy: { type: 'string', enum: ['certificate', 'token', 'none'] },
    certSubject: { type: 'string', description: '"CN=..." of the client certificate.' },
    certSans: stringList('"DNS:..." and "URI:..." SANs of the client certificate.'),
    jwtClaims: { type: 'object', additionalProperties: true, description: "The verified bearer token's claims." },
    policy: { type: 'boolean', description: 'Whether an access policy is in force; without one every caller may do everything.' },
    principals: stringList("The policy's principals the caller is."),
    rules: {
      type: 'array',
      description: 'Their rules: keys [] grants no key-bound operation; participants ["*"] when the rule does not limit them.',
      items: object({ principal: { type: 'string' }, allow: stringList('Operation names and globs.'), keys: stringList('Key name globs.'), participants: stringList('Participant id globs.') }, ['principal', 'allow', 'keys', 'participants']),
    },
  },
  ['id', 'authenticatedBy', 'policy', 'principals', 'rules'],
);
