/**
 * The quiche binding shipped inside @matrixai/quic. We use only the native layer: its TypeScript
 * classes mishandle early unidirectional streams and split ClientHellos.
 * Re-exported here so the rest of the code imports one module and one set of types.
 */
import { quiche } from '@matrixai/quic/native/index.js';
import type { Config, Connection, Header, SendInfo, Stats } from '@matrixai/quic/native/types.js';

export { quiche };
export type QuicheConfig = Config;
export type QuicheConnection = Connection;
export type QuicheHeader = Header;
export type QuicheSendInfo = SendInfo;
export type QuicheStats = Stats;
/** The binding's Host, {host, port}; one address type for net/, quic/ and h3/. */
export type { HostPort } from '../net/address.js';

export const PacketType = quiche.Type;
export const Shutdown = quiche.Shutdown;

/** quiche reports a peer's RESET_STREAM on read as an Error whose message is "StreamReset(<code>)". */
export function streamResetCode(err: unknown): number | undefined {
  const m = err instanceof Error ? /^StreamReset\((\d+)\)/.exec(err.message) : null;
  return m ? Number(m[1]) : undefined;
}

