/**
 * PIN translation, an OTP typed as a PIN block turned into a JWE, and TR-31 key exchange. PIN blocks
 * and KSNs are hex on both transports (paymentWire.ts: REST's schemas check the same shapes first);
 * every payment rule (formats, PAN binding, key kinds, modes of use, key block headers) is the payment
 * services'. No message here quotes a PIN block, PAN or key block.
 */
import { invalid, type ErrorCode } from '../../errors.js';
import type { OtpRecipient } from '../../payment/pin/otpToJwe.js';
import type { IncomingPin, PinSide } from '../../payment/pin/pinService.js';
import { keyUse, operation, type Operation } from '../declaration.js';
import type * as msg from '../grpcMessages.js';
import { keyMessage, keyView } from '../keyView.js';
import { checkKeyBlockText, checkPan, parseKsn, parsePinBlock, toHex } from '../paymentWire.js';
import * as schemas from '../schemas.js';
import { definedOnly, given, keyUsedView, required } from '../wire.js';

/** Errors of every operation that uses keys of this service. */
const keyErrors: ErrorCode[] = ['UNSUPPORTED_BY_BACKEND', 'INCOMPATIBLE_KEY', 'KEY_NOT_FOUND', 'KEY_VERSION_NOT_FOUND', 'KEY_DISABLED', 'BACKEND_UNAVAILABLE'];

const grpcPayment = (method: string) => ({ service: 'PaymentService' as const, method });

interface KeyRef { keyName: string; keyVersion?: number }
interface DukptWire { ksn: string; workingKey?: string }

/** The incoming side as PinService takes it: the KSN decoded, the rest as given (the service checks it). */
function incomingPin(side: PinSide, dukpt: DukptWire | undefined): IncomingPin {
  if (dukpt === undefined) return side;
  return { ...side, dukpt: { ksn: parseKsn('incoming.dukpt.ksn', dukpt.ksn), ...(dukpt.workingKey === undefined ? {} : { workingKey: dukpt.workingKey }) } };
}

/** A PIN side from a gRPC message: REST's schema checks the PAN, gRPC has only this check. */
function grpcPinSide(message: msg.OutgoingPinMessage, field: string): PinSide {
  checkPan(`${field}.pan`, message.pan);
  return definedOnly({ keyName: message.keyName, keyVersion: message.keyVersion, format: message.format, pan: message.pan });
}

function grpcIncoming(message: msg.IncomingPinMessage | null): IncomingPin {
  const incoming = required(message, 'incoming');
  const dukpt = incoming.dukpt ? definedOnly({ ksn: incoming.dukpt.ksn, workingKey: given(incoming.dukpt.workingKey) }) : undefined;
  return incomingPin(grpcPinSide(incoming, 'incoming'), dukpt);
}

function restIncoming({ dukpt, ...side }: PinSide & { dukpt?: DukptWire }): IncomingPin {
  return incomingPin(side, dukpt);
}

const grpcKeyRef = (ref: msg.PaymentKeyRef | null, field: string): KeyRef => {
  const r = required(ref, field);
  return definedOnly({ keyName: r.keyName, keyVersion: r.keyVersion });
};

function grpcRecipient(m: msg.PinToJweRequest): OtpRecipient {
  switch (m.recipient) {
    case 'key': {
      const key = grpcKeyRef(m.key ?? null, 'key');
      return definedOnly({ key: key.keyName, keyVersion: key.keyVersion });
    }
    case 'participant': {
      const p = required(m.participant, 'participant');
      return definedOnly({ participant: p.participant, keyId: p.keyId });
    }
    default:
      throw invalid('set the recipient: key (a key of this service) or participant');
  }
}

/** The keys a PIN request names: the incoming one, and the outgoing key or the recipient key. */
const pinKeys = (i: { incoming: IncomingPin; outgoing?: PinSide; recipient?: OtpRecipient }) => [
  i.incoming.keyName,
  i.outgoing?.keyName,
  i.recipient && 'key' in i.recipient ? i.recipient.key : undefined,
];

/** A key and version as the payment answers name them. */
const used = (k: { keyName: string; keyVersion: number }) => keyUse(k.keyName, k.keyVersion);
/** The recipient key of the OTP flow, when it is one of ours: its version only when the caller named one. */
const recipientKeyUsed = (r: OtpRecipient | undefined) => (r !== undefined && 'key' in r && typeof r.key === 'string' ? keyUse(r.key, typeof r.keyVersion === 'number' ? r.keyVersion : undefined) : []);

export const paymentOperations: Operation[] = [
  operation({
    name: 'pin.translate',
    tag: 'payment',
    needs: 'payment',
    summary: 'Translate a PIN block from one key and format to another (zone keys, or from a DUKPT terminal)',
    description: 'ISO 9564-1 formats 0, 1, 3 and 4 under TDES or AES PIN keys, or from a TDES (X9.24-1) or AES (X9.24-3) DUKPT terminal. A PAN-bound PIN never becomes format 1 and never changes PAN. Answers the KCV of both keys.',
    errors: [...keyErrors, 'RATE_LIMITED'],
    keys: pinKeys,
    keysUsed: (r) => [...used(r.incoming), ...used(r.outgoing)],
    run: async (s, i: { incoming: IncomingPin; outgoing: PinSide; pinBlock: Buffer }) => {
      const r = await s.payment.pins.translate(i);
      return { pinBlock: toHex(r.pinBlock), incoming: keyUsedView(r.incoming), outgoing: keyUsedView(r.outgoing) };
    },
    rest: {
      method: 'POST',
      path: '/v1/pin/translate',
      body: schemas.translatePinBody,
      response: schemas.translatePinResult,
      decode: ({ body }) => ({ incoming: restIncoming(body.incoming), outgoing: body.outgoing, pinBlock: parsePinBlock('pinBlock', body.pinBlock) }),
      encode: (r) => r,
    },
    grpc: {
      ...grpcPayment('TranslatePin'),
      decode: (m: msg.TranslatePinRequest) => ({
        incoming: grpcIncoming(m.incoming),
        outgoing: grpcPinSide(required(m.outgoing, 'outgoing'), 'outgoing'),
        pinBlock: parsePinBlock('pin_block', m.pinBlock),
      }),
      encode: (r): msg.TranslatePinResponse => r,
    },
  }),
  operation({
    name: 'pin.toJwe',
    tag: 'payment',
    needs: 'payment',
    summary: 'Decipher a PIN block holding an OTP and encrypt the digits in a JWE for one recipient',
    description: 'Only for incoming keys that payment.otpIncomingKeys names. The recipient is a key of this service or a registered participant, never a key the caller brings: whoever decrypts the JWE reads the OTP.',
    errors: [...keyErrors, 'UNSUPPORTED_ALGORITHM', 'RATE_LIMITED'],
    keys: pinKeys,
    participants: (i) => [i.recipient && 'participant' in i.recipient ? i.recipient.participant : undefined],
    keysUsed: (r, i) => [...used(r.incoming), ...recipientKeyUsed(i.recipient)],
    run: async (s, i: { incoming: IncomingPin; pinBlock: Buffer; recipient: OtpRecipient; alg?: string; enc?: string; references?: Record<string, string> }) => {
      const r = await s.payment.otp.toJwe(i);
      return { jwe: r.jwe, incoming: keyUsedView(r.incoming), ...(r.kid === undefined ? {} : { kid: r.kid }) };
    },
    rest: {
      method: 'POST',
      path: '/v1/pin/to-jwe',
      body: schemas.pinToJweBody,
      response: schemas.pinToJweResult,
      decode: ({ body }) => ({
        incoming: restIncoming(body.incoming),
        pinBlock: parsePinBlock('pinBlock', body.pinBlock),
        recipient: definedOnly(body.recipient) as OtpRecipient,
        alg: body.alg,
        enc: body.enc,
        references: body.references,
      }),
      encode: (r) => r,
    },
    grpc: {
      ...grpcPayment('PinToJwe'),
      decode: (m: msg.PinToJweRequest) => ({
        incoming: grpcIncoming(m.incoming),
        pinBlock: parsePinBlock('pin_block', m.pinBlock),
        recipient: grpcRecipient(m),
        alg: given(m.alg),
        enc: given(m.enc),
        references: m.references,
      }),
      encode: (r): msg.PinToJweResponse => r,
    },
  }),
  operation({
    name: 'keys.importTr31',
    tag: 'payment',
    needs: 'payment',
    summary: 'Import a key from a TR-31 (X9.143) key block under a KBPK held in the backend',
    description: "Versions B (TDES KBPK) and D (AES KBPK). The block's header sets the key's purpose, type, key usage, mode of use and exportability; KC/KP check-value blocks are verified.",
    errors: [...keyErrors, 'KEY_ALREADY_EXISTS'],
    keys: (i) => [i.name, i.kbpk.keyName],
    keysUsed: (r) => [...keyUse(r.key.name, r.key.primaryVersion), ...used(r.kbpk)],
    changesState: true,
    run: async (s, i: { name: string; keyBlock: string; kbpk: KeyRef }) => {
      const r = await s.payment.keyExchange.importTr31(i);
      return { key: await keyView(s.keys, r.key), keyCheckValue: r.keyCheckValue, kbpk: keyUsedView(r.kbpk) };
    },
    rest: { method: 'POST', path: '/v1/keys/import/tr31', body: schemas.importTr31Body, response: schemas.importTr31Result, status: 201, decode: (r) => r.body, encode: (r) => r },
    grpc: {
      ...grpcPayment('ImportTr31'),
      decode: (m: msg.ImportTr31Request) => {
        checkKeyBlockText(m.keyBlock);
        return { name: m.name, keyBlock: m.keyBlock, kbpk: grpcKeyRef(m.kbpk, 'kbpk') };
      },
      encode: (r): msg.ImportTr31Response => ({ ...r, key: keyMessage(r.key) }),
    },
  }),
  operation({
    name: 'keys.exportTr31',
    tag: 'payment',
    needs: 'payment',
    summary: 'Export an exportable payment key in a TR-31 (X9.143) key block under a KBPK',
    description: 'Only keys created or imported exportable, under a KBPK at least as strong as the key: version B under a TDES KBPK, D under an AES one.',
    errors: keyErrors,
    keys: (i) => [i.name, i.kbpk.keyName],
    keysUsed: (r) => [...used(r), ...used(r.kbpk)],
    run: async (s, i: { name: string; keyVersion?: number; kbpk: KeyRef; exportability?: string }) => {
      const r = await s.payment.keyExchange.exportTr31(i);
      return { keyBlock: r.keyBlock, keyName: r.keyName, keyVersion: r.keyVersion, keyCheckValue: r.keyCheckValue, kbpk: keyUsedView(r.kbpk) };
    },
    rest: {
      method: 'POST',
      path: '/v1/keys/:name/export/tr31',
      params: schemas.keyNameParams,
      body: schemas.exportTr31Body,
      response: schemas.exportTr31Result,
      decode: ({ params, body }) => ({ name: params.name, keyVersion: body.keyVersion, kbpk: body.kbpk, exportability: body.exportability }),
      encode: (r) => r,
    },
    grpc: {
      ...grpcPayment('ExportTr31'),
      decode: (m: msg.ExportTr31Request) => ({ name: m.name, keyVersion: m.keyVersion, kbpk: grpcKeyRef(m.kbpk, 'kbpk'), exportability: given(m.exportability) }),
      encode: (r): msg.ExportTr31Response => r,
    },
  }),
];
