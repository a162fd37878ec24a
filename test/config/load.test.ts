import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyEnvOverrides, ConfigError, loadServiceConfig } from '../../src/config/load.js';
import { resolveBackend } from '../../src/backends.js';

const dir = mkdtempSync(join(tmpdir(), 'hsmb-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

describe('loadServiceConfig', () => {
  it('has sane defaults without a file: loopback listeners, the software backend', () => {
    const c = loadServiceConfig({ env: {} });
    expect(c.rest).toEqual({ enabled: true, host: '127.0.0.1', port: 8080 });
    expect(c.grpc).toEqual({ enabled: true, host: '127.0.0.1', port: 50051 });
    expect(c.backend.type).toBe('software');
    expect(c.limits.maxRequestBytes).toBe(1024 * 1024);
  });

  it('reads YAML and JSON files', () => {
    const yaml = file('a.yaml', 'rest:\n  port: 9090\nbackend:\n  type: pkcs11\n  pkcs11:\n    library: /usr/lib/softhsm/libsofthsm2.so\n');
    expect(loadServiceConfig({ file: yaml, env: {} }).rest.port).toBe(9090);
    const json = file('a.json', '{"grpc": {"enabled": false}}');
    expect(loadServiceConfig({ file: json, env: {} }).grpc.enabled).toBe(false);
  });

  it('applies HSMB_ overrides with camelCase fields and typed values, and ignores secrets without "__"', () => {
    const env = { HSMB_REST__PORT: '7000', HSMB_GRPC__ENABLED: 'false', HSMB_KEYS__METADATA_CACHE_TTL_MS: '0', HSMB_MASTER_KEY: 'secret', HSMB_PKCS11_PIN: '1234' };
    const c = loadServiceConfig({ env });
    expect(c.rest.port).toBe(7000);
    expect(c.grpc.enabled).toBe(false);
    expect(c.keys.metadataCacheTtlMs).toBe(0);
  });

  it('types environment values by the schema: a numeric token label stays a string', async () => {
    const c = loadServiceConfig({ env: { HSMB_BACKEND__TYPE: 'pkcs11', HSMB_BACKEND__PKCS11__LIBRARY: '/x.so', HSMB_BACKEND__PKCS11__TOKEN_LABEL: '1234' } });
    const { section } = await resolveBackend(c);
    expect((section as { tokenLabel: unknown }).tokenLabel).toBe('1234');
  });

  it('key import: a ceremony lasts an hour by default; the import wrapping key is RSA-3072 under a name that can be changed', () => {
    const c = loadServiceConfig({ env: {} });
    expect(c.ceremonies).toEqual({ ttlMs: 3_600_000 });
    expect(c.keyImport).toEqual({ wrappingKeyName: 'hsm-bridge-import', wrappingKeyType: 'RSA_3072' });
    expect(loadServiceConfig({ env: { HSMB_CEREMONIES__TTL_MS: '600000', HSMB_KEY_IMPORT__WRAPPING_KEY_TYPE: 'RSA_4096' } })).toMatchObject({ ceremonies: { ttlMs: 600_000 }, keyImport: { wrappingKeyType: 'RSA_4096' } });
    expect(() => loadServiceConfig({ env: { HSMB_CEREMONIES__TTL_MS: '0' } })).toThrow(/ceremonies\/ttlMs/);
    expect(() => loadServiceConfig({ env: { HSMB_KEY_IMPORT__WRAPPING_KEY_TYPE: 'RSA_2048' } })).toThrow(/keyImport\/wrappingKeyType/);
    expect(() => loadServiceConfig({ env: { HSMB_KEY_IMPORT__WRAPPING_KEY_NAME: '-bad' } })).toThrow(/keyImport\/wrappingKeyName/);
  });

  it('refuses a data limit larger than the request limit', () => {
    expect(() => loadServiceConfig({ env: { HSMB_LIMITS__MAX_DATA_BYTES: '2000000' } })).toThrow(/maxDataBytes must be <= \/limits\/maxRequestBytes/);
  });

  it('names the bad field', () => {
    expect(() => loadServiceConfig({ env: { HSMB_REST__PORT: '70000' } })).toThrow(/\/rest\/port must be <= 65535/);
    expect(() => loadServiceConfig({ env: { HSMB_REST__PROT: '1' } })).toThrow(/\/rest\/prot is not a known field/);
    expect(() => loadServiceConfig({ file: file('b.yaml', 'log:\n  level: loud\n'), env: {} })).toThrow(/\/log\/level must be equal to one of/);
    expect(() => loadServiceConfig({ file: join(dir, 'missing.yaml'), env: {} })).toThrow(ConfigError);
    expect(() => loadServiceConfig({ file: file('c.yaml', 'rest: [\n'), env: {} })).toThrow(/not valid YAML/);
  });

  it('payment.otpIncomingKeys: key names, optionally pinned to a KCV; nothing else', () => {
    expect(loadServiceConfig({ env: {} }).payment.otpIncomingKeys).toEqual([]);
    const ok = loadServiceConfig({ file: file('otp.yaml', 'payment:\n  otpIncomingKeys: [atm-otp-zpk, "pos-otp:1a2b3c"]\n'), env: {} });
    expect(ok.payment.otpIncomingKeys).toEqual(['atm-otp-zpk', 'pos-otp:1a2b3c']);
    for (const bad of ['"bad name"', '"k:12345"', '"k:GGGGGG"', '""']) {
      expect(() => loadServiceConfig({ file: file(`otp-${Math.random()}.yaml`, `payment:\n  otpIncomingKeys: [${bad}]\n`), env: {} })).toThrow(/\/payment\/otpIncomingKeys\/0/);
    }
  });

  it('does not change the document it is given', () => {
    const doc = { rest: { port: 1 } };
    applyEnvOverrides(doc, { HSMB_REST__PORT: '2' });
    expect(doc.rest.port).toBe(1);
  });
});

describe('rest.tls and grpc.tls', () => {
  it('are off by default', () => {
    const c = loadServiceConfig({ env: {} });
    expect(c.rest.tls).toBeUndefined();
    expect(c.grpc.tls).toBeUndefined();
  });

  it('read from a file, with requireClientCert defaulting to false', () => {
    const c = loadServiceConfig({
      file: file('tls.yaml', 'rest:\n  tls:\n    certFile: /etc/hsmb/server.pem\n    keyFile: /etc/hsmb/server.key\ngrpc:\n  tls:\n    certFile: /etc/hsmb/server.pem\n    keyFile: /etc/hsmb/server.key\n    caFile: /etc/hsmb/clients-ca.pem\n    requireClientCert: true\n'),
      env: {},
    });
    expect(c.rest.tls).toEqual({ certFile: '/etc/hsmb/server.pem', keyFile: '/etc/hsmb/server.key', requireClientCert: false });
    expect(c.grpc.tls).toEqual({ certFile: '/etc/hsmb/server.pem', keyFile: '/etc/hsmb/server.key', caFile: '/etc/hsmb/clients-ca.pem', requireClientCert: true });
  });

  it('set from the environment', () => {
    const c = loadServiceConfig({
      env: {
        HSMB_GRPC__TLS__CERT_FILE: '/c.pem',
        HSMB_GRPC__TLS__KEY_FILE: '/k.pem',
        HSMB_GRPC__TLS__CA_FILE: '/ca.pem',
        HSMB_GRPC__TLS__REQUIRE_CLIENT_CERT: 'true',
      },
    });
    expect(c.grpc.tls).toEqual({ certFile: '/c.pem', keyFile: '/k.pem', caFile: '/ca.pem', requireClientCert: true });
    expect(c.rest.tls).toBeUndefined();
  });

  it('types environment values by the schema: a numeric token label stays a string', async () => {
    const c = loadServiceConfig({ env: { HSMB_BACKEND__TYPE: 'pkcs11', HSMB_BACKEND__PKCS11__LIBRARY: '/x.so', HSMB_BACKEND__PKCS11__TOKEN_LABEL: '1234' } });
    const { section } = await resolveBackend(c);
    expect((section as { tokenLabel: unknown }).tokenLabel).toBe('1234');
  });

  it('refuses a data limit larger than the request limit', () => {
    expect(() => loadServiceConfig({ env: { HSMB_LIMITS__MAX_DATA_BYTES: '2000000' } })).toThrow(/maxDataBytes must be <= \/limits\/maxRequestBytes/);
  });

  it('names the bad field', () => {
    expect(() => loadServiceConfig({ env: { HSMB_REST__TLS__CERT_FILE: '/c.pem' } })).toThrow(/\/rest\/tls must have required property 'keyFile'/);
    expect(() => loadServiceConfig({ env: { HSMB_GRPC__TLS__KEY_FILE: '/k.pem' } })).toThrow(/\/grpc\/tls must have required property 'certFile'/);
    expect(() => loadServiceConfig({ env: { HSMB_REST__TLS__CERT_FILE: '', HSMB_REST__TLS__KEY_FILE: '/k.pem' } })).toThrow(/\/rest\/tls\/certFile must NOT have fewer than 1 characters/);
    expect(() => loadServiceConfig({ env: { HSMB_REST__TLS__CERT_FILE: '/c.pem', HSMB_REST__TLS__KEY_FILE: '/k.pem', HSMB_REST__TLS__REQUIRE_CLIENT_CERT: 'yes' } }))
      .toThrow(/\/rest\/tls\/requireClientCert must be boolean/);
    expect(() => loadServiceConfig({ env: { HSMB_REST__TLS__CERT_FILE: '/c.pem', HSMB_REST__TLS__KEY_FILE: '/k.pem', HSMB_REST__TLS__MIN_VERSION: 'TLSv1' } }))
      .toThrow(/\/rest\/tls\/minVersion is not a known field/);
  });

  it('refuses requireClientCert without caFile, naming caFile', () => {
    const env = { HSMB_REST__TLS__CERT_FILE: '/c.pem', HSMB_REST__TLS__KEY_FILE: '/k.pem', HSMB_REST__TLS__REQUIRE_CLIENT_CERT: 'true' };
    expect(() => loadServiceConfig({ env })).toThrow(ConfigError);
    expect(() => loadServiceConfig({ env })).toThrow(/\/rest\/tls must have required property 'caFile'/);
    // caFile without requireClientCert is allowed (startApp warns that it has no effect).
    expect(loadServiceConfig({ env: { ...env, HSMB_REST__TLS__REQUIRE_CLIENT_CERT: 'false', HSMB_REST__TLS__CA_FILE: '/ca.pem' } }).rest.tls?.caFile).toBe('/ca.pem');
  });
});

describe('backend section', () => {
  it('refuses an unknown backend type, naming the choices', async () => {
    const c = loadServiceConfig({ env: { HSMB_BACKEND__TYPE: 'vault' } });
    await expect(resolveBackend(c)).rejects.toThrow(/\/backend\/type must be one of software, pkcs11, kmip, module/);
  });

  it("checks the chosen backend's section against that adapter's schema", async () => {
    const c = loadServiceConfig({ file: file('p.yaml', 'backend:\n  type: pkcs11\n  pkcs11:\n    library: /x.so\n    tokenLabel: t\n    pin: "1234"\n'), env: {} });
    await expect(resolveBackend(c)).rejects.toThrow(/\/backend\/pkcs11\/pin is not a known field/);
  });

  it('loads an adapter module of your own and checks its config', async () => {
    const mod = file('my-adapter.mjs', `export default { kind: 'mine', configSchema: { type: 'object', additionalProperties: false, required: ['url'], properties: { url: { type: 'string' } } }, create: async () => ({}) };\n`);
    const ok = loadServiceConfig({ env: { HSMB_BACKEND__TYPE: 'module', HSMB_BACKEND__MODULE__PATH: mod, HSMB_BACKEND__MODULE__CONFIG__URL: 'https://kms' } });
    expect((await resolveBackend(ok)).factory.kind).toBe('mine');
    const bad = loadServiceConfig({ env: { HSMB_BACKEND__TYPE: 'module', HSMB_BACKEND__MODULE__PATH: mod } });
    await expect(resolveBackend(bad)).rejects.toThrow(/\/backend\/module\/config must have required property 'url'/);
    const notFactory = file('nf.mjs', 'export default 42;\n');
    await expect(resolveBackend(loadServiceConfig({ env: { HSMB_BACKEND__TYPE: 'module', HSMB_BACKEND__MODULE__PATH: notFactory } }))).rejects.toThrow(/no default export that is a BackendFactory/);
  });
});
