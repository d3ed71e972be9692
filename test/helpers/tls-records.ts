/**
 * TLS-over-TCP first flights for the ClientHello readers: a real ClientHello as Node's TLS client
 * sends it (captured on a loopback socket), re-framed into records of any size, and cut into TCP
 * segments of any size.
 */
import net from 'node:net';
import tls from 'node:tls';

const CONTENT_TYPE_HANDSHAKE = 22;

/**
 * The first flight of a TLS client (one or more records holding its ClientHello), as written to
 * the wire. `servername` undefined: no SNI (Node sends none when connecting to an IP address).
 */
export async function captureClientHello(opts: { servername?: string; alpn?: string[] } = {}): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const captured = new Promise<Buffer>((resolve, reject) => {
      server.once('connection', (socket) => {
        let bytes = Buffer.alloc(0);
        socket.on('data', (d: Buffer) => {
          bytes = Buffer.concat([bytes, d]);
          if (firstFlightComplete(bytes)) {
            socket.destroy();
            resolve(bytes);
          }
        });
        socket.on('error', reject);
      });
    });
    const client = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...(opts.servername ? { servername: opts.servername } : {}), ALPNProtocols: opts.alpn ?? ['h2', 'http/1.1'] });
    client.on('error', () => {});
    const hello = await captured;
    client.destroy();
    return hello;
  } finally {
    server.close();
  }
}

/** True once `bytes` hold a whole handshake message (the ClientHello) in handshake records. */
function firstFlightComplete(bytes: Buffer): boolean {
  return handshakeOf(bytes, false) !== undefined;
}

/** The handshake message carried by the handshake records at the start of `flight`. */
export function handshakeOf(flight: Buffer, strict = true): Buffer | undefined {
  const body: Buffer[] = [];
  let have = 0;
  for (let off = 0; off + 5 <= flight.length; ) {
    const length = flight.readUInt16BE(off + 3);
    if (flight[off] !== CONTENT_TYPE_HANDSHAKE || off + 5 + length > flight.length) break;
    body.push(flight.subarray(off + 5, off + 5 + length));
    have += length;
    off += 5 + length;
    const all = Buffer.concat(body);
    if (have >= 4 && have >= 4 + all.readUIntBE(1, 3)) return all.subarray(0, 4 + all.readUIntBE(1, 3));
  }
  if (strict) throw new Error('no whole handshake message in the flight');
  return undefined;
}

/** `message` (a handshake message) in handshake records of at most `recordSize` body bytes. */
export function inRecords(message: Buffer, recordSize: number, version = 0x0301): Buffer {
  const records: Buffer[] = [];
  for (let off = 0; off < message.length; off += recordSize) {
    const fragment = message.subarray(off, off + recordSize);
    const header = Buffer.from([CONTENT_TYPE_HANDSHAKE, version >> 8, version & 0xff, 0, 0]);
    header.writeUInt16BE(fragment.length, 3);
    records.push(header, fragment);
  }
  return Buffer.concat(records);
}

/** `bytes` cut into segments of `size` bytes. */
export function segments(bytes: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < bytes.length; off += size) out.push(bytes.subarray(off, off + size));
  return out;
}
