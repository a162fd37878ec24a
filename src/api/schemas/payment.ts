/** Payments: PIN translation, PIN to JWE, TR-31 key exchange. PIN blocks, KSNs and KCVs are hex (either case in, upper case out); key blocks are text. */
import { jweContentEncryptions, jweKeyManagements } from '../../jose/registry.js';
import { MAX_REFERENCES } from '../../payment/pin/otpToJwe.js';
import { aesDukptWorkingKeys, pinBlockFormats } from '../../payment/pin/pinService.js';
import { MAX_PAN_DIGITS, MIN_PAN_DIGITS } from '../../payment/pin/pan.js';
import { KEY_BLOCK_PATTERN, KSN_HEX_DIGITS, MAX_KEY_BLOCK_CHARS, MAX_NAME_CHARS, PAN_PATTERN, PIN_BLOCK_HEX_DIGITS } from '../paymentWire.js';
import { keySchema, type Schema, kcv, keyVersion, object, keyName, participantId } from './common.js';
import { MAC_HEX_PATTERN } from './keys.js';

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
export const keyUsedSchema = object(
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
