/**
 * hsm-bridge/mojaloop: drop-in replacements for `@mojaloop/sdk-standard-components`' JwsSigner and
 * JwsValidator whose keys stay in hsm-bridge. See docs/mojaloop-drop-in.md for the change at each call site.
 */
export { JwsSigner, type JwsSignerConfig, type RequestOptions } from './jwsSigner.js';
export { JsonWebTokenError, JwsValidator, type IncomingRequest, type JwsValidatorConfig } from './jwsValidator.js';
export type { FspiopClient, LogMethods, MojaloopLogger } from './types.js';
