import { describe, expect, it } from 'vitest';
import { fspiopUri } from '../../src/fspiop/uri.js';
import { generateTestKeyPair, referenceSigner } from './support.js';

describe('FSPIOP-URI is what the reference signer derives', () => {
  const signer = referenceSigner(generateTestKeyPair('EC').privatePem);
  /** What the reference puts in the fspiop-uri header (it throws for a URI it cannot use). */
  const reference = (uri: string): string | undefined => {
    const req = { method: 'put', uri, headers: { 'fspiop-source': 'a' } as Record<string, string>, body: { a: 1 } };
    try {
      signer.sign(req);
    } catch {
      return undefined;
    }
    return req.headers['fspiop-uri'];
  };
  const uris = [
    'http://switch:3000/transfers/0a3c5d2e',
    'https://switch.example/api/v1/transfers/0a3c5d2e/error',
    '/parties/MSISDN/123456789',
    '/parties/MSISDN/123456789/sub',
    'http://h/quotes',
    'http://h/bulkQuotes/1',
    'http://h/fxTransfers/1?x=y&z=/transfers',
    'http://h/participants/MSISDN/1',
    'http://h/unknownResource/1',
    'http://h/transfers/',
    'http://h/parties/MSISDN/transfers',
    'http://h/thirdpartyRequests/transactions/1',
    'http://h:8080/',
    'transfers/1',
    'no-slash-at-all',
    '',
    '/',
    '//',
  ];
  for (const uri of uris) {
    it(JSON.stringify(uri), () => {
      expect(fspiopUri(uri)).toBe(reference(uri));
    });
  }
});
