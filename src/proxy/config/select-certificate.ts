/**
 * Which certificate answers a ClientHello: an exact name beats a wildcard, a wildcard beats the
 * default. A wildcard `*.example.com` covers exactly one extra label (`a.example.com`, not
 * `example.com` nor `a.b.example.com`), as in RFC 6125 §6.4.3.
 */
import type { CertificateConfig, TlsConfig } from './types.js';

export function selectCertificate(tls: Pick<TlsConfig, 'certificates'>, sni: string | undefined): CertificateConfig {
  const certificates = tls.certificates;
  const fallback = certificates.find((c) => c.isDefault) ?? certificates[0];
  if (fallback === undefined) throw new Error('selectCertificate: the TLS config has no certificates');
  if (sni === undefined || sni === '') return fallback;
  const name = sni.toLowerCase().replace(/\.$/, '');
  const exact = certificates.find((c) => c.names.includes(name));
  if (exact !== undefined) return exact;
  const dot = name.indexOf('.');
  if (dot > 0) {
    const wildcard = `*${name.slice(dot)}`;
    const match = certificates.find((c) => c.names.includes(wildcard));
    if (match !== undefined) return match;
  }
  return fallback;
}
