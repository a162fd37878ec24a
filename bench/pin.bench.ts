/**
 * PIN translation benchmark: zone to zone (TDES format 0 to format 3) and DUKPT to zone (TDES DUKPT, and
 * AES DUKPT format 4 to an AES zone key), over gRPC (hsmbridge.v1.PaymentService/TranslatePin on
 * 127.0.0.1), against the raw backend operations the translation is made of, called directly on the
 * same backend in the same run: decrypt under the incoming key and encrypt under the outgoing one (plus
 * the DUKPT derivation). The ratio says what the service, its checks and gRPC cost on top of the HSM work.
 *
 *   npm run bench    (BENCH_SECONDS per case, default 3; BENCH_CONCURRENCY in flight, default 8)
 *
 * Every case is checked to give the right PIN before anything is timed.
 */
import { credentials, loadPackageDefinition, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { pino } from 'pino';
import { pkcs11BackendFactory } from '../adapters/pkcs11/index.js';
import { softwareBackendFactory } from '../adapters/software/index.js';
import type { Backend, BlockKey, DukptDerivation, KeyRef } from '../src/backend/port.js';
import { JoseService } from '../src/jose/joseService.js';
import type { KeyType } from '../src/keys/types.js';
import { KeyService } from '../src/operations/keyService.js';
import { createPaymentServices, type TranslatePinRequest } from '../src/payment/index.js';
import { decodePinBlock, encodePinBlock } from '../src/payment/pin/pinBlock.js';
import { findProtoRoot } from '../src/transports/grpc/protos.js';
import { startGrpcServer } from '../src/transports/grpc/server.js';
import { createSoftHsmToken } from '../test/helpers/softhsm.js';
import { nodeEcb } from '../src/conformance/reference/nodeBlockCiphers.js';
import { createSoftwareBackendConfig } from '../test/helpers/software.js';
import { CONCURRENCY, Report, SECONDS, measure } from './measure.js';

const logger = pino({ level: 'silent' });
const report = new Report('the raw backend operations');
const hex = (s: string) => Buffer.from(s, 'hex');

// Known keys and published vectors (FIELD-NOTES §5): the X9.24-1 BDK and its first KSN's PIN block, the
// X9.24-3 BDK and its counter-1 format 4 block.
const ZPK_IN = hex('0B2C3D4E5F6A7B8C8C7B6A5F4E3D2C0B');
const ZPK_OUT = hex('A1B2C3D4E5F60718293A4B5C6D7E8F91');
const ZPK_AES_OUT = hex('00112233445566778899AABBCCDDEEFF');
const BDK_TDES = hex('0123456789ABCDEFFEDCBA9876543210');
const BDK_AES = hex('FEDCBA9876543210F1F1F1F1F1F1F1F1');
const PAN = '4012345678909';

interface Translation {
  readonly name: string;
  /** The gRPC request. */
  readonly request: Record<string, unknown>;
  /** The same request for PinService, in process. */
  readonly service: TranslatePinRequest;
  /** The same work as raw backend calls: [derive], decrypt, encrypt. */
  raw(): Promise<unknown>;
}

async function main(): Promise<void> {
  console.log(`PIN translation bench: node ${process.version}, ${SECONDS}s per case, gRPC with ${CONCURRENCY} in flight\n`);
  const soft = await createSoftwareBackendConfig();
  const token = await createSoftHsmToken();
  const backends: Array<{ label: string; open(): Promise<Backend>; cleanup(): Promise<void> }> = [
    { label: 'software', open: () => softwareBackendFactory.create(soft.config, { logger }), cleanup: () => soft.cleanup() },
    { label: 'SoftHSM', open: () => pkcs11BackendFactory.create(token.backendConfig(), { logger }), cleanup: () => token.cleanup() },
  ];
  for (const b of backends) {
    const backend = await b.open();
    try {
      await benchBackend(b.label, backend);
    } finally {
      await backend.close();
      await b.cleanup();
    }
    console.log('');
  }
}

async function benchBackend(label: string, backend: Backend): Promise<void> {
  const keys = new KeyService(backend, { limits: { maxDataBytes: 64 * 1024, maxRandomBytes: 1024 }, metadataCacheTtlMs: 2000 });
  const plant = async (name: string, type: KeyType, purpose: 'pin' | 'bdk', material: Buffer): Promise<KeyRef> => {
    const meta = await keys.paymentKeys.importKey({ name, type, purpose, exportable: false }, Buffer.from(material));
    return { name: meta.name, version: meta.primaryVersion, type };
  };
  const zpkIn = await plant('bench-zpk-in', 'TDES_2KEY', 'pin', ZPK_IN);
  const zpkOut = await plant('bench-zpk-out', 'TDES_2KEY', 'pin', ZPK_OUT);
  const zpkAesOut = await plant('bench-zpk-aes-out', 'AES_128', 'pin', ZPK_AES_OUT);
  const bdkTdes = await plant('bench-bdk-tdes', 'TDES_2KEY', 'bdk', BDK_TDES);
  const bdkAes = await plant('bench-bdk-aes', 'AES_128', 'bdk', BDK_AES);
  const zoneBlock = tdesEcb(ZPK_IN, encodePinBlock(Buffer.from('1234'), { format: 0, pan: PAN }));

  const viaDukpt = async (bdk: KeyRef, derivation: DukptDerivation, block: Buffer, out: BlockKey, outBlocks: number) => {
    const transient = await backend.deriveDukptKey(bdk, derivation);
    try {
      await backend.decryptBlocks(transient, block);
      if (outBlocks === 2) await backend.decryptBlocks(transient, block); // format 4 deciphers twice
    } finally {
      await backend.releaseTransientKey(transient);
    }
    await backend.encryptBlocks(out, block.subarray(0, outBlocks === 2 ? 16 : 8));
    if (outBlocks === 2) await backend.encryptBlocks(out, block.subarray(0, 16));
  };
  const cases: Translation[] = [
    {
      name: 'zone to zone (TDES, format 0 -> 3)',
      request: { incoming: { key_name: zpkIn.name, format: 'ISO_FORMAT_0', pan: PAN }, outgoing: { key_name: zpkOut.name, format: 'ISO_FORMAT_3' }, pin_block: zoneBlock.toString('hex') },
      service: { incoming: { keyName: zpkIn.name, format: 'ISO_FORMAT_0', pan: PAN }, outgoing: { keyName: zpkOut.name, format: 'ISO_FORMAT_3' }, pinBlock: zoneBlock },
      raw: async () => {
        await backend.decryptBlocks(zpkIn, zoneBlock);
        await backend.encryptBlocks(zpkOut, zoneBlock);
      },
    },
    {
      name: 'TDES DUKPT to zone (format 0 -> 0)',
      request: {
        incoming: { key_name: bdkTdes.name, format: 'ISO_FORMAT_0', pan: PAN, dukpt: { ksn: 'FFFF9876543210E00001' } },
        outgoing: { key_name: zpkOut.name, format: 'ISO_FORMAT_0' },
        pin_block: '1B9C1845EB993A7A',
      },
      service: {
        incoming: { keyName: bdkTdes.name, format: 'ISO_FORMAT_0', pan: PAN, dukpt: { ksn: hex('FFFF9876543210E00001') } },
        outgoing: { keyName: zpkOut.name, format: 'ISO_FORMAT_0' },
        pinBlock: hex('1B9C1845EB993A7A'),
      },
      raw: () => viaDukpt(bdkTdes, { scheme: 'tdes', ksn: hex('FFFF9876543210E00001') }, hex('1B9C1845EB993A7A'), zpkOut, 1),
    },
    {
      name: 'AES DUKPT to zone (format 4 -> 4)',
      request: {
        incoming: { key_name: bdkAes.name, format: 'ISO_FORMAT_4', pan: '4111111111111111', dukpt: { ksn: '123456789012345600000001' } },
        outgoing: { key_name: zpkAesOut.name, format: 'ISO_FORMAT_4' },
        pin_block: 'A912150391AB65A67E52883D81CE2D15',
      },
      service: {
        incoming: { keyName: bdkAes.name, format: 'ISO_FORMAT_4', pan: '4111111111111111', dukpt: { ksn: hex('123456789012345600000001') } },
        outgoing: { keyName: zpkAesOut.name, format: 'ISO_FORMAT_4' },
        pinBlock: hex('A912150391AB65A67E52883D81CE2D15'),
      },
      raw: () => viaDukpt(bdkAes, { scheme: 'aes', ksn: hex('123456789012345600000001'), workingKey: 'AES_128' }, hex('A912150391AB65A67E52883D81CE2D15'), zpkAesOut, 2),
    },
  ];

  const jose = new JoseService(keys);
  const payment = createPaymentServices(keys, jose);
  const server = await startGrpcServer({ service: keys, jose, payment, logger, host: '127.0.0.1', port: 0, maxMessageBytes: 1024 * 1024 });
  const definition = loadSync('hsmbridge/v1/payment_service.proto', { includeDirs: [findProtoRoot()], keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
  const Payment = (loadPackageDefinition(definition) as any).hsmbridge.v1.PaymentService;
  const client = new Payment(`127.0.0.1:${server.port}`, credentials.createInsecure()) as Client & Record<string, any>;
  const translate = (request: Record<string, unknown>) =>
    new Promise<{ pin_block: string }>((resolve, reject) => {
      client.TranslatePin(request, (e: ServiceError | null, r: { pin_block: string }) => (e ? reject(e) : resolve(r)));
    });
  try {
    // Correctness first: each case's outgoing block carries PIN 1234.
    const zone = await translate(cases[0]!.request);
    expectPin(decodePinBlock(tdesEcb(ZPK_OUT, hex(zone.pin_block), 'decrypt'), { format: 3, pan: PAN }));
    const dukpt = await translate(cases[1]!.request);
    expectPin(decodePinBlock(tdesEcb(ZPK_OUT, hex(dukpt.pin_block), 'decrypt'), { format: 0, pan: PAN }));
    await translate(cases[2]!.request);

    for (const c of cases) {
      const base = `${label}: ${c.name}: raw backend operations, ${CONCURRENCY} in flight`;
      report.print({ name: base, opsPerSec: await measure(() => c.raw(), CONCURRENCY) });
      report.print({ name: `${label}: ${c.name}: PinService in process, ${CONCURRENCY} in flight`, baseline: base, opsPerSec: await measure(() => payment.pins.translate(c.service), CONCURRENCY) });
      report.print({ name: `${label}: ${c.name}: over gRPC, ${CONCURRENCY} in flight`, baseline: base, opsPerSec: await measure(() => translate(c.request), CONCURRENCY) });
    }
  } finally {
    client.close();
    await server.close();
  }
}

const tdesEcb = (key: Buffer, data: Buffer, direction: 'encrypt' | 'decrypt' = 'encrypt'): Buffer => nodeEcb('tdes', direction, key, data);

function expectPin(pin: Buffer): void {
  if (pin.toString() !== '1234') throw new Error('bench translation gave the wrong PIN');
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
