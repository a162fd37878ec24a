/** Every API operation, in the order the OpenAPI document lists them. */
import type { Operation } from '../declaration.js';
import { dataProtectionBatchOperations, fspiopBatchOperations, keyBatchOperations } from './batches.js';
import { dataProtectionOperations } from './dataProtection.js';
import { fspiopOperations } from './fspiop.js';
import { joseOperations } from './jose.js';
import { ceremonyOperations } from './ceremonies.js';
import { keyImportOperations } from './keyImport.js';
import { keyOperations } from './keys.js';
import { paymentOperations } from './payment.js';
import { systemOperations } from './system.js';

export const operations: readonly Operation[] = [
  ...keyOperations,
  ...keyBatchOperations,
  ...dataProtectionOperations,
  ...dataProtectionBatchOperations,
  ...keyImportOperations,
  ...ceremonyOperations,
  ...systemOperations,
  ...joseOperations,
  ...fspiopOperations,
  ...fspiopBatchOperations,
  ...paymentOperations,
];
