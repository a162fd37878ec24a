// With hsm-bridge: the same calls, awaited; the key is named, and stays in the HSM.
import { readFileSync } from 'node:fs';
import { HsmBridgeClient } from 'hsm-bridge/client';
import { JwsSigner, JwsValidator, type IncomingRequest, type MojaloopLogger, type RequestOptions } from 'hsm-bridge/mojaloop';

declare const logger: MojaloopLogger;
declare function request(options: RequestOptions): Promise<unknown>;

const client = new HsmBridgeClient({
  url: 'https://hsm-bridge.hsm.svc:8443',
  tls: { ca: readFileSync('/tls/ca.pem'), cert: readFileSync('/tls/client.pem'), key: readFileSync('/tls/client-key.pem') },
});
const signer = new JwsSigner({ client, keyName: 'payerfsp-jws', logger });
// The participants' public keys are registered in hsm-bridge (fspiop.participants or its directory).
const validator = new JwsValidator({ client, logger });

export async function send(reqOpts: RequestOptions): Promise<unknown> {
  await signer.sign(reqOpts); // the only change: await
  return request(reqOpts);
}

export async function onIncoming(ctx: { request: IncomingRequest }): Promise<void> {
  await validator.validate(ctx.request); // the only change: await; the same messages when it throws
}
