/**
 * No PIN, PIN block, PAN, key or key block in the logs: the whole service (startApp, REST and gRPC, the
 * production logger at its most verbose level) runs every payment flow, good and bad, and every line it
 * logged is searched for each secret this file put into play, in every spelling it could take.
 */
import { Writable } from 'node:stream';
import { credentials, loadPackageDefinition, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { generateKeyPairSync } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../../src/app.js';
import { loadServiceConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { encodePinBlock } from '../../src/payment/pin/pinBlock.js';
import { sealKeyBlock, deriveKeyBlockKeys } from '../../src/payment/tr31/keyBlock.js';
import { cmacWithKey } from '../../src/payment/crypto/cmac.js';
import { findProtoRoot } from '../../src/transports/grpc/protos.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../helpers/software.js';
import { nodeEcb } from '../../src/conformance/reference/nodeBlockCiphers.js';

const hex = (s: string) => Buffer.from(s, 'hex');
const PIN = '739215';
const OTP = '48215903';
const PAN = '4929123456781237';
const ZPK = hex('3B5E6A1F0D2C4B7A8C9D0E1F2A3B4C5D');
const ZPK2 = hex('7C1D2E3F4A5B6C7D8E9FA0B1C2D3E4F5');
const KBPK = hex('DD7515F2BFC17F85CE48F3CA25CB21F6');
const IMPORTED = hex('5B4A3C2D1E0F7A6B9C8D7E6F5A4B3C2D');

const tdesEcb = (key: Buffer, data: Buffer): Buffer => nodeEcb('tdes', 'encrypt', key, data);

describe('no secret in any log line', () => {
  let harness: SoftwareBackendHarness;
  let app: RunningApp;
  const lines: string[] = [];
  const secrets: string[] = [];
  const rest = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`${app.restUrl}${path}`, { method, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json' } }) });
    return { status: r.status, body: (await r.json().catch(() => undefined)) as any };
  };

  beforeAll(async () => {
    harness = await createSoftwareBackendConfig();
    const file = join(harness.dir, 'config.json');
    await writeFile(file, JSON.stringify({ rest: { port: 0 }, grpc: { port: 0 }, ops: { port: 0 }, payment: { otpIncomingKeys: ['log-zpk'] }, backend: { type: 'software', software: harness.config } }));
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    });
    app = await startApp(loadServiceConfig({ file, env: {} }), createLogger('trace', sink));
    for (const [name, material, purpose] of [['log-zpk', ZPK, 'pin'], ['log-zpk2', ZPK2, 'pin'], ['log-kbpk', KBPK, 'kbpk']] as const) {
      await app.service.paymentKeys.importKey({ name, type: 'TDES_2KEY', purpose, exportable: false }, Buffer.from(material));
    }
  });
  afterAll(async () => {
    await app?.close();
    await harness?.cleanup();
  });

  it('runs every payment flow, good and bad, over REST and gRPC', async () => {
    const clear = encodePinBlock(Buffer.from(PIN), { format: 0, pan: PAN });
    const block = tdesEcb(ZPK, clear);
    const otpBlock = tdesEcb(ZPK, encodePinBlock(Buffer.from(OTP), { format: 0, pan: PAN }));
    const blockKeys = await deriveKeyBlockKeys('B', 16, async (input) => cmacWithKey('tdes', KBPK, input));
    const keyBlock = sealKeyBlock(
      { version: 'B', keyUsage: 'P0', algorithm: 'T', modeOfUse: 'B', keyVersionNumber: '00', exportability: 'N', optionalBlocks: [] },
      IMPORTED,
      blockKeys,
    );
    const tampered = `${keyBlock.slice(0, 20)}${keyBlock[20] === '0' ? '1' : '0'}${keyBlock.slice(21)}`;
    secrets.push(PIN, OTP, PAN, ...[block, otpBlock, clear, ZPK, ZPK2, KBPK, IMPORTED, blockKeys.encryption, blockKeys.authentication].flatMap((b) => [b.toString('hex'), b.toString('hex').toUpperCase(), b.toString('base64')]), keyBlock, tampered, keyBlock.slice(16, 48));

    const incoming = { keyName: 'log-zpk', format: 'ISO_FORMAT_0', pan: PAN };
    const outgoing = { keyName: 'log-zpk2', format: 'ISO_FORMAT_3' };
    expect((await rest('POST', '/v1/pin/translate', { incoming, outgoing, pinBlock: block.toString('hex') })).status).toBe(200);
    const failures: Array<[string, unknown]> = [
      ['wrong key', { incoming: { ...incoming, keyName: 'log-zpk2' }, outgoing, pinBlock: block.toString('hex') }],
      ['PAN change', { incoming, outgoing: { ...outgoing, format: 'ISO_FORMAT_0', pan: '4111111111111111' }, pinBlock: block.toString('hex') }],
      ['to format 1', { incoming, outgoing: { keyName: 'log-zpk2', format: 'ISO_FORMAT_1' }, pinBlock: block.toString('hex') }],
      ['bad PAN', { incoming: { ...incoming, pan: `${PAN}x` }, outgoing, pinBlock: block.toString('hex') }],
      ['odd block', { incoming, outgoing, pinBlock: `${block.toString('hex')}0` }],
      ['unknown field', { incoming, outgoing, pinBlock: block.toString('hex'), pin: PIN }],
    ];
    for (const [what, body] of failures) expect((await rest('POST', '/v1/pin/translate', body)).status, what).toBeGreaterThanOrEqual(400);
    expect((await rest('POST', '/v1/pin/translate', `{"pinBlock":"${block.toString('hex')}","incoming":`)).status).toBe(400);

    const switchKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'pem', type: 'spki' });
    expect((await rest('POST', '/v1/fspiop/participants', { id: 'switch', publicKeyPem: switchKey, use: 'enc' })).status).toBe(201);
    const recipient = { participant: 'switch' };
    expect((await rest('POST', '/v1/pin/to-jwe', { incoming, pinBlock: otpBlock.toString('hex'), recipient, references: { terminalId: 'T1' } })).status).toBe(200);
    expect((await rest('POST', '/v1/pin/to-jwe', { incoming: { ...incoming, pan: '4111111111111111' }, pinBlock: otpBlock.toString('hex'), recipient })).status).toBe(400);
    expect((await rest('POST', '/v1/pin/to-jwe', { incoming: { ...incoming, keyName: 'log-zpk2' }, pinBlock: otpBlock.toString('hex'), recipient })).status).toBe(400);

    expect((await rest('POST', '/v1/keys/import/tr31', { name: 'log-imported', keyBlock, kbpk: { keyName: 'log-kbpk' } })).status).toBe(201);
    expect((await rest('POST', '/v1/keys/import/tr31', { name: 'log-tampered', keyBlock: tampered, kbpk: { keyName: 'log-kbpk' } })).status).toBe(400);

    // gRPC: the same translation, good and bad.
    const definition = loadSync('hsmbridge/v1/payment_service.proto', { includeDirs: [findProtoRoot()], keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
    const Payment = (loadPackageDefinition(definition) as any).hsmbridge.v1.PaymentService;
    const client = new Payment(`127.0.0.1:${app.grpcPort}`, credentials.createInsecure()) as Client & Record<string, any>;
    const call = (request: unknown) =>
      new Promise<ServiceError | null>((resolve) => client.TranslatePin(request, (e: ServiceError | null) => resolve(e)));
    try {
      const grpcIncoming = { key_name: 'log-zpk', format: 'ISO_FORMAT_0', pan: PAN };
      expect(await call({ incoming: grpcIncoming, outgoing: { key_name: 'log-zpk2', format: 'ISO_FORMAT_3' }, pin_block: block.toString('hex') })).toBeNull();
      expect(await call({ incoming: { ...grpcIncoming, key_name: 'log-zpk2' }, outgoing: { key_name: 'log-zpk2', format: 'ISO_FORMAT_3' }, pin_block: block.toString('hex') })).not.toBeNull();
    } finally {
      client.close();
    }
  });

  it('logged the requests, and none of the secrets in any spelling', () => {
    // The scan means something only if requests were logged at all.
    expect(lines.some((l) => l.includes('/v1/pin/translate'))).toBe(true);
    expect(secrets.length).toBeGreaterThan(10);
    const text = lines.join('\n');
    for (const secret of secrets) expect(text.includes(secret), `a log line contains a secret (${secret.length} chars)`).toBe(false);
  });
});
