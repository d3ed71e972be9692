import { describe, expect, it } from 'vitest';
import { withAltSvcField } from '../../src/proxy/http/alt-svc.js';
import { respondText, type RequestHandler } from '../../src/proxy/http/exchange.js';
import { H3Session, type SessionLimits } from '../../src/proxy/h3/session.js';
import { ResetWindow } from '../../src/proxy/tcp/reset-window.js';
import { MemoryQuicConnection, headersFrame, parseResponse, requestHeaders } from '../helpers/memory-quic.js';

const LIMITS: SessionLimits = {
  requestHeaderTimeoutMs: 10_000,
  requestBodyTimeoutMs: 30_000,
  maxRequestsPerConnection: 10_000,
  maxHeaderBytes: 16 * 1024,
  maxConnectionHeaderBytes: 256 * 1024,
};

describe('Alt-Svc advertisement', () => {
  const value = 'h3=":4433"; ma=86400';

  it("replaces every alt-svc field (any case) with the listener's, keeping the others in order", () => {
    expect(
      withAltSvcField(
        [
          ['content-type', 'text/plain'],
          ['alt-svc', 'h2=":1"'],
          ['Alt-Svc', 'clear'],
          ['x-a', '1'],
        ],
        value,
      ),
    ).toEqual([
      ['content-type', 'text/plain'],
      ['x-a', '1'],
      ['alt-svc', value],
    ]);
  });

  it('HTTP/3: every response carries the listener value, replacing the handler\'s, the stream\'s own answers included', () => {
    const conn = new MemoryQuicConnection();
    const handler: RequestHandler = { handle: (ex) => ex.respond(204, [['alt-svc', 'h2=":1"']], true) };
    conn.start(new H3Session(conn, { handler, limits: LIMITS, onHandlerError: () => {}, altSvc: value }));
    conn.clientSend(0, headersFrame(requestHeaders('GET', '/')), true);
    const fromHandler = parseResponse(conn, 0);
    expect(fromHandler.status).toBe(204);
    expect(fromHandler.headerSections[0]!.filter(([n]) => n === 'alt-svc')).toEqual([['alt-svc', value]]);
    // A CONNECT is answered 501 by the request stream itself, before any handler.
    conn.clientSend(4, headersFrame([[':method', 'CONNECT'], [':authority', 'a.test:443']]), true);
    const own = parseResponse(conn, 4);
    expect(own.status).toBe(501);
    expect(own.headerSections[0]!.filter(([n]) => n === 'alt-svc')).toEqual([['alt-svc', value]]);
  });

  it('HTTP/3 without a value (alt_svc: off): responses carry none', () => {
    const conn = new MemoryQuicConnection();
    const handler: RequestHandler = { handle: (ex) => respondText(ex, 200, 'ok') };
    conn.start(new H3Session(conn, { handler, limits: LIMITS, onHandlerError: () => {} }));
    conn.clientSend(0, headersFrame(requestHeaders('GET', '/')), true);
    const res = parseResponse(conn, 0);
    expect(res.status).toBe(200);
    expect(res.headerSections[0]!.some(([n]) => n === 'alt-svc')).toBe(false);
  });
});

describe('ResetWindow (rapid-reset accounting)', () => {
  it('is over the limit at the (limit+1)th event within the window, not before', () => {
    const w = new ResetWindow(3, 10_000);
    expect([w.record(0), w.record(1), w.record(2)]).toEqual([false, false, false]);
    expect(w.record(3)).toBe(true);
  });

  it('forgets events older than the window', () => {
    const w = new ResetWindow(3, 10_000);
    for (const t of [0, 1000, 2000]) expect(w.record(t)).toBe(false);
    // 0 has left the window at 10 000: three remain (1000, 2000, 10 000).
    expect(w.record(10_000)).toBe(false);
    expect(w.record(10_500)).toBe(true);
    // A slow steady rate never trips it.
    const slow = new ResetWindow(3, 10_000);
    for (let t = 0; t < 100_000; t += 3500) expect(slow.record(t)).toBe(false);
  });

  it('keeps at most limit+1 timestamps however long a flood lasts', () => {
    const w = new ResetWindow(2, 10_000);
    for (let i = 0; i < 1000; i++) w.record(i);
    expect(w.record(1000)).toBe(true);
    // After a quiet window it starts over.
    expect(w.record(20_000)).toBe(false);
  });
});
