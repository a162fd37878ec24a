/**
 * Another process on the same token, for keyImport.test.ts: opens its own PKCS#11 backend (SoftHSM gives
 * each process its own view of the token) and runs one ceremony call given as JSON in HSMB_TEST_CALL
 * ({method, args}); prints {value} or {error: code} on stdout. Buffers travel as hex strings ({hex}).
 */
import { pino } from 'pino';
import { pkcs11BackendFactory } from '../../../adapters/pkcs11/index.js';
import { HsmBridgeError } from '../../../src/errors.js';

const call = JSON.parse(process.env.HSMB_TEST_CALL!) as { method: string; args: unknown[]; config: object };
const revive = (v: unknown): unknown => (v && typeof v === 'object' && 'hex' in v ? Buffer.from((v as { hex: string }).hex, 'hex') : v);
const backend = await pkcs11BackendFactory.create(call.config as never, { logger: pino({ level: 'silent' }) });
try {
  const method = (backend as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[call.method]!;
  const value = await method.apply(backend, call.args.map(revive));
  console.log(JSON.stringify({ value }, (_, v: unknown) => (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' ? Buffer.from((v as { data: number[] }).data).toString('hex') : v)));
} catch (e) {
  console.log(JSON.stringify({ error: e instanceof HsmBridgeError ? e.code : String(e) }));
} finally {
  await backend.close();
}
