/**
 * FSPIOP (Mojaloop API Signature v1.1): sign a request with a key in the backend, validate a
 * participant's signature, and manage the participants' public keys. A refused signature is an answer
 * with {valid: false, errorCode: '3105'}: the caller answers its peer with that FSPIOP error, while a
 * malformed request to us is a 4xx like everywhere else. Bodies are bytes on gRPC and text on REST, and
 * reach FspiopService as they came (validation verifies the received bytes themselves).
 */
import { HsmBridgeError, quote, type ErrorCode } from '../../errors.js';
import { parseParticipantId, type FspiopSignInput, type FspiopValidateInput, type ParticipantKeyView } from '../../fspiop/index.js';
import { parseKeyName } from '../../keys/names.js';
import { pickHeaders, type HeaderInput } from '../../fspiop/protectedHeader.js';
import { keyUse, operation, type Operation } from '../declaration.js';
import type * as msg from '../grpcMessages.js';
import * as schemas from '../schemas.js';
import { given } from '../wire.js';

const grpcFspiop = (method: string) => ({ service: 'FspiopService' as const, method });

/**
 * The FSPIOP-Source header as validation reads it (pickHeaders: any letter case, an empty one absent), so
 * that the policy and the audit record name the participant whose keys are used; the pipeline keeps it
 * only when it is a well-formed id. Headers validation refuses (a repeated one) name no participant.
 */
function fspiopSource(headers: unknown): unknown {
  if (headers === null || typeof headers !== 'object') return undefined;
  const picked = pickHeaders(headers as HeaderInput);
  return typeof picked === 'string' ? undefined : picked.source;
}
const participantKey = (key: ParticipantKeyView): msg.ParticipantKeyMessage => ({ ...key });

export const fspiopOperations: Operation[] = [
  operation({
    name: 'fspiop.sign',
    operationId: 'fspiopSign',
    tag: 'fspiop',
    needs: 'fspiop',
    summary: 'Sign an FSPIOP request: the FSPIOP-Signature header and the exact body to send (optionally with fields encrypted first)',
    description: 'The body is signed, and returned, in canonical form (keys sorted, no whitespace): the bytes the Mojaloop reference validator checks. With encryptFields, the fields are encrypted to the recipient participant first (Encryption v1.1).',
    errors: ['UNSUPPORTED_BY_BACKEND', 'INCOMPATIBLE_KEY', 'KEY_NOT_FOUND', 'KEY_DISABLED', 'BACKEND_UNAVAILABLE'],
    keys: (i) => [i.key],
    keysUsed: (r, i) => keyUse(i.key, r.keyVersion),
    participants: (i) => [i.source, i.destination, i.encryptFields?.recipient],
    run: (s, i: FspiopSignInput) => s.fspiop.service.sign(i),
    rest: { method: 'POST', path: '/v1/fspiop/sign', body: schemas.fspiopSignBody, response: schemas.fspiopSignResult, decode: (r) => r.body, encode: (r) => ({ headers: r.headers, body: r.body }) },
    grpc: {
      ...grpcFspiop('Sign'),
      decode: (m: msg.FspiopSignRequest) => ({
        key: m.key,
        method: m.method,
        uri: m.uri,
        source: m.source,
        // proto-loader gives null for an unset message field; the service wants absent.
        destination: m.destination ?? undefined,
        date: m.date ?? undefined,
        body: m.body.toString('utf8'),
        encryptFields: m.encryptFields ?? undefined,
      }),
      encode: (r): msg.FspiopSignResponse => ({ headers: { ...r.headers }, body: Buffer.from(r.body, 'utf8') }),
    },
  }),
  operation({
    name: 'fspiop.validate',
    operationId: 'fspiopValidate',
    tag: 'fspiop',
    needs: 'fspiop',
    summary: "Validate a request's FSPIOP-Signature with the source participant's keys; a refusal is {valid: false, errorCode: '3105'}",
    description: 'The received bytes are verified; the canonical form is also accepted unless fspiop.acceptCanonicalBody is false. With decryptWith, the fields FSPIOP-Encryption lists are decrypted and the body comes back.',
    // Only decryptWith touches our keys; everything about the signature is an answer, not an error.
    errors: ['INCOMPATIBLE_KEY', 'KEY_NOT_FOUND', 'KEY_DISABLED', 'BACKEND_UNAVAILABLE'],
    keys: (i) => [i.decryptWith],
    // The participant whose signature it checks: policy participant globs and the audit record name it.
    participants: (i) => [fspiopSource(i.headers)],
    run: (s, i: FspiopValidateInput) => {
      // A malformed key name is a bad request whatever the signature turns out to be.
      if (i.decryptWith !== undefined) parseKeyName(i.decryptWith);
      return s.fspiop.service.validate(i);
    },
    rest: { method: 'POST', path: '/v1/fspiop/validate', body: schemas.fspiopValidateBody, response: schemas.fspiopValidateResult, decode: (r) => r.body, encode: (r) => r },
    grpc: {
      ...grpcFspiop('Validate'),
      decode: (m: msg.FspiopValidateRequest) => ({ headers: m.headers, body: m.body, decryptWith: given(m.decryptWith) }),
      encode: (r): msg.FspiopValidateResponse => {
        if (!r.valid) return r;
        const { body, ...rest } = r;
        return body === undefined ? rest : { ...rest, body: JSON.stringify(body) };
      },
    },
  }),
  operation({
    name: 'fspiop.participants.list',
    tag: 'fspiop',
    needs: 'fspiop',
    summary: 'Every participant with its active public keys',
    description: 'Keys from the configuration, the participants directory and the API.',
    errors: [],
    run: async (s) => s.fspiop.participants.list(),
    rest: { method: 'GET', path: '/v1/fspiop/participants', response: schemas.participantListSchema, decode: () => ({}), encode: (participants) => ({ participants }) },
    grpc: {
      ...grpcFspiop('ListParticipants'),
      decode: () => ({}),
      encode: (participants): msg.ListParticipantsResponse => ({ participants: participants.map((p) => ({ id: p.id, keys: p.keys.map(participantKey) })) }),
    },
  }),
  operation({
    name: 'fspiop.participants.write',
    tag: 'fspiop',
    needs: 'fspiop',
    summary: "Register a participant's public key (several may be active at once, for rotation)",
    description: 'RSA of at least 2048 bits, or EC P-256 for signatures; use "enc" for the key fields are encrypted to. Kept in the participants directory when one is configured, in memory otherwise.',
    errors: ['KEY_ALREADY_EXISTS'],
    participants: (i) => [i.id],
    changesState: true,
    run: (s, i: { id: string; publicKeyPem: string; use?: string }) => s.fspiop.participants.addKey(i.id, i.publicKeyPem, i.use),
    rest: {
      method: 'POST',
      path: '/v1/fspiop/participants',
      body: schemas.addParticipantKeyBody,
      response: schemas.participantKeySchema,
      status: 201,
      decode: (r) => r.body,
      encode: (key) => key,
    },
    grpc: { ...grpcFspiop('AddParticipantKey'), decode: (m: msg.AddParticipantKeyRequest) => ({ id: m.id, publicKeyPem: m.publicKeyPem, use: given(m.use) }), encode: participantKey },
  }),
  operation({
    name: 'fspiop.participants.get',
    tag: 'fspiop',
    needs: 'fspiop',
    summary: "One of a participant's public keys",
    description: 'By the key id (RFC 7638 thumbprint) the participant list shows.',
    errors: ['KEY_NOT_FOUND'],
    participants: (i) => [i.id],
    run: async (s, i: { id: string; keyId: string }) => {
      const id = parseParticipantId(i.id);
      const key = s.fspiop.participants.getKey(id, i.keyId);
      if (!key) throw new HsmBridgeError('KEY_NOT_FOUND', `participant ${id} has no key ${quote(i.keyId)}`);
      return key;
    },
    rest: { method: 'GET', path: '/v1/fspiop/participants/:id/keys/:keyId', params: schemas.participantKeyParams, response: schemas.participantKeySchema, decode: (r) => ({ id: r.params.id, keyId: r.params.keyId }), encode: (key) => key },
    grpc: { ...grpcFspiop('GetParticipantKey'), decode: (m: msg.ParticipantKeyRequest) => ({ id: m.id, keyId: m.keyId }), encode: participantKey },
  }),
  operation({
    name: 'fspiop.participants.delete',
    tag: 'fspiop',
    needs: 'fspiop',
    summary: "Remove a participant's key (a configuration key must be removed from the configuration)",
    description: 'Removes every registration of the key (both uses); a directory key loses its file.',
    errors: ['KEY_NOT_FOUND'] satisfies ErrorCode[],
    participants: (i) => [i.id],
    changesState: true,
    run: (s, i: { id: string; keyId: string }) => s.fspiop.participants.deleteKey(i.id, i.keyId),
    rest: { method: 'DELETE', path: '/v1/fspiop/participants/:id/keys/:keyId', params: schemas.participantKeyParams, status: 204, decode: (r) => ({ id: r.params.id, keyId: r.params.keyId }), encode: () => undefined },
    grpc: { ...grpcFspiop('DeleteParticipantKey'), decode: (m: msg.ParticipantKeyRequest) => ({ id: m.id, keyId: m.keyId }), encode: (): msg.DeleteParticipantKeyResponse => ({}) },
  }),
];
