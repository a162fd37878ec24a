/** Random bytes, capabilities, the health probes and whoami. */
import { allEncryptAlgorithms, allMacAlgorithms, allSignAlgorithms } from '../../algorithms/registry.js';
import { allKeyTypes } from '../../keys/types.js';
import { wrappingSchemes } from '../../backend/port.js';
import { type Schema, base64, object, stringList } from './common.js';

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
    keyImport: object(
      {
        wrappings: { ...names(wrappingSchemes), description: 'The wrappings wrapped import (BYOK) unwraps; empty: none.' },
        unwrapsInside: { ...names(allKeyTypes), description: 'Key types whose wrapped material is unwrapped inside the backend; the others pass through process memory for the one call.' },
        ceremonies: { type: 'boolean', description: 'Key ceremonies work.' },
      },
      ['wrappings', 'unwrapsInside', 'ceremonies'],
    ),
    fpe: { type: 'boolean', description: 'FF1 format-preserving encryption works (AES-ECB with a key of purpose fpe in the backend).' },
  },
  ['keyTypes', 'sign', 'encrypt', 'mac', 'signDigest', 'random'],
);

export const liveSchema = object({ status: { type: 'string', enum: ['ok'] } }, ['status']);
export const readySchema = object({ status: { type: 'string', enum: ['ready', 'unavailable'] }, detail: { type: 'string' } }, ['status']);

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
