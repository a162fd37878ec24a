/**
 * Key exchange with TR-31 / ANSI X9.143 key blocks: import a key wrapped under a KBPK held in the backend,
 * export a key wrapped under one. Version B (TDES KBPK) and D (AES KBPK).
 *
 * The KBPK stays in the backend: the block's encryption and authentication keys are derived from it by
 * CMAC inside the backend. Those two derived keys, and the clear key being imported or exported, exist in
 * this process while the block is opened or sealed (a generic HSM has no TR-31 mechanism), and are
 * zeroed before the call returns.
 *
 * The header decides what an imported key may do (key usage -> purpose and the key's own stored usage,
 * algorithm -> key type, mode of use -> the uses the core allows, exportability -> whether it may be
 * exported again), see usage.ts. Of the optional blocks, KC and KP (check values of the key and of the
 * KBPK) are verified (checkValueBlocks.ts). The others are not carried into the key: PB (padding), LB
 * (label), TS and TC (time stamps), KS and IK (key set and initial key IDs: DUKPT takes the KSN from each
 * request), CT (certificates), HM (the hash of an HMAC key: no accepted usage is one), DA (derivations
 * allowed: only defined for usage B3, which is refused) and proprietary numeric blocks. That is safe
 * because none of them can widen what the key may do: every permission comes from the fixed header
 * fields above, which the block's MAC authenticates, and whatever a block narrows for another system is
 * narrower still here (hsm-bridge offers each kind of key only its one scheme).
 */
import { HsmBridgeError, invalid } from '../../errors.js';
import { keyTypes, type KeyMetadata } from '../../keys/types.js';
import { keyUsed, type KeyUsed } from '../keyUsed.js';
import type { PaymentKey, PaymentKeys } from '../paymentKeys.js';
import { deriveKeyBlockKeys, openKeyBlock, sealKeyBlock, type KeyBlockKeys } from './keyBlock.js';
import { assertCheckValue, checkBlockOf, checkValueBlock, checkValueMismatch } from './checkValueBlocks.js';
import { parseVersion, type Tr31Header } from './header.js';
import { assertKbpkProtects, headerForKey, keyFromHeader } from './usage.js';

/** Longest key block accepted: a 3-key TDES or AES-256 key with generous optional blocks. */
export const MAX_KEY_BLOCK_CHARS = 4096;

export interface ImportTr31Request {
  /** The name of the new key. */
  readonly name: unknown;
  readonly keyBlock: unknown;
  readonly kbpk: { readonly keyName: unknown; readonly keyVersion?: unknown };
}

export interface ImportTr31Result {
  readonly key: KeyMetadata;
  readonly keyCheckValue: string;
  readonly kbpk: KeyUsed;
}

export interface ExportTr31Request {
  readonly name: unknown;
  readonly keyVersion?: unknown;
  readonly kbpk: { readonly keyName: unknown; readonly keyVersion?: unknown };
  /** The block's exportability: E (the receiver may export it again under a KEK), N (never), S (sensitive). Default N. */
  readonly exportability?: unknown;
}

export interface ExportTr31Result {
  readonly keyBlock: string;
  readonly keyName: string;
  readonly keyVersion: number;
  readonly keyCheckValue: string;
  readonly kbpk: KeyUsed;
}

export class KeyExchangeService {
  constructor(private readonly keys: PaymentKeys) {}

  async importTr31(req: ImportTr31Request): Promise<ImportTr31Result> {
    const text = req.keyBlock;
    if (typeof text !== 'string' || text.length === 0) throw invalid('keyBlock is required: the TR-31 key block as text');
    if (text.length > MAX_KEY_BLOCK_CHARS) throw new HsmBridgeError('PAYLOAD_TOO_LARGE', `a key block is at most ${MAX_KEY_BLOCK_CHARS} characters`);
    const version = parseVersion(text.slice(0, 1));
    const kbpk = await this.keys.resolve(req.kbpk?.keyName, 'kbpk', 'decrypt', req.kbpk?.keyVersion);
    checkKbpkFamily(kbpk.meta, version);
    const blockKeys = await this.blockKeys(kbpk, version);
    let material: Buffer | undefined;
    try {
      const opened = openKeyBlock(text, blockKeys);
      material = opened.key;
      const target = keyFromHeader(opened.header, material.length);
      assertKbpkProtects(kbpk.meta.type, target.type);
      await this.checkValues(opened.header, material, kbpk);
      const key = await this.keys.importKey({ name: req.name, ...target }, material);
      const keyCheckValue = await this.keys.keyCheckValue(key);
      return { key, keyCheckValue: keyCheckValue!, kbpk: keyUsed(kbpk) };
    } finally {
      material?.fill(0);
      zeroKeys(blockKeys);
    }
  }

  async exportTr31(req: ExportTr31Request): Promise<ExportTr31Result> {
    const exportability = req.exportability ?? 'N';
    if (exportability !== 'E' && exportability !== 'N' && exportability !== 'S') throw invalid('exportability must be E, N or S');
    const key = await this.keys.exportable(req.name, req.keyVersion);
    const { meta, version } = key;
    const kbpk = await this.keys.resolve(req.kbpk?.keyName, 'kbpk', 'encrypt', req.kbpk?.keyVersion);
    if (kbpk.meta.name === meta.name) throw invalid('a key cannot be exported under itself');
    const blockVersionFor = keyTypes[kbpk.meta.type].family === 'tdes' ? 'B' : 'D';
    assertKbpkProtects(kbpk.meta.type, meta.type);
    const header = headerForKey(meta, blockVersionFor, exportability);
    const keyCheckValue = (await this.keys.keyCheckValue(meta, version))!;
    const blockKeys = await this.blockKeys(kbpk, blockVersionFor);
    let material: Buffer | undefined;
    try {
      material = await this.keys.exportKey(key);
      const keyBlock = sealKeyBlock(header, material, blockKeys);
      return { keyBlock, keyName: meta.name, keyVersion: version.version, keyCheckValue, kbpk: keyUsed(kbpk) };
    } finally {
      material?.fill(0);
      zeroKeys(blockKeys);
    }
  }

  /** Verifies the KC (the unwrapped key's) and KP (the KBPK's) check values the header carries, if any. */
  private async checkValues(header: Tr31Header, material: Buffer, kbpk: PaymentKey): Promise<void> {
    const keyFamily = header.algorithm === 'T' ? 'tdes' : 'aes';
    const kc = checkValueBlock(header, 'KC', keyFamily);
    if (kc) {
      const block = checkBlockOf(keyFamily, kc.method, material);
      try {
        assertCheckValue(kc, block);
      } finally {
        block.fill(0);
      }
    }
    const kbpkFamily = keyTypes[kbpk.meta.type].family === 'tdes' ? 'tdes' : 'aes';
    const kp = checkValueBlock(header, 'KP', kbpkFamily);
    if (!kp) return;
    // The KBPK's check block by the core's own KCV method (TDES: ECB, AES: CMAC) is cached and compared
    // in the core; a TDES KBPK's CMAC check value is computed by the backend (TDES_CMAC, as TR-31 B uses).
    if (kbpkFamily === 'aes' || kp.method === 'legacy') {
      if (!(await this.keys.checkBlockStartsWith(kbpk, kp.kcv))) throw checkValueMismatch(kp);
      return;
    }
    const block = await this.keys.cmac(kbpk, Buffer.alloc(8));
    try {
      assertCheckValue(kp, block);
    } finally {
      block.fill(0);
    }
  }

  /** KBEK and KBAK, each part a CMAC under the KBPK (TDES_CMAC for version B, AES_CMAC for D) computed in the backend. */
  private blockKeys(kbpk: PaymentKey, version: 'B' | 'D'): Promise<KeyBlockKeys> {
    return deriveKeyBlockKeys(version, keyTypes[kbpk.meta.type].bits / 8, (input) => this.keys.cmac(kbpk, input));
  }
}


function checkKbpkFamily(kbpk: KeyMetadata, version: 'B' | 'D'): void {
  const want = version === 'B' ? 'tdes' : 'aes';
  if (keyTypes[kbpk.type].family !== want) {
    throw new HsmBridgeError('INCOMPATIBLE_KEY', `a version ${version} key block is protected by ${want === 'tdes' ? 'a TDES' : 'an AES'} KBPK; ${kbpk.name} is ${kbpk.type}`);
  }
}


function zeroKeys(keys: KeyBlockKeys): void {
  keys.encryption.fill(0);
  keys.authentication.fill(0);
}

