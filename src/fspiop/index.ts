export { canonicalJson } from './canonicalJson.js';
export { fspiopConfigSchema, fspiopAlgorithms, type FspiopAlgorithm, type FspiopConfig } from './config.js';
export { decryptFields, encryptFields, FieldDecryptionError, parseEncryptionHeader, type EncryptedFieldEntry, type EncryptedFields } from './fieldEncryption.js';
export {
  FspiopService,
  type FspiopServiceOptions,
  type FspiopSignInput,
  type FspiopSignResult,
  type FspiopValidateInput,
  type FspiopValidation,
} from './fspiopService.js';
export {
  ParticipantRegistry,
  isParticipantId,
  parseParticipantId,
  type KeySource,
  type ParticipantConfig,
  type ParticipantKey,
  type ParticipantKeyView,
  type ParticipantRegistryOptions,
  type ParticipantView,
} from './participants.js';
export { inspectPublicKey, jwkThumbprint, type KeyUse, type PublicKeyInfo } from './publicKeys.js';
export { fspiopUri } from './uri.js';
