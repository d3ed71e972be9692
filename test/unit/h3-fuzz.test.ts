/**
 * Random and mutated HTTP/3 input against the session in memory, from a seed: frames of every
 * type (valid, truncated, oversized, with random payloads), QPACK field sections of random bytes,
 * unidirectional streams of every type, resets and FINs anywhere. Whatever arrives, the session
 * must not throw, must close only with an HTTP/3 or QPACK error code, must keep its buffers
 * bounded, and a well-formed request on a fresh connection must still be served afterwards.
 */
import { describe, expect, it } from 'vitest';
import { HTTP_DEFAULTS } from '../../src/proxy/config/section-http.js';
import { FRAME_TYPE, H3_ERROR, SETTINGS_ID, STREAM_TYPE } from '../../src/proxy/h3/frames.js';
import { encodeFieldSection } from '../../src/proxy/h3/qpack.js';
import { H3Session } from '../../src/proxy/h3/session.js';
import { respondText, type HttpExchange } from '../../src/proxy/http/exchange.js';
import { MemoryQuicConnection, dataFrame, encodeFrame, headersFrame, parseResponse, requestHeaders } from '../helpers/memory-quic.js';
import { prng } from '../helpers/prng.js';

const KNOWN_CODES = new Set<number>(Object.values(H3_ERROR));
const CONNECTIONS = 1500;
const MESSAGES_PER_CONNECTION = 12;

function fuzzer(seed: number) {
  const rand = prng(seed);
  const int = (n: number): number => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
  const frameTypes = [...Object.values(FRAME_TYPE), 0x02, 0x06, 0x08, 0x09, 0x21, 0x1f * 7 + 0x21, 0x3fff];

  const frame = (): Buffer => {
    switch (int(6)) {
      case 0:
        return headersFrame(requestHeaders(pick(['GET', 'POST', 'HEAD', 'CONNECT', 'X']), pick(['/', '/a', '', '*', 'x'])));
      case 1:
        return encodeFrame(FRAME_TYPE.HEADERS, rand() < 0.5 ? bytes(int(40)) : encodeFieldSection([[pick([':path', ':method', 'x', 'te', ':status']), pick(['/', 'GET', 'trailers', ' a'])]]));
      case 2:
        return dataFrame(bytes(int(300)));
      case 3:
        return encodeFrame(pick(frameTypes), bytes(int(20)));
      case 4:
        // SETTINGS with one-byte identifiers and values, reserved HTTP/2 ones included.
        return encodeFrame(FRAME_TYPE.SETTINGS, Buffer.from(Array.from({ length: 2 * int(4) }, (_, i) => (i % 2 === 0 ? pick([...Object.values(SETTINGS_ID), 0x02, 0x21]) : pick([0, 1, 5, 63])))));
      default:
        return bytes(1 + int(30));
    }
  };

  return (): { streamId: number; data: Buffer; fin: boolean; reset: boolean } => {
    const bidi = rand() < 0.6;
    const streamId = bidi ? 4 * int(4) : 2 + 4 * int(4);
    let data = Buffer.concat(Array.from({ length: 1 + int(3) }, frame));
    if (!bidi && rand() < 0.8) data = Buffer.concat([Buffer.from([pick([...Object.values(STREAM_TYPE), 0x21, 0x40])]), data]);
    if (rand() < 0.3) data = data.subarray(0, int(data.length + 1));
    return { streamId, data, fin: rand() < 0.3, reset: rand() < 0.05 };
  };
}

describe('H3Session under random input', () => {
  it(`never throws and closes only with HTTP/3 or QPACK codes over ${CONNECTIONS} fuzzed connections`, () => {
    const next = fuzzer(0x5eed);
    const closeCodes = new Map<number, number>();
    let served = 0;
    for (let c = 0; c < CONNECTIONS; c++) {
      const conn = new MemoryQuicConnection();
      const session = new H3Session(conn, {
        handler: {
          handle: (ex: HttpExchange) => {
            served++;
            ex.body.stream.resume();
            respondText(ex, 200, 'ok\n');
          },
        },
        limits: { ...HTTP_DEFAULTS, maxHeaderBytes: 16 * 1024 },
        onHandlerError: (err) => {
          throw err;
        },
      });
      conn.start(session);
      for (let m = 0; m < MESSAGES_PER_CONNECTION && conn.closed === undefined; m++) {
        const msg = next();
        expect(() => (msg.reset ? conn.clientReset(msg.streamId, H3_ERROR.H3_REQUEST_CANCELLED) : conn.clientSend(msg.streamId, msg.data, msg.fin))).not.toThrow();
        // Nothing of a stream is left unread: the session reads or discards what arrives.
        expect(conn.unread(msg.streamId)).toBeLessThanOrEqual(256 * 1024);
      }
      if (conn.closed) {
        expect(KNOWN_CODES.has(conn.closed.code), `close code 0x${conn.closed.code.toString(16)}`).toBe(true);
        closeCodes.set(conn.closed.code, (closeCodes.get(conn.closed.code) ?? 0) + 1);
      }
      session.onClosed();
      expect(session.activeRequests).toBe(0);
    }
    // The fuzz reaches deep enough to matter: many connection errors of several kinds, and requests served.
    expect(closeCodes.size).toBeGreaterThanOrEqual(5);
    expect(served).toBeGreaterThan(50);

    const conn = new MemoryQuicConnection();
    const session = new H3Session(conn, { handler: { handle: (ex) => respondText(ex, 200, 'ok\n') }, limits: HTTP_DEFAULTS, onHandlerError: () => {} });
    conn.start(session);
    conn.clientSend(0, headersFrame(requestHeaders('GET', '/')), true);
    expect(parseResponse(conn, 0).status).toBe(200);
  });
});
