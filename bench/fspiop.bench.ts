/**
 * FSPIOP signature benchmark: in one process and one run, the Mojaloop reference client
 * (@mojaloop/sdk-standard-components JwsValidator / JwsSigner, keys in memory) against our in-process
 * validate and our sign through KeyService (software backend and SoftHSM). Prints ops/s and ratios.
 *
 *   npm run bench                      (BENCH_SECONDS=3 per case by default; BENCH_CONCURRENCY=8 for our sign)
 *
 * Every message is checked to validate on both sides before anything is timed: measuring refusals would
 * be meaningless. The reference validator gets the body already parsed (as its HTTP framework hands it
 * over), so its JSON.parse is not counted; ours gets the raw bytes.
 *
 * Validation over gRPC and REST, the service in a process of its own, is measured against the same
 * reference in keys.bench.ts.
 */
import { generateKeyPairSync } from 'node:crypto';
import { jws, refLogger, transfer, type Req } from './mojaloopReference.js';
import { pino } from 'pino';
import type { Backend } from '../src/backend/port.js';
import { FspiopService } from '../src/fspiop/fspiopService.js';
import { ParticipantRegistry } from '../src/fspiop/participants.js';
import { KeyService } from '../src/operations/keyService.js';
import { openBenchBackends } from './backends.js';
import { CONCURRENCY, Report, SECONDS, measure, type Row } from './measure.js';

const logger = pino({ level: 'silent' });

const MESSAGES = 64;
const report = new Report('the reference');
const print = (row: Row) => report.print(row);
const rows = report.rows;

async function main(): Promise<void> {
  console.log(`FSPIOP bench: node ${process.version}, ${SECONDS}s per case, our sign with ${CONCURRENCY} in flight\n`);
  const pairs = {
    RS256: generateKeyPairSync('rsa', { modulusLength: 2048 }),
    ES256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  };
  const pem = {
    RS256: { priv: pairs.RS256.privateKey.export({ format: 'pem', type: 'pkcs1' }).toString(), pub: pairs.RS256.publicKey.export({ format: 'pem', type: 'spki' }).toString() },
    ES256: { priv: pairs.ES256.privateKey.export({ format: 'pem', type: 'sec1' }).toString(), pub: pairs.ES256.publicKey.export({ format: 'pem', type: 'spki' }).toString() },
  };
  const registry = await ParticipantRegistry.open({
    logger,
    participants: [{ id: 'dfsp-rs', keys: [pem.RS256.pub] }, { id: 'dfsp-es', keys: [pem.ES256.pub] }],
  });
  const backends = await openBenchBackends(logger);
  const keyService = (b: Backend) => new KeyService(b, { limits: { maxDataBytes: 512 * 1024, maxRandomBytes: 1024 }, metadataCacheTtlMs: 2000 });
  const validator = new jws.validator({ validationKeys: { 'dfsp-rs': pem.RS256.pub, 'dfsp-es': pem.ES256.pub }, logger: refLogger });
  const inProcessKeys = keyService(backends[0]!.backend);
  const fspiop = new FspiopService({ keyService: inProcessKeys, registry });

  try {
    for (const alg of ['RS256', 'ES256'] as const) {
      const source = alg === 'RS256' ? 'dfsp-rs' : 'dfsp-es';
      const signer = new jws.signer({ signingKey: pem[alg].priv, logger: refLogger });
      const messages = Array.from({ length: MESSAGES }, (_, i) => {
        const req: Req = { method: 'put', uri: `http://switch/transfers/${i}`, headers: { 'fspiop-source': source, 'fspiop-destination': 'payeefsp', date: new Date(0).toUTCString() }, body: transfer(i) };
        signer.sign(req);
        const text = req.body as string;
        return { headers: req.headers, text, bytes: Buffer.from(text), parsed: JSON.parse(text) as unknown };
      });
      for (const m of messages) {
        validator.validate({ headers: m.headers, body: m.parsed });
        const ours = await fspiop.validate({ headers: m.headers, body: m.bytes });
        if (!ours.valid) throw new Error(`bench message refused by us: ${ours.reason}`);
      }
      const ref = `validate ${alg}: reference JwsValidator`;
      print({ name: ref, opsPerSec: await measure((i) => { const m = messages[i % MESSAGES]!; validator.validate({ headers: m.headers, body: m.parsed }); }) });
      print({ name: `validate ${alg}: hsm-bridge in process`, baseline: ref, opsPerSec: await measure((i) => { const m = messages[i % MESSAGES]!; return fspiop.validate({ headers: m.headers, body: m.bytes }); }) });
    }
    console.log('');

    for (const alg of ['RS256', 'ES256'] as const) {
      const refSigner = new jws.signer({ signingKey: pem[alg].priv, logger: refLogger });
      const ref = `sign ${alg}: reference JwsSigner (key in memory)`;
      print({
        name: ref,
        opsPerSec: await measure((i) => {
          refSigner.sign({ method: 'put', uri: `http://switch/transfers/${i}`, headers: { 'fspiop-source': 'payerfsp' }, body: transfer(i % MESSAGES) });
        }),
      });
      for (const b of backends) {
        const ks = keyService(b.backend);
        const name = `bench-${alg.toLowerCase()}`;
        await ks.createKey({ name, type: alg === 'RS256' ? 'RSA_2048' : 'EC_P256' });
        const service = new FspiopService({ keyService: ks, registry });
        const sign = (i: number) => service.sign({ key: name, method: 'put', uri: `http://switch/transfers/${i}`, source: 'payerfsp', body: transfer(i % MESSAGES) });
        print({ name: `sign ${alg}: hsm-bridge, ${b.label}, ${CONCURRENCY} in flight`, baseline: ref, opsPerSec: await measure(sign, CONCURRENCY) });
        print({ name: `sign ${alg}: hsm-bridge, ${b.label}, 1 in flight`, baseline: ref, opsPerSec: await measure(sign, 1) });
      }
    }
  } finally {
    await registry.close();
    for (const b of backends) await b.close();
  }

  const verdict = (['RS256', 'ES256'] as const).map((alg) => {
    const ours = rows.find((r) => r.name === `validate ${alg}: hsm-bridge in process`)!;
    const ref = rows.find((r) => r.name === ours.baseline)!;
    const ratio = ours.opsPerSec / ref.opsPerSec;
    return `${alg} ${ratio.toFixed(2)}x (${ratio >= 1.5 ? 'met' : 'NOT met'})`;
  });
  console.log(`\naim: in-process validation at least 1.5x the reference validator: ${verdict.join(', ')}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
