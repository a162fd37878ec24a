/**
 * FSPIOP routes (Mojaloop API Signature v1.1): sign a request with a key in the backend, validate a
 * participant's signature, and manage the participants' public keys. A refused signature is a 200 with
 * {valid: false, errorCode: '3105', reason}: the caller answers its peer with that FSPIOP error, while
 * a malformed request to us is a 4xx like everywhere else.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HsmBridgeError, type ErrorCode } from '../../../errors.js';
import { parseParticipantId } from '../../../fspiop/index.js';
import { parseKeyName } from '../../../keys/names.js';
import type { FspiopServices } from '../../services.js';
import {
  addParticipantKeyBody,
  fspiopSignBody,
  fspiopSignResult,
  fspiopValidateBody,
  fspiopValidateResult,
  participantKeyParams,
  participantKeySchema,
  participantListSchema,
} from '../schemas.js';

interface SignBody {
  key: string;
  method: string;
  uri: string;
  source: string;
  destination?: string;
  date?: string;
  body: string | object;
  encryptFields?: { fields: string[]; recipient: string };
}
interface ValidateBody { headers: Record<string, string>; body: string; decryptWith?: string }
interface AddKeyBody { id: string; publicKeyPem: string; use?: 'sig' | 'enc' }
type KeyRequest = FastifyRequest<{ Params: { id: string; keyId: string } }>;

const signErrors: ErrorCode[] = ['UNSUPPORTED_BY_BACKEND', 'INCOMPATIBLE_KEY', 'KEY_NOT_FOUND', 'KEY_DISABLED', 'BACKEND_UNAVAILABLE'];
const participantKeyNotFound = (id: string, keyId: string) => new HsmBridgeError('KEY_NOT_FOUND', `participant ${id} has no key ${keyId.slice(0, 64)}`);

export function fspiopRoutes(app: FastifyInstance, fspiop: FspiopServices): void {
  const { service, participants } = fspiop;

  app.post('/v1/fspiop/sign', {
    schema: { body: fspiopSignBody, response: { 200: fspiopSignResult } },
    config: {
      doc: {
        operationId: 'fspiopSign',
        summary: 'Sign an FSPIOP request: the FSPIOP-Signature header and the exact body to send (optionally with fields encrypted first)',
        errors: signErrors,
      },
    },
    handler: async (request: FastifyRequest<{ Body: SignBody }>) => {
      const r = await service.sign(request.body);
      return { headers: r.headers, body: r.body };
    },
  });

  app.post('/v1/fspiop/validate', {
    schema: { body: fspiopValidateBody, response: { 200: fspiopValidateResult } },
    config: {
      doc: {
        operationId: 'fspiopValidate',
        summary: "Validate a request's FSPIOP-Signature with the source participant's keys; a refusal is {valid: false, errorCode: '3105'}",
        // Only decryptWith touches our keys; everything about the signature is an answer, not an error.
        errors: ['INCOMPATIBLE_KEY', 'KEY_NOT_FOUND', 'KEY_DISABLED', 'BACKEND_UNAVAILABLE'],
      },
    },
    handler: async (request: FastifyRequest<{ Body: ValidateBody }>) => {
      // A malformed key name is a bad request whatever the signature turns out to be.
      if (request.body.decryptWith !== undefined) parseKeyName(request.body.decryptWith);
      return service.validate(request.body);
    },
  });

  app.get('/v1/fspiop/participants', {
    schema: { response: { 200: participantListSchema } },
    config: { doc: { operationId: 'listParticipants', summary: 'Every participant with its active public keys', errors: [] } },
    handler: async () => ({ participants: participants.list() }),
  });

  app.post('/v1/fspiop/participants', {
    schema: { body: addParticipantKeyBody, response: { 201: participantKeySchema } },
    config: {
      doc: {
        operationId: 'addParticipantKey',
        summary: "Register a participant's public key (several may be active at once, for rotation)",
        errors: ['KEY_ALREADY_EXISTS'],
      },
    },
    handler: async (request: FastifyRequest<{ Body: AddKeyBody }>, reply) => {
      const { id, publicKeyPem, use } = request.body;
      return reply.code(201).send(await participants.addKey(id, publicKeyPem, use));
    },
  });

  app.get('/v1/fspiop/participants/:id/keys/:keyId', {
    schema: { params: participantKeyParams, response: { 200: participantKeySchema } },
    config: { doc: { operationId: 'getParticipantKey', summary: "One of a participant's public keys", errors: ['KEY_NOT_FOUND'] } },
    handler: async (request: KeyRequest) => {
      const { keyId } = request.params;
      const id = parseParticipantId(request.params.id);
      const key = participants.getKey(id, keyId);
      if (!key) throw participantKeyNotFound(id, keyId);
      return key;
    },
  });

  app.delete('/v1/fspiop/participants/:id/keys/:keyId', {
    schema: { params: participantKeyParams },
    config: {
      doc: {
        operationId: 'deleteParticipantKey',
        summary: "Remove a participant's key (a configuration key must be removed from the configuration)",
        errors: ['KEY_NOT_FOUND'],
        emptyResponses: { 204: 'Removed' },
      },
    },
    handler: async (request: KeyRequest, reply) => {
      await participants.deleteKey(request.params.id, request.params.keyId);
      return reply.code(204).send();
    },
  });
}
