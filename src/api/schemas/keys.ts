/** Key lifecycle and the operations on a key: sign, verify, encrypt, decrypt, MAC. */
import { allEncryptAlgorithms, allMacAlgorithms, allSignAlgorithms } from '../../algorithms/registry.js';
import { allKeyTypes, keyPurposes, keyUsages } from '../../keys/types.js';
import { keySchema, type Schema, base64, kcv, algorithm, keyVersion, object } from './common.js';

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
export const MAC_HEX_PATTERN = '^(?:[0-9A-Fa-f]{2}){1,64}$';
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
