/**
 * Child process entry: the only process that loads the PKCS#11 module. Signs with `inner` ("async": a pool
 * of 8 sessions and C_SignAsync; a number: that many sign workers) and answers over `transport` ("ipc":
 * the fork channel with serialization 'advanced'; "pipe": frames on stdin/stdout, see framing.ts).
 *   node signChild.js <ipc|pipe> <async|N>     (the token in ISO_TOKEN as JSON)
 */
import { Token, asBuffer, type KeyIndex, type TokenRef } from './signer.js';
import { WorkerPool } from './workerPool.js';
import { TAG, frameReader, frameWriter } from './framing.js';
import type { SignAnswer, SignRequest } from './signWorker.js';

const [transport, inner] = process.argv.slice(2);
const tokenRef = JSON.parse(process.env.ISO_TOKEN!) as TokenRef;
const sign: (key: KeyIndex, data: Uint8Array) => Promise<Uint8Array> =
  inner === 'async' ? bind(new Token(tokenRef).asyncPool(8)) : bindPool(await WorkerPool.start(Number(inner), tokenRef));

function bind(pool: (key: KeyIndex, data: Buffer) => Promise<Buffer>) {
  return (key: KeyIndex, data: Uint8Array) => pool(key, asBuffer(data));
}
function bindPool(pool: WorkerPool) {
  return (key: KeyIndex, data: Uint8Array) => pool.sign(key, data);
}

if (transport === 'ipc') {
  process.on('message', ({ id, key, data }: SignRequest) => {
    sign(key, data).then(
      (sig) => process.send!({ id, sig } satisfies SignAnswer),
      (e: Error) => process.send!({ id, error: e.message } satisfies SignAnswer),
    );
  });
  process.on('disconnect', () => process.exit(0));
  process.send!('ready');
} else {
  const write = frameWriter(process.stdout);
  process.stdin.on(
    'data',
    frameReader((id, tag, payload) => {
      sign(tag as KeyIndex, payload).then(
        (sig) => write(id, TAG.ok, sig),
        (e: Error) => write(id, TAG.error, Buffer.from(e.message)),
      );
    }),
  );
  process.stdin.on('end', () => process.exit(0));
  write(0, TAG.ready, new Uint8Array(0));
}
