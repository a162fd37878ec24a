/** `hsm-bridge/client`: the TypeScript client of hsm-bridge, over REST or gRPC. */
export type { CallOptions } from './channel.js';
export { HsmBridgeClient, type HsmBridgeClientOptions } from './client.js';
export { HsmBridgeClientError, type ClientErrorCode } from './errors.js';
export type { TlsFiles } from './http.js';
export * from './operations.generated.js';
export { routes, type Route } from './routes.js';
