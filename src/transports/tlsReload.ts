/**
 * TLS files that reload without a restart: the certificate, key and CA files of one listener are read
 * again when one of them changes (a watch on their directories, which also sees the atomic renames and
 * symlink swaps of Kubernetes secrets and cert-manager) or on SIGHUP. The new files pass the same checks
 * as at start (loadTlsMaterial); a bad or half-written set is refused with a log line saying why, and the
 * listener keeps the material it has. Connections already open keep theirs; new handshakes get the new one.
 *
 * REST applies a change with tls.Server.setSecureContext; gRPC through grpc-js's certificate-provider
 * credentials (grpcReloadingCredentials), which call setSecureContext on its HTTP/2 server the same way.
 */
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { SecureContextOptions } from 'node:tls';
import { experimental, type ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { TlsConfig } from '../config/schema.js';
import { loadTlsMaterial, MIN_TLS_VERSION, type TlsMaterial } from './tls.js';

/** Editors and copy tools write a file in several steps: changes closer together than this are one reload. */
const SETTLE_MS = 250;

type Listener = (material: TlsMaterial) => void;

export class ReloadingTls {
  private current: TlsMaterial;
  private readonly listeners = new Set<Listener>();
  private readonly watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly onSighup = () => this.reload('SIGHUP');

  /** Reads and checks the files now; a bad file fails the start (a ConfigError), as loadTlsMaterial does. */
  constructor(
    private readonly config: TlsConfig,
    /** The section's path in the configuration ('/rest/tls'), for errors and log lines. */
    readonly field: string,
    private readonly logger: Logger,
  ) {
    this.current = loadTlsMaterial(config, field);
  }

  get material(): TlsMaterial {
    return this.current;
  }

  /** Called with each new material; returns the function that stops it. */
  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Reads the files again. Returns true when a new, valid material was applied; false when nothing
   * changed or the new files were refused (logged).
   */
  reload(trigger = 'reload'): boolean {
    let next: TlsMaterial;
    try {
      next = loadTlsMaterial(this.config, this.field);
    } catch (e) {
      this.logger.warn({ field: this.field, trigger, reason: (e as Error).message }, 'TLS files not reloaded: the new files were refused; the listener keeps its certificate');
      return false;
    }
    const same = next.cert.equals(this.current.cert) && next.key.equals(this.current.key) && (next.ca ?? Buffer.alloc(0)).equals(this.current.ca ?? Buffer.alloc(0));
    if (same) return false;
    this.current = next;
    for (const listener of this.listeners) {
      try {
        listener(next);
      } catch (e) {
        this.logger.error({ err: e, field: this.field }, 'applying reloaded TLS files failed');
      }
    }
    this.logger.info({ field: this.field, trigger, certSubject: next.subject, certValidTo: next.validTo.toISOString() }, 'TLS files reloaded');
    return true;
  }

  /** Listens for SIGHUP and (unless `files` is false) watches the files' directories, until close(). */
  watch({ files: watchFiles = true }: { files?: boolean } = {}): void {
    process.on('SIGHUP', this.onSighup);
    if (!watchFiles) return;
    const files = [this.config.certFile, this.config.keyFile, ...(this.config.caFile ? [this.config.caFile] : [])].map((f) => resolve(f));
    const byDirectory = new Map<string, Set<string>>();
    for (const file of files) byDirectory.set(dirname(file), (byDirectory.get(dirname(file)) ?? new Set()).add(basename(file)));
    for (const [directory, names] of byDirectory) {
      const watcher = watch(directory, (_event, name) => {
        // Kubernetes swaps a ..data symlink: any change in the directory may be ours when no name is given.
        if (name === null || names.has(name.toString()) || name.toString().startsWith('..')) this.scheduleReload();
      });
      watcher.on('error', (e) => this.logger.warn({ err: e, field: this.field, directory }, 'cannot watch TLS files; SIGHUP still reloads them'));
      watcher.unref();
      this.watchers.push(watcher);
    }
  }

  close(): void {
    clearTimeout(this.timer);
    for (const w of this.watchers.splice(0)) w.close();
    process.off('SIGHUP', this.onSighup);
    this.listeners.clear();
  }

  private scheduleReload(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.reload('file change'), SETTLE_MS);
    this.timer.unref();
  }
}

/** The options tls.Server.setSecureContext takes for a material. */
export function secureContextOptions(tls: TlsMaterial): SecureContextOptions {
  return { cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca } : {}), minVersion: MIN_TLS_VERSION };
}

/**
 * grpc-js server credentials that follow the reloads. grpc-js hands a provider's updates to
 * setSecureContext on its server; listeners are answered on the next tick, because grpc-js registers its
 * own watcher only after subscribing. Without requireClientCert no CA provider is given, so that client
 * certificates are not asked for, as with ServerCredentials.createSsl(..., false).
 */
export function grpcReloadingCredentials(tls: ReloadingTls): ServerCredentials {
  const identity = new Map<experimental.IdentityCertificateUpdateListener, () => void>();
  const ca = new Map<experimental.CaCertificateUpdateListener, () => void>();
  const provider: experimental.CertificateProvider = {
    addIdentityCertificateListener(listener) {
      const send = (m: TlsMaterial) => listener({ certificate: m.cert, privateKey: m.key });
      identity.set(listener, tls.onChange(send));
      process.nextTick(() => identity.has(listener) && send(tls.material));
    },
    removeIdentityCertificateListener(listener) {
      identity.get(listener)?.();
      identity.delete(listener);
    },
    addCaCertificateListener(listener) {
      const send = (m: TlsMaterial) => listener(m.ca ? { caCertificate: m.ca } : null);
      ca.set(listener, tls.onChange(send));
      process.nextTick(() => ca.has(listener) && send(tls.material));
    },
    removeCaCertificateListener(listener) {
      ca.get(listener)?.();
      ca.delete(listener);
    },
  };
  const { requireClientCert } = tls.material;
  // grpc-js names its first parameter for the CA provider but uses it for the identity (1.14); one
  // provider serves both, so the order cannot go wrong.
  return experimental.createCertificateProviderServerCredentials(provider, requireClientCert ? provider : null, requireClientCert);
}
