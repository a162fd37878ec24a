/**
 * Who can reach an open service. Without an access policy every caller may use, disable and destroy
 * every key, which is tolerable only when no other machine can connect: on loopback listeners the
 * service starts with a warning; on any other address it refuses to start, unless the operator has set
 * access.allowUnauthenticated, in which case every start logs an error.
 */
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { ConfigError } from '../config/load.js';
import type { AccessConfig } from './config.js';

export interface Listener {
  /** Its configuration path, e.g. /rest. */
  readonly field: string;
  readonly enabled: boolean;
  readonly host: string;
  /** Whether it serves TLS. */
  readonly tls?: boolean;
}

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/** Call before the listeners start; throws ConfigError when an open service would be reachable from elsewhere. */
export function checkExposure(access: AccessConfig, listeners: readonly Listener[], logger: Logger): void {
  const plaintext = listeners.filter((l) => l.enabled && !l.tls && !isLoopback(l.host));
  if (access.jwt && plaintext.length > 0) {
    // A bearer token read off the wire can be replayed until it expires. A service mesh may carry TLS up to the pod, hence no refusal.
    logger.error({ listeners: plaintext.map((l) => l.field) }, 'access: bearer tokens are accepted on a listener without TLS that is not on loopback: terminate TLS on it unless a mesh protects the path');
  }
  if (access.policyFile !== undefined) return;
  const exposed = listeners.filter((l) => l.enabled && !isLoopback(l.host));
  if (exposed.length === 0) {
    logger.warn('access: no access.policyFile: every caller may use, disable and destroy every key; allowed only because every listener is on loopback');
    return;
  }
  const where = exposed.map((l) => `${l.field}/host ${l.host}`).join(', ');
  if (access.allowUnauthenticated) {
    logger.error({ listeners: where }, 'access: no access.policyFile and access.allowUnauthenticated is true: anyone who reaches these listeners may use, disable and destroy every key');
    return;
  }
  throw new ConfigError(
    `config: ${where} is not a loopback address and access.policyFile is not set: anyone who reaches the listener could use, disable and destroy every key. ` +
      'Set access.policyFile (see README "Identity and access policy"), or access.allowUnauthenticated: true to run open on purpose.',
  );
}
