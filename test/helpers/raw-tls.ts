/**
 * Raw TLS clients for what curl and h2load will not send: malformed HTTP/1.1 byte for byte, and
 * hand-built HTTP/2 frames (a CONTINUATION flood). Every wait ends with the socket's close or a
 * deadline that fails the test.
 */
import tls, { type TLSSocket } from 'node:tls';

export function connectTls(port: number, alpn: string[]): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: alpn, servername: 'a.test' }, () => resolve(socket));
    socket.once('error', reject);
  });
}

export interface RawExchange {
  /** Everything the server sent, latin1. */
  readonly response: string;
  /** The server closed the connection (else the deadline passed with it open). */
  readonly closed: boolean;
  readonly ms: number;
}

/** Sends `chunks` (with `gapMs` between them), then collects the answer until the server closes or `timeoutMs`. */
export async function rawH1(port: number, chunks: ReadonlyArray<string | Buffer>, opts: { gapMs?: number; timeoutMs?: number } = {}): Promise<RawExchange> {
  const socket = await connectTls(port, ['http/1.1']);
  const started = performance.now();
  let response = '';
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => (response += d));
  socket.on('error', () => {});
  const closed = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), opts.timeoutMs ?? 5000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  void (async () => {
    for (const c of chunks) {
      if (socket.destroyed) return;
      socket.write(c);
      if (opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
    }
  })();
  const wasClosed = await closed;
  socket.destroy();
  return { response, closed: wasClosed, ms: performance.now() - started };
}

/** An HTTP/1.1 connection kept open for requests written one by one, collecting what the server sends. */
export interface H1Socket {
  readonly socket: TLSSocket;
  /** Everything the server sent so far, latin1. */
  text(): string;
  /** Resolves with performance.now() when the connection closes. */
  readonly closed: Promise<number>;
}

export async function h1Socket(port: number): Promise<H1Socket> {
  const socket = await connectTls(port, ['http/1.1']);
  let text = '';
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => (text += d));
  socket.on('error', () => {});
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now())));
  return { socket, text: () => text, closed };
}

/** The status code of the first response line in `text`, or 0. */
export function statusOf(text: string): number {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
  return m ? Number(m[1]) : 0;
}

// ------------------------------------------------------------------ HTTP/2 frames

export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;

export function h2Frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, firstByteFlags: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByteFlags | value]);
  const out = [firstByteFlags | max];
  value -= max;
  while (value >= 128) {
    out.push((value % 128) + 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return Buffer.from(out);
}

/** A literal header field without indexing, new name (RFC 7541 §6.2.2), no Huffman. */
export function hpackLiteral(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00]), hpackInt(name.length, 7, 0), Buffer.from(name, 'latin1'), hpackInt(value.length, 7, 0), Buffer.from(value, 'latin1')]);
}

/** :method GET, :scheme https, :path / (static table) and :authority. */
export function hpackGetRoot(authority: string): Buffer {
  return Buffer.concat([Buffer.from([0x82, 0x87, 0x84]), hpackLiteral(':authority', authority)]);
}

export interface ParsedFrame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

/** Splits a byte stream into frames (a trailing partial frame is left out). */
export function parseFrames(buf: Buffer): ParsedFrame[] {
  const out: ParsedFrame[] = [];
  let at = 0;
  while (at + 9 <= buf.length) {
    const len = buf.readUIntBE(at, 3);
    if (at + 9 + len > buf.length) break;
    out.push({ type: buf[at + 3]!, flags: buf[at + 4]!, streamId: buf.readUInt32BE(at + 5) & 0x7fffffff, payload: buf.subarray(at + 9, at + 9 + len) });
    at += 9 + len;
  }
  return out;
}
