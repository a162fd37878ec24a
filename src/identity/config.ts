/**
 * The `access` section of the configuration: who may call (mTLS client certificates and bearer JWTs) and
 * what they may do (the policy file). The lead wires this fragment into src/config/schema.ts.
 */
export interface JwtConfig {
  /** A JWK Set on disk, reloaded when it changes or on SIGHUP; exactly one of jwksFile and jwksUrl. */
  readonly jwksFile?: string;
  /** An https URL serving the identity provider's JWK Set, fetched and cached. */
  readonly jwksUrl?: string;
  /** PEM CAs that the jwksUrl server's certificate must chain to, instead of the system's. */
  readonly jwksCaFile?: string;
  /** How long a fetched JWK Set is used before it is fetched again; an unknown kid refetches sooner. */
  readonly jwksCacheSeconds: number;
  readonly issuer: string;
  readonly audience: string;
  /** JWS algorithms a token may be signed with; never "none". */
  readonly algorithms: readonly string[];
  /** Allowed skew for exp and nbf. */
  readonly clockToleranceSeconds: number;
}

export interface AccessConfig {
  /** The YAML policy of principals and rules; without it the service is open (loopback only, see exposure.ts). */
  readonly policyFile?: string;
  /** Lets the service run without a policy on a non-loopback listener; logs an error at every start. */
  readonly allowUnauthenticated: boolean;
  readonly jwt?: JwtConfig;
}

export const jwtAlgorithms = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

export const accessConfigSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    policyFile: { type: 'string', minLength: 1 },
    allowUnauthenticated: { type: 'boolean', default: false },
    jwt: {
      type: 'object',
      additionalProperties: false,
      required: ['issuer', 'audience'],
      oneOf: [{ required: ['jwksFile'] }, { required: ['jwksUrl'] }],
      properties: {
        jwksFile: { type: 'string', minLength: 1 },
        jwksUrl: { type: 'string', pattern: '^https://' },
        jwksCaFile: { type: 'string', minLength: 1 },
        jwksCacheSeconds: { type: 'integer', minimum: 1, maximum: 86400, default: 300 },
        issuer: { type: 'string', minLength: 1 },
        audience: { type: 'string', minLength: 1 },
        algorithms: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: [...jwtAlgorithms] }, default: ['RS256', 'ES256'] },
        clockToleranceSeconds: { type: 'integer', minimum: 0, maximum: 300, default: 30 },
      },
    },
  },
} as const;
