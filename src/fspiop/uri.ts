/**
 * FSPIOP-URI: the request path from the FSPIOP resource on (`/transfers/{id}`), computed exactly as the
 * Mojaloop reference signer does so that both sides agree on the protected header. The reference takes
 * the rightmost '/' at which the rest reads `/<resource>` or `/` (an empty resource), optionally followed
 * by `/anything`; this reproduces that choice, quirks included (a trailing '/' yields "/").
 */
const RESOURCES = [
  'participants', 'parties', 'quotes', 'bulkQuotes', 'transfers', 'bulkTransfers', 'transactionRequests',
  'thirdpartyRequests', 'authorizations', 'consents', 'consentRequests', 'fxQuotes', 'fxTransfers',
];
const SUFFIX = new RegExp(`^/(?:${RESOURCES.join('|')})?(?:/.*)?$`);
const LINE_BREAK = /[\n\r\u2028\u2029]/;

/** The FSPIOP-URI of a request URI (absolute URL or path), or undefined when it has no '/'. */
export function fspiopUri(uri: string): string | undefined {
  if (LINE_BREAK.test(uri)) return undefined;
  for (let at = uri.lastIndexOf('/'); at >= 0; at = at === 0 ? -1 : uri.lastIndexOf('/', at - 1)) {
    const suffix = uri.slice(at);
    if (SUFFIX.test(suffix)) return suffix;
  }
  return undefined;
}
