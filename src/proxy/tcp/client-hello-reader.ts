/**
 * Reads the TLS ClientHello of a just-accepted TCP connection before TLS starts (to learn its SNI),
 * bounded in bytes and time, and then stops reading at the kernel: every byte read is returned,
 * so the connection can be given, bytes first, to this process's TLS server or to another
 * process (whose reads then start where ours stopped).
 */
import type { Socket } from 'node:net';
import { ClientHelloRecordReader } from '../tls/client-hello-records.js';

export type ClientHelloOutcome =
  /** `head`: every byte read from the connection (the ClientHello, and whatever came with it). */
  | { readonly kind: 'hello'; readonly serverName: string | undefined; readonly head: Buffer }
  /** Not TLS, a malformed ClientHello, or one larger than the byte bound. */
  | { readonly kind: 'refused'; readonly reason: string }
  /** No whole ClientHello within the time bound. */
  | { readonly kind: 'timeout'; readonly bytes: number }
  /** The client closed or reset the connection first. */
  | { readonly kind: 'gone' };

export interface ClientHelloBounds {
  readonly maxBytes: number;
  readonly timeoutMs: number;
}

/** The native stream under a net.Socket (libuv TCP): reading stops here, not in the JS stream. */
interface NativeStream {
  reading: boolean;
  readStop(): number;
}

/**
 * Resolves once the ClientHello is whole, refused, late or the client gone; the socket is then
 * paused with its handle no longer reading. The caller owns the socket from then on (it destroys
 * it on every outcome but `hello`). `socket` must not have been read yet (pauseOnConnect).
 */
export function readClientHello(socket: Socket, bounds: ClientHelloBounds): Promise<ClientHelloOutcome> {
  return new Promise((resolve) => {
    const reader = new ClientHelloRecordReader(bounds.maxBytes);
    const chunks: Buffer[] = [];
    let bytes = 0;
    let state: 'reading' | 'settled' = 'reading';

    const settle = (outcome: ClientHelloOutcome): void => {
      if (state === 'settled') return;
      state = 'settled';
      clearTimeout(timer);
      socket.off('data', onData).off('end', onGone).off('close', onGone).off('error', onGone);
      stopReading(socket);
      resolve(outcome);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      bytes += chunk.length;
      const read = reader.push(chunk);
      if (read.kind === 'need-more') return;
      if (read.kind === 'refused') return settle(read);
      // Flowing, the stream hands each read straight to 'data' and buffers nothing; should it
      // hold bytes all the same, they were read too and go with the ClientHello. (read() restarts
      // the handle: settle stops it again within this tick, before libuv could read.)
      socket.pause();
      while (socket.readableLength > 0) chunks.push(socket.read() as Buffer);
      settle({ kind: 'hello', serverName: read.info.serverName, head: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) });
    };
    const onGone = (): void => settle({ kind: 'gone' });
    const timer = setTimeout(() => settle({ kind: 'timeout', bytes }), bounds.timeoutMs);
    socket.on('data', onData).on('end', onGone).on('close', onGone).on('error', onGone);
    socket.resume();
  });
}

function stopReading(socket: Socket): void {
  socket.pause();
  // pause() alone leaves the handle reading into the stream's buffer (net.Socket stops the
  // handle only under backpressure): stop it, or bytes meant for the next reader land here.
  const handle = (socket as unknown as { _handle: NativeStream | null })._handle;
  if (handle?.reading) {
    handle.reading = false;
    handle.readStop();
  }
}
