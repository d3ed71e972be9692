/**
 * A complete HTTP/1.1 error response written straight onto a socket, for the moments Node's HTTP
 * machinery has no response object to offer (a request the parser refused, a header timeout, a
 * CONNECT): then the connection is closed. A peer that does not read it cannot keep the socket.
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

/** How long the response may take to leave before the socket is destroyed anyway. */
const FLUSH_GRACE_MS = 2000;

/**
 * `text` is ours (no CR or LF). `altSvc`: the TLS listener's field value (the redirect listener
 * passes none).
 */
export function endWithStatus(socket: Duplex, status: number, text: string, altSvc?: string): void {
  if (socket.destroyed) return;
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = `${text}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
      `content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      (altSvc === undefined ? '' : `alt-svc: ${altSvc}\r\n`) +
      `connection: close\r\n\r\n${body}`,
  );
  const timer = setTimeout(() => socket.destroy(), FLUSH_GRACE_MS).unref();
  socket.once('close', () => clearTimeout(timer));
}
