/**
 * The hsmbridge.v1 messages as @grpc/proto-loader decodes and encodes them with the options in
 * protos.ts (camelCase fields, bytes as Buffer, defaults filled in, oneof names set). A proto3
 * `optional` field or a oneof member is absent (undefined) when the client did not set it; every other
 * field always has a value, its zero value when not set. Kept by hand in step with key_service.proto;
 * ListKeysRequest and GetCapabilitiesRequest are empty and need no type.
 */

interface KeyVersionMessage {
  version: number;
  createdAt: string;
  publicKeyPem?: string;
  /** A JWK as a JSON string. */
  publicKeyJwk?: string;
}

export interface KeyMessage {
  name: string;
  type: string;
  purpose: string;
  state: string;
  createdAt: string;
  primaryVersion: number;
  versions: KeyVersionMessage[];
}

export interface CreateKeyRequest { name: string; type: string; purpose: string }
export interface ListKeysResponse { keys: KeyMessage[] }
export interface KeyNameRequest { name: string }
export type DestroyKeyResponse = Record<string, never>;

export interface SignRequest { name: string; algorithm: string; message?: Buffer; digest?: Buffer }
export interface SignResponse { keyName: string; keyVersion: number; algorithm: string; signature: Buffer }
export interface VerifyRequest extends SignRequest { keyVersion?: number; signature: Buffer }
export interface VerifyResponse { keyName: string; keyVersion: number; algorithm: string; valid: boolean }

export interface EncryptRequest { name: string; algorithm: string; plaintext: Buffer; aad?: Buffer }
export interface EncryptResponse { keyName: string; keyVersion: number; algorithm: string; ciphertext: Buffer }
export interface DecryptRequest { name: string; ciphertext: Buffer; aad?: Buffer; keyVersion?: number; algorithm: string }
export interface DecryptResponse { keyName: string; keyVersion: number; algorithm: string; plaintext: Buffer }

export interface GenerateMacRequest { name: string; algorithm: string; data: Buffer }
export interface GenerateMacResponse { keyName: string; keyVersion: number; algorithm: string; mac: Buffer }
export interface VerifyMacRequest extends GenerateMacRequest { keyVersion?: number; mac: Buffer }
export interface VerifyMacResponse { keyName: string; keyVersion: number; algorithm: string; valid: boolean }

export interface GenerateRandomRequest { length: number }
export interface GenerateRandomResponse { random: Buffer }

export interface CapabilitiesMessage {
  keyTypes: string[];
  sign: string[];
  encrypt: string[];
  mac: string[];
  signDigest: string[];
  random: boolean;
}

export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';
export interface HealthCheckRequest { service: string }
export interface HealthCheckResponse { status: ServingStatus }
