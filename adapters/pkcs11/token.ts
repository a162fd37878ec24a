/**
 * Finding the configured token, opening sessions on it and logging in. Login state belongs to the token
 * for the whole process, so one C_Login serves every session (and every backend on that token).
 */
import pkcs11js from 'pkcs11js';
import { readPin, type PinSource } from './config.js';
import { CKR, ckrName, ckrOf, loginError, unavailable } from './errors.js';
import type { Handle, Pkcs11Api } from './module.js';

export type TokenSelector = { readonly label: string } | { readonly slot: number };

/** CK_SLOT_ID as a number (pkcs11js hands it over as a native-endian CK_ULONG buffer). */
export function slotNumber(slot: Handle): number {
  return slot.length >= 8 ? Number(slot.readBigUInt64LE(0)) : slot.readUInt32LE(0);
}

export function describeToken(token: TokenSelector): string {
  return 'label' in token ? `token labelled "${token.label}"` : `slot ${token.slot}`;
}

/** The slot holding the token; labels are compared without PKCS#11's blank padding. */
export function findSlot(api: Pkcs11Api, token: TokenSelector): Handle {
  let slots: Handle[];
  try {
    slots = api.C_GetSlotList(true);
  } catch (e) {
    throw unavailable(`C_GetSlotList failed (${ckrName(e)})`, e);
  }
  for (const slot of slots) {
    if ('slot' in token) {
      if (slotNumber(slot) === token.slot) return slot;
      continue;
    }
    try {
      if (api.C_GetTokenInfo(slot).label.trimEnd() === token.label) return slot;
    } catch {
      // A slot whose token went away between the two calls is simply not ours.
    }
  }
  throw unavailable(`no ${describeToken(token)} is present (${slots.length} slot(s) with a token)`);
}

/**
 * Session workers for a token that allows `maxSessionCount` sessions (C_GetTokenInfo; 0 means no limit,
 * and CK_UNAVAILABLE_INFORMATION reads as a huge number): never more than it allows, counting the control
 * worker's session, and never more than configured. 0 when the token cannot give a worker a session.
 */
export function sessionPoolSizeFor(configured: number, maxSessionCount: number): number {
  if (maxSessionCount <= 0) return configured;
  return Math.min(configured, maxSessionCount - 1);
}

export function openSession(api: Pkcs11Api, slot: Handle): Handle {
  // Read-write: key generation and metadata updates create token objects.
  return api.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
}

export function closeSession(api: Pkcs11Api, session: Handle): void {
  try {
    api.C_CloseSession(session);
  } catch {
    // A session of a dead device or finalized module: nothing to close.
  }
}

/** Logs the user in. The PIN is read here, used once, and never kept, logged or put in an error. */
export async function login(api: Pkcs11Api, session: Handle, pin: PinSource): Promise<void> {
  const secret = await readPin(pin);
  try {
    api.C_Login(session, pkcs11js.CKU_USER, secret);
  } catch (e) {
    if (ckrOf(e) === CKR.USER_ALREADY_LOGGED_IN) return; // another backend in this process on the same token
    throw loginError(e);
  }
}
