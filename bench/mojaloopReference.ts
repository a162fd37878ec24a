/**
 * What the FSPIOP benchmarks share: the Mojaloop reference client's JWS signer and validator
 * (@mojaloop/sdk-standard-components, loaded as its own code loads them), a logger that keeps it quiet,
 * and the transfer bodies they sign.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** A request as the reference signer and validator take it. */
export interface Req {
  method?: string;
  uri?: string;
  headers: Record<string, string>;
  body: unknown;
}

export const jws = require('@mojaloop/sdk-standard-components/src/lib/jws') as {
  signer: new (c: { signingKey: string; logger: unknown }) => { sign(r: Req): void };
  validator: new (c: { validationKeys: Record<string, string>; logger: unknown }) => { validate(r: Req): true };
};

const quiet = { debug() {}, info() {}, warn() {}, error() {}, isDebugEnabled: false };
export const refLogger = { child: () => quiet };

/** A POST /transfers body, different for each i. */
export function transfer(i: number) {
  return {
    transferId: `0a3c5d2e-7f3b-4a4e-9b8e-${String(i).padStart(12, '0')}`,
    payerFsp: 'payerfsp',
    payeeFsp: 'payeefsp',
    amount: { currency: 'USD', amount: `${100 + i}.45` },
    ilpPacket: 'AYIBgQAAAAAAAASwNGxldmVsb25lLmRmc3AxLm1lci45OGZmYmU'.repeat(8),
    condition: 'f5sqb7tBTWPd5Y8BDFdMm9BJR_MNI4isf8p8n4D5pHA',
    expiration: '2026-12-31T23:59:59.999Z',
    extensionList: { extension: [{ key: 'note', value: `message ${i}` }] },
  };
}
