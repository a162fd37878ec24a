/**
 * The hsmbridge.v1 messages as @grpc/proto-loader decodes and encodes them with the options in
 * src/transports/grpc/protos.ts (camelCase fields, bytes as Buffer, defaults filled in, oneof names set).
 * The operation declarations type their gRPC decoders and encoders with these, so that the compiler
 * holds each mapping to the message it reads or writes. A proto3
 * `optional` field or a oneof member is absent (undefined) when the client did not set it; every other
 * field always has a value, its zero value when not set. Kept by hand in step with proto/hsmbridge/v1/*.proto (test/api/declarations.test.ts checks the request fields);
 * ListKeysRequest, GetCapabilitiesRequest and WhoAmIRequest are empty and need no type.
 */

interface KeyVersionMessage {
  version: number;
  createdAt: string;
  publicKeyPem?: string;
  /** A JWK as a JSON string. */
  publicKeyJwk?: string;
  keyCheckValue?: string;
}

export interface KeyMessage {
  name: string;
  type: string;
  purpose: string;
  state: string;
  createdAt: string;
  primaryVersion: number;
  versions: KeyVersionMessage[];
  exportable: boolean;
  modeOfUse?: string;
  keyUsage?: string;
  minDecryptionVersion?: number;
}

export interface CreateKeyRequest { name: string; type: string; purpose: string; exportable: boolean; keyUsage: string }
export interface ListKeysResponse { keys: KeyMessage[] }
export interface KeyNameRequest { name: string }
export type DestroyKeyResponse = Record<string, never>;
export interface UpdateKeyRequest { name: string; minDecryptionVersion?: number }

export interface SignRequest { name: string; algorithm: string; message?: Buffer; digest?: Buffer }
export interface SignResponse { keyName: string; keyVersion: number; algorithm: string; signature: Buffer }
export interface VerifyRequest extends SignRequest { keyVersion?: number; signature: Buffer }
export interface VerifyResponse { keyName: string; keyVersion: number; algorithm: string; valid: boolean }

export interface EncryptRequest { name: string; algorithm: string; plaintext: Buffer; aad?: Buffer }
export interface EncryptResponse { keyName: string; keyVersion: number; algorithm: string; ciphertext: Buffer }
export interface DecryptRequest { name: string; ciphertext: Buffer; aad?: Buffer; keyVersion?: number; algorithm: string }
export interface DecryptResponse { keyName: string; keyVersion: number; algorithm: string; plaintext: Buffer }

export interface GenerateMacRequest { name: string; algorithm: string; data: Buffer }
export interface GenerateMacResponse { keyName: string; keyVersion: number; algorithm: string; mac: Buffer; keyCheckValue?: string }
export interface VerifyMacRequest extends GenerateMacRequest { keyVersion?: number; mac: Buffer }
export interface VerifyMacResponse { keyName: string; keyVersion: number; algorithm: string; valid: boolean; keyCheckValue?: string }

export interface GenerateRandomRequest { length: number }
export interface GenerateRandomResponse { random: Buffer }

export interface CapabilitiesMessage {
  keyTypes: string[];
  sign: string[];
  encrypt: string[];
  mac: string[];
  signDigest: string[];
  random: boolean;
  keyAgreement: string[];
  payment: { dukpt: string[]; importKeys: boolean; exportKeys: boolean };
  keyImport: { wrappings: string[]; unwrapsInside: string[]; ceremonies: boolean };
  fpe: boolean;
}

// --- personal-data protection (data_protection.proto) -----------------------------------------------------

interface ValueError { code: string; message: string }
export interface GenerateDataKeyRequest { name: string; bits: number; plaintext?: boolean }
export interface GenerateDataKeyResponse { keyName: string; keyVersion: number; algorithm: string; plaintext?: Buffer; wrapped: Buffer }
export interface RewrapRequest { name: string; ciphertext: Buffer; aad?: Buffer }
export interface RewrapResponse { keyName: string; keyVersion: number; algorithm: string; ciphertext: Buffer }
export interface TokenizeRequest { name: string; values: string[]; context: string; keyVersion?: number }
export interface TokenizeResponse { keyName: string; keyVersion: number; tokens: Array<{ token: string } | { error: ValueError }> }
export interface FpeRequest { name: string; values: string[]; radix: number; alphabet: string; tweak: string; keyVersion?: number }
export interface FpeResponse { keyName: string; keyVersion: number; values: Array<{ value: string } | { error: ValueError }> }


// --- hsmbridge.v1.JoseService (jose_service.proto) ------------------------------------------------------------

export interface SignJwsRequest {
  key: string;
  algorithm: string;
  payload: Buffer;
  protectedHeader: string;
  unprotectedHeader: string;
  detached: boolean;
  b64?: boolean;
  serialization: string;
}
export interface SignJwsResponse { jws: string; kid: string; keyName: string; keyVersion: number; algorithm: string }
export interface VerifyJwsRequest { jws: string; payload?: Buffer; algorithms: string[]; key: string }
export interface VerifyJwsResponse {
  valid: boolean;
  reason?: string;
  kid?: string;
  keyName?: string;
  keyVersion?: number;
  algorithm?: string;
  protectedHeader?: string;
  unprotectedHeader?: string;
  payload?: Buffer;
}
export interface EncryptJweRequest {
  recipient?: 'key' | 'jwk';
  key?: string;
  jwk?: string;
  keyVersion?: number;
  alg: string;
  enc: string;
  plaintext: Buffer;
  protectedHeader: string;
  aad?: Buffer;
  serialization: string;
}
export interface EncryptJweResponse { jwe: string; kid?: string; keyName?: string; keyVersion?: number }
export interface DecryptJweRequest { jwe: string; key: string; algorithms: string[] }
export interface DecryptJweResponse {
  plaintext: Buffer;
  protectedHeader: string;
  kid: string;
  keyName: string;
  keyVersion: number;
  alg: string;
  enc: string;
}
export interface GetJwksResponse { jwks: string }

// --- hsmbridge.v1.FspiopService (fspiop_service.proto) ----------------------------------------------------------

export interface FspiopSignRequest {
  key: string;
  method: string;
  uri: string;
  source: string;
  destination?: string | null;
  date?: string | null;
  body: Buffer;
  encryptFields?: { fields: string[]; recipient: string } | null;
}
export interface FspiopSignResponse { headers: Record<string, string>; body: Buffer }
export interface FspiopValidateRequest { headers: Record<string, string>; body: Buffer; decryptWith: string }
export interface FspiopValidateResponse {
  valid: boolean;
  participant?: string;
  keyId?: string;
  algorithm?: string;
  body?: string;
  errorCode?: string;
  reason?: string;
}
export interface ParticipantKeyMessage {
  participant: string;
  keyId: string;
  use: string;
  kty: string;
  bits: number;
  source: string;
  publicKeyPem: string;
}
export interface ListParticipantsResponse { participants: Array<{ id: string; keys: ParticipantKeyMessage[] }> }
export interface AddParticipantKeyRequest { id: string; publicKeyPem: string; use: string }
export interface ParticipantKeyRequest { id: string; keyId: string }
export type DeleteParticipantKeyResponse = Record<string, never>;

// --- hsmbridge.v1.PaymentService (payment_service.proto) ----------------------------------------------------------
// Message fields (incoming, outgoing, kbpk) are null when the client did not set them.

export interface PaymentKeyRef { keyName: string; keyVersion?: number }
interface KeyUsedMessage { keyName: string; keyVersion: number; keyCheckValue: string }
export interface IncomingPinMessage extends PaymentKeyRef {
  format: string;
  pan?: string;
  dukpt?: { ksn: string; workingKey: string } | null;
}
export interface OutgoingPinMessage extends PaymentKeyRef { format: string; pan?: string }
export interface TranslatePinRequest { incoming: IncomingPinMessage | null; outgoing: OutgoingPinMessage | null; pinBlock: string }
export interface TranslatePinResponse { pinBlock: string; incoming: KeyUsedMessage; outgoing: KeyUsedMessage }
export interface PinToJweRequest {
  incoming: IncomingPinMessage | null;
  pinBlock: string;
  recipient?: 'key' | 'participant';
  key?: PaymentKeyRef | null;
  participant?: { participant: string; keyId?: string } | null;
  alg: string;
  enc: string;
  references: Record<string, string>;
}
export interface PinToJweResponse { jwe: string; incoming: KeyUsedMessage; kid?: string }
export interface ImportTr31Request { name: string; keyBlock: string; kbpk: PaymentKeyRef | null }
export interface ImportTr31Response { key: KeyMessage; keyCheckValue: string; kbpk: KeyUsedMessage }
export interface ExportTr31Request { name: string; keyVersion?: number; kbpk: PaymentKeyRef | null; exportability: string }
export interface ExportTr31Response { keyName: string; keyVersion: number; keyBlock: string; keyCheckValue: string; kbpk: KeyUsedMessage }

export interface AccessRuleMessage {
  principal: string;
  allow: string[];
  keys: string[];
  participants: string[];
}

export interface WhoAmIResponse {
  id: string;
  authenticatedBy: string;
  certSubject?: string;
  certSans: string[];
  /** JSON text; '' without a token. */
  jwtClaims: string;
  policy: boolean;
  principals: string[];
  rules: AccessRuleMessage[];
}

export type GetWrappingKeyRequest = Record<string, never>;
export interface WrappingKeyMessage { keyName: string; keyVersion: number; publicKeyPem: string; publicKeyJwk: string; wrappings: string[] }
export interface ImportKeyRequest { name: string; type: string; purpose: string; exportable: boolean; keyUsage: string; wrappedKey: Buffer; wrapping: string; wrappingKeyVersion: number }
export interface ImportKeyVersionRequest { name: string; wrappedKey: Buffer; wrapping: string; wrappingKeyVersion: number }
export interface StartCeremonyRequest { name: string; type: string; purpose: string; keyUsage: string; exportable: boolean; components: number; expectedKcv: string }
export interface EnterComponentRequest { id: string; component: string; kcv: string }
export interface CeremonyIdRequest { id: string }
export interface CeremonyMessage {
  id: string; name: string; type: string; purpose: string; keyUsage?: string; exportable: boolean; components: number; received: number;
  expectedKcv?: string; startedBy: string; startedAt: string; expiresAt: string;
  entries: { number: number; enteredBy: string; enteredAt: string; kcv: string }[];
}
export interface EnterComponentResponse { received: number; of: number; key?: KeyMessage; keyCheckValue?: string }
