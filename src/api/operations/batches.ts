/**
 * The batch forms of the data-plane operations (../batch.ts): each derived from its single declaration,
 * found here by name, so that an item is exactly the single request and a result the single answer.
 */
import { batchOf } from '../batch.js';
import type { Operation } from '../declaration.js';
import { fspiopOperations } from './fspiop.js';
import { dataProtectionOperations } from './dataProtection.js';
import { keyOperations } from './keys.js';

function single(ops: readonly Operation[], name: string): Operation {
  const op = ops.find((o) => o.name === name);
  if (!op) throw new Error(`no operation ${name} to batch`);
  return op;
}

const keys = (name: string) => single(keyOperations, name);
const isValid = (out: { valid: boolean }) => out.valid;

export const keyBatchOperations: Operation[] = [
  batchOf(keys('keys.sign'), { name: 'keys.signBatch', grpcMethod: 'SignBatch', summary: 'Sign many messages or digests with the primary version, in one request', checkKey: (s, name) => s.keys.checkKeyFor(name, 'sign') }),
  batchOf(keys('keys.verify'), { name: 'keys.verifyBatch', grpcMethod: 'VerifyBatch', summary: 'Verify many signatures, in one request', checkKey: (s, name) => s.keys.checkKeyFor(name, 'sign'), valid: isValid }),
  batchOf(keys('keys.encrypt'), { name: 'keys.encryptBatch', grpcMethod: 'EncryptBatch', summary: 'Encrypt many plaintexts with the primary version, in one request', checkKey: (s, name) => s.keys.checkKeyFor(name, 'cipher') }),
  batchOf(keys('keys.decrypt'), { name: 'keys.decryptBatch', grpcMethod: 'DecryptBatch', summary: 'Decrypt many ciphertexts, in one request', checkKey: (s, name) => s.keys.checkKeyFor(name, 'cipher') }),
  batchOf(keys('keys.mac'), { name: 'keys.macBatch', grpcMethod: 'GenerateMacBatch', summary: 'Compute many MACs with the primary version, in one request', checkKey: (s, name) => s.keys.checkKeyFor(name, 'mac') }),
  batchOf(keys('keys.verifyMac'), { name: 'keys.verifyMacBatch', grpcMethod: 'VerifyMacBatch', summary: 'Check many MACs in constant time, in one request', checkKey: (s, name) => s.keys.checkKeyFor(name, 'verifyMac'), valid: isValid }),
];

export const fspiopBatchOperations: Operation[] = [
  batchOf(single(fspiopOperations, 'fspiop.sign'), { name: 'fspiop.signBatch', operationId: 'fspiopSignBatch', grpcMethod: 'SignBatch', summary: 'Sign many FSPIOP requests, in one request', checkKey: (s, name) => s.fspiop.service.checkSigningKey(name) }),
  batchOf(single(fspiopOperations, 'fspiop.validate'), { name: 'fspiop.validateBatch', operationId: 'fspiopValidateBatch', grpcMethod: 'ValidateBatch', summary: "Validate many requests' FSPIOP-Signature, in one request", checkKey: (s, name) => s.fspiop.service.checkDecryptionKey(name), valid: isValid }),
];

const dataProtection = (name: string) => single(dataProtectionOperations, name);

export const dataProtectionBatchOperations: Operation[] = [
  batchOf(dataProtection('keys.datakey'), { name: 'keys.datakeyBatch', grpcMethod: 'GenerateDataKeyBatch', summary: 'Many fresh data keys, wrapped by this AES key, in one request', checkKey: (s, name) => s.keys.checkKeyFor(name, 'dataKey') }),
  batchOf(dataProtection('keys.rewrap'), { name: 'keys.rewrapBatch', grpcMethod: 'RewrapBatch', summary: "Re-encrypt many ciphertexts under the key's primary version, in one request", checkKey: (s, name) => s.keys.checkKeyFor(name, 'cipher') }),
];
