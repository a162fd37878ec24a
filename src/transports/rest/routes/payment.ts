/**
 * Payment routes: PIN translation, an OTP typed as a PIN block turned into a JWE, and TR-31 key exchange.
 * Handlers decode hex to bytes and shape the answers; every payment rule (formats, PAN binding, key
 * kinds, modes of use, key block headers) is the payment services'. None of these bodies is ever logged:
 * the request log (server.ts) holds fixed fields only, and errors carry the services' messages, which
 * never quote a PIN block, PAN or key block.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ErrorCode } from '../../../errors.js';
import type { KeyService } from '../../../operations/keyService.js';
import type { KeyUsed, PaymentServices } from '../../../payment/index.js';
import type { OtpRecipient } from '../../../payment/pin/otpToJwe.js';
import type { IncomingPin } from '../../../payment/pin/pinService.js';
import { keyView } from '../../keyView.js';
import { parseKsn, parsePinBlock, toHex } from '../../paymentWire.js';
import {
  exportTr31Body,
  exportTr31Result,
  importTr31Body,
  importTr31Result,
  keyNameParams,
  pinToJweBody,
  pinToJweResult,
  translatePinBody,
  translatePinResult,
} from '../schemas.js';

interface KeyRefBody { keyName: string; keyVersion?: number }
interface PinSideBody extends KeyRefBody { format: string; pan?: string }
interface IncomingBody extends PinSideBody { dukpt?: { ksn: string; workingKey?: string } }
interface TranslateBody { incoming: IncomingBody; outgoing: PinSideBody; pinBlock: string }
interface PinToJweBody {
  incoming: IncomingBody;
  pinBlock: string;
  recipient: { key?: string; keyVersion?: number; participant?: string; keyId?: string };
  alg?: string;
  enc?: string;
  references?: Record<string, string>;
}
interface ImportBody { name: string; keyBlock: string; kbpk: KeyRefBody }
interface ExportBody { kbpk: KeyRefBody; keyVersion?: number; exportability?: string }

type With<B> = FastifyRequest<{ Body: B }>;

/** Errors of every route that uses keys of this service. */
const keyErrors: ErrorCode[] = ['UNSUPPORTED_BY_BACKEND', 'INCOMPATIBLE_KEY', 'KEY_NOT_FOUND', 'KEY_VERSION_NOT_FOUND', 'KEY_DISABLED', 'BACKEND_UNAVAILABLE'];

/** The incoming side as PinService takes it: the KSN decoded, the rest as given (the service checks it). */
export function incomingPin(body: IncomingBody): IncomingPin {
  const { dukpt, ...side } = body;
  if (dukpt === undefined) return side;
  return { ...side, dukpt: { ksn: parseKsn('incoming.dukpt.ksn', dukpt.ksn), ...(dukpt.workingKey === undefined ? {} : { workingKey: dukpt.workingKey }) } };
}

/** The recipient with only the fields the caller set, so that the service can tell which kind it is. */
function recipient(body: PinToJweBody['recipient']): OtpRecipient {
  return Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined)) as OtpRecipient;
}

const keyUsed = (k: KeyUsed) => ({ keyName: k.keyName, keyVersion: k.keyVersion, keyCheckValue: k.keyCheckValue });

export function paymentRoutes(app: FastifyInstance, payment: PaymentServices, service: KeyService): void {
  app.post('/v1/pin/translate', {
    schema: { body: translatePinBody, response: { 200: translatePinResult } },
    config: {
      doc: {
        operationId: 'translatePin',
        summary: 'Translate a PIN block from one key and format to another (zone keys, or from a DUKPT terminal)',
        errors: keyErrors,
      },
    },
    handler: async (request: With<TranslateBody>) => {
      const { incoming, outgoing, pinBlock } = request.body;
      const r = await payment.pins.translate({ incoming: incomingPin(incoming), outgoing, pinBlock: parsePinBlock('pinBlock', pinBlock) });
      return { pinBlock: toHex(r.pinBlock), incoming: keyUsed(r.incoming), outgoing: keyUsed(r.outgoing) };
    },
  });

  app.post('/v1/pin/to-jwe', {
    schema: { body: pinToJweBody, response: { 200: pinToJweResult } },
    config: {
      doc: {
        operationId: 'pinToJwe',
        summary: 'Decipher a PIN block holding an OTP and encrypt the digits in a JWE for one recipient',
        errors: [...keyErrors, 'UNSUPPORTED_ALGORITHM'],
      },
    },
    handler: async (request: With<PinToJweBody>) => {
      const { incoming, pinBlock, alg, enc, references } = request.body;
      const r = await payment.otp.toJwe({
        incoming: incomingPin(incoming),
        pinBlock: parsePinBlock('pinBlock', pinBlock),
        recipient: recipient(request.body.recipient),
        alg,
        enc,
        references,
      });
      return { jwe: r.jwe, incoming: keyUsed(r.incoming), ...(r.kid === undefined ? {} : { kid: r.kid }) };
    },
  });

  app.post('/v1/keys/import/tr31', {
    schema: { body: importTr31Body, response: { 201: importTr31Result } },
    config: {
      doc: {
        operationId: 'importTr31',
        summary: 'Import a key from a TR-31 (X9.143) key block under a KBPK held in the backend',
        errors: [...keyErrors, 'KEY_ALREADY_EXISTS'],
      },
    },
    handler: async (request: With<ImportBody>, reply) => {
      const { name, keyBlock, kbpk } = request.body;
      const r = await payment.keyExchange.importTr31({ name, keyBlock, kbpk });
      return reply.code(201).send({ key: await keyView(service, r.key), keyCheckValue: r.keyCheckValue, kbpk: keyUsed(r.kbpk) });
    },
  });

  app.post('/v1/keys/:name/export/tr31', {
    schema: { params: keyNameParams, body: exportTr31Body, response: { 200: exportTr31Result } },
    config: {
      doc: {
        operationId: 'exportTr31',
        summary: 'Export an exportable payment key in a TR-31 (X9.143) key block under a KBPK',
        errors: keyErrors,
      },
    },
    handler: async (request: FastifyRequest<{ Params: { name: string }; Body: ExportBody }>) => {
      const { kbpk, keyVersion, exportability } = request.body;
      const r = await payment.keyExchange.exportTr31({ name: request.params.name, keyVersion, kbpk, exportability });
      return { keyBlock: r.keyBlock, keyName: r.keyName, keyVersion: r.keyVersion, keyCheckValue: r.keyCheckValue, kbpk: keyUsed(r.kbpk) };
    },
  });
}
