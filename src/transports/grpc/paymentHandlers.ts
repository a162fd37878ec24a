/**
 * The hsmbridge.v1.PaymentService handlers: PIN translation, PIN to JWE and TR-31 key exchange. They
 * decode hex (paymentWire.ts, the same rules as REST's schemas) and hand everything else to the payment
 * services, which check it. proto3 cannot leave a plain string unset, so an empty string means "not
 * given"; a required message field the client left unset is INVALID_ARGUMENT here.
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { invalid } from '../../errors.js';
import type { KeyService } from '../../operations/keyService.js';
import type { KeyUsed, PaymentServices } from '../../payment/index.js';
import type { OtpRecipient } from '../../payment/pin/otpToJwe.js';
import type { IncomingPin, PinSide } from '../../payment/pin/pinService.js';
import { checkKeyBlockText, checkPan, parseKsn, parsePinBlock, toHex } from '../paymentWire.js';
import { unaryCall } from './calls.js';
import { keyMessage } from './handlers.js';
import type * as m from './messages.js';
import { PAYMENT_SERVICE_NAME } from './protos.js';

const given = (value: string): string | undefined => (value === '' ? undefined : value);

function required<T>(value: T | null | undefined, field: string): T {
  if (value === null || value === undefined) throw invalid(`${field} is required`);
  return value;
}

function pinSide(side: m.OutgoingPinMessage, field: string): PinSide {
  checkPan(`${field}.pan`, side.pan);
  return { keyName: side.keyName, keyVersion: side.keyVersion, format: side.format, ...(side.pan === undefined ? {} : { pan: side.pan }) };
}

function incomingPin(message: m.IncomingPinMessage | null): IncomingPin {
  const incoming = required(message, 'incoming');
  const side = pinSide(incoming, 'incoming');
  if (!incoming.dukpt) return side;
  const workingKey = given(incoming.dukpt.workingKey);
  return { ...side, dukpt: { ksn: parseKsn('incoming.dukpt.ksn', incoming.dukpt.ksn), ...(workingKey === undefined ? {} : { workingKey }) } };
}

function kbpkRef(ref: m.PaymentKeyRef | null): { keyName: string; keyVersion?: number } {
  const kbpk = required(ref, 'kbpk');
  return { keyName: kbpk.keyName, ...(kbpk.keyVersion === undefined ? {} : { keyVersion: kbpk.keyVersion }) };
}

function recipient(r: m.PinToJweRequest): OtpRecipient {
  switch (r.recipient) {
    case 'key': {
      const key = required(r.key, 'key');
      return { key: key.keyName, ...(key.keyVersion === undefined ? {} : { keyVersion: key.keyVersion }) };
    }
    case 'participant': {
      const p = required(r.participant, 'participant');
      return { participant: p.participant, ...(p.keyId === undefined ? {} : { keyId: p.keyId }) };
    }
    default:
      throw invalid('set the recipient: key (a key of this service) or participant');
  }
}

const keyUsed = (k: KeyUsed): m.KeyUsedMessage => ({ keyName: k.keyName, keyVersion: k.keyVersion, keyCheckValue: k.keyCheckValue });

export function paymentServiceHandlers(payment: PaymentServices, service: KeyService, logger: Logger): UntypedServiceImplementation {
  const rpc = <Req, Res>(method: string, handle: (request: Req) => Promise<Res>) =>
    unaryCall<Req, Res>(`${PAYMENT_SERVICE_NAME}/${method}`, logger, handle);

  return {
    TranslatePin: rpc('TranslatePin', async (r: m.TranslatePinRequest): Promise<m.TranslatePinResponse> => {
      const result = await payment.pins.translate({
        incoming: incomingPin(r.incoming),
        outgoing: pinSide(required(r.outgoing, 'outgoing'), 'outgoing'),
        pinBlock: parsePinBlock('pin_block', r.pinBlock),
      });
      return { pinBlock: toHex(result.pinBlock), incoming: keyUsed(result.incoming), outgoing: keyUsed(result.outgoing) };
    }),

    PinToJwe: rpc('PinToJwe', async (r: m.PinToJweRequest): Promise<m.PinToJweResponse> => {
      const result = await payment.otp.toJwe({
        incoming: incomingPin(r.incoming),
        pinBlock: parsePinBlock('pin_block', r.pinBlock),
        recipient: recipient(r),
        alg: given(r.alg),
        enc: given(r.enc),
        references: r.references,
      });
      return { jwe: result.jwe, incoming: keyUsed(result.incoming), ...(result.kid === undefined ? {} : { kid: result.kid }) };
    }),

    ImportTr31: rpc('ImportTr31', async (r: m.ImportTr31Request): Promise<m.ImportTr31Response> => {
      checkKeyBlockText(r.keyBlock);
      const result = await payment.keyExchange.importTr31({ name: r.name, keyBlock: r.keyBlock, kbpk: kbpkRef(r.kbpk) });
      return { key: await keyMessage(service, result.key), keyCheckValue: result.keyCheckValue, kbpk: keyUsed(result.kbpk) };
    }),

    ExportTr31: rpc('ExportTr31', async (r: m.ExportTr31Request): Promise<m.ExportTr31Response> => {
      const result = await payment.keyExchange.exportTr31({
        name: r.name,
        keyVersion: r.keyVersion,
        kbpk: kbpkRef(r.kbpk),
        exportability: given(r.exportability),
      });
      return { ...result, kbpk: keyUsed(result.kbpk) };
    }),
  };
}
