/**
 * The `fspiop` section of the service configuration (src/config/schema.ts): its type and JSON Schema,
 * with the defaults.
 */
import { MAX_KEYS_PER_PARTICIPANT, type ParticipantConfig } from './participants.js';

export const fspiopAlgorithms = ['RS256', 'RS384', 'RS512', 'ES256'] as const;
export type FspiopAlgorithm = (typeof fspiopAlgorithms)[number];

export interface FspiopConfig {
  /** Participants and their public keys, as PEM text or file paths; read once, at start. */
  participants: ParticipantConfig[];
  /** A directory of participant PEM files, watched and reloaded; API-added keys are written here. */
  participantsDir?: string;
  /** Signature algorithms accepted on validation. The spec allows RS256/384/512; the reference client also ES256. */
  allowedAlgorithms: FspiopAlgorithm[];
  /**
   * Also accept a signature over the canonical form of the body (keys sorted, no whitespace), as the
   * reference validator computes it, when the received bytes do not verify. Default true.
   */
  acceptCanonicalBody: boolean;
  /** Full rescan period of participantsDir, a safety net for missed watch events; 0 turns it off. */
  rescanIntervalMs: number;
}

const keyList = { type: 'array', maxItems: MAX_KEYS_PER_PARTICIPANT, items: { type: 'string', minLength: 1 } } as const;

export const fspiopConfigSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    participants: {
      type: 'array',
      default: [],
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'keys'],
        properties: {
          id: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$' },
          keys: keyList,
          encryptionKeys: keyList,
        },
      },
    },
    participantsDir: { type: 'string', minLength: 1 },
    allowedAlgorithms: {
      type: 'array',
      minItems: 1,
      uniqueItems: true,
      items: { enum: [...fspiopAlgorithms] },
      default: [...fspiopAlgorithms],
    },
    acceptCanonicalBody: { type: 'boolean', default: true },
    rescanIntervalMs: { type: 'integer', minimum: 0, maximum: 86_400_000, default: 60_000 },
  },
} as const;
