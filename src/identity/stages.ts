/**
 * The identify and authorize stages of the request pipeline (src/api/stages.ts), from the `access`
 * configuration: the caller is its mTLS client certificate and/or its bearer JWT; the policy file says
 * what it may do. Without a policy file the service stays open, as before (exposure.ts says where).
 */
import type { Logger } from 'pino';
import { operations } from '../api/operations/index.js';
import { permissionOf } from '../api/declaration.js';
import { ANONYMOUS, type Caller, type Credentials, type PipelineStages } from '../api/stages.js';
import { ConfigError } from '../config/load.js';
import { HsmBridgeError, quote } from '../errors.js';
import { openPolicyStore, type PolicyStore } from '../policy/store.js';
import { certificateIdentity } from './certificate.js';
import type { AccessConfig } from './config.js';
import { bearerVerifier, type BearerVerifier } from './jwt.js';

export interface AccessStages extends Pick<PipelineStages, 'identify' | 'authorize'> {
  /** Whether a policy is in force (false: open, every caller may do everything). */
  readonly policyConfigured: boolean;
  /** The policy file's reloads, for tests and SIGHUP; undefined without a policy. */
  readonly policy?: PolicyStore;
  /** Stops watching the policy and JWK Set files. */
  close(): void;
}

type CredentialProblem = 'missing' | 'invalid' | 'expired';

/** What the stages report beside their answers (the metrics' authentication failures). */
export interface AccessHooks {
  readonly authenticationFailed?: (why: CredentialProblem) => void;
}

/** The token's name for its caller: "sub", else the client id of a client-credentials token. */
function tokenId(claims: Record<string, unknown>): string {
  for (const claim of ['sub', 'client_id', 'azp']) if (typeof claims[claim] === 'string' && claims[claim] !== '') return claims[claim];
  return 'token';
}

/**
 * Builds the stages. Throws (a start-up failure) when the policy file or JWK Set file cannot be read or
 * is invalid; later changes to either are reloaded, and an invalid new file keeps the old one.
 */
export function createAccessStages(config: AccessConfig, logger: Logger, hooks: AccessHooks = {}): AccessStages {
  /** Every message a caller gets for a credential: which of the three it is, and nothing more. */
  const unauthenticated = (why: CredentialProblem) => {
    hooks.authenticationFailed?.(why);
    return new HsmBridgeError('UNAUTHENTICATED', `credentials ${why}`);
  };
  const operationNames = [...new Set(operations.map(permissionOf))];
  let verifier: BearerVerifier | undefined;
  let policy: PolicyStore | undefined;
  let field = '/access/jwt';
  try {
    verifier = config.jwt ? bearerVerifier(config.jwt, logger) : undefined;
    field = '/access/policyFile';
    policy = config.policyFile === undefined ? undefined : openPolicyStore(config.policyFile, operationNames, logger);
  } catch (e) {
    verifier?.close();
    const reason = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new ConfigError(`config: ${field}: ${reason}`, { cause: e });
  }

  const identify = async (credentials: Credentials): Promise<Caller> => {
    const cert = credentials.peerCertificate ? certificateIdentity(credentials.peerCertificate) : undefined;
    let claims: Record<string, unknown> | undefined;
    if (credentials.bearerToken !== undefined && (verifier || policy)) {
      if (!verifier) throw unauthenticated('invalid');
      const check = await verifier.verify(credentials.bearerToken);
      if (!check.ok) {
        logger.info({ transport: credentials.transport, remoteAddress: credentials.remoteAddress, reason: check.detail }, `access: bearer token ${check.reason}`);
        throw unauthenticated(check.reason);
      }
      claims = check.claims as Record<string, unknown>;
    }
    if (!cert && !claims) {
      if (policy) throw unauthenticated('missing');
      return ANONYMOUS;
    }
    const certName = cert?.certSubject?.slice(3) ?? cert?.certSans[0];
    const caller: Caller = {
      authenticatedBy: claims ? 'token' : 'certificate',
      id: claims ? tokenId(claims) : (certName ?? 'certificate'),
      ...(cert?.certSubject === undefined ? {} : { certSubject: cert.certSubject }),
      ...(cert ? { certSans: cert.certSans } : {}),
      ...(claims ? { jwtClaims: claims } : {}),
    };
    if (!policy) return caller;
    const current = policy.current();
    return { ...caller, access: { principals: current.principalsOf(caller), rules: current.rulesOf(caller) } };
  };

  const authorize: PipelineStages['authorize'] = (caller, op, keyNames, participants) => {
    if (!policy) return;
    const decision = policy.current().decide(caller, permissionOf(op), keyNames, participants);
    if (decision.allowed) return;
    const on = decision.key !== undefined ? ` on key ${quote(decision.key)}` : decision.participant !== undefined ? ` for participant ${quote(decision.participant)}` : '';
    throw new HsmBridgeError('PERMISSION_DENIED', `permission denied: ${permissionOf(op)}${on}`);
  };

  return {
    identify,
    authorize,
    policyConfigured: policy !== undefined,
    ...(policy ? { policy } : {}),
    close: () => {
      policy?.close();
      verifier?.close();
    },
  };
}
