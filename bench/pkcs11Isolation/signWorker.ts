/** Worker thread entry: owns one session and signs synchronously, so a slow token blocks only this thread. */
import { parentPort, workerData } from 'node:worker_threads';
import { Token, asBuffer, type KeyIndex, type TokenRef } from './signer.js';

export interface SignRequest { id: number; key: KeyIndex; data: Uint8Array }
export type SignAnswer = { id: number; sig: Uint8Array } | { id: number; error: string };

const token = new Token(workerData as TokenRef);
const session = token.openSession();
const port = parentPort!;
port.on('message', ({ id, key, data }: SignRequest) => {
  try {
    port.postMessage({ id, sig: token.signSync(session, key, asBuffer(data)) } satisfies SignAnswer);
  } catch (e) {
    port.postMessage({ id, error: (e as Error).message } satisfies SignAnswer);
  }
});
port.postMessage('ready');
