/**
 * An independent look into a SoftHSM token with pkcs11js directly, not through the adapter: reads key
 * attributes back and lists objects. Cryptoki state is per process, so this shares the adapter's
 * initialization (CKR_CRYPTOKI_ALREADY_INITIALIZED is fine) and never finalizes.
 */
import pkcs11js from 'pkcs11js';

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

  /** Closes every session of this process on the token, as an HSM restart would. */
  closeAllSessions(): void {
    this.api.C_CloseAllSessions(this.slot());
  }
}

