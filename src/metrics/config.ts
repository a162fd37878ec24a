/**
 * The `metrics` section of the service configuration (src/config/schema.ts): its type and JSON Schema,
 * with the defaults. The series themselves are in ./metrics.ts; they are served on the ops listener
 * (src/ops/config.ts), never on the API listeners.
 */
export interface MetricsConfig {
  /**
   * Label the operation and PIN-failure series with the key name. Off by default: every key would be a
   * series of its own (cardinality), and key names may say more about a deployment than its operators want
   * a scraper to know.
   */
  keyLabels: boolean;
}

export const metricsConfigSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    keyLabels: { type: 'boolean', default: false },
  },
} as const;
