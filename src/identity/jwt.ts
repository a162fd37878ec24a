/**
 * Bearer JWTs: verified with `jose` against the configured JWK Set, issuer, audience and algorithms, with
 * exp required and a small clock tolerance for exp and nbf. `jose` refuses "alg": "none" and a kid the
 * JWK Set does not have. The caller learns only that its token is invalid or expired; the log has why.
 */
import { readFileSync } from 'node:fs';
import { errors, jwtVerify, type JWTPayload } from 'jose';
import type { Logger } from 'pino';
import type { JwtConfig } from './config.js';
import { fileJwks, urlJwks, type JwksSource } from './jwks.js';

export type TokenCheck = { readonly ok: true; readonly claims: JWTPayload } | { readonly ok: false; readonly reason: 'invalid' | 'expired'; readonly detail: string };

export interface BearerVerifier {
  verify(token: string): Promise<TokenCheck>;
  close(): void;
}

/** Longest token accepted: far beyond any real one, short enough to parse cheaply. */
const MAX_TOKEN_CHARS = 16 * 1024;

export function bearerVerifier(config: JwtConfig, logger: Logger): BearerVerifier {
  const source: JwksSource = config.jwksFile !== undefined
    ? fileJwks(config.jwksFile, logger)
    : urlJwks(config.jwksUrl!, { cacheSeconds: config.jwksCacheSeconds, logger, ...(config.jwksCaFile === undefined ? {} : { ca: readFileSync(config.jwksCaFile, 'utf8') }) });
  const options = {
    issuer: config.issuer,
    audience: config.audience,
    algorithms: [...config.algorithms],
    clockTolerance: config.clockToleranceSeconds,
    requiredClaims: ['exp'],
  };
  return {
    async verify(token) {
      if (token.length > MAX_TOKEN_CHARS) return { ok: false, reason: 'invalid', detail: 'token too long' };
      try {
        const { payload } = await jwtVerify(token, source.getKey, options);
        return { ok: true, claims: payload };
      } catch (e) {
        const detail = e instanceof errors.JOSEError ? e.code : 'unreadable';
        return { ok: false, reason: e instanceof errors.JWTExpired ? 'expired' : 'invalid', detail };
      }
    },
    close: () => source.close(),
  };
}
