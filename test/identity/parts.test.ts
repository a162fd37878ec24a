/** The identity parts without a server: certificate names, the exposure rule, the JWK Set file's reloads. */
import { writeFileSync } from 'node:fs';
import type { PeerCertificate } from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { Ajv } from 'ajv';
import { ConfigError } from '../../src/config/load.js';
import { accessConfigSchema } from '../../src/identity/config.js';
import { certificateIdentity } from '../../src/identity/certificate.js';
import { checkExposure, isLoopback } from '../../src/identity/exposure.js';
import { bearerVerifier } from '../../src/identity/jwt.js';
import { createAccessStages } from '../../src/identity/stages.js';
import { capturedLogger, tempDir, tokenIssuer, writeJson, AUDIENCE, ISSUER } from './accessSupport.js';

const peer = (subject: Record<string, unknown>, subjectaltname?: string) => ({ subject, ...(subjectaltname === undefined ? {} : { subjectaltname }) }) as unknown as PeerCertificate;

describe('certificate names', () => {
  it('reads the CN and the DNS and URI SANs, entry by entry', () => {
    expect(certificateIdentity(peer({ CN: 'payer-adapter' }, 'DNS:a.svc, URI:spiffe://t/ns/x, IP Address:127.0.0.1, email:x@y'))).toEqual({
      certSubject: 'CN=payer-adapter',
      certSans: ['DNS:a.svc', 'URI:spiffe://t/ns/x'],
    });
  });

  it('never takes text inside another entry for a SAN', () => {
    // Node quotes values with ", " in them; the quoted value is one entry, whatever it contains.
    expect(certificateIdentity(peer({ CN: 'x' }, 'email:"a, DNS:evil.example", DNS:good')).certSans).toEqual(['DNS:good']);
    expect(certificateIdentity(peer({ CN: 'x' }, 'URI:"spiffe://t/a, b"')).certSans).toEqual(['URI:spiffe://t/a, b']);
    expect(certificateIdentity(peer({ CN: 'x' }, 'email:aDNS:evil')).certSans).toEqual([]);
  });

  it('a subject with several CNs, or none, has no certSubject', () => {
    expect(certificateIdentity(peer({ CN: ['a', 'b'] }))).toEqual({ certSans: [] });
    expect(certificateIdentity(peer({ O: 'org' }, 'DNS:only.san'))).toEqual({ certSans: ['DNS:only.san'] });
  });
});

describe('exposure without a policy', () => {
  const listeners = (rest: string, grpc: string, grpcEnabled = true) => [
    { field: '/rest', enabled: true, host: rest },
    { field: '/grpc', enabled: grpcEnabled, host: grpc },
  ];

  it('knows loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) expect(isLoopback(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'hsm.example', '128.0.0.1']) expect(isLoopback(h), h).toBe(false);
  });

  it('starts open on loopback with a warning', () => {
    const log = capturedLogger();
    checkExposure({ allowUnauthenticated: false }, listeners('127.0.0.1', '::1'), log.logger);
    expect(log.lines()).toEqual([expect.objectContaining({ level: 40, msg: expect.stringContaining('no access.policyFile') })]);
  });

  it('refuses to start open on another address, saying why', () => {
    const log = capturedLogger();
    expect(() => checkExposure({ allowUnauthenticated: false }, listeners('127.0.0.1', '0.0.0.0'), log.logger)).toThrow(ConfigError);
    expect(() => checkExposure({ allowUnauthenticated: false }, listeners('127.0.0.1', '0.0.0.0'), log.logger)).toThrow(
      /\/grpc\/host 0\.0\.0\.0 is not a loopback address and access\.policyFile is not set: anyone who reaches the listener could use, disable and destroy every key/,
    );
    // A listener that is off exposes nothing.
    expect(() => checkExposure({ allowUnauthenticated: false }, listeners('127.0.0.1', '0.0.0.0', false), log.logger)).not.toThrow();
  });

  it('with allowUnauthenticated, starts and logs an error', () => {
    const log = capturedLogger();
    checkExposure({ allowUnauthenticated: true }, listeners('10.1.2.3', '127.0.0.1'), log.logger);
    expect(log.lines()).toEqual([expect.objectContaining({ level: 50, listeners: '/rest/host 10.1.2.3' })]);
  });

  it('logs an error when bearer tokens would cross a non-loopback listener without TLS', () => {
    const jwt = { jwksFile: '/j.json', jwksCacheSeconds: 300, issuer: 'i', audience: 'a', algorithms: ['ES256'], clockToleranceSeconds: 30 };
    const policy = { allowUnauthenticated: false, policyFile: '/etc/hsmb/policy.yaml', jwt };
    const plain = capturedLogger();
    checkExposure(policy, listeners('0.0.0.0', '127.0.0.1'), plain.logger);
    expect(plain.lines()).toEqual([expect.objectContaining({ level: 50, listeners: ['/rest'], msg: expect.stringContaining('without TLS') })]);
    const tls = capturedLogger();
    checkExposure(policy, listeners('0.0.0.0', '127.0.0.1').map((l) => ({ ...l, tls: true })), tls.logger);
    expect(tls.lines()).toEqual([]);
  });

  it('with a policy, says nothing', () => {
    const log = capturedLogger();
    checkExposure({ allowUnauthenticated: false, policyFile: '/etc/hsmb/policy.yaml' }, listeners('0.0.0.0', '0.0.0.0'), log.logger);
    expect(log.lines()).toEqual([]);
  });
});

describe('the JWK Set file', () => {
  const files = tempDir();
  afterAll(() => files.remove());

  it('is reloaded when it changes; a bad new file keeps the old keys, with a log line', async () => {
    const first = await tokenIssuer('key-1');
    const second = await tokenIssuer('key-2');
    writeJson(files.at('jwks.json'), first.jwks);
    const log = capturedLogger();
    const verifier = bearerVerifier({ jwksFile: files.at('jwks.json'), jwksCacheSeconds: 300, issuer: ISSUER, audience: AUDIENCE, algorithms: ['ES256'], clockToleranceSeconds: 5 }, log.logger);
    const until = async (condition: () => boolean | Promise<boolean>) => {
      for (let i = 0; i < 200 && !(await condition()); i++) await new Promise((r) => setTimeout(r, 50));
    };
    try {
      expect(await verifier.verify(await first.token('a'))).toMatchObject({ ok: true, claims: { sub: 'a' } });
      expect(await verifier.verify(await second.token('a'))).toMatchObject({ ok: false, reason: 'invalid', detail: 'ERR_JWKS_NO_MATCHING_KEY' });

      writeJson(files.at('jwks.json'), second.jwks);
      await until(async () => (await verifier.verify(await second.token('a'))).ok);
      expect(await verifier.verify(await second.token('a'))).toMatchObject({ ok: true });
      expect(await verifier.verify(await first.token('a'))).toMatchObject({ ok: false });

      writeFileSync(files.at('jwks.json'), '{"keys": [{"kty": "EC"');
      await until(() => log.lines().some((l) => String(l.msg).includes('JWK Set file is refused')));
      expect(log.lines().find((l) => String(l.msg).includes('JWK Set file is refused'))).toMatchObject({ level: 50 });
      expect(await verifier.verify(await second.token('a'))).toMatchObject({ ok: true });
    } finally {
      verifier.close();
    }
  }, 30_000);

  it('refuses a JWK Set with a private key or a key without kid at start', async () => {
    const log = capturedLogger();
    const config = { jwksFile: files.at('bad.json'), jwksCacheSeconds: 300, issuer: ISSUER, audience: AUDIENCE, algorithms: ['ES256'], clockToleranceSeconds: 5 };
    writeJson(files.at('bad.json'), { keys: [{ kty: 'oct', k: 'AAAA' }] });
    expect(() => bearerVerifier(config, log.logger)).toThrow(/kid/);
    writeJson(files.at('bad.json'), { keys: [{ kty: 'EC', kid: 'k', crv: 'P-256', x: 'x', y: 'y', d: 'd' }] });
    expect(() => bearerVerifier(config, log.logger)).toThrow(/private or secret key/);
  });
});

describe('start-up', () => {
  const files = tempDir();
  afterAll(() => files.remove());

  it('refuses an invalid or missing policy file, naming the setting and the reason', () => {
    const log = capturedLogger();
    writeFileSync(files.at('policy.yaml'), 'principals: {a: {jwtSubject: a}}\nrules: [{principal: a, allow: [keys.sgin]}]');
    expect(() => createAccessStages({ allowUnauthenticated: false, policyFile: files.at('policy.yaml') }, log.logger)).toThrow(
      new ConfigError('config: /access/policyFile: rules[0].allow: "keys.sgin" matches no operation'),
    );
    expect(() => createAccessStages({ allowUnauthenticated: false, policyFile: files.at('absent.yaml') }, log.logger)).toThrow('config: /access/policyFile: ENOENT');
  });

  it('without a policy, a request without credentials is the anonymous caller and every operation is allowed', async () => {
    const stages = createAccessStages({ allowUnauthenticated: false }, capturedLogger().logger);
    try {
      expect(await stages.identify({ transport: 'rest', bearerToken: 'ignored without access.jwt' })).toEqual({ authenticatedBy: 'none', id: 'anonymous' });
      expect(stages.policyConfigured).toBe(false);
    } finally {
      stages.close();
    }
  });
});

describe('the access configuration fragment', () => {
  // The options src/config/load.ts validates the whole configuration with.
  const validate = new Ajv({ allErrors: true, useDefaults: true, coerceTypes: true, strict: false }).compile(accessConfigSchema);

  it('fills in the defaults', () => {
    const value: Record<string, any> = { policyFile: '/p.yaml', jwt: { jwksFile: '/jwks.json', issuer: 'https://idp', audience: 'hsm-bridge' } };
    expect(validate(value)).toBe(true);
    expect(value).toEqual({
      policyFile: '/p.yaml',
      allowUnauthenticated: false,
      jwt: { jwksFile: '/jwks.json', issuer: 'https://idp', audience: 'hsm-bridge', jwksCacheSeconds: 300, algorithms: ['RS256', 'ES256'], clockToleranceSeconds: 30 },
    });
    const empty = {};
    expect(validate(empty)).toBe(true);
    expect(empty).toEqual({ allowUnauthenticated: false });
  });

  it('refuses both or neither JWK Set source, plain http, alg none and unknown fields', () => {
    const jwt = { issuer: 'i', audience: 'a' };
    expect(validate({ jwt: { ...jwt, jwksFile: '/a', jwksUrl: 'https://b' } })).toBe(false);
    expect(validate({ jwt })).toBe(false);
    expect(validate({ jwt: { ...jwt, jwksUrl: 'http://idp/jwks' } })).toBe(false);
    expect(validate({ jwt: { ...jwt, jwksFile: '/a', algorithms: ['none'] } })).toBe(false);
    expect(validate({ jwt: { ...jwt, jwksFile: '/a', algorithms: ['HS256'] } })).toBe(false);
    expect(validate({ policy: '/p.yaml' })).toBe(false);
  });
});
