/** FSPIOP signatures (Mojaloop API Signature v1.1) and participant keys. */
import { fspiopAlgorithms } from '../../fspiop/config.js';
import { object, keyName, PARTICIPANT_ID, participantId } from './common.js';

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
