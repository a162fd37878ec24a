/** Operations that name no key: random bytes from the backend, what the backend can do, and who the caller is. */
import { encodeBase64 } from '../base64.js';
import { operation, type Operation } from '../declaration.js';
import type * as msg from '../grpcMessages.js';
import * as schemas from '../schemas.js';
import type { Caller } from '../stages.js';

/** The caller as whoami shows it: its names, its token's claims, and what the policy grants it. */
function whoami(caller: Caller) {
  return {
    id: caller.id,
    authenticatedBy: caller.authenticatedBy,
    ...(caller.certSubject === undefined ? {} : { certSubject: caller.certSubject }),
    certSans: [...(caller.certSans ?? [])],
    ...(caller.jwtClaims === undefined ? {} : { jwtClaims: caller.jwtClaims }),
    policy: caller.access !== undefined,
    principals: [...(caller.access?.principals ?? [])],
    rules: (caller.access?.rules ?? []).map((r) => ({ principal: r.principal, allow: [...r.allow], keys: [...r.keys], participants: [...r.participants] })),
  };
}

export const systemOperations: Operation[] = [
  operation({
    name: 'system.random',
    tag: 'system',
    summary: "Random bytes from the backend's generator",
    description: "The HSM's RNG on a PKCS#11 backend. Callers use these bytes as keys and nonces: the service zeroes its copy once the answer is encoded.",
    errors: ['UNSUPPORTED_BY_BACKEND', 'BACKEND_UNAVAILABLE'],
    secrets: { output: ['random'] },
    run: async (s, i: { length: number }) => ({ random: await s.keys.randomBytes(i.length) }),
    rest: { method: 'POST', path: '/v1/random', body: schemas.randomBody, response: schemas.randomResult, decode: (r) => ({ length: r.body.length }), encode: (r) => ({ random: encodeBase64(r.random) }) },
    grpc: { service: 'KeyService', method: 'GenerateRandom', decode: (m: msg.GenerateRandomRequest) => ({ length: m.length }), encode: (r): msg.GenerateRandomResponse => r },
  }),
  operation({
    name: 'system.capabilities',
    tag: 'system',
    summary: 'Key types and algorithms the configured backend supports',
    description: 'What the configured backend can do: key types, sign, encrypt and MAC algorithms, digest signing, random, key agreement and payment features.',
    errors: [],
    run: async (s) => s.keys.capabilities(),
    rest: { method: 'GET', path: '/v1/capabilities', response: schemas.capabilitiesSchema, decode: () => ({}), encode: (caps) => caps },
    grpc: {
      service: 'KeyService',
      method: 'GetCapabilities',
      decode: () => ({}),
      encode: (caps): msg.CapabilitiesMessage => ({
        keyTypes: [...caps.keyTypes],
        sign: [...caps.sign],
        encrypt: [...caps.encrypt],
        mac: [...caps.mac],
        signDigest: [...caps.signDigest],
        random: caps.random,
        keyAgreement: [...caps.keyAgreement],
        payment: { dukpt: [...caps.payment.dukpt], importKeys: caps.payment.importKeys, exportKeys: caps.payment.exportKeys },
        keyImport: { wrappings: [...caps.keyImport.wrappings], unwrapsInside: [...caps.keyImport.unwrapsInside], ceremonies: caps.keyImport.ceremonies },
        fpe: caps.fpe,
      }),
    },
  }),
  operation({
    name: 'system.whoami',
    operationId: 'whoAmI',
    tag: 'system',
    summary: 'Who the service takes the caller to be, and what the access policy grants it',
    description: "The caller's certificate names and token claims, the policy's principals it is and their rules: for debugging a policy. Any authenticated caller may ask.",
    errors: ['UNAUTHENTICATED'],
    access: 'authenticated',
    run: async (_s, _i: Record<string, never>, caller) => whoami(caller),
    rest: { method: 'GET', path: '/v1/whoami', response: schemas.whoamiResult, decode: () => ({}), encode: (w) => w },
    grpc: {
      service: 'KeyService',
      method: 'WhoAmI',
      decode: () => ({}),
      encode: ({ jwtClaims, ...w }): msg.WhoAmIResponse => ({ ...w, jwtClaims: jwtClaims === undefined ? '' : JSON.stringify(jwtClaims) }),
    },
  }),
];
