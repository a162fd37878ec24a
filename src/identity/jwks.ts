/**
 * Where the keys that verify bearer tokens come from: a JWK Set file (reloaded when it changes or on
 * SIGHUP; a bad new file keeps the old keys and logs why) or an identity provider's https URL (fetched,
 * cached, and fetched again early, at most every few seconds, when a token names a kid it lacks).
 */
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { Logger } from 'pino';

/** Largest JWK Set accepted from a file or URL. */
const MAX_JWKS_BYTES = 256 * 1024;
/** Least time between two fetches caused by an unknown kid. */
const REFETCH_COOLDOWN_MS = 10_000;
const FETCH_TIMEOUT_MS = 5_000;

export interface JwksSource {
  readonly getKey: JWTVerifyGetKey;
  close(): void;
}

/** The text as a JWK Set, with at least one key, each with a kid (a token then always names its key). */
export function parseJwks(text: string): JSONWebKeySet {
  const jwks = JSON.parse(text) as unknown;
  const keys = (jwks as { keys?: unknown }).keys;
  if (typeof jwks !== 'object' || jwks === null || !Array.isArray(keys) || keys.length === 0) throw new Error('not a JWK Set with keys');
  for (const key of keys) {
    if (typeof key !== 'object' || key === null || typeof (key as { kid?: unknown }).kid !== 'string') throw new Error('every key needs a "kid"');
    if ('d' in key || 'k' in key) throw new Error('a private or secret key is in the JWK Set');
  }
  return jwks as JSONWebKeySet;
}

export function fileJwks(path: string, logger: Logger): JwksSource {
  let current = createLocalJWKSet(parseJwks(readFileSync(path, 'utf8')));
  const reload = (why: string) => {
    try {
      current = createLocalJWKSet(parseJwks(readFileSync(path, 'utf8')));
      logger.info({ file: path, why }, 'access: JWK Set reloaded');
    } catch (e) {
      logger.error({ file: path, reason: (e as Error).message }, 'access: the new JWK Set file is refused; the previous keys stay');
    }
  };
  // watchFile polls: it survives the file being replaced by a rename, as config management does.
  const onChange = () => reload('changed');
  watchFile(path, { interval: 1000, persistent: false }, onChange);
  const onHup = () => reload('SIGHUP');
  process.on('SIGHUP', onHup);
  return {
    getKey: (header, token) => current(header, token),
    close: () => {
      unwatchFile(path, onChange);
      process.off('SIGHUP', onHup);
    },
  };
}

function fetchText(url: string, ca: string | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = httpsGet(url, { ...(ca === undefined ? {} : { ca }), timeout: FETCH_TIMEOUT_MS, headers: { accept: 'application/json' } }, (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        reject(new Error(`HTTP ${response.statusCode}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_JWKS_BYTES) request.destroy(new Error('the JWK Set is too large'));
        else chunks.push(chunk);
      });
      response.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', reject);
  });
}

export function urlJwks(url: string, options: { ca?: string; cacheSeconds: number; logger: Logger }): JwksSource {
  let current: JWTVerifyGetKey | undefined;
  let fetchedAt = 0;
  let inFlight: Promise<void> | undefined;
  const refresh = (): Promise<void> =>
    (inFlight ??= fetchText(url, options.ca)
      .then((text) => {
        current = createLocalJWKSet(parseJwks(text));
        fetchedAt = Date.now();
      })
      .catch((e: unknown) => {
        // The keys fetched before stay in use; the caller's token is judged by them.
        options.logger.error({ url, reason: (e as Error).message }, 'access: fetching the JWK Set failed');
        fetchedAt = Math.max(fetchedAt, Date.now() - options.cacheSeconds * 1000 + REFETCH_COOLDOWN_MS);
      })
      .finally(() => (inFlight = undefined)));
  return {
    getKey: async (header, token) => {
      if (current === undefined || Date.now() - fetchedAt > options.cacheSeconds * 1000) await refresh();
      if (current === undefined) throw new Error('no JWK Set');
      try {
        return await current(header, token);
      } catch (e) {
        // An unknown kid may be a key the provider has just added.
        if (Date.now() - fetchedAt < REFETCH_COOLDOWN_MS) throw e;
        await refresh();
        return current(header, token);
      }
    },
    close: () => undefined,
  };
}
