/**
 * The JSON Schemas of the REST API: fastify validates requests and serialises responses with them, and
 * openapi.ts publishes the very same objects, so the document cannot drift from what the server does.
 * Kept to the subset that OpenAPI 3.0 and ajv read alike. Algorithm, key type and purpose are plain
 * strings on purpose: the core refuses an unknown one with its own stable error code.
 */
export * from './schemas/common.js';
export * from './schemas/dataProtection.js';
export * from './schemas/fspiop.js';
export * from './schemas/jose.js';
export * from './schemas/keys.js';
export * from './schemas/payment.js';
export * from './schemas/system.js';

import type { Schema } from './schemas/common.js';
import { errorEnvelopeSchema, keySchema } from './schemas/common.js';
import { participantKeySchema } from './schemas/fspiop.js';
import { keyUsedSchema } from './schemas/payment.js';

/** Objects openapi.ts publishes once under components/schemas and refers to by $ref. */
export const namedSchemas: Record<string, Schema> = { Key: keySchema, Error: errorEnvelopeSchema, ParticipantKey: participantKeySchema, KeyUsed: keyUsedSchema };
export * from './schemas/keyImport.js';
