/**
 * `hsm-bridge/backend`: what a vendor's own adapter implements, for `backend.type: module`. The module's
 * default export is a BackendFactory; its backend answers in the port's terms and refuses with an
 * HsmBridgeError of a stable code (UNSUPPORTED_BY_BACKEND for what its capabilities leave out). Prove it
 * with `hsmb conformance --backend-config FILE`.
 */
export type { BackendContext, BackendFactory } from './factory.js';
export * from './port.js';
export { HsmBridgeError, type ErrorCode } from '../errors.js';
