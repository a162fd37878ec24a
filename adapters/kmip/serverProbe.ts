import type { Logger } from 'pino';
import { HsmBridgeError } from '../../src/errors.js';
import { KmipOperationError, type KmipClient } from './client.js';
import { lifecycleAttributes } from './lifecycleAttributes.js';
import { KmipOperations } from './operations.js';
import { Enum } from './tags.js';

/** The scratch object the start-up probe makes and destroys. */
const PROBE_NAME = 'hsmb-probe';

/**
 * Checks at start what the commit protocol relies on and KMIP leaves to the server: a second Revoke of a
 * revoked object fails (PyKMIP: Illegal Operation), so of two writers revoking one head exactly one wins.
 * On a scratch Secret Data, whose Initial Date also gives the server's clock: returns the server's clock
 * minus ours, in milliseconds.
 */
export async function probeServer(client: KmipClient, logger: Logger): Promise<number> {
  const ops = new KmipOperations(client);
  const sentAt = Date.now();
  const uid = await ops.registerSecretData(Buffer.from('hsm-bridge start-up probe'), [{ name: 'Name', value: PROBE_NAME }]);
  const answeredAt = Date.now();
  try {
    const { initialDate } = await lifecycleAttributes(client, uid);
    await ops.activate(uid);
    await ops.revoke(uid, Enum.RevocationReasonCode.CessationOfOperation);
    const revokedTwice = await ops.revoke(uid, Enum.RevocationReasonCode.CessationOfOperation).then(() => true, (e: unknown) => {
      if (e instanceof KmipOperationError) return false;
      throw e;
    });
    if (revokedTwice) {
      throw new HsmBridgeError('BACKEND_UNAVAILABLE', 'the KMIP server accepts a second Revoke of a revoked object; hsm-bridge commits key changes by a Revoke that succeeds once, so it cannot run on this server');
    }
    // Initial Date counts whole seconds: the server's clock read [initialDate, initialDate + 1 s) then.
    return initialDate + 500 - (sentAt + answeredAt) / 2;
  } finally {
    await ops.destroy(uid).catch((e: unknown) => {
      logger.warn({ object: uid, err: e instanceof Error ? e.message : String(e) }, 'kmip: could not remove the start-up probe object');
    });
  }
}
