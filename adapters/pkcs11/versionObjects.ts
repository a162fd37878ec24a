/** Making the token objects of one key version, before the metadata that lists them is committed. */
import { CONFLICT, type Conflict } from '../../src/backend/keyChanges.js';
import type { KeyName } from '../../src/keys/names.js';
import { CKR, ckrName, ckrOf } from './errors.js';
import type { CompanionRole, MetadataRecord } from './keyObjects.js';
import type { Handle, Pkcs11Api } from './module.js';
import { companionsFor, createVersionFromValue, randomTdesValue } from './paymentKeys.js';
import { generationFor } from './templates.js';
import type { TokenLog } from './worker/protocol.js';

/** What the token allows, learnt at start. */
export interface TokenTraits {
  /** allowRawRsaOaepFallback, on a token that has CKM_RSA_X_509: RSA keys may decrypt with it. */
  readonly rawRsaDecrypt: boolean;
  /** CKM_DES_CBC works: new K1 companions are DES keys (else DES2 keys K1 K1; see paymentKeys.ts). */
  readonly singleDes: boolean;
}

/**
 * What SoftHSM's file store answers when a token key is generated while another session of the process
 * creates, destroys or reads token objects (replicas changing keys at once): that try is CONFLICT, to be
 * retried (a template the token really refuses still fails, after the retries, with the CKR in the log).
 */
const TOKEN_BUSY = new Set<number>([CKR.GENERAL_ERROR, CKR.FUNCTION_FAILED, CKR.TEMPLATE_INCONSISTENT]);

/**
 * Makes the objects of one key version under `id`: generated in the token, or created from `material`
 * (an import), or, for kinds with companion objects, from the token's random bytes (paymentKeys.ts).
 * Returns their handles (for cleanup if the commit fails); CONFLICT when the generation met TOKEN_BUSY.
 */
export async function makeVersionObjects(
  api: Pkcs11Api,
  session: Handle,
  logger: TokenLog,
  traits: TokenTraits,
  key: Pick<MetadataRecord, 'type' | 'purpose' | 'exportable' | 'keyUsage'>,
  name: KeyName,
  id: Buffer,
  material: Buffer | undefined,
): Promise<{ handles: Handle[]; companions: CompanionRole[] } | Conflict> {
  const { type, purpose, keyUsage } = key;
  const options = { rawRsaDecrypt: traits.rawRsaDecrypt, exportable: key.exportable === true, singleDes: traits.singleDes, ...(keyUsage ? { keyUsage } : {}) };
  if (material || companionsFor(type, purpose, keyUsage).length > 0) {
    const value = material ?? randomTdesValue(api, session, type);
    try {
      return createVersionFromValue(api, session, { type, purpose, name, ...(keyUsage ? { keyUsage } : {}) }, id, value, options);
    } finally {
      if (!material) value.fill(0); // the core zeroes imported material
    }
  }
  const g = generationFor(type, purpose, name, id, options);
  try {
    if (g.kind === 'secret') return { handles: [api.C_GenerateKey(session, { mechanism: g.mechanism }, g.secretKey)], companions: [] };
    const pair = api.C_GenerateKeyPair(session, { mechanism: g.mechanism }, g.publicKey, g.privateKey);
    return { handles: [pair.publicKey, pair.privateKey], companions: [] };
  } catch (e) {
    if (!TOKEN_BUSY.has(ckrOf(e) ?? -1)) throw e;
    logger.warn({ ckr: ckrName(e) }, 'pkcs11: key generation failed while the token was being changed; retrying');
    return CONFLICT;
  }
}
