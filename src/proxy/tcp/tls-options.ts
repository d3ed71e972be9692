/**
 * TLS for the TCP listeners: the same certificate set as QUIC, chosen by SNI with the same rules
 * (exact, wildcard, default; config/select-certificate.ts), TLS 1.2 and up, ALPN narrowed to the
 * listener's protocols, and session tickets every worker of every generation can decrypt.
 */
import { hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext, type TlsOptions } from 'node:tls';
import { selectCertificate } from '../config/select-certificate.js';
import type { CertificateConfig, ListenerProtocol, TlsConfig } from '../config/types.js';

const MIN_VERSION = 'TLSv1.2';
/**
 * The session id context, the same in every worker of every generation and binary. Node's default
 * hashes the process's command line: a worker of an upgraded binary (another path) would then
 * refuse every ticket issued without SNI before the upgrade (OpenSSL resumes a session only in
 * the context it was made in).
 */
const SESSION_ID_CONTEXT = 'udpgrm-proxy';
/** Node's ticket key: 16 bytes name, 16 HMAC, 16 AES. */
const TICKET_KEYS_BYTES = 48;

/** A secure context per certificate, built once per worker and shared by its TCP listeners. */
export class TcpCertificates {
  readonly #contexts = new Map<CertificateConfig, SecureContext>();
  readonly #default: CertificateConfig;
  readonly #defaultPem: { readonly cert: Buffer; readonly key: Buffer };

  constructor(private readonly tls: Pick<TlsConfig, 'certificates'>) {
    for (const c of tls.certificates) {
      this.#contexts.set(c, createSecureContext({ cert: readFileSync(c.certFile), key: readFileSync(c.keyFile), minVersion: MIN_VERSION }));
    }
    this.#default = selectCertificate(tls, undefined);
    this.#defaultPem = { cert: readFileSync(this.#default.certFile), key: readFileSync(this.#default.keyFile) };
  }

  /** The context for a ClientHello's server name. */
  contextFor(servername: string): SecureContext {
    return this.#contexts.get(selectCertificate(this.tls, servername))!;
  }

  /**
   * Server options: the default certificate for ClientHellos without SNI (Node calls SNICallback
   * only when a name was sent), SNICallback for the rest, tickets under `ticketKeys` in a fixed
   * session id context.
   */
  serverOptions(ticketKeys: Buffer, handshakeTimeoutMs: number): TlsOptions {
    return {
      cert: this.#defaultPem.cert,
      key: this.#defaultPem.key,
      minVersion: MIN_VERSION,
      SNICallback: (servername, cb) => cb(null, this.contextFor(servername)),
      ticketKeys,
      sessionIdContext: SESSION_ID_CONTEXT,
      handshakeTimeout: handshakeTimeoutMs,
    };
  }
}

/**
 * The TLS-over-TCP ticket key, derived from the shared ticket key file (HKDF-SHA256): the same
 * in every worker and generation, so a session resumes whichever worker takes the connection, and
 * independent of the bytes QUIC's BoringSSL uses directly.
 */
export function tcpTicketKeys(ticketKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', ticketKey, Buffer.alloc(0), 'udpgrm-proxy tcp session tickets', TICKET_KEYS_BYTES));
}

/** ALPN ids a TCP listener offers, in preference order: h2 first. */
export function tcpAlpn(protocols: readonly ListenerProtocol[]): string[] {
  const ids: string[] = [];
  if (protocols.includes('h2')) ids.push('h2');
  if (protocols.includes('h1')) ids.push('http/1.1');
  return ids;
}
