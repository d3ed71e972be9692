/**
 * UDP sockets for the QUIC endpoint. The master creates them through the generation manager
 * (libc: SO_REUSEPORT, 4 MiB buffers, registered in a BPF slot; Node 20's dgram ignores
 * `reusePort`) and passes them to workers as fds; a worker wraps its fd in a dgram socket.
 */
import dgram from 'node:dgram';

/** Wraps an already bound UDP fd in a dgram socket (normal 'message' events, async sends). */
export function openDgramSocket(fd: number, family: 4 | 6): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4' });
    sock.once('error', reject);
    sock.bind({ fd }, () => {
      sock.off('error', reject);
      resolve(sock);
    });
  });
}
