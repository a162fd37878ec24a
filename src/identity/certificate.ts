/**
 * The caller a verified mTLS client certificate names: its subject CN and its subject alternative names
 * (DNS names and URIs such as a SPIFFE id). The transport has already checked the chain against the
 * listener's CA file; this only reads names.
 */
import type { PeerCertificate } from 'node:tls';

export interface CertificateIdentity {
  /** "CN=<common name>", or undefined for a certificate without one. */
  readonly certSubject?: string;
  /** "DNS:<name>" and "URI:<uri>" entries, in certificate order. */
  readonly certSans: readonly string[];
}

/** Node gives the CN as a string, or a list of strings when the subject has several; only one is accepted. */
function commonName(cert: PeerCertificate): string | undefined {
  const cn: unknown = cert.subject?.CN;
  return typeof cn === 'string' && cn !== '' ? cn : undefined;
}

/**
 * Node's subjectaltname text: `DNS:a, URI:spiffe://x, IP Address:1.2.3.4`, each entry "type:value" and
 * ", " between them. Values with a comma, quote or control character come JSON-quoted (`URI:"a, b"`).
 * Read entry by entry, so that text inside one value can never pass for another entry.
 */
function subjectAltNames(text: string | undefined): string[] {
  const names: string[] = [];
  let at = 0;
  while (text && at < text.length) {
    const colon = text.indexOf(':', at);
    if (colon < 0) break;
    const type = text.slice(at, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      const quoted = /^"(?:[^"\\]|\\.)*"/.exec(text.slice(colon + 1));
      if (!quoted) break;
      end = colon + 1 + quoted[0].length;
      try {
        value = JSON.parse(quoted[0]) as string;
      } catch {
        break;
      }
    } else {
      const comma = text.indexOf(', ', colon + 1);
      end = comma < 0 ? text.length : comma;
      value = text.slice(colon + 1, end);
    }
    if ((type === 'DNS' || type === 'URI') && value !== '') names.push(`${type}:${value}`);
    if (end < text.length && !text.startsWith(', ', end)) break;
    at = end + 2;
  }
  return names;
}

export function certificateIdentity(cert: PeerCertificate): CertificateIdentity {
  const cn = commonName(cert);
  return { ...(cn === undefined ? {} : { certSubject: `CN=${cn}` }), certSans: subjectAltNames(cert.subjectaltname) };
}
