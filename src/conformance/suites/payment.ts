/**
 * The payment conformance suite: the backend port's payment primitives (importKey, exportKey,
 * encryptBlocks, decryptBlocks, deriveDukptKey, releaseTransientKey, and mac/verifyMac with the payment
 * MACs), driven directly, as the core's payment services use them. Every output is checked against an
 * independent computation (node:crypto ECB, published vectors), never only against the backend's own
 * inverse. What capabilities().payment and capabilities().mac list must work; what they leave out must
 * be refused with UNSUPPORTED_BY_BACKEND.
 *
 * Use from a test file:
 *   describePaymentConformance('software', async () => ({ open: () => ..., cleanup: () => ... }));
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { expect } from '../expect.js';
import type { ConformanceTarget, SuiteHost } from '../host.js';
import { macAlgorithms, type MacAlgorithm } from '../../algorithms/registry.js';
import type { Backend, KeyRef, NewKey, TransientKey } from '../../backend/port.js';
import { HsmBridgeError } from '../../errors.js';
import { parseKeyName, type KeyVersion } from '../../keys/names.js';
import { keyTypes, type KeyPurpose, type KeyType, type KeyUsage, type ModeOfUse } from '../../keys/types.js';
import { cmacWithKey } from '../../payment/crypto/cmac.js';
import { paymentMac } from '../../payment/crypto/iso9797.js';
import { setOddParity } from '../../payment/crypto/parity.js';
import { deriveAesDukptPinKey, type AesDukptWorkingKey } from '../../payment/dukpt/aesDukpt.js';
import { deriveTdesDukptPinKey } from '../../payment/dukpt/tdesDukpt.js';
import { decipherFormat4 } from '../../payment/pin/pinBlock.js';
import { nodeEcb } from '../reference/nodeBlockCiphers.js';

const hex = (s: string) => Buffer.from(s.replace(/\s/g, ''), 'hex');
const upperHex = (b: Buffer) => b.toString('hex').toUpperCase();

/** Known keys (FIELD-NOTES.md section 5 and the standards' examples). */
const known = {
  tdesBdk: { type: 'TDES_2KEY', material: hex('0123456789ABCDEFFEDCBA9876543210'), kcv: '08D7B4' },
  aesBdk: { type: 'AES_128', material: hex('FEDCBA9876543210F1F1F1F1F1F1F1F1') },
  tr31Key: { type: 'TDES_2KEY', material: hex('3F419E1CB7079442AA37474C2EFBF8B8'), kcv: '57C409' },
  format4Key: { type: 'AES_128', material: hex('C1D0F8FB4958670DBA40AB1F3752EF0D') },
  tr31KbpkD: { type: 'AES_256', material: hex('88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6') },
} as const satisfies Record<string, { type: KeyType; material: Buffer; kcv?: string }>;

const paymentPurposes = ['pin', 'mac', 'bdk', 'kbpk'] as const satisfies readonly KeyPurpose[];
/** The X9.143 usage of a MAC key that computes each payment MAC. */
const usageFor: Record<string, KeyUsage> = {
  ISO9797_ALG1: 'M1',
  ISO9797_ALG1_PAD2: 'M1',
  ISO9797_ALG3: 'M3',
  ISO9797_ALG3_PAD2: 'M3',
  TDES_CMAC: 'M6',
  AES_CMAC: 'M6',
};
const paymentMacs = (Object.keys(macAlgorithms) as MacAlgorithm[]).filter((a) => a !== 'HMAC_SHA256');

/** What the core does before importKey: DES ignores parity bits, and backends hold odd-parity keys. */
const asImported = (type: KeyType, material: Buffer) => (keyTypes[type].family === 'tdes' ? setOddParity(Buffer.from(material)) : Buffer.from(material));

/** ECB with node:crypto (../reference/nodeBlockCiphers.ts): the independent reference for every block operation. */
const ecbFor = (type: KeyType | AesDukptWorkingKey, direction: 'encrypt' | 'decrypt', key: Buffer, data: Buffer): Buffer =>
  nodeEcb(type.startsWith('TDES') ? 'tdes' : 'aes', direction, key, data);

/** ISO 9797-1 MAC algorithms 1 and 3 with node:crypto's CBC, straight from the standard's definition. */
function nodeIso9797(algorithm: MacAlgorithm, key: Buffer, data: Buffer): Buffer {
  const { padding } = macAlgorithms[algorithm] as { padding: 1 | 2 };
  // method 1: zeros to a whole block (one zero block for empty data); method 2: 0x80, then zeros
  const marked = padding === 2 ? Buffer.concat([data, Buffer.of(0x80)]) : data;
  const full = Buffer.alloc(Math.max(1, Math.ceil(marked.length / 8)) * 8);
  marked.copy(full);
  const cbcLast = (cipher: string, k: Buffer) => {
    const c = createCipheriv(cipher, k, Buffer.alloc(8)).setAutoPadding(false);
    return Buffer.concat([c.update(full), c.final()]).subarray(-8);
  };
  if (algorithm.startsWith('ISO9797_ALG1')) return cbcLast(key.length === 16 ? 'des-ede-cbc' : 'des-ede3-cbc', key);
  const k1 = key.subarray(0, 8);
  const k2 = key.subarray(8, 16);
  const h = cbcLast('des-ede3-cbc', Buffer.concat([k1, k1, k1]));
  const des = (d: 'encrypt' | 'decrypt', k: Buffer, b: Buffer) => ecbFor('TDES_3KEY', d, Buffer.concat([k, k, k]), b);
  return des('encrypt', k1, des('decrypt', k2, h));
}

/** The key type to exercise each payment MAC with, and its family. */
const macKeyTypes: Record<Exclude<MacAlgorithm, 'HMAC_SHA256'>, KeyType[]> = {
  AES_CMAC: ['AES_128', 'AES_256'],
  TDES_CMAC: ['TDES_2KEY', 'TDES_3KEY'],
  ISO9797_ALG1: ['TDES_2KEY', 'TDES_3KEY'],
  ISO9797_ALG1_PAD2: ['TDES_2KEY', 'TDES_3KEY'],
  ISO9797_ALG3: ['TDES_2KEY'],
  ISO9797_ALG3_PAD2: ['TDES_2KEY'],
};

export function describePaymentConformance(t: SuiteHost, label: string, makeTarget: () => Promise<ConformanceTarget>): void {
  t.describe(`payment conformance: ${label}`, () => {
    let target: ConformanceTarget;
    let backend: Backend;
    let seq = 0;
    const fresh = (stem: string) => `pay-${stem}-${Date.now().toString(36)}-${seq++}`;
    const caps = () => backend.capabilities();
    const payment = () => caps().payment;
    const unsupported = { code: 'UNSUPPORTED_BY_BACKEND' };
    /** A backend that offers no payment operation at all (KMIP) serves no payment keys: it refuses them with UNSUPPORTED_BY_BACKEND. */
    const servesPaymentKeys = () => {
      const p = payment();
      return p.dukpt.length > 0 || p.importKeys || p.exportKeys || caps().mac.some((m) => macAlgorithms[m].family !== 'hmac');
    };

    const newKey = (type: KeyType, purpose: KeyPurpose, extra: { exportable?: boolean; modeOfUse?: ModeOfUse; keyUsage?: KeyUsage } = {}): NewKey => ({
      name: parseKeyName(fresh(`${type}-${purpose}`.toLowerCase())),
      type,
      purpose,
      ...extra,
    });
    const refTo = (name: string, type: KeyType, version = 1): KeyRef => ({ name: parseKeyName(name), version: version as KeyVersion, type });
    /** Imports a known key the way the core does; undefined when the backend cannot import (after checking that it says so). */
    const importKnown = async (type: KeyType, purpose: KeyPurpose, material: Buffer, extra: { exportable?: boolean; modeOfUse?: ModeOfUse; keyUsage?: KeyUsage } = {}) => {
      const key = newKey(type, purpose, extra);
      if (!payment().importKeys || !caps().keyTypes.includes(type)) {
        await expect(backend.importKey(key, asImported(type, material))).rejects.toMatchObject(unsupported);
        t.refused(payment().importKeys ? `import of ${type} keys` : 'key import');
        return undefined;
      }
      const meta = await backend.importKey(key, asImported(type, material));
      return { meta, ref: refTo(meta.name, type) };
    };
    /** The KCV by the backend, as the core computes it: TDES ECB of zeros, AES CMAC of zeros. */
    const backendKcv = async (ref: KeyRef) =>
      upperHex(
        keyTypes[ref.type].family === 'tdes'
          ? (await backend.encryptBlocks(ref, Buffer.alloc(8))).subarray(0, 3)
          : (await backend.mac(ref, 'AES_CMAC', Buffer.alloc(16))).subarray(0, 3),
      );
    /** The KCV computed here from the clear key. */
    const expectedKcv = (type: KeyType, material: Buffer) =>
      upperHex((keyTypes[type].family === 'tdes' ? ecbFor(type, 'encrypt', material, Buffer.alloc(8)) : cmacWithKey('aes', material, Buffer.alloc(16))).subarray(0, 3));

    t.beforeAll(async () => {
      target = await makeTarget();
      backend = await target.open();
    });
    t.afterAll(async () => {
      await backend?.close();
      await target?.cleanup();
    });

    t.describe('capabilities', () => {
      t.it('payment capabilities name only known DUKPT schemes', async () => {
        const p = payment();
        for (const s of p.dukpt) expect(['tdes', 'aes']).toContain(s);
        expect(new Set(p.dukpt).size).toBe(p.dukpt.length);
        expect(typeof p.importKeys).toBe('boolean');
        expect(typeof p.exportKeys).toBe('boolean');
      });
    });

    t.describe('importKey of known keys', () => {
      const cases = [
        ['TDES BDK vector', known.tdesBdk],
        ['AES BDK vector', known.aesBdk],
        ['TR-31 A.7.2.2 key', known.tr31Key],
        ['format 4 key', known.format4Key],
        ['TR-31 A.7.4 KBPK', known.tr31KbpkD],
      ] as const;
      for (const [what, k] of cases) {
        t.it(`${what} (${k.type}): every payment purpose, with its attributes and KCV, still there after close and reopen`, async () => {
          const imported: Array<{ ref: KeyRef; purpose: KeyPurpose; exportable: boolean; modeOfUse?: ModeOfUse }> = [];
          for (const [i, purpose] of paymentPurposes.entries()) {
            const modeOfUse = (['B', 'G', 'X', 'D'] as const)[i];
            const exportable = i % 2 === 0 && payment().exportKeys;
            const r = await importKnown(k.type, purpose, k.material, { ...(exportable ? { exportable } : {}), modeOfUse });
            if (!r) return;
            expect(r.meta).toMatchObject({ type: k.type, purpose, state: 'enabled', primaryVersion: 1, modeOfUse });
            expect(r.meta.exportable ?? false).toBe(exportable);
            expect(r.meta.versions.map((v) => v.version)).toEqual([1]);
            imported.push({ ref: r.ref, purpose, exportable, modeOfUse });
          }
          const kcv = expectedKcv(k.type, k.material);
          if ('kcv' in k) expect(kcv).toBe(k.kcv);
          for (const { ref } of imported) expect(await backendKcv(ref)).toBe(kcv);

          await backend.close();
          backend = await target.open();
          for (const { ref, purpose, exportable, modeOfUse } of imported) {
            const meta = await backend.describeKey(ref.name);
            expect(meta).toMatchObject({ type: k.type, purpose, state: 'enabled', modeOfUse });
            expect(meta.exportable ?? false).toBe(exportable);
            expect(await backendKcv(ref)).toBe(kcv);
          }
        });
      }
    });

    t.describe('block operations against node:crypto', () => {
      for (const type of ['TDES_2KEY', 'TDES_3KEY', 'AES_128', 'AES_256'] as const) {
        t.it(`${type} PIN key: ECB encryption and decryption of several blocks equal node:crypto's, both ways`, async () => {
          const material = asImported(type, randomBytes(keyTypes[type].bits / 8));
          const r = await importKnown(type, 'pin', material);
          if (!r) return;
          const data = randomBytes(type.startsWith('AES') ? 16 * 4 : 8 * 5);
          const ours = await backend.encryptBlocks(r.ref, data);
          expect(ours).toEqual(ecbFor(type, 'encrypt', material, data));
          expect(await backend.decryptBlocks(r.ref, ecbFor(type, 'encrypt', material, data))).toEqual(data);
          expect(await backend.decryptBlocks(r.ref, data)).toEqual(ecbFor(type, 'decrypt', material, data));
        });
      }

      t.it('the TDES KCV vector: the X9.24 BDK encrypts 8 zero bytes to 08D7B4...', async () => {
        const r = await importKnown('TDES_2KEY', 'pin', known.tdesBdk.material);
        if (!r) return;
        const block = await backend.encryptBlocks(r.ref, Buffer.alloc(8));
        expect(upperHex(block).startsWith('08D7B4')).toBe(true);
        expect(block).toEqual(ecbFor('TDES_2KEY', 'encrypt', known.tdesBdk.material, Buffer.alloc(8)));
      });

      t.it('an AES key of purpose encrypt is no ECB oracle (INCOMPATIBLE_KEY)', async () => {
        if (!caps().keyTypes.includes('AES_256')) return t.refused('AES_256 keys');
        const meta = await backend.createKey(newKey('AES_256', 'encrypt'));
        const ref = refTo(meta.name, 'AES_256');
        // Refused either way: as the wrong purpose, or (a backend with no payment operations) as unsupported.
        const refusal = { code: servesPaymentKeys() ? 'INCOMPATIBLE_KEY' : expect.stringMatching(/^(INCOMPATIBLE_KEY|UNSUPPORTED_BY_BACKEND)$/) };
        await expect(backend.encryptBlocks(ref, Buffer.alloc(16))).rejects.toMatchObject(refusal);
        await expect(backend.decryptBlocks(ref, Buffer.alloc(16))).rejects.toMatchObject(refusal);
      });
    });

    t.describe('DUKPT', () => {
      const tdesPinBlock = hex('041274EDCBA9876F'); // PIN 1234, PAN 4012345678909, format 0
      /** X9.24-1:2009 test vectors: BDK 0123...3210, KSN FFFF9876543210E0000n, the PIN block above encrypted. */
      const tdesVectors = [
        ['FFFF9876543210E00001', '1B9C1845EB993A7A'],
        ['FFFF9876543210E00002', '10A01C8D02C69107'],
        ['FFFF9876543210E00003', '18DC07B94797B466'],
      ] as const;

      t.it('TDES: the published transaction keys decrypt the published PIN blocks; more KSNs match node:crypto under the X9.24-1 key', async () => {
        const r = await importKnown('TDES_2KEY', 'bdk', known.tdesBdk.material);
        if (!r) return;
        const derive = (ksn: Buffer) => backend.deriveDukptKey(r.ref, { scheme: 'tdes', ksn });
        if (!payment().dukpt.includes('tdes')) {
          await expect(derive(hex(tdesVectors[0][0]))).rejects.toMatchObject(unsupported);
          return t.refused('TDES DUKPT');
        }
        for (const [ksn, block] of tdesVectors) {
          const key = await derive(hex(ksn));
          try {
            expect(key).toMatchObject({ transient: true, family: 'tdes', bits: 128 });
            expect(await backend.decryptBlocks(key, hex(block)), ksn).toEqual(tdesPinBlock);
            expect(await backend.encryptBlocks(key, tdesPinBlock), ksn).toEqual(hex(block));
          } finally {
            await backend.releaseTransientKey(key);
          }
        }
        // the first 21 counters, a counter with 10 one bits, and the highest 21-bit counter with 10 one bits
        const counters = [...Array.from({ length: 21 }, (_, i) => i + 1), 0x3ff, 0x1ff800];
        for (const counter of counters) {
          const ksn = hex('FFFF9876543210E00000');
          ksn.writeUIntBE(ksn.readUIntBE(7, 3) | counter, 7, 3);
          const expectedKey = deriveTdesDukptPinKey(known.tdesBdk.material, ksn);
          const key = await derive(ksn);
          try {
            const data = randomBytes(16);
            expect(await backend.encryptBlocks(key, data), upperHex(ksn)).toEqual(ecbFor('TDES_2KEY', 'encrypt', expectedKey, data));
          } finally {
            await backend.releaseTransientKey(key);
            expectedKey.fill(0);
          }
        }
      });

      t.it('AES: the published working key deciphers the published format 4 PIN block; every working key type matches X9.24-3', async () => {
        const r = await importKnown('AES_128', 'bdk', known.aesBdk.material);
        if (!r) return;
        const ksn = hex('1234567890123456 00000001');
        const derive = (workingKey: AesDukptWorkingKey, k = ksn) => backend.deriveDukptKey(r.ref, { scheme: 'aes', ksn: k, workingKey });
        if (!payment().dukpt.includes('aes')) {
          await expect(derive('AES_128')).rejects.toMatchObject(unsupported);
          return t.refused('AES DUKPT');
        }
        const key = await derive('AES_128');
        try {
          expect(key).toMatchObject({ transient: true, family: 'aes', bits: 128 });
          const probe = randomBytes(32);
          expect(await backend.encryptBlocks(key, probe)).toEqual(ecbFor('AES_128', 'encrypt', hex('AF8CB133A78F8DC2D1359F18527593FB'), probe));
          const pin = await decipherFormat4(hex('A912150391AB65A67E52883D81CE2D15'), '4111111111111111', (b) => backend.decryptBlocks(key, b));
          expect(pin.toString()).toBe('1234');
        } finally {
          await backend.releaseTransientKey(key);
        }
        // An AES-128 BDK derives working keys up to its strength: AES-128 and both TDES lengths.
        for (const workingKey of ['AES_128', 'TDES_2KEY', 'TDES_3KEY'] as const) {
          for (const counter of [1, 2, 0x10, 0xffff]) {
            const k = hex('1234567890123456 00000000');
            k.writeUInt32BE(counter, 8);
            const expectedKey = deriveAesDukptPinKey('AES_128', known.aesBdk.material, k, workingKey);
            const derived = await derive(workingKey, k);
            try {
              expect(derived).toMatchObject({ transient: true, family: workingKey.startsWith('AES') ? 'aes' : 'tdes', bits: keyTypes[workingKey].bits });
              const data = randomBytes(32);
              expect(await backend.encryptBlocks(derived, data), `${workingKey} ${counter}`).toEqual(ecbFor(workingKey, 'encrypt', expectedKey, data));
              expect(await backend.decryptBlocks(derived, data)).toEqual(ecbFor(workingKey, 'decrypt', expectedKey, data));
            } finally {
              await backend.releaseTransientKey(derived);
              expectedKey.fill(0);
            }
          }
        }
        for (const tooLong of ['AES_192', 'AES_256'] as const) {
          await expect(derive(tooLong), tooLong).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        }
      });

      t.it('AES-256 BDK: AES-192 and AES-256 working keys match X9.24-3', async () => {
        const bdk = randomBytes(32);
        const r = await importKnown('AES_256', 'bdk', bdk);
        if (!r || !payment().dukpt.includes('aes')) return t.refused('AES DUKPT');
        for (const workingKey of ['AES_192', 'AES_256', 'AES_128'] as const) {
          const ksn = hex('0102030405060708 00000005');
          const expectedKey = deriveAesDukptPinKey('AES_256', bdk, ksn, workingKey);
          const derived = await backend.deriveDukptKey(r.ref, { scheme: 'aes', ksn, workingKey });
          try {
            const data = randomBytes(16);
            expect(await backend.encryptBlocks(derived, data), workingKey).toEqual(ecbFor(workingKey, 'encrypt', expectedKey, data));
          } finally {
            await backend.releaseTransientKey(derived);
            expectedKey.fill(0);
          }
        }
      });

      t.it('a released transient key is refused with an HsmBridgeError; releasing twice is harmless', async () => {
        const r = await importKnown('TDES_2KEY', 'bdk', known.tdesBdk.material);
        if (!r || !payment().dukpt.includes('tdes')) return t.refused('TDES DUKPT');
        const key: TransientKey = await backend.deriveDukptKey(r.ref, { scheme: 'tdes', ksn: hex('FFFF9876543210E00001') });
        await backend.releaseTransientKey(key);
        await expect(backend.decryptBlocks(key, hex('1B9C1845EB993A7A'))).rejects.toBeInstanceOf(HsmBridgeError);
        await expect(backend.encryptBlocks(key, Buffer.alloc(8))).rejects.toBeInstanceOf(HsmBridgeError);
        await expect(backend.releaseTransientKey(key)).resolves.toBeUndefined();
      });

      t.it('only a BDK derives transaction keys', async () => {
        const r = await importKnown('TDES_2KEY', 'pin', known.tdesBdk.material);
        if (!r || !payment().dukpt.includes('tdes')) return t.refused('TDES DUKPT');
        await expect(backend.deriveDukptKey(r.ref, { scheme: 'tdes', ksn: hex('FFFF9876543210E00001') })).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
      });
    });

    t.describe('payment MACs', () => {
      const messages = [Buffer.alloc(0), Buffer.from('12345678'), Buffer.from('0200|4111111111111111'), randomBytes(16), randomBytes(45)];

      for (const algorithm of paymentMacs) {
        t.it(`${algorithm}: equals the MAC computed here with the known key; verifyMac accepts it and refuses changes`, async () => {
          for (const type of macKeyTypes[algorithm as keyof typeof macKeyTypes]) {
            const material = asImported(type, randomBytes(keyTypes[type].bits / 8));
            const r = await importKnown(type, 'mac', material, { keyUsage: usageFor[algorithm] });
            if (!r) return;
            if (!caps().mac.includes(algorithm)) {
              await expect(backend.mac(r.ref, algorithm, messages[1]!)).rejects.toMatchObject(unsupported);
              continue;
            }
            for (const data of messages) {
              const expected = paymentMac(algorithm, material, data);
              if (algorithm.startsWith('ISO9797')) expect(expected, 'ISO 9797-1 by its definition, with node:crypto').toEqual(nodeIso9797(algorithm, material, data));
              const mac = await backend.mac(r.ref, algorithm, data);
              expect(mac, `${type} ${data.length} bytes`).toEqual(expected);
              expect(mac).toHaveLength(macAlgorithms[algorithm].length);
              expect(await backend.verifyMac(r.ref, algorithm, data, mac)).toBe(true);
              const flipped = Buffer.from(mac);
              flipped[flipped.length - 1]! ^= 1;
              expect(await backend.verifyMac(r.ref, algorithm, data, flipped)).toBe(false);
              // (a trailing zero byte would not do: padding method 1 cannot tell it from padding)
              expect(await backend.verifyMac(r.ref, algorithm, Buffer.concat([data, Buffer.of(1)]), mac)).toBe(false);
              expect(await backend.verifyMac(r.ref, algorithm, data, mac.subarray(0, mac.length - 1))).toBe(false);
            }
          }
        });
      }

      t.it('keyUsage is stored with the key and returned, from createKey and importKey; older keys have none', async () => {
        if (!servesPaymentKeys()) {
          await expect(backend.createKey(newKey('AES_128', 'kbpk'))).rejects.toMatchObject(unsupported);
          return t.refused('payment keys');
        }
        if (!caps().keyTypes.includes('TDES_2KEY') || !caps().keyTypes.includes('AES_128')) return t.refused('TDES_2KEY keys and AES_128 keys');
        const created = await backend.createKey(newKey('TDES_2KEY', 'mac', { keyUsage: 'M3' }));
        expect(created.keyUsage).toBe('M3');
        expect((await backend.describeKey(created.name)).keyUsage).toBe('M3');
        expect((await backend.listKeys()).find((k) => k.name === created.name)?.keyUsage).toBe('M3');
        expect((await backend.rotateKey(created.name)).keyUsage).toBe('M3');
        const plain = await backend.createKey(newKey('AES_128', 'kbpk'));
        expect(plain.keyUsage).toBeUndefined();
        const r = await importKnown('AES_256', 'kbpk', known.tr31KbpkD.material, { keyUsage: 'K0' });
        if (r) expect((await backend.describeKey(r.meta.name)).keyUsage).toBe('K0');
      });

      t.it('the backend itself holds a MAC key to its usage: only an M3 key computes the retail MAC, and it computes no other', async () => {
        if (!caps().mac.includes('ISO9797_ALG3') || !caps().mac.includes('ISO9797_ALG1')) return t.refused('mac ISO9797_ALG3 and mac ISO9797_ALG1');
        const data = Buffer.from('0200|4111111111111111');
        const m3 = await backend.createKey(newKey('TDES_2KEY', 'mac', { keyUsage: 'M3' }));
        const general = await backend.createKey(newKey('TDES_2KEY', 'mac'));
        expect(await backend.mac(refTo(m3.name, 'TDES_2KEY'), 'ISO9797_ALG3', data)).toHaveLength(8);
        await expect(backend.mac(refTo(m3.name, 'TDES_2KEY'), 'ISO9797_ALG1', data)).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        await expect(backend.mac(refTo(general.name, 'TDES_2KEY'), 'ISO9797_ALG3', data)).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        expect(await backend.mac(refTo(general.name, 'TDES_2KEY'), 'ISO9797_ALG1', data)).toHaveLength(8);
      });

      t.it('AES_CMAC: the NIST SP 800-38B AES-128 examples', async () => {
        const r = await importKnown('AES_128', 'mac', hex('2b7e151628aed2a6abf7158809cf4f3c'));
        if (!r || !caps().mac.includes('AES_CMAC')) return t.refused('mac AES_CMAC');
        expect(await backend.mac(r.ref, 'AES_CMAC', Buffer.alloc(0))).toEqual(hex('bb1d6929e95937287fa37d129b756746'));
        expect(await backend.mac(r.ref, 'AES_CMAC', hex('6bc1bee22e409f96e93d7e117393172a'))).toEqual(hex('070a16b46b4d4144f79bdd9dd04a287c'));
      });

      t.it('AES_CMAC of 16 zero bytes (the AES KCV) on every AES payment key equals CMAC computed here', async () => {
        for (const purpose of paymentPurposes) {
          const r = await importKnown('AES_128', purpose, known.format4Key.material);
          if (!r) return;
          expect(await backend.mac(r.ref, 'AES_CMAC', Buffer.alloc(16)), purpose).toEqual(cmacWithKey('aes', known.format4Key.material, Buffer.alloc(16)));
        }
      });
    });

    t.describe('exportKey', () => {
      t.it('an exportable key gives back exactly what was imported; a non-exportable one is refused with INCOMPATIBLE_KEY', async () => {
        if (!payment().exportKeys) {
          const r = await importKnown('AES_256', 'kbpk', known.tr31KbpkD.material);
          if (r) await expect(backend.exportKey(r.ref)).rejects.toMatchObject({ code: expect.stringMatching(/UNSUPPORTED_BY_BACKEND|INCOMPATIBLE_KEY/) });
          return t.refused('key export');
        }
        for (const [type, material] of [['TDES_2KEY', known.tdesBdk.material], ['TDES_3KEY', randomBytes(24)], ['AES_128', known.aesBdk.material], ['AES_256', known.tr31KbpkD.material]] as const) {
          const out = await importKnown(type, 'kbpk', material, { exportable: true });
          const stay = await importKnown(type, 'kbpk', material);
          if (!out || !stay) return;
          expect(await backend.exportKey(out.ref), type).toEqual(asImported(type, material));
          await expect(backend.exportKey(stay.ref)).rejects.toMatchObject({ code: 'INCOMPATIBLE_KEY' });
        }
      });

      t.it('a key created exportable exports material whose KCV is the backend\'s KCV', async () => {
        if (!payment().exportKeys) return t.refused('key export');
        for (const type of ['TDES_2KEY', 'TDES_3KEY', 'AES_128', 'AES_256'] as const) {
          if (!caps().keyTypes.includes(type)) continue;
          const meta = await backend.createKey(newKey(type, 'pin', { exportable: true }));
          expect(meta.exportable).toBe(true);
          const ref = refTo(meta.name, type);
          const material = await backend.exportKey(ref);
          expect(material).toHaveLength(keyTypes[type].bits / 8);
          expect(await backendKcv(ref), type).toBe(expectedKcv(type, material));
          const block = randomBytes(keyTypes[type].family === 'tdes' ? 8 : 16);
          expect(await backend.encryptBlocks(ref, block)).toEqual(ecbFor(type, 'encrypt', material, block));
          material.fill(0);
        }
      });
    });
  });
}
