/**
 * The hsmbridge.v1.FspiopService handlers: bodies are bytes on the wire and reach FspiopService as they
 * came (validation verifies the received bytes themselves); every check is the service's or the
 * registry's. A refused signature is an answer with error_code "3105", as on REST.
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { HsmBridgeError } from '../../errors.js';
import { parseParticipantId, type ParticipantKeyView } from '../../fspiop/index.js';
import { parseKeyName } from '../../keys/names.js';
import type { FspiopServices } from '../services.js';
import { unaryCall } from './calls.js';
import type * as m from './messages.js';
import { FSPIOP_SERVICE_NAME } from './protos.js';

const given = (value: string): string | undefined => (value === '' ? undefined : value);

const keyMessage = (key: ParticipantKeyView): m.ParticipantKeyMessage => ({ ...key });

export function fspiopServiceHandlers({ service, participants }: FspiopServices, logger: Logger): UntypedServiceImplementation {
  const rpc = <Req, Res>(method: string, handle: (request: Req) => Promise<Res>) =>
    unaryCall<Req, Res>(`${FSPIOP_SERVICE_NAME}/${method}`, logger, handle);

  return {
    Sign: rpc('Sign', async (r: m.FspiopSignRequest): Promise<m.FspiopSignResponse> => {
      const result = await service.sign({
        key: r.key,
        method: r.method,
        uri: r.uri,
        source: r.source,
        // proto-loader gives null for an unset message field; the service wants absent.
        destination: r.destination ?? undefined,
        date: r.date ?? undefined,
        body: r.body.toString('utf8'),
        encryptFields: r.encryptFields ?? undefined,
      });
      return { headers: { ...result.headers }, body: Buffer.from(result.body, 'utf8') };
    }),

    Validate: rpc('Validate', async (r: m.FspiopValidateRequest): Promise<m.FspiopValidateResponse> => {
      const decryptWith = given(r.decryptWith);
      // A malformed key name is a bad request whatever the signature turns out to be.
      if (decryptWith !== undefined) parseKeyName(decryptWith);
      const result = await service.validate({ headers: r.headers, body: r.body, decryptWith });
      if (!result.valid) return result;
      const { body, ...rest } = result;
      return body === undefined ? rest : { ...rest, body: JSON.stringify(body) };
    }),

    ListParticipants: rpc('ListParticipants', async (): Promise<m.ListParticipantsResponse> => ({
      participants: participants.list().map((p) => ({ id: p.id, keys: p.keys.map(keyMessage) })),
    })),

    AddParticipantKey: rpc('AddParticipantKey', async (r: m.AddParticipantKeyRequest): Promise<m.ParticipantKeyMessage> =>
      keyMessage(await participants.addKey(r.id, r.publicKeyPem, given(r.use)))),

    GetParticipantKey: rpc('GetParticipantKey', async (r: m.ParticipantKeyRequest): Promise<m.ParticipantKeyMessage> => {
      const id = parseParticipantId(r.id);
      const key = participants.getKey(id, r.keyId);
      if (!key) throw new HsmBridgeError('KEY_NOT_FOUND', `participant ${id} has no key ${r.keyId.slice(0, 64)}`);
      return keyMessage(key);
    }),

    DeleteParticipantKey: rpc('DeleteParticipantKey', async (r: m.ParticipantKeyRequest): Promise<m.DeleteParticipantKeyResponse> => {
      await participants.deleteKey(r.id, r.keyId);
      return {};
    }),
  };
}
