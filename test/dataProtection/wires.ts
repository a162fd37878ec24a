/**
 * The data-protection operations driven the same way over REST and gRPC (the tests in this folder): each
 * answers in REST's shape, bytes as Buffers and per-value results as a string or {error}.
 */
import type { ServiceError } from '@grpc/grpc-js';
import type { Served } from '../transports/batchFixture.js';
import { b64 } from '../transports/rest/restFixture.js';

export type Answer = { ok: true; body: any } | { ok: false; status: number; code: string | undefined; message: string };

/** One call on either wire: REST with JSON (Buffers as base64), gRPC with the message as the rpc takes it. */
export interface Wire {
  readonly name: 'REST' | 'gRPC';
  rest(method: 'GET' | 'POST' | 'PATCH', url: string, body?: object): Promise<Answer>;
  rpc(method: string, message: object): Promise<Answer>;
}

export function wiresOf(served: Served): Wire[] {
  const rest: Wire = {
    name: 'REST',
    async rest(method, url, body) {
      const r = await served.rest.inject({ method, url, ...(body ? { payload: body } : {}) });
      const parsed = r.body === '' ? undefined : JSON.parse(r.body);
      return r.statusCode < 300 ? { ok: true, body: parsed } : { ok: false, status: r.statusCode, code: parsed?.error?.code, message: parsed?.error?.message ?? '' };
    },
    rpc: () => Promise.reject(new Error('REST wire')),
  };
  const grpc: Wire = {
    name: 'gRPC',
    rest: rest.rest,
    rpc: (method, message) =>
      served.client.call(method, message as Record<string, unknown>).then(
        (body) => ({ ok: true, body }),
        (e: ServiceError) => ({ ok: false, status: e.code, code: e.metadata?.get('hsmbridge-error-code')[0] as string | undefined, message: e.details }),
      ),
  };
  return [rest, grpc];
}

export const okBody = (a: Answer) => {
  if (!a.ok) throw new Error(`call failed: ${a.status} ${a.code} ${a.message}`);
  return a.body;
};
export const failed = (a: Answer) => (a.ok ? { code: 'answered' } : { code: a.code, status: a.status });

/** The operations, the same on both wires: each answers in REST's shape (bytes as Buffers, per-value results as string | {error}). */
export function ops(wire: Wire) {
  const grpc = wire.name === 'gRPC';
  const perValue = (list: any[], field: string) => list.map((r) => (grpc ? (r.result === 'error' ? { error: r.error } : r[field]) : r));
  return {
    async fpe(direction: 'encrypt' | 'decrypt', name: string, body: { values: string[]; radix?: number; alphabet?: string; tweak?: string; keyVersion?: number }) {
      const a = grpc
        ? await wire.rpc(direction === 'encrypt' ? 'FpeEncrypt' : 'FpeDecrypt', { name, values: body.values, radix: body.radix ?? 0, alphabet: body.alphabet ?? '', tweak: body.tweak ?? '', ...(body.keyVersion ? { keyVersion: body.keyVersion } : {}) })
        : await wire.rest('POST', `/v1/keys/${name}/fpe/${direction}`, body);
      return a.ok ? { ...a, body: { ...a.body, values: perValue(a.body.values, 'value') } } : a;
    },
    async tokenize(name: string, body: { values: string[]; context: string; keyVersion?: number }) {
      const a = grpc ? await wire.rpc('Tokenize', { name, ...body }) : await wire.rest('POST', `/v1/keys/${name}/tokenize`, body);
      return a.ok ? { ...a, body: { ...a.body, tokens: perValue(a.body.tokens, 'token') } } : a;
    },
    async datakey(name: string, bits: number, plaintext?: boolean) {
      const a = grpc
        ? await wire.rpc('GenerateDataKey', { name, bits, ...(plaintext === undefined ? {} : { plaintext }) })
        : await wire.rest('POST', `/v1/keys/${name}/datakey`, { bits, ...(plaintext === undefined ? {} : { plaintext }) });
      if (!a.ok) return a;
      const bytes = (v: any) => (v === undefined || (grpc && v.length === 0) ? undefined : grpc ? v : Buffer.from(v, 'base64'));
      return { ...a, body: { ...a.body, plaintext: bytes(a.body.plaintext), wrapped: bytes(a.body.wrapped) } };
    },
    async rewrap(name: string, ciphertext: Buffer, aad?: Buffer) {
      const a = grpc
        ? await wire.rpc('Rewrap', { name, ciphertext, ...(aad ? { aad } : {}) })
        : await wire.rest('POST', `/v1/keys/${name}/rewrap`, { ciphertext: b64(ciphertext), ...(aad ? { aad: b64(aad) } : {}) });
      return a.ok ? { ...a, body: { ...a.body, ciphertext: grpc ? a.body.ciphertext : Buffer.from(a.body.ciphertext, 'base64') } } : a;
    },
    async encrypt(name: string, plaintext: Buffer, aad?: Buffer) {
      const a = grpc
        ? await wire.rpc('Encrypt', { name, plaintext, ...(aad ? { aad } : {}) })
        : await wire.rest('POST', `/v1/keys/${name}/encrypt`, { plaintext: b64(plaintext), ...(aad ? { aad: b64(aad) } : {}) });
      return a.ok ? { ...a, body: { ...a.body, ciphertext: grpc ? a.body.ciphertext : Buffer.from(a.body.ciphertext, 'base64') } } : a;
    },
    async decrypt(name: string, ciphertext: Buffer, aad?: Buffer) {
      const a = grpc
        ? await wire.rpc('Decrypt', { name, ciphertext, ...(aad ? { aad } : {}) })
        : await wire.rest('POST', `/v1/keys/${name}/decrypt`, { ciphertext: b64(ciphertext), ...(aad ? { aad: b64(aad) } : {}) });
      return a.ok ? { ...a, body: { ...a.body, plaintext: grpc ? a.body.plaintext : Buffer.from(a.body.plaintext, 'base64') } } : a;
    },
    update: (name: string, minDecryptionVersion: number) =>
      grpc ? wire.rpc('UpdateKey', { name, minDecryptionVersion }) : wire.rest('PATCH', `/v1/keys/${name}`, { minDecryptionVersion }),
    trim: (name: string) => (grpc ? wire.rpc('TrimKey', { name }) : wire.rest('POST', `/v1/keys/${name}/trim`)),
    rotate: (name: string) => (grpc ? wire.rpc('RotateKey', { name }) : wire.rest('POST', `/v1/keys/${name}/rotate`)),
    create: (name: string, type: string, purpose?: string) =>
      grpc ? wire.rpc('CreateKey', { name, type, purpose: purpose ?? '' }) : wire.rest('POST', '/v1/keys', { name, type, ...(purpose ? { purpose } : {}) }),
    async sign(name: string, message: Buffer, keyVersion?: number) {
      const a = grpc ? await wire.rpc('Sign', { name, message, ...(keyVersion ? { keyVersion } : {}) }) : await wire.rest('POST', `/v1/keys/${name}/sign`, { message: b64(message) });
      return a.ok ? { ...a, body: { ...a.body, signature: grpc ? a.body.signature : Buffer.from(a.body.signature, 'base64') } } : a;
    },
    verify: (name: string, message: Buffer, signature: Buffer, keyVersion: number) =>
      grpc ? wire.rpc('Verify', { name, message, signature, keyVersion }) : wire.rest('POST', `/v1/keys/${name}/verify`, { message: b64(message), signature: b64(signature), keyVersion }),
    async mac(name: string, data: Buffer) {
      const a = grpc ? await wire.rpc('GenerateMac', { name, data }) : await wire.rest('POST', `/v1/keys/${name}/mac`, { data: b64(data) });
      return a.ok ? { ...a, body: { ...a.body, mac: grpc ? a.body.mac : Buffer.from(a.body.mac, 'base64') } } : a;
    },
    verifyMac: (name: string, data: Buffer, mac: Buffer, keyVersion: number) =>
      grpc ? wire.rpc('VerifyMac', { name, data, mac, keyVersion }) : wire.rest('POST', `/v1/keys/${name}/mac/verify`, { data: b64(data), mac: b64(mac), keyVersion }),
  };
}
