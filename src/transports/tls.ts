/**
 * TLS for the REST and gRPC listeners: reads and checks the PEM files of a `rest.tls` or `grpc.tls`
 * section once, at start, and turns them into the options each transport needs. Every failure is a
 * ConfigError that names the field and the path, never the file's contents.
 *
 * TLS 1.2 is the minimum on both listeners. With requireClientCert, a client without a certificate that
 * chains to caFile is refused during the handshake, before any request is read; client certificates are
 * checked against caFile only, never against the system's public CAs.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ServerOptions as HttpsServerOptions } from 'node:https';
import { createSecureContext, DEFAULT_MIN_VERSION } from 'node:tls';
import { ServerCredentials } from '@grpc/grpc-js';
import { ConfigError } from '../config/load.js';
import type { TlsConfig } from '../config/schema.js';

export const MIN_TLS_VERSION = 'TLSv1.2';

/** The checked contents of one listener's TLS section. */
export interface TlsMaterial {
  /** The server certificate chain (PEM), leaf first. */
  readonly cert: Buffer;
  /** The server's private key (PEM). */
  readonly key: Buffer;
  /** The CAs for client certificates (PEM); set when caFile is. */
  readonly ca?: Buffer;
  readonly requireClientCert: boolean;
  /** The server certificate's subject and expiry, for the startup log. */
  readonly subject: string;
  readonly validTo: Date;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n[\s\S]*?-----END \1-----/g;

function fail(field: string, path: string, problem: string): never {
  throw new ConfigError(`config: ${field} (${path}) ${problem}`);
}

function readPem(field: string, path: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (e) {
    return fail(field, path, `cannot be read: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  if (data.length === 0) fail(field, path, 'is empty');
  return data;
}

/** Every certificate in a PEM file, parsed; the file must hold at least one and nothing that does not parse. */
function certificates(field: string, path: string, pem: Buffer): X509Certificate[] {
  const blocks = [...pem.toString('latin1').matchAll(PEM_BLOCK)].filter((m) => m[1] === 'CERTIFICATE');
  if (blocks.length === 0) fail(field, path, 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)');
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block[0]);
    } catch {
      return fail(field, path, `holds a certificate that cannot be parsed (certificate ${i + 1} of ${blocks.length})`);
    }
  });
}

function privateKey(field: string, path: string, pem: Buffer): KeyObject {
  const keys = [...pem.toString('latin1').matchAll(PEM_BLOCK)].filter((m) => m[1]!.endsWith('PRIVATE KEY'));
  if (keys.length === 0) fail(field, path, 'holds no PEM private key block');
  // PKCS#8 (ENCRYPTED PRIVATE KEY) or traditional OpenSSL encryption (a Proc-Type header).
  if (keys.some((m) => m[1] === 'ENCRYPTED PRIVATE KEY' || m[0].includes('Proc-Type: 4,ENCRYPTED'))) {
    fail(field, path, 'is an encrypted private key; give it unencrypted and protect the file with its permissions');
  }
  try {
    return createPrivateKey(pem);
  } catch {
    return fail(field, path, 'holds a private key that cannot be parsed');
  }
}

/**
 * Reads and checks one listener's TLS files. `field` is the section's path in the configuration
 * ('/rest/tls'), used to name the field in errors.
 */
export function loadTlsMaterial(config: TlsConfig, field: string): TlsMaterial {
  if (DEFAULT_MIN_VERSION !== 'TLSv1.2' && DEFAULT_MIN_VERSION !== 'TLSv1.3') {
    // grpc-js takes no minimum version of its own and uses Node's default, which a command-line flag
    // (--tls-min-v1.0) can lower; refuse to start rather than serve older TLS.
    throw new ConfigError(`config: ${field}: Node's minimum TLS version is ${DEFAULT_MIN_VERSION}; hsm-bridge needs ${MIN_TLS_VERSION} or later (remove --tls-min-v1.0/--tls-min-v1.1)`);
  }
  if (config.requireClientCert && !config.caFile) {
    throw new ConfigError(`config: ${field}/caFile is required when ${field}/requireClientCert is true`);
  }
  const certField = `${field}/certFile`;
  const keyField = `${field}/keyFile`;
  const cert = readPem(certField, config.certFile);
  const key = readPem(keyField, config.keyFile);
  const ca = config.caFile === undefined ? undefined : readPem(`${field}/caFile`, config.caFile);

  const [leaf] = certificates(certField, config.certFile, cert);
  const keyObject = privateKey(keyField, config.keyFile, key);
  if (!leaf!.checkPrivateKey(keyObject)) {
    fail(keyField, config.keyFile, `is not the private key of the certificate in ${certField} (${config.certFile})`);
  }
  if (ca !== undefined) certificates(`${field}/caFile`, config.caFile!, ca);

  // What OpenSSL itself accepts (key type and size under its security level, the chain as a whole).
  try {
    createSecureContext({ cert, key, ca, minVersion: MIN_TLS_VERSION });
  } catch (e) {
    const reason = (e as Error).message.replace(/^error:[0-9A-F]+:/, '');
    throw new ConfigError(`config: ${field}: OpenSSL refuses the certificate and key (${config.certFile}, ${config.keyFile}): ${reason}`);
  }
  return { cert, key, ca, requireClientCert: config.requireClientCert, subject: leaf!.subject, validTo: new Date(leaf!.validTo) };
}

/** The `https` options for fastify. */
export function httpsServerOptions(tls: TlsMaterial): HttpsServerOptions {
  return {
    cert: tls.cert,
    key: tls.key,
    ...(tls.ca ? { ca: tls.ca } : {}),
    minVersion: MIN_TLS_VERSION,
    requestCert: tls.requireClientCert,
    rejectUnauthorized: true,
  };
}

/** The credentials for the grpc-js server. */
export function grpcServerCredentials(tls: TlsMaterial): ServerCredentials {
  if (tls.requireClientCert && !tls.ca) {
    // createSsl would fall back to the public CAs for client certificates.
    throw new ConfigError('config: requireClientCert without caFile');
  }
  return ServerCredentials.createSsl(tls.ca ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.requireClientCert);
}
