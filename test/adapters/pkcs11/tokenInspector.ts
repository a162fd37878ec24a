/**
 * An independent look into a SoftHSM token with pkcs11js directly, not through the adapter: reads key
 * attributes back and lists objects. Cryptoki state is per process, so this shares the adapter's
 * initialization (CKR_CRYPTOKI_ALREADY_INITIALIZED is fine) and never finalizes.
 */
import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { decodeMetadata, encodeMetadata, newKeyObjectId, type MetadataRecord } from '../../../adapters/pkcs11/keyObjects.js';
import type { KeyVersion } from '../../../src/keys/names.js';
import type { KeyPurpose, KeyType } from '../../../src/keys/types.js';

const CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191;
const CKR_USER_ALREADY_LOGGED_IN = 0x100;

export class TokenInspector {
  private readonly api = new pkcs11js.PKCS11();

  constructor(library: string, private readonly label: string, private readonly pin: string) {
    this.api.load(library);
  }

  private slot(): Buffer {
    try {
      this.api.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (e) {
      if ((e as { code?: number }).code !== CKR_CRYPTOKI_ALREADY_INITIALIZED) throw e;
    }
    const slot = this.api.C_GetSlotList(true).find((s) => this.api.C_GetTokenInfo(s).label.trimEnd() === this.label);
    if (!slot) throw new Error(`token ${this.label} not found`);
    return slot;
  }

  /**
   * Imports a key of known value as version 1 of key `name`, laid out exactly as the adapter writes keys:
   * each object (given without token, private, label and ID) on the token under the name and a version
   * CKA_ID, plus the metadata object that makes it hsm-bridge's. Lets tests check outputs against
   * published vectors and node:crypto, which a key generated in the token cannot.
   */
  importKnownKey(name: string, type: KeyType, purpose: KeyPurpose, objects: pkcs11js.Template[]): void {
    const id = newKeyObjectId(1 as KeyVersion);
    const now = new Date().toISOString();
    const A = pkcs11js;
    this.withSession((api, session) => {
      for (const template of objects) {
        api.C_CreateObject(session, [...template, { type: A.CKA_TOKEN, value: true }, { type: A.CKA_PRIVATE, value: true }, { type: A.CKA_LABEL, value: name }, { type: A.CKA_ID, value: id }]);
      }
      api.C_CreateObject(session, [
        { type: A.CKA_CLASS, value: A.CKO_DATA },
        { type: A.CKA_TOKEN, value: true },
        { type: A.CKA_PRIVATE, value: true },
        { type: A.CKA_APPLICATION, value: 'hsm-bridge' },
        { type: A.CKA_LABEL, value: name },
        {
          type: A.CKA_VALUE,
          value: encodeMetadata({
            revision: 0, type, purpose, state: 'enabled', createdAt: now,
            versions: { 1: { createdAt: now, id: id.toString('hex') } }, writtenAt: now, nonce: randomBytes(8).toString('hex'),
          }),
        },
      ]);
    });
  }

  /** A logged-in session kept open until close(): for token-side code run in the test's thread. */
  openSession(): { api: pkcs11js.PKCS11; slot: Buffer; session: Buffer; close(): void } {
    const slot = this.slot();
    const session = this.api.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      this.api.C_Login(session, pkcs11js.CKU_USER, this.pin);
    } catch (e) {
      if ((e as { code?: number }).code !== CKR_USER_ALREADY_LOGGED_IN) throw e;
    }
    return { api: this.api, slot, session, close: () => this.api.C_CloseSession(session) };
  }

  /** Runs fn on a fresh logged-in session, closed afterwards. */
  withSession<T>(fn: (api: pkcs11js.PKCS11, session: Buffer) => T): T {
    const session = this.api.C_OpenSession(this.slot(), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      try {
        this.api.C_Login(session, pkcs11js.CKU_USER, this.pin);
      } catch (e) {
        if ((e as { code?: number }).code !== CKR_USER_ALREADY_LOGGED_IN) throw e;
      }
      return fn(this.api, session);
    } finally {
      this.api.C_CloseSession(session);
    }
  }

  mechanisms(): number[] {
    return this.api.C_GetMechanismList(this.slot());
  }

  /** The objects of one class labelled `label`: their CKA_ID and the boolean attributes asked for. */
  objects(label: string, objectClass: number, booleans: readonly number[]): { id: Buffer; flags: Map<number, boolean> }[] {
    return this.withSession((api, session) => {
      api.C_FindObjectsInit(session, [
        { type: pkcs11js.CKA_CLASS, value: objectClass },
        { type: pkcs11js.CKA_LABEL, value: label },
      ]);
      const handles = api.C_FindObjects(session, 100);
      api.C_FindObjectsFinal(session);
      return handles.map((h) => {
        if (objectClass === pkcs11js.CKO_DATA) return { id: Buffer.alloc(0), flags: new Map<number, boolean>() }; // data objects have no CKA_ID
        const [id, ...values] = api.C_GetAttributeValue(session, h, [{ type: pkcs11js.CKA_ID }, ...booleans.map((type) => ({ type }))]);
        return { id: id!.value, flags: new Map(values.map((v) => [v.type, v.value[0] === 1])) };
      });
    });
  }

  /** The revisions of the name's metadata objects, highest first. */
  metadataRevisions(name: string): number[] {
    return this.withSession((api, session) => {
      api.C_FindObjectsInit(session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_APPLICATION, value: 'hsm-bridge' },
        { type: pkcs11js.CKA_LABEL, value: name },
      ]);
      const handles = api.C_FindObjects(session, 100);
      api.C_FindObjectsFinal(session);
      return handles.map((h) => decodeMetadata(api.C_GetAttributeValue(session, h, [{ type: pkcs11js.CKA_VALUE }])[0]!.value)!.revision).sort((a, b) => b - a);
    });
  }

  /**
   * Replaces the name's latest metadata object by one whose record `edit` changed, written as a release of
   * the adapter might have (the record is not checked): for records the adapter itself no longer writes.
   */
  rewriteMetadata(name: string, edit: (record: MetadataRecord) => MetadataRecord): void {
    this.withSession((api, session) => {
      const template = [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_APPLICATION, value: 'hsm-bridge' },
        { type: pkcs11js.CKA_LABEL, value: name },
      ];
      api.C_FindObjectsInit(session, template);
      const handles = api.C_FindObjects(session, 100);
      api.C_FindObjectsFinal(session);
      const [latest] = handles
        .map((handle) => ({ handle, record: decodeMetadata(api.C_GetAttributeValue(session, handle, [{ type: pkcs11js.CKA_VALUE }])[0]!.value)! }))
        .sort((a, b) => b.record.revision - a.record.revision);
      api.C_CreateObject(session, [...template, { type: pkcs11js.CKA_TOKEN, value: true }, { type: pkcs11js.CKA_PRIVATE, value: true }, { type: pkcs11js.CKA_VALUE, value: encodeMetadata(edit(latest!.record)) }]);
      api.C_DestroyObject(session, latest!.handle);
    });
  }

  /** Closes every session of this process on the token, as an HSM restart would. */
  closeAllSessions(): void {
    this.api.C_CloseAllSessions(this.slot());
  }
}

