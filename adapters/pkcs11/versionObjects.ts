/** Making the token objects of one key version, before the metadata that lists them is committed. */
import pkcs11js from 'pkcs11js';
import type { KeyName } from '../../src/keys/names.js';
import { CKR, ckrName, ckrOf } from './errors.js';
import type { CompanionRole, MetadataRecord } from './keyObjects.js';
import type { Handle, Pkcs11Api } from './module.js';
import { companionsFor, createVersionFromValue, randomTdesValue } from './paymentKeys.js';
import { generationFor, type Generation } from './templates.js';
import { copyIntoToken, destroyTokenObject } from './tokenWrites.js';
import type { TokenLog } from './worker/protocol.js';

const A = pkcs11js;

/** What the token allows, learnt at start. */
export interface TokenTraits {
  /** allowRawRsaOaepFallback, on a token that has CKM_RSA_X_509: RSA keys may decrypt with it. */
  readonly rawRsaDecrypt: boolean;
  /** CKM_DES_CBC works: new K1 companions are DES keys (else DES2 keys K1 K1; see paymentKeys.ts). */
  readonly singleDes: boolean;
}

/** A token that refuses C_CopyObject into the token this way generates in the token (see generate). */
const COPY_REFUSED = new Set<number>([CKR.FUNCTION_NOT_SUPPORTED, CKR.ACTION_PROHIBITED, CKR.ATTRIBUTE_READ_ONLY, CKR.TEMPLATE_INCONSISTENT]);
const copyRefused = new WeakSet<Pkcs11Api>();

/**
 * Makes the objects of one key version under `id`: generated in the token, or created from `material`
 * (an import), or, for kinds with companion objects, from the token's random bytes (paymentKeys.ts).
 * Returns their handles, for cleanup if the commit fails.
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
): Promise<{ handles: Handle[]; companions: CompanionRole[] }> {
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
  return { handles: await generate(api, session, logger, generationFor(type, purpose, name, id, options)), companions: [] };
}

/**
 * Generates the key as session objects (CKA_TOKEN false) and copies them into the token
 * with one short call each, right after a search (tokenWrites.ts). Generated in the token directly, the
 * token objects appear at the end of a generation that can take seconds (RSA), at a moment no search can
 * precede: on SoftHSM, every change other processes made meanwhile would then stay hidden from this one
 * (the false KEY_NOT_FOUND, a competing revision missed), and this process's searches running meanwhile
 * raced SoftHSM writing them (it locks object files per process, not per thread): the generation failed
 * with CKR_TEMPLATE_INCONSISTENT, CKR_FUNCTION_FAILED or CKR_GENERAL_ERROR. A copy keeps CKA_SENSITIVE,
 * CKA_EXTRACTABLE, CKA_LOCAL, CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE (measured on SoftHSM). A
 * token that refuses such a copy generates in the token, as tokens that keep their objects in the HSM can.
 */
async function generate(api: Pkcs11Api, session: Handle, logger: TokenLog, g: Generation): Promise<Handle[]> {
  if (copyRefused.has(api)) return generateIn(api, session, g, true);
  const made = await generateIn(api, session, g, false);
  const copies: Handle[] = [];
  try {
    for (const h of made) copies.push(copyIntoToken(api, session, h));
    return copies;
  } catch (e) {
    for (const h of copies) quietly(() => destroyTokenObject(api, session, h));
    if (copies.length > 0 || !COPY_REFUSED.has(ckrOf(e) ?? -1)) throw e;
    logger.warn({ ckr: ckrName(e) }, 'pkcs11: the token does not copy session keys into the token; keys are generated in the token');
    copyRefused.add(api);
    return generateIn(api, session, g, true);
  } finally {
    for (const h of made) quietly(() => api.C_DestroyObject(session, h));
  }
}

/** Cleanup after a failure or of session objects: the error that matters is the caller's. */
function quietly(cleanup: () => void): void {
  try {
    cleanup();
  } catch {
    // a session object goes with its session anyway; a token copy left behind is an orphan, removed later
  }
}

/** Runs the generation with every template's CKA_TOKEN set to `token`; the handles come private/secret key last. */
async function generateIn(api: Pkcs11Api, session: Handle, g: Generation, token: boolean): Promise<Handle[]> {
  const at = (t: pkcs11js.Template) => t.map((a) => (a.type === A.CKA_TOKEN ? { type: A.CKA_TOKEN, value: token } : a));
  if (g.kind === 'secret') return [api.C_GenerateKey(session, { mechanism: g.mechanism }, at(g.secretKey))];
  const pair = api.C_GenerateKeyPair(session, { mechanism: g.mechanism }, at(g.publicKey), at(g.privateKey));
  return [pair.publicKey, pair.privateKey];
}
