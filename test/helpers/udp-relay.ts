/**
 * A UDP relay in front of the proxy that behaves like a NAT: each client address (host and port)
 * gets a socket of its own towards the proxy, so a client moving to a new local port reaches the
 * proxy from a new port too. The way back can be silenced, as a path that stops delivering the
 * server's datagrams for a while (what makes a client's path "degrading").
 */
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';

export interface UdpRelay {
  /** Where clients connect (127.0.0.1). */
  readonly port: number;
  /** Distinct client addresses seen so far. */
  readonly clients: number;
  /** Client datagrams relayed while the way back was silenced. */
  readonly fromClientWhileSilent: number;
  /** While true, the proxy's datagrams are dropped instead of reaching the client. */
  silent: boolean;
  close(): Promise<void>;
}

export async function startUdpRelay(target: { host: string; port: number }): Promise<UdpRelay> {
  const front = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => front.bind(0, '127.0.0.1', () => resolve()));
  const towardsProxy = new Map<string, dgram.Socket>();
  let fromClientWhileSilent = 0;
  const relay = {
    port: (front.address() as AddressInfo).port,
    get clients(): number {
      return towardsProxy.size;
    },
    get fromClientWhileSilent(): number {
      return fromClientWhileSilent;
    },
    silent: false,
    async close(): Promise<void> {
      for (const s of towardsProxy.values()) s.close();
      await new Promise<void>((resolve) => front.close(() => resolve()));
    },
  };
  front.on('message', (msg, from) => {
    const key = `${from.address}:${from.port}`;
    let out = towardsProxy.get(key);
    if (!out) {
      const sock = dgram.createSocket('udp4');
      sock.bind(0, '127.0.0.1');
      sock.on('message', (back) => {
        if (!relay.silent) front.send(back, from.port, from.address);
      });
      towardsProxy.set(key, sock);
      out = sock;
    }
    if (relay.silent) fromClientWhileSilent++;
    out.send(msg, target.port, target.host);
  });
  return relay;
}
