/**
 * Cryptographic operations: sign, verify, encrypt, decrypt, MAC. Handlers only translate base64 to bytes
 * and back; every check on the key, the algorithm and the sizes is the core's (KeyService).
 * Decoded plaintexts are zeroed once the response is encoded (the base64 text itself is a JS string
 * and cannot be wiped; it is short-lived and never logged).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { invalid, type ErrorCode } from '../../../errors.js';
import type { KeyService } from '../../../operations/keyService.js';
import { decodeBase64, decodeOptionalBase64, encodeBase64 } from '../base64.js';
import { toHex } from '../../paymentWire.js';
import {
  decryptBody,
  decryptResult,
  encryptBody,
  encryptResult,
  keyNameParams,
  macBody,
  macResult,
  signBody,
  signResult,
  verifyBody,
  verifyMacBody,
  verifyMacResult,
  verifyResult,
} from '../schemas.js';

type On<B> = FastifyRequest<{ Params: { name: string }; Body: B }>;
interface SignBody { algorithm?: string; message?: string; digest?: string }
interface VerifyBody extends SignBody { keyVersion?: number; signature: string }
interface EncryptBody { algorithm?: string; plaintext: string; aad?: string }
interface DecryptBody { ciphertext: string; aad?: string; keyVersion?: number; algorithm?: string }
interface MacBody { algorithm?: string; data: string }
interface VerifyMacBody extends MacBody { keyVersion?: number; mac?: string; macHex?: string }

/** Errors every operation on an existing key can return. */
const keyErrors: ErrorCode[] = ['UNSUPPORTED_ALGORITHM', 'UNSUPPORTED_BY_BACKEND', 'INCOMPATIBLE_KEY', 'KEY_NOT_FOUND', 'KEY_DISABLED', 'BACKEND_UNAVAILABLE'];
const withVersion: ErrorCode[] = [...keyErrors, 'KEY_VERSION_NOT_FOUND'];

export function operationRoutes(app: FastifyInstance, service: KeyService): void {
  const op = (body: object, result: object) => ({ params: keyNameParams, body, response: { 200: result } });

  app.post('/v1/keys/:name/sign', {
    schema: op(signBody, signResult),
    config: { doc: { operationId: 'sign', summary: 'Sign a message or a digest with the primary version', errors: [...keyErrors, 'PAYLOAD_TOO_LARGE'] } },
    handler: async (request: On<SignBody>) => {
      const { algorithm, message, digest } = request.body;
      const r = await service.sign({
        name: request.params.name,
        algorithm,
        message: decodeOptionalBase64('message', message),
        digest: decodeOptionalBase64('digest', digest),
      });
      return { keyName: request.params.name, keyVersion: r.keyVersion, algorithm: r.algorithm, signature: encodeBase64(r.signature) };
    },
  });

  app.post('/v1/keys/:name/verify', {
    schema: op(verifyBody, verifyResult),
    config: { doc: { operationId: 'verify', summary: 'Verify a signature with a key version (default: primary)', errors: [...withVersion, 'PAYLOAD_TOO_LARGE'] } },
    handler: async (request: On<VerifyBody>) => {
      const { algorithm, message, digest, keyVersion, signature } = request.body;
      const r = await service.verify({
        name: request.params.name,
        algorithm,
        keyVersion,
        message: decodeOptionalBase64('message', message),
        digest: decodeOptionalBase64('digest', digest),
        signature: decodeBase64('signature', signature),
      });
      return { keyName: request.params.name, keyVersion: r.keyVersion, algorithm: r.algorithm, valid: r.valid };
    },
  });

  app.post('/v1/keys/:name/encrypt', {
    schema: op(encryptBody, encryptResult),
    config: { doc: { operationId: 'encrypt', summary: 'Encrypt with the primary version', errors: [...keyErrors, 'PAYLOAD_TOO_LARGE'] } },
    handler: async (request: On<EncryptBody>) => {
      const { algorithm, aad } = request.body;
      const plaintext = decodeBase64('plaintext', request.body.plaintext);
      try {
        const r = await service.encrypt({ name: request.params.name, algorithm, plaintext, aad: decodeOptionalBase64('aad', aad) });
        return { keyName: request.params.name, keyVersion: r.keyVersion, algorithm: r.algorithm, ciphertext: encodeBase64(r.ciphertext) };
      } finally {
        plaintext.fill(0);
      }
    },
  });

  app.post('/v1/keys/:name/decrypt', {
    schema: op(decryptBody, decryptResult),
    config: { doc: { operationId: 'decrypt', summary: 'Decrypt a ciphertext with the key version that made it', errors: [...withVersion, 'DECRYPTION_FAILED', 'PAYLOAD_TOO_LARGE'] } },
    handler: async (request: On<DecryptBody>) => {
      const { ciphertext, aad, keyVersion, algorithm } = request.body;
      const r = await service.decrypt({
        name: request.params.name,
        ciphertext: decodeBase64('ciphertext', ciphertext),
        aad: decodeOptionalBase64('aad', aad),
        keyVersion,
        // '' means "not given" on every transport (proto3 strings cannot be absent); the core only maps it when choosing a default.
        algorithm: algorithm === '' ? undefined : algorithm,
      });
      try {
        return { keyName: request.params.name, keyVersion: r.keyVersion, algorithm: r.algorithm, plaintext: encodeBase64(r.plaintext) };
      } finally {
        r.plaintext.fill(0);
      }
    },
  });

  app.post('/v1/keys/:name/mac', {
    schema: op(macBody, macResult),
    config: { doc: { operationId: 'generateMac', summary: 'Compute a MAC with the primary version', errors: [...keyErrors, 'PAYLOAD_TOO_LARGE'] } },
    handler: async (request: On<MacBody>) => {
      const r = await service.mac({ name: request.params.name, algorithm: request.body.algorithm, data: decodeBase64('data', request.body.data) });
      return { keyName: request.params.name, keyVersion: r.keyVersion, algorithm: r.algorithm, mac: encodeBase64(r.mac), macHex: toHex(r.mac), ...kcvOf(r) };
    },
  });

  app.post('/v1/keys/:name/mac/verify', {
    schema: op(verifyMacBody, verifyMacResult),
    config: { doc: { operationId: 'verifyMac', summary: 'Check a MAC in constant time (payment MACs: also truncated to 4 bytes or more)', errors: [...withVersion, 'PAYLOAD_TOO_LARGE'] } },
    handler: async (request: On<VerifyMacBody>) => {
      const { algorithm, keyVersion, data, mac, macHex } = request.body;
      if ((mac === undefined) === (macHex === undefined)) throw invalid('give the MAC as exactly one of mac (base64) or macHex');
      const r = await service.verifyMac({
        name: request.params.name,
        algorithm,
        keyVersion,
        data: decodeBase64('data', data),
        mac: mac === undefined ? Buffer.from(macHex!, 'hex') : decodeBase64('mac', mac),
      });
      return { keyName: request.params.name, keyVersion: r.keyVersion, algorithm: r.algorithm, valid: r.valid, ...kcvOf(r) };
    },
  });
}

/** A payment MAC key's KCV, when the core gave one. */
const kcvOf = (r: { keyCheckValue?: string }) => (r.keyCheckValue === undefined ? {} : { keyCheckValue: r.keyCheckValue });
