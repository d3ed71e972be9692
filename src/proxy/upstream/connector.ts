/**
 * undici's own connector (connect timeout, TCP keep-alive, no-delay, TLS with session reuse) with
 * the interim-response filter (interim-filter.ts) between each HTTP/1.1 socket and undici's parser.
 */
import type { Duplex } from 'node:stream';
import { buildConnector } from 'undici';
import { InterimResponseFilter } from './interim-filter.js';

/**
 * `options.servername` is the SNI of every TLS connection, whatever a request asks for: undici
 * would otherwise take it from the request's Host field, which is the client's authority, not the
 * target's name. Without it, no SNI is sent to an IP target (RFC 6066 §3).
 */
export function filteringConnector(options: buildConnector.BuildOptions, onConnected?: (h2: boolean) => void): buildConnector.connector {
  const connect = buildConnector(options);
  return (opts, callback) =>
    connect({ ...opts, servername: undefined }, (...args: Parameters<buildConnector.Callback>) => {
      if (args[0] === null) {
        const h2 = (args[1] as { alpnProtocol?: string | false }).alpnProtocol === 'h2';
        // Runs in the socket's 'connect' (TLS: 'secureConnect') event, before Node starts reading
        // it: no byte gets past. HTTP/2 frames are binary and undici handles 1xx there itself.
        if (!h2) filterInterimResponses(args[1]);
        onConnected?.(h2);
      }
      callback(...args);
    });
}

/**
 * Every chunk the socket reads passes through the filter before the socket's readable side (which
 * undici reads) sees it. Node hands received bytes to the stream with `push`, so that is the seam.
 */
export function filterInterimResponses(socket: Duplex): void {
  const filter = new InterimResponseFilter();
  const push = socket.push.bind(socket);
  socket.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk === null) {
      const held = filter.end();
      if (held.length > 0) push(held);
      return push(null);
    }
    if (!Buffer.isBuffer(chunk)) return push(chunk, encoding);
    const out = filter.push(chunk);
    // Nothing to hand on (a 100 being removed) is no reason to stop reading.
    return out.length > 0 ? push(out) : true;
  };
}
