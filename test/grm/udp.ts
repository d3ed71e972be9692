/** UDP helpers for steering tests: receivers on registered fds, a batching sender, datagrams, CIDs. */
import dgram from 'node:dgram';
import { once } from 'node:events';
import { createCidIssuer } from '../../src/grm/cid.js';
import type { Group } from '../../src/grm/group.js';

export interface Arrival {
  readonly receiver: number; // index into the receivers array
  readonly msg: Buffer;
  readonly from: dgram.RemoteInfo;
}

/** Wraps reuseport fds in dgram sockets and collects every datagram with the receiver's index. */
export class Receivers {
  readonly sockets: dgram.Socket[] = [];
  readonly arrivals: Arrival[] = [];
  private waiters: Array<() => void> = [];

  add(fd: number, family: 4 | 6 = 4): number {
    const index = this.sockets.length;
    const s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    s.bind({ fd });
    s.on('message', (msg, from) => {
      this.arrivals.push({ receiver: index, msg, from });
      for (const w of this.waiters.splice(0)) w();
    });
    this.sockets.push(s);
    return index;
  }

  /** Resolves once `count` datagrams arrived in total (rejects after timeoutMs). */
  async waitFor(count: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.arrivals.length < count) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out: ${this.arrivals.length}/${count} datagrams arrived`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(index: number): void {
    this.sockets[index]!.close();
  }

  closeAll(): void {
    for (const s of this.sockets) {
      try {
        s.close();
      } catch {
        /* already closed */
      }
    }
  }
}

export async function udpClient(family: 4 | 6 = 4): Promise<dgram.Socket> {
  const s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
  s.bind(0, family === 4 ? '127.0.0.1' : '::1');
  await once(s, 'listening');
  return s;
}

export function send(s: dgram.Socket, msg: Buffer, port: number, host = '127.0.0.1'): Promise<void> {
  return new Promise((resolve, reject) => s.send(msg, port, host, (err) => (err ? reject(err) : resolve())));
}

/** Short-header datagram: first byte 0x40|random spin/key bits, DCID, then a 4-byte tag, padding. */
export function shortHeader(dcid: Buffer, tag: number): Buffer {
  const b = Buffer.alloc(1 + dcid.length + 4 + 20);
  b[0] = 0x40 | (tag & 0x3f);
  dcid.copy(b, 1);
  b.writeUInt32BE(tag >>> 0, 1 + dcid.length);
  return b;
}

/** QUIC v1 long header (type 0 Initial, 1 0-RTT, 2 Handshake) padded to 1200 bytes, tag after the SCID. */
export function longHeader(type: number, dcid: Buffer, tag: number, version = 1): Buffer {
  const b = Buffer.alloc(1200);
  b[0] = 0xc0 | (type << 4);
  b.writeUInt32BE(version, 1);
  b[5] = dcid.length;
  dcid.copy(b, 6);
  let at = 6 + dcid.length;
  b[at++] = 8; // SCID length
  at += 8;
  b.writeUInt32BE(tag >>> 0, at);
  return b;
}

export function tagOf(msg: Buffer, dcidLen: number, long: boolean): number {
  return long ? msg.readUInt32BE(6 + dcidLen + 1 + 8) : msg.readUInt32BE(1 + dcidLen);
}

/** A CID routing to (gen, worker), issued the way a worker issues them (createCidIssuer). */
export function issueCid(group: Group, gen: number, worker: number): Buffer {
  return createCidIssuer(group.cidIssuerParams(gen, worker)).issue();
}
