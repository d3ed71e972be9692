/**
 * undici's own connector (connect timeout, TCP keep-alive, no-delay, happy eyeballs) with the
 * interim-response filter (interim-filter.ts) between each socket and undici's HTTP/1.1 parser.
 */
import type { Duplex } from 'node:stream';
import { buildConnector } from 'undici';
import { InterimResponseFilter } from './interim-filter.js';

export function filteringConnector(options: buildConnector.BuildOptions): buildConnector.connector {
  const connect = buildConnector(options);
  return (opts, callback) =>
    connect(opts, (...args: Parameters<buildConnector.Callback>) => {
      // Runs in the socket's 'connect' event, before Node starts reading it: no byte gets past.
      if (args[0] === null) filterInterimResponses(args[1]);
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
