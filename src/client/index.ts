/** `hsm-bridge/client`: the TypeScript client of hsm-bridge's REST API. */
export { HsmBridgeClient, type BatchResult, type CallOptions, type HsmBridgeClientOptions } from './client.js';
export { HsmBridgeClientError, type ClientErrorCode } from './errors.js';
export type { TlsFiles } from './http.js';
export { routes, type Route } from './routes.js';
