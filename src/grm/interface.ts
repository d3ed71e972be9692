/**
 * The one interface between the QUIC data plane (src/proxy) and the generation manager (src/grm).
 * The proxy only needs connection IDs that route back to the socket that issued them.
 */
export interface CidIssuer {
  /** Length in bytes of every server connection ID issued (8..20). */
  readonly cidLength: number;
  /** A fresh server connection ID that the kernel steers back to this worker's socket. */
  issue(): Buffer;
}
