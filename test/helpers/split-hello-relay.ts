/**
 * A UDP relay between real QUIC clients and the proxy that moves a client's server_name into the
 * second datagram of its first flight, as Chrome's post-quantum ClientHello often has it. The
 * kernel's steering reads only the first datagram, so such an attempt lands on the default site;
 * the handshake itself completes (the proxy reassembles the ClientHello across datagrams).
 *
 * How, without touching the client: Initial keys derive from the client's DCID (RFC 9001 §5.2), so
 * the relay reads the client's Initials and holds them until it has the whole ClientHello and the
 * client has used two packet numbers (a ClientHello that fits one datagram is in the first, and
 * the second is its loss-timer probe, about one second later; Chrome's spans two datagrams and
 * numbers from 1). It sends instead two Initials built with the project's own builder
 * (quic-initial.ts) under those two numbers: the ClientHello up to the server_name extension, then
 * the rest. Every number the server will acknowledge was really sent by the client, so nothing on
 * the way back needs rewriting: from then on datagrams pass unchanged both ways.
 *
 * Only the first client (source address and port) is split; later ones (a browser's retry on a
 * new connection) pass unchanged, each through a socket of its own towards the proxy.
 */
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { parseInitialFrames, type CryptoFragment } from '../../src/proxy/quic/initial/frames.js';
import { decryptClientInitials, type DecryptedInitial } from '../../src/proxy/quic/initial/packet.js';
import { buildClientInitial } from './quic-initial.js';

export interface SplitHelloRelay {
  /** Where clients connect (127.0.0.1). */
  readonly port: number;
  /** Resolves with the two datagrams that replaced the first client's first flight, once sent. */
  readonly split: Promise<readonly [Buffer, Buffer]>;
  /** Clients seen so far (distinct source address and port). */
  readonly clients: number;
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

/** The first client's Initials, read until its ClientHello can be sent split. */
class HeldFirstFlight {
  private first: DecryptedInitial | undefined;
  private readonly fragments: CryptoFragment[] = [];
  private readonly numbers = new Set<number>();

  /** Takes one client datagram; returns the two replacement datagrams once they can be built. */
  take(datagram: Buffer): readonly [Buffer, Buffer] | undefined {
    for (const p of decryptClientInitials(datagram)) {
      this.first ??= p;
      this.numbers.add(p.packetNumber);
      for (const f of parseInitialFrames(p.payload).crypto) this.fragments.push({ offset: f.offset, data: Buffer.from(f.data) });
    }
    const stream = contiguous(this.fragments);
    const length = stream.length >= 4 ? 4 + stream.readUIntBE(1, 3) : Infinity;
    const [pn1, pn2] = [...this.numbers].sort((x, y) => x - y);
    if (!this.first || stream.length < length || pn2 === undefined) return undefined;
    const hello = stream.subarray(0, length);
    const at = serverNameOffset(hello);
    const { dcid, scid, token, version } = this.first;
    return [
      buildClientInitial({ dcid, scid, token, version, pn: pn1!, cryptoFrames: [{ offset: 0, data: hello.subarray(0, at) }] }),
      buildClientInitial({ dcid, scid, token, version, pn: pn2, cryptoFrames: [{ offset: at, data: hello.subarray(at) }] }),
    ];
  }
}

export async function startSplitHelloRelay(target: { host: string; port: number }): Promise<SplitHelloRelay> {
  const facingClients = dgram.createSocket('udp4');
  await new Promise<void>((r) => facingClients.bind(0, '127.0.0.1', r));
  /** Per client ("address:port"): its socket towards the proxy. */
  const flows = new Map<string, dgram.Socket>();
  let firstClient: string | undefined;
  let held: HeldFirstFlight | undefined = new HeldFirstFlight();
  let resolveSplit!: (d: readonly [Buffer, Buffer]) => void;
  let rejectSplit!: (e: Error) => void;
  const split = new Promise<readonly [Buffer, Buffer]>((resolve, reject) => {
    resolveSplit = resolve;
    rejectSplit = reject;
  });
  split.catch(() => {});

  const flowOf = (key: string, from: { address: string; port: number }): dgram.Socket => {
    let s = flows.get(key);
    if (s) return s;
    s = dgram.createSocket('udp4');
    // Sends made while it binds are queued by node.
    s.bind(0, '127.0.0.1');
    s.on('message', (reply) => facingClients.send(reply, from.port, from.address));
    flows.set(key, s);
    return s;
  };

  facingClients.on('message', (d, from) => {
    const key = `${from.address}:${from.port}`;
    firstClient ??= key;
    const toProxy = flowOf(key, from);
    if (key !== firstClient || held === undefined) {
      toProxy.send(d, target.port, target.host);
      return;
    }
    try {
      const datagrams = held.take(d);
      if (!datagrams) return;
      held = undefined;
      for (const out of datagrams) toProxy.send(out, target.port, target.host);
      resolveSplit(datagrams);
    } catch (err) {
      held = undefined;
      rejectSplit(err as Error);
    }
  });

  return {
    port: (facingClients.address() as AddressInfo).port,
    split,
    get clients() {
      return flows.size;
    },
    close: async () => {
      rejectSplit(new Error('relay closed before the split'));
      await Promise.all([facingClients, ...flows.values()].map((s) => new Promise<void>((r) => s.close(r))));
    },
  };
}
