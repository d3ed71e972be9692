/**
 * One quiche Config per certificate, shared by every connection that uses it (so BoringSSL's
 * SSL_CTX and its session-ticket key are shared too, and resumption / 0-RTT work).
 */
import type { CertificateConfig, QuicLimits } from '../config/types.js';
import { quiche, type QuicheConfig } from './native.js';

export interface TlsContextOptions {
  readonly certificates: readonly CertificateConfig[];
  readonly alpn: readonly string[];
  readonly limits: QuicLimits;
  /** 48 bytes (BoringSSL's ticket key: name, HMAC and AES keys); identical across generations. */
  readonly ticketKey: Buffer;
}

export class TlsContexts {
  private readonly byCert = new Map<CertificateConfig, QuicheConfig>();

  constructor(opts: TlsContextOptions) {
    for (const cert of opts.certificates) this.byCert.set(cert, buildConfig(cert, opts));
  }

  /** True when there is a single certificate: no need to read the SNI before accepting. */
  get single(): boolean {
    return this.byCert.size === 1;
  }

  configFor(cert: CertificateConfig): QuicheConfig {
    const cfg = this.byCert.get(cert);
    if (!cfg) throw new Error(`no TLS context for certificate ${cert.certFile}`);
    return cfg;
  }
}

function buildConfig(cert: CertificateConfig, opts: TlsContextOptions): QuicheConfig {
  const { limits } = opts;
  const cfg = new quiche.Config();
  try {
    cfg.loadCertChainFromPemFile(cert.certFile);
    cfg.loadPrivKeyFromPemFile(cert.keyFile);
  } catch (err) {
    throw new Error(`cannot load certificate ${cert.certFile} / key ${cert.keyFile}: ${(err as Error).message}`);
  }
  cfg.setApplicationProtos([...opts.alpn]);
  cfg.setTicketKey(opts.ticketKey);
  cfg.enableEarlyData();
  cfg.verifyPeer(false);
  cfg.grease(true);
  cfg.setMaxIdleTimeout(limits.idleTimeoutMs);
  cfg.setMaxRecvUdpPayloadSize(limits.maxUdpPayload);
  cfg.setMaxSendUdpPayloadSize(limits.maxUdpPayload);
  cfg.setInitialMaxData(limits.initialMaxData);
  cfg.setInitialMaxStreamDataBidiLocal(limits.initialMaxStreamData);
  cfg.setInitialMaxStreamDataBidiRemote(limits.initialMaxStreamData);
  cfg.setInitialMaxStreamDataUni(limits.initialMaxStreamData);
  cfg.setInitialMaxStreamsBidi(limits.maxConcurrentBidiStreams);
  // Control + QPACK encoder/decoder + room for grease streams.
  cfg.setInitialMaxStreamsUni(16);
  cfg.setActiveConnectionIdLimit(4);
  cfg.setCcAlgorithm(quiche.CongestionControlAlgorithm.CUBIC);
  cfg.enablePacing(false);
  return cfg;
}
