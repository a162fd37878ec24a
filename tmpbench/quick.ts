import { randomBytes } from 'node:crypto';
import { credentials, loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { findProtoRoot } from '../src/transports/grpc/protos.js';
import { createSoftHsmToken } from '../test/helpers/softhsm.js';
import { startServiceProcess } from '../test/helpers/serviceProcess.js';

const SECONDS = Number(process.env.S ?? 3);
const token = await createSoftHsmToken();
const service = await startServiceProcess({ env: {
  HSMB_BACKEND__TYPE: 'pkcs11', HSMB_BACKEND__PKCS11__LIBRARY: token.library, HSMB_BACKEND__PKCS11__TOKEN_LABEL: token.tokenLabel,
  HSMB_BACKEND__PKCS11__PIN_ENV: token.pinEnv, HSMB_REST__PORT: '0', HSMB_GRPC__PORT: '0', HSMB_OPS__PORT: '0', ...(process.env.PROF ? { NODE_OPTIONS: `--import ${process.env.PROF}` } : {}) } });
const def = loadSync('hsmbridge/v1/key_service.proto', { includeDirs: [findProtoRoot()], keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
const KS = (loadPackageDefinition(def) as any).hsmbridge.v1.KeyService;
const c = new KS(`127.0.0.1:${service.grpcPort}`, credentials.createInsecure());
const call = (m: string, b: object) => new Promise<any>((res, rej) => c[m](b, { deadline: Date.now() + 20000 }, (e: any, r: any) => (e ? rej(e) : res(r))));
const msgs = Array.from({ length: 64 }, () => randomBytes(256));
async function run(name: string, inFlight: number, perCall: number, fn: () => Promise<unknown>) {
  const end = Date.now() + SECONDS * 1000; let n = 0;
  const cpu0 = service.cpuMs(); const t0 = Date.now();
  await Promise.all(Array.from({ length: inFlight }, async () => { while (Date.now() < end) { await fn(); n += perCall; } }));
  const s = (Date.now() - t0) / 1000;
  console.log(`${name.padEnd(40)} ${(n / s).toFixed(0).padStart(8)} items/s  service cpu ${((service.cpuMs() - cpu0) / n * 1000).toFixed(0)} us/item`);
}
try {
  for (const [key, type, alg] of [['ec', 'EC_P256', 'ES256'], ['rsa', 'RSA_2048', 'RS256']]) {
    await call('CreateKey', { name: key, type });
    const which = (process.env.ONLY ?? 'unary,b16,b64').split(',');
    for (let w = 0; w < 2; w++) {
      if (which.includes('unary')) await run(`${alg} unary x16`, 16, 1, () => call('Sign', { name: key, algorithm: alg, message: msgs[0] }));
      if (which.includes('b16')) await run(`${alg} batch16 x4`, 4, 16, () => call('SignBatch', { name: key, items: msgs.slice(0, 16).map((m) => ({ message: m })) }));
      if (which.includes('b64')) await run(`${alg} batch64 x4`, 4, 64, async () => { const r = await call('SignBatch', { name: key, items: msgs.map((m) => ({ message: m })) }); if (r.results.some((x: any) => !x.ok)) throw new Error(JSON.stringify(r.results.find((x: any) => !x.ok))); });
    }
  }
} finally { c.close(); await service.stop(); await token.cleanup(); }
