/**
 * A UDP relay between one real QUIC client and the proxy that moves the client's server_name into
 * the second datagram of its first flight, as Chrome's post-quantum ClientHello often has it. The
 * kernel's steering reads only the first datagram, so such an attempt lands on the default site;
 * the handshake itself completes (the proxy reassembles the ClientHello across datagrams).
 *
 * How, without touching the client: Initial keys derive from the client's DCID (RFC 9001 §5.2), so
 * the relay reads the client's Initials, holds them until the client has used packet numbers 0 and
 * 1 (the ClientHello in 0, its loss-timer probe in 1: about one second) and sends instead two
 * Initials built with the project's own builder (quic-initial.ts), numbered 0 and 1: the
 * ClientHello up to the server_name extension, then the rest. Every number the server will
 * acknowledge was really sent by the client, so nothing on the way back needs rewriting: from then
 * on datagrams pass unchanged both ways.
 */
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import type { CryptoFragment } from '../../src/proxy/quic/initial/frames.js';
import { parseInitialFrames } from '../../src/proxy/quic/initial/frames.js';
import { decryptClientInitials, type DecryptedInitial } from '../../src/proxy/quic/initial/packet.js';
import { buildClientInitial } from './quic-initial.js';

export interface SplitHelloRelay {
  /** Where the client connects (127.0.0.1). */
  readonly port: number;
  /** Resolves with the two datagrams that replaced the client's first flight, once sent. */
  readonly split: Promise<readonly [Buffer, Buffer]>;
  close(): Promise<void>;
}

/** Offset of the server_name extension (type 0) in a ClientHello handshake message; throws without one. */
export function serverNameOffset(hello: Buffer): number {
  let pos = 4 + 2 + 32; // handshake header, legacy_version, random
  pos += 1 + hello[pos]!; // legacy_session_id
  pos += 2 + hello.readUInt16BE(pos); // cipher_suites
  pos += 1 + hello[pos]!; // legacy_compression_methods
  const end = pos + 2 + hello.readUInt16BE(pos);
  for (pos += 2; pos + 4 <= end; pos += 4 + hello.readUInt16BE(pos + 2)) {
    if (hello.readUInt16BE(pos) === 0) return pos;
  }
  throw new Error('the ClientHello has no server_name extension');
}

/** The CRYPTO stream from offset 0 as far as it is contiguous. */
function contiguous(fragments: readonly CryptoFragment[]): Buffer {
  const sorted = [...fragments].sort((x, y) => x.offset - y.offset);
  let out = Buffer.alloc(0);
  for (const f of sorted) {
    if (f.offset > out.length) break;
    if (f.offset + f.data.length > out.length) out = Buffer.concat([out, f.data.subarray(out.length - f.offset)]);
  }
  return out;
}

export async function startSplitHelloRelay(target: { host: string; port: number }): Promise<SplitHelloRelay> {
  const facingClient = dgram.createSocket('udp4');
  const facingProxy = dgram.createSocket('udp4');
  await Promise.all([new Promise<void>((r) => facingClient.bind(0, '127.0.0.1', r)), new Promise<void>((r) => facingProxy.bind(0, '127.0.0.1', r))]);
  let client: { address: string; port: number } | undefined;
  let first: DecryptedInitial | undefined;
  const fragments: CryptoFragment[] = [];
  const numbers = new Set<number>();
  let state: 'holding' | 'passing' | 'failed' = 'holding';
  let resolveSplit!: (d: readonly [Buffer, Buffer]) => void;
  let rejectSplit!: (e: Error) => void;
  const split = new Promise<readonly [Buffer, Buffer]>((resolve, reject) => {
    resolveSplit = resolve;
    rejectSplit = reject;
  });
  split.catch(() => {});

  const toProxy = (d: Buffer): void => facingProxy.send(d, target.port, target.host);
  facingProxy.on('message', (d) => {
    if (client) facingClient.send(d, client.port, client.address);
  });
  facingClient.on('message', (d, from) => {
    client ??= { address: from.address, port: from.port };
    if (state === 'passing') return toProxy(d);
    if (state === 'failed') return;
    try {
      for (const p of decryptClientInitials(d)) {
        first ??= p;
        numbers.add(p.packetNumber);
        for (const f of parseInitialFrames(p.payload).crypto) fragments.push({ offset: f.offset, data: Buffer.from(f.data) });
      }
      const stream = contiguous(fragments);
      const complete = stream.length >= 4 && stream.length >= 4 + stream.readUIntBE(1, 3);
      if (!first || !complete || !numbers.has(0) || !numbers.has(1)) return;
      const hello = stream.subarray(0, 4 + stream.readUIntBE(1, 3));
      const at = serverNameOffset(hello);
      const { dcid, scid, token, version } = first;
      const datagrams = [
        buildClientInitial({ dcid, scid, token, version, pn: 0, cryptoFrames: [{ offset: 0, data: hello.subarray(0, at) }] }),
        buildClientInitial({ dcid, scid, token, version, pn: 1, cryptoFrames: [{ offset: at, data: hello.subarray(at) }] }),
      ] as const;
      state = 'passing';
      for (const out of datagrams) toProxy(out);
      resolveSplit(datagrams);
    } catch (err) {
      state = 'failed';
      rejectSplit(err as Error);
    }
  });

  return {
    port: (facingClient.address() as AddressInfo).port,
    split,
    close: async () => {
      rejectSplit(new Error('relay closed before the split'));
      await Promise.all([new Promise<void>((r) => facingClient.close(r)), new Promise<void>((r) => facingProxy.close(r))]);
    },
  };
}
