/** JWS, JWE and the JWKS document. JOSE headers and JSON serializations travel as JSON objects; compact serializations as strings. */
import { jweContentEncryptions, jweKeyManagements, jwsAlgorithms } from '../../jose/registry.js';
import { base64, keyVersion, object, keyName, jsonObject, stringOrObject, allowed, kid } from './common.js';

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
