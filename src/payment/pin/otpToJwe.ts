/**
 * The POS/ATM OTP flow: an OTP typed on a PIN pad arrives as an enciphered ISO 9564 PIN block (under a
 * zone key or from a DUKPT terminal); the switch wants it as a JWE for one recipient. The block is
 * deciphered, the digits go straight into the JWE payload beside the request's reference fields, and the
 * clear buffers are zeroed. Nothing of the OTP is logged or returned except inside the JWE.
 *
 * Payload: {"otp":"<digits>", ...references}: UTF-8 JSON, the references as given (strings only).
 *
 * Whoever can decrypt the JWE reads the OTP, so the flow is closed by default: only the PIN keys and BDKs
 * named in the configuration (payment.otpIncomingKeys, see otpKeys.ts) may feed it, keys kept for OTP
 * entry that no translation may target, and the recipient is a key of this service or a registered
 * participant's encryption key, never a key the caller brings along.
 */
import type { JsonWebKey } from 'node:crypto';
import type { Logger } from 'pino';
import { HsmBridgeError, invalid, quote } from '../../errors.js';
import type { ParticipantRegistry } from '../../fspiop/participants.js';
import type { JoseService } from '../../jose/joseService.js';
import { keyTypes } from '../../keys/types.js';
import type { KeyService } from '../../operations/keyService.js';
import type { KeyUsed } from '../keyUsed.js';
import type { PaymentKeys } from '../paymentKeys.js';
import type { OtpKeys } from './otpKeys.js';
import type { IncomingPin, PinService } from './pinService.js';

export const MAX_REFERENCES = 16;
const MAX_REFERENCE_CHARS = 256;
const REFERENCE_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;

/** A key of this service, or a registered participant's encryption key (its newest, or the one keyId names). */
export type OtpRecipient = { readonly key: unknown; readonly keyVersion?: unknown } | { readonly participant: unknown; readonly keyId?: unknown };

export interface PinToJweRequest {
  readonly incoming: IncomingPin;
  readonly pinBlock: Buffer;
  readonly recipient: OtpRecipient;
  /** JWE alg and enc; defaults by the recipient key: RSA-OAEP-256 for RSA, ECDH-ES for EC, A256GCM. */
  readonly alg?: unknown;
  readonly enc?: unknown;
  readonly references?: unknown;
}

export interface PinToJweResult {
  /** Compact serialization. */
  readonly jwe: string;
  readonly incoming: KeyUsed;
  /** The recipient's kid, when it has one. */
  readonly kid?: string;
}

export interface OtpJweDependencies {
  /** For the recipient, a key of this service. */
  readonly keys: KeyService;
  readonly paymentKeys: PaymentKeys;
  readonly pins: PinService;
  readonly jose: JoseService;
  readonly participants?: ParticipantRegistry;
  /** The PIN keys and BDKs allowed as the incoming key (payment.otpIncomingKeys); none closes the flow. */
  readonly otpKeys: OtpKeys;
  readonly logger: Logger;
}

export class OtpJweService {
  constructor(private readonly deps: OtpJweDependencies) {}

  async toJwe(req: PinToJweRequest): Promise<PinToJweResult> {
    const { format, pan } = this.deps.pins.parseIncoming(req.incoming, req.pinBlock);
    const references = parseReferences(req.references);
    const recipient = await this.recipient(req.recipient);
    const incomingName = req.incoming.keyName;
    if (typeof incomingName !== 'string' || !this.deps.otpKeys.has(incomingName)) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${quote(incomingName)} is not configured for the OTP flow (payment.otpIncomingKeys)`);
    }
    const dukpt = req.incoming.dukpt !== undefined;
    this.deps.otpKeys.check(await this.deps.paymentKeys.resolve(incomingName, dukpt ? 'bdk' : 'pin', dukpt ? 'derive' : 'decrypt', req.incoming.keyVersion));
    const alg = req.alg ?? recipient.defaultAlg;
    const enc = req.enc ?? 'A256GCM';
    let jwe: string | undefined;
    const opened = await this.deps.pins.withClearPin(req.incoming, format, pan, req.pinBlock, async (pin) => {
      const payload = otpPayload(pin, references);
      try {
        const result = await this.deps.jose.encryptJwe({ recipient: recipient.jose, alg: String(alg), enc: String(enc), plaintext: payload, serialization: 'compact' });
        jwe = result.jwe as string;
      } finally {
        payload.fill(0);
      }
    });
    // An audit line per OTP released: which key it came under and who can read it (never the OTP).
    this.deps.logger.info({ keyName: opened.key.keyName, recipient: recipient.audit }, 'otp released as a JWE');
    return { jwe: jwe!, incoming: opened.key, ...(recipient.kid ? { kid: recipient.kid } : {}) };
  }

  private async recipient(value: OtpRecipient): Promise<{ jose: { key: string; keyVersion?: number } | { jwk: JsonWebKey }; defaultAlg: string; kid?: string; audit: string }> {
    if (typeof value !== 'object' || value === null) throw invalid('recipient is { key } or { participant }');
    const kinds = ['key', 'participant'].filter((k) => Object.hasOwn(value, k));
    if (kinds.length !== 1 || Object.keys(value).some((k) => !['key', 'keyVersion', 'participant', 'keyId'].includes(k))) {
      throw invalid('recipient is exactly one of { key, keyVersion? } (a key of this service) or { participant, keyId? } (a registered participant)');
    }
    if ('key' in value) {
      const meta = await this.deps.keys.getKey(value.key);
      const family = keyTypes[meta.type].family;
      const keyVersion = value.keyVersion;
      if (keyVersion !== undefined && (typeof keyVersion !== 'number' || !Number.isInteger(keyVersion))) throw invalid('recipient.keyVersion must be a whole number');
      return {
        jose: { key: meta.name, ...(keyVersion === undefined ? {} : { keyVersion }) },
        defaultAlg: family === 'rsa' ? 'RSA-OAEP-256' : family === 'ec' ? 'ECDH-ES' : family === 'aes' ? (meta.type === 'AES_128' ? 'A128KW' : 'A256KW') : 'RSA-OAEP-256',
        audit: `key ${meta.name}`,
      };
    }
    const registry = this.deps.participants;
    if (!registry) throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', 'no participant registry is configured');
    if (typeof value.participant !== 'string') throw invalid('recipient.participant must be a participant id');
    const keys = registry.keysFor(value.participant, 'enc');
    const chosen = value.keyId === undefined ? keys.at(-1) : keys.find((k) => k.keyId === value.keyId);
    if (!chosen) {
      throw new HsmBridgeError('KEY_NOT_FOUND', value.keyId === undefined ? `participant ${quote(value.participant)} has no encryption key` : `participant ${quote(value.participant)} has no encryption key ${quote(value.keyId)}`);
    }
    const jwk = { ...(chosen.keyObject.export({ format: 'jwk' }) as JsonWebKey), kid: chosen.keyId };
    // The registry holds RSA encryption keys only (FSPIOP field encryption is RSA-OAEP-256).
    return { jose: { jwk }, defaultAlg: 'RSA-OAEP-256', kid: chosen.keyId, audit: `participant ${value.participant} key ${chosen.keyId}` };
  }
}

function parseReferences(value: unknown): Record<string, string> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('references must be an object of strings');
  const entries = Object.entries(value);
  if (entries.length > MAX_REFERENCES) throw invalid(`at most ${MAX_REFERENCES} references`);
  for (const [name, v] of entries) {
    if (!REFERENCE_NAME.test(name) || name === 'otp') throw invalid('a reference name is 1 to 64 letters, digits, _ . - starting with a letter, and not "otp"');
    if (typeof v !== 'string' || v.length > MAX_REFERENCE_CHARS) throw invalid(`reference ${name} must be a string of at most ${MAX_REFERENCE_CHARS} characters`);
  }
  return Object.fromEntries(entries) as Record<string, string>;
}

/** The payload bytes, built around the digits so that the OTP never becomes a (unzeroable) string. */
function otpPayload(pin: Buffer, references: Record<string, string>): Buffer {
  const rest = JSON.stringify(references).slice(1); // '}' or '"a":"b"...}'
  return Buffer.concat([Buffer.from('{"otp":"', 'utf8'), pin, Buffer.from(rest === '}' ? '"}' : `",${rest}`, 'utf8')]);
}
