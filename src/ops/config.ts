/**
 * The `ops` section of the service configuration (its schema is a listener's, in src/config/schema.ts):
 * the operations listener, which serves /metrics and the health probes apart from the API listeners, so
 * that metrics are never exposed with the API. Loopback by default: open it to a scraper's network
 * deliberately.
 */
export interface OpsConfig {
  enabled: boolean;
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
}

/**
 * `payment.maxPinFailuresPerMinute` (a key of the payment section): PIN blocks that may fail to decode per
 * caller and per incoming key in a minute before that caller's PIN calls on that key get RATE_LIMITED
 * (./pinFailureLimit.ts).
 */
export const maxPinFailuresPerMinuteSchema = { type: 'integer', minimum: 1, maximum: 1_000_000, default: 30 } as const;
