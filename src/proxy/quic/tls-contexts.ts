/**
 * One quiche Config per certificate, shared by every connection that uses it (so BoringSSL's
 * SSL_CTX and its session-ticket key are shared too, and resumption / 0-RTT work). With
 * `early_data: safe` each certificate has a second Config that refuses 0-RTT: quiche has no
 * per-connection switch, so the endpoint picks that one for an attempt the replay guard refuses.
 * Both share the ticket key, so the refused attempt still resumes (1-RTT).
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

/** A certificate's Configs: 0-RTT refused, and accepted when `quic.early_data` allows it. */
interface CertificateContexts {
  readonly noEarlyData: QuicheConfig;
  readonly earlyData: QuicheConfig | undefined;
}

export class TlsContexts {
  private readonly byCert = new Map<CertificateConfig, CertificateContexts>();

  constructor(opts: TlsContextOptions) {
    for (const cert of opts.certificates) {
      this.byCert.set(cert, {
        noEarlyData: buildConfig(cert, opts, false),
        earlyData: opts.limits.earlyData === 'off' ? undefined : buildConfig(cert, opts, true),
      });
    }
  }

  /** 0-RTT can be accepted at all (`quic.early_data` is not off). */
  get earlyDataEnabled(): boolean {
    for (const c of this.byCert.values()) return c.earlyData !== undefined;
    return false;
  }

  /** True when there is a single certificate: no need to read the SNI before accepting. */
  get single(): boolean {
    return this.byCert.size === 1;
  }

  /** The Config for a new connection; `earlyData` false refuses its 0-RTT (it resumes in 1-RTT). */
  configFor(cert: CertificateConfig, earlyData: boolean): QuicheConfig {
    const contexts = this.byCert.get(cert);
    if (!contexts) throw new Error(`no TLS context for certificate ${cert.certFile}`);
    return (earlyData ? contexts.earlyData : undefined) ?? contexts.noEarlyData;
  }
}

function buildConfig(cert: CertificateConfig, opts: TlsContextOptions, earlyData: boolean): QuicheConfig {
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
  if (earlyData) cfg.enableEarlyData();
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
  // Tells clients not to move to a new address of their own accord (NAT rebinding still works).
  cfg.setDisableActiveMigration(!limits.activeMigration);
  return cfg;
}
