import type { Logger } from 'pino';
import type { Backend } from './port.js';

export interface BackendContext {
  readonly logger: Logger;
}

/**
 * How a backend is built from configuration: one factory per adapter (BCCSP style). An adapter folder
 * exports one of these; a vendor's own adapter module does the same as its default export.
 * `configSchema` is the JSON Schema of the adapter's section of the configuration; it is checked at
 * start, so a bad field is named before anything connects.
 */
export interface BackendFactory<C = unknown> {
  readonly kind: string;
  readonly configSchema: Record<string, unknown>;
  create(config: C, context: BackendContext): Promise<Backend>;
}
