/**
 * FSPIOP signature validation for keys.bench.ts: requests signed by the Mojaloop reference JwsSigner
 * (@mojaloop/sdk-standard-components) with a participant key the bench generates and registers with the
 * service (POST /v1/fspiop/participants), validated by the reference JwsValidator in this process (the
 * baseline) and by the service over gRPC and REST, single and in batches. Every answer must say valid:
 * a refusal throws. The reference validator gets the body already parsed, as its HTTP framework hands it
 * over; the service gets the bytes.
 */
import { generateKeyPairSync } from 'node:crypto';
import { jws, refLogger, transfer, type Req } from './mojaloopReference.js';
import type { GrpcClient, RestClient } from './clients.js';
import { batchOutputs, grpcItemError, restItemError } from './keyOperations.js';


const MESSAGES = 64;

export interface ValidateCall {
  readonly name: string;
  readonly batch: number;
  call(i: number): Promise<unknown>;
}

export interface ValidateCases {
  /** The reference JwsValidator, synchronous, in this process. */
  readonly reference: ValidateCall;
  readonly service: readonly ValidateCall[];
}

/**
 * Registers a fresh `alg` key for participant `bench-<alg>` and signs MESSAGES requests with it; checks that
 * every one validates with the reference and the service before handing out the callers.
 */
export async function validateCases(alg: 'RS256' | 'ES256', batch: number, clients: { rest: RestClient; grpc: GrpcClient }): Promise<ValidateCases> {
  const pair = alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const privatePem = pair.privateKey.export({ format: 'pem', type: alg === 'RS256' ? 'pkcs1' : 'sec1' }).toString();
  const publicPem = pair.publicKey.export({ format: 'pem', type: 'spki' }).toString();
  const source = `bench-${alg.toLowerCase()}`;
  await clients.rest.expect(201, 'POST', '/v1/fspiop/participants', { id: source, publicKeyPem: publicPem });

  const signer = new jws.signer({ signingKey: privatePem, logger: refLogger });
  const messages = Array.from({ length: MESSAGES }, (_, i) => {
    const req: Req = { method: 'put', uri: `http://switch/transfers/${i}`, headers: { 'fspiop-source': source, 'fspiop-destination': 'payeefsp', date: new Date(0).toUTCString() }, body: transfer(i) };
    signer.sign(req);
    const text = req.body as string;
    return { headers: req.headers, text, bytes: Buffer.from(text), parsed: JSON.parse(text) as unknown };
  });
  const at = (i: number) => messages[i % MESSAGES]!;
  const inputs = (i: number) => Array.from({ length: batch }, (_, j) => at(i * batch + j));
  const valid = (what: string) => (answer: { valid: boolean; reason?: string }) => {
    if (!answer.valid) throw new Error(`${what}: a bench request was refused: ${answer.reason}`);
  };

  const validator = new jws.validator({ validationKeys: { [source]: publicPem }, logger: refLogger });
  const label = `FSPIOP validate ${alg}`;
  const reference: ValidateCall = { name: `${label}: reference JwsValidator in process`, batch: 1, call: async (i) => validator.validate({ headers: at(i).headers, body: at(i).parsed }) };
  const grpcBody = (m: (typeof messages)[number]) => ({ headers: m.headers, body: m.bytes });
  const restBody = (m: (typeof messages)[number]) => ({ headers: m.headers, body: m.text });
  const service: ValidateCall[] = [
    { name: `${label}: gRPC Validate`, batch: 1, call: async (i) => valid('gRPC Validate')(await clients.grpc.call('Validate', grpcBody(at(i)))) },
    { name: `${label}: REST /fspiop/validate`, batch: 1, call: async (i) => valid('POST /v1/fspiop/validate')(await clients.rest.expect(200, 'POST', '/v1/fspiop/validate', restBody(at(i)))) },
    {
      name: `${label}: gRPC ValidateBatch of ${batch}`,
      batch,
      call: async (i) => {
        const answer = await clients.grpc.call<{ results: any[] }>('ValidateBatch', { items: inputs(i).map(grpcBody) });
        batchOutputs('gRPC ValidateBatch', batch, answer.results, grpcItemError, (r) => valid('gRPC ValidateBatch')(r.ok));
      },
    },
    {
      name: `${label}: REST /fspiop/validate/batch of ${batch}`,
      batch,
      call: async (i) => {
        const answer = await clients.rest.expect(200, 'POST', '/v1/fspiop/validate/batch', { items: inputs(i).map(restBody) });
        batchOutputs('POST /v1/fspiop/validate/batch', batch, answer.results, restItemError, valid('POST /v1/fspiop/validate/batch'));
      },
    },
  ];
  for (let i = 0; i < MESSAGES; i++) await reference.call(i);
  for (const s of service) for (let i = 0; i < MESSAGES / s.batch; i++) await s.call(i);
  return { reference, service };
}
