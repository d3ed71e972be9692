/**
 * A UDP peer or local address as the data path passes it around: the shape quiche's binding takes
 * and returns (quic/ uses this type with it), defined here so net/ needs nothing from above.
 */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}
