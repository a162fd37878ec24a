/**
 * Who the caller is, end to end over real TLS: a throwaway CA made with the openssl CLI, client
 * certificates named by CN and by SAN (a SPIFFE URI and a DNS name), the REST (https) and gRPC (TLS)
 * listeners requiring them, and bearer JWTs checked against a JWK Set that a local https server serves.
 * The policy is the issue's example, with two more principals.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { credentials as grpcCredentials } from '@grpc/grpc-js';
import { httpsJson, type HttpsAnswer } from '../helpers/httpsJson.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTlsMaterial } from '../../src/transports/tls.js';
import { reflectionClient } from '../transports/grpc/reflectionClient.js';
import { capturedLogger, grpcCaller, startAccessServers, tempDir, tokenIssuer, AUDIENCE, ISSUER, type AccessServers, type GrpcCaller, type TokenIssuer } from './accessSupport.js';

const files = tempDir();
const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: files.dir, stdio: ['ignore', 'pipe', 'pipe'] });
let serialNumber = 1;

function makeCa(): void {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-sha256', '-days', '2',
    '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=hsm-bridge access test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
}

function makeLeaf(name: string, subject: string, extensions: string): void {
  openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-sha256', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
  writeFileSync(files.at(`${name}.ext`), extensions);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', String(serialNumber++), '-days', '2', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.pem`);
}

const clientExt = (san = '') => `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n${san ? `subjectAltName=${san}\n` : ''}`;
const SPIFFE_ID = 'spiffe://mojaloop.test/ns/payments/sa/payee';

makeCa();
makeLeaf('server', '/CN=localhost', 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n');
makeLeaf('payer-adapter', '/CN=payer-adapter', clientExt());
makeLeaf('bob', '/CN=bob-readonly', clientExt());
makeLeaf('payee', '/CN=payee-workload', clientExt(`URI:${SPIFFE_ID},DNS:payee.payments.svc`));
makeLeaf('gateway', '/CN=api-gateway', clientExt());

const pem = (name: string) => readFileSync(files.at(name));
const client = (name: string) => ({ cert: pem(`${name}.pem`), key: pem(`${name}.key`) });

const policy = `
principals:
  payer-adapter: { certSubject: "CN=payer-adapter" }     # or certSan: "spiffe://...", jwtSubject: ..., jwtClaim: {client_id: ...}
  ops-admin: { jwtClaim: { roles: "hsm-admin" } }
  payee: { certSan: "${SPIFFE_ID}" }
  bob: { certSubject: "CN=bob-readonly" }
rules:
  - principal: payer-adapter
    allow: [keys.sign, keys.verify, fspiop.sign]
    keys: ["payerfsp-*"]          # globs on key names; omitted = the rule grants no key-bound operation
  - principal: ops-admin
    allow: ["keys.*", "fspiop.participants.*"]
    keys: ["*"]
  - principal: payee
    allow: [keys.sign]
    keys: ["payeefsp-*"]
  - principal: bob
    allow: [keys.get, keys.list]
    keys: ["*"]
`;

let issuer: TokenIssuer;
let jwksServer: HttpsServer;
let jwksFetches = 0;
let servers: AccessServers;
let log: ReturnType<typeof capturedLogger>;
let restPort: number;
const grpcClients = new Map<string, GrpcCaller>();

function https(method: 'GET' | 'POST' | 'DELETE', path: string, who: { cert?: Buffer; key?: Buffer; token?: string }, body?: unknown): Promise<HttpsAnswer> {
  return httpsJson(restPort, method, path, body, { ca: pem('ca.pem'), cert: who.cert, key: who.key, headers: who.token === undefined ? {} : { authorization: `Bearer ${who.token}` } });
}

function grpcAs(name: string): GrpcCaller {
  let caller = grpcClients.get(name);
  if (!caller) {
    const { cert, key } = client(name);
    caller = grpcCaller(servers.grpc.port, grpcCredentials.createSsl(pem('ca.pem'), key, cert));
    grpcClients.set(name, caller);
  }
  return caller;
}

const b64 = (text: string) => Buffer.from(text).toString('base64');

beforeAll(async () => {
  issuer = await tokenIssuer('idp-key-1');
  jwksServer = createHttpsServer({ cert: pem('server.pem'), key: pem('server.key') }, (req, res) => {
    jwksFetches++;
    if (req.url !== '/.well-known/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(issuer.jwks));
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  writeFileSync(files.at('policy.yaml'), policy);
  const tls = loadTlsMaterial({ certFile: files.at('server.pem'), keyFile: files.at('server.key'), caFile: files.at('ca.pem'), requireClientCert: true }, '/rest/tls');
  log = capturedLogger();
  servers = await startAccessServers(
    {
      policyFile: files.at('policy.yaml'),
      allowUnauthenticated: false,
      jwt: {
        jwksUrl: `https://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`,
        jwksCaFile: files.at('ca.pem'),
        jwksCacheSeconds: 300,
        issuer: ISSUER,
        audience: AUDIENCE,
        algorithms: ['ES256', 'RS256'],
        clockToleranceSeconds: 30,
      },
    },
    log.logger,
    { rest: tls, grpc: tls },
  );
  await servers.rest.listen({ host: '127.0.0.1', port: 0 });
  restPort = (servers.rest.server.address() as AddressInfo).port;
  await servers.service.createKey({ name: 'payerfsp-sign', type: 'EC_P256' });
  await servers.service.createKey({ name: 'payeefsp-sign', type: 'EC_P256' });
}, 60_000);

afterAll(async () => {
  for (const c of grpcClients.values()) c.close();
  await servers?.close();
  await new Promise((resolve) => jwksServer?.close(resolve));
  files.remove();
});

describe('mTLS identities', () => {
  it('CN=payer-adapter signs with payerfsp-* keys only, and cannot touch their lifecycle (REST and gRPC)', async () => {
    const payer = client('payer-adapter');
    expect((await https('POST', '/v1/keys/payerfsp-sign/sign', payer, { message: b64('quote') })).status).toBe(200);
    expect((await https('POST', '/v1/keys/payeefsp-sign/sign', payer, { message: b64('quote') })).body.error).toEqual({ code: 'PERMISSION_DENIED', message: 'permission denied: keys.sign on key "payeefsp-sign"' });
    expect((await https('POST', '/v1/keys/payerfsp-sign/disable', payer)).status).toBe(403);

    const grpc = grpcAs('payer-adapter');
    expect((await grpc.call('KeyService', 'Sign', { name: 'payerfsp-sign', message: Buffer.from('quote') })).status).toBe(0);
    expect(await grpc.call('KeyService', 'DisableKey', { name: 'payerfsp-sign' })).toMatchObject({ status: 7, code: 'PERMISSION_DENIED' });
  });

  it('a certificate named CN=bob-readonly, from the trusted CA, can no longer destroy keys', async () => {
    const bob = client('bob');
    expect((await https('GET', '/v1/keys/payerfsp-sign', bob)).status).toBe(200);
    expect((await https('POST', '/v1/keys/payerfsp-sign/disable', bob)).status).toBe(403);
    expect((await https('DELETE', '/v1/keys/payerfsp-sign', bob)).body.error.code).toBe('PERMISSION_DENIED');
    expect(await grpcAs('bob').call('KeyService', 'DestroyKey', { name: 'payerfsp-sign' })).toMatchObject({ status: 7, code: 'PERMISSION_DENIED' });
    expect((await servers.service.getKey('payerfsp-sign')).state).toBe('enabled');
  });

  it('a SPIFFE id in the SAN is a principal; whoami shows the names the certificate carries', async () => {
    const payee = client('payee');
    expect((await https('POST', '/v1/keys/payeefsp-sign/sign', payee, { message: b64('x') })).status).toBe(200);
    expect((await https('POST', '/v1/keys/payerfsp-sign/sign', payee, { message: b64('x') })).status).toBe(403);
    const me = await https('GET', '/v1/whoami', payee);
    expect(me.body).toEqual({
      id: 'payee-workload',
      authenticatedBy: 'certificate',
      certSubject: 'CN=payee-workload',
      certSans: [`URI:${SPIFFE_ID}`, 'DNS:payee.payments.svc'],
      policy: true,
      principals: ['payee'],
      rules: [{ principal: 'payee', allow: ['keys.sign'], keys: ['payeefsp-*'], participants: ['*'] }],
    });
    const viaGrpc = await grpcAs('payee').call('KeyService', 'WhoAmI', {});
    expect(viaGrpc.answer).toMatchObject({ id: 'payee-workload', certSans: [`URI:${SPIFFE_ID}`, 'DNS:payee.payments.svc'], principals: ['payee'] });
  });

  it('health, the JWKS, the OpenAPI document, its page and gRPC reflection stay open to any client the TLS layer admits', async () => {
    const gateway = client('gateway');
    for (const path of ['/health/live', '/.well-known/jwks.json', '/openapi.json', '/docs', '/docs/swagger-ui-bundle.js']) expect((await https('GET', path, gateway)).status, path).toBe(200);
    expect((await https('GET', '/v1/keys', gateway)).status).toBe(403);
    // gRPC server reflection, the schema as /openapi.json is.
    const reflection = reflectionClient(servers.grpc.port, 'v1', grpcCredentials.createSsl(pem('ca.pem'), gateway.key, gateway.cert));
    try {
      expect((await reflection.ask({ listServices: '*' })).listServicesResponse!.service.map((s) => s.name)).toContain('hsmbridge.v1.KeyService');
    } finally {
      reflection.close();
    }
  });
});

describe('bearer JWTs from a JWK Set served over https', () => {
  const gateway = () => client('gateway');

  it('a token with the admin role, through a gateway certificate, is the ops-admin principal', async () => {
    const token = await issuer.token('svc-ops', { roles: ['hsm-admin'] });
    const created = await https('POST', '/v1/keys', { ...gateway(), token }, { name: 'admin-made', type: 'EC_P256' });
    expect(created.status).toBe(201);
    expect((await https('GET', '/v1/fspiop/participants', { ...gateway(), token })).status).toBe(200);
    expect((await grpcAs('gateway').call('KeyService', 'GetKey', { name: 'admin-made' }, token)).status).toBe(0);
    expect(jwksFetches).toBeGreaterThan(0);
    const me = (await https('GET', '/v1/whoami', { ...gateway(), token })).body;
    expect(me).toMatchObject({ id: 'svc-ops', authenticatedBy: 'token', certSubject: 'CN=api-gateway', principals: ['ops-admin'] });
  });

  it('refuses expired, wrong-audience, wrong-issuer, alg none and unknown-kid tokens with 401, saying only invalid or expired', async () => {
    const now = Math.floor(Date.now() / 1000);
    const unsigned = (claims: object) => `${Buffer.from(JSON.stringify({ alg: 'none', kid: 'idp-key-1' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;
    const cases: Array<[string, string, 'invalid' | 'expired']> = [
      ['expired', await issuer.token('svc-ops', { roles: ['hsm-admin'] }, { expiresAt: now - 3600 }), 'expired'],
      ['wrong audience', await issuer.token('svc-ops', { roles: ['hsm-admin'] }, { audience: 'another-service' }), 'invalid'],
      ['wrong issuer', await issuer.token('svc-ops', { roles: ['hsm-admin'] }, { issuer: 'https://evil.example' }), 'invalid'],
      ['alg none', unsigned({ sub: 'svc-ops', roles: ['hsm-admin'], iss: ISSUER, aud: AUDIENCE, exp: now + 600 }), 'invalid'],
      ['unknown kid', await issuer.token('svc-ops', { roles: ['hsm-admin'] }, { kid: 'not-in-the-jwks' }), 'invalid'],
      ['not a JWT', 'garbage', 'invalid'],
    ];
    for (const [label, token, why] of cases) {
      const r = await https('GET', '/v1/keys', { ...gateway(), token });
      expect({ label, status: r.status, error: r.body?.error }).toEqual({ label, status: 401, error: { code: 'UNAUTHENTICATED', message: `credentials ${why}` } });
      const g = await grpcAs('gateway').call('KeyService', 'ListKeys', {}, token);
      expect({ label, status: g.status, code: g.code, message: g.message }).toEqual({ label, status: 16, code: 'UNAUTHENTICATED', message: `credentials ${why}` });
    }
    // The log says why, for the operator; never the token.
    const lines = JSON.stringify(log.lines());
    expect(lines).toContain('ERR_JWT_CLAIM_VALIDATION_FAILED');
    expect(lines).not.toContain(cases[0]![1]);
  });
});
