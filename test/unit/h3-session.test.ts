/**
 * The HTTP/3 session and request streams in memory (no sockets, no root): control-stream and
 * SETTINGS rules, GOAWAY in two phases, request validation errors, body backpressure, early
 * responses, trailers, clients that stop or reset a stream, and a handler that throws. The QUIC
 * connection is MemoryQuicConnection; the handler is the test's own.
 */
import { RefusalCounter } from '../../src/proxy/http/refusals.js';
import { ABORT, ExchangeAborted } from '../../src/proxy/http/exchange-abort.js';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FRAME_TYPE, H3_ERROR, SETTINGS_ID, STREAM_TYPE, encodeControlStreamPreface, encodeFrameHeader, encodeGoaway, parseGoaway, parseSettings } from '../../src/proxy/h3/frames.js';
import { H3Session, type SessionLimits } from '../../src/proxy/h3/session.js';
import { RequestTimeoutError, type HttpExchange, type RequestHandler } from '../../src/proxy/http/exchange.js';
import { MemoryQuicConnection, dataFrame, encodeFrame, headersFrame, parseResponse, requestHeaders, serverUniFrames } from '../helpers/memory-quic.js';

const CONTROL = 2; // the client's first unidirectional stream
const MAX_FIELD_SECTION_SIZE = 16 * 1024;

/** A handler that keeps every exchange for the test to answer. */
class HeldExchanges implements RequestHandler {
  readonly exchanges: HttpExchange[] = [];
  handle(ex: HttpExchange): void {
    this.exchanges.push(ex);
  }
  get last(): HttpExchange {
    return this.exchanges.at(-1)!;
  }
}

interface Harness {
  conn: MemoryQuicConnection;
  session: H3Session;
  handler: HeldExchanges;
  handlerErrors: unknown[];
}

const LIMITS: SessionLimits = {
  requestHeaderTimeoutMs: 10_000,
  requestBodyTimeoutMs: 30_000,
  maxRequestsPerConnection: 10_000,
  maxHeaderBytes: MAX_FIELD_SECTION_SIZE,
  maxConnectionHeaderBytes: 256 * 1024,
};

function open(handler: RequestHandler = new HeldExchanges(), limits: Partial<SessionLimits> = {}): Harness {
  const conn = new MemoryQuicConnection();
  const handlerErrors: unknown[] = [];
  const session = new H3Session(conn, {
    handler,
    limits: { ...LIMITS, ...limits },
    onHandlerError: (err) => handlerErrors.push(err),
  });
  conn.start(session);
  return { conn, session, handler: handler as HeldExchanges, handlerErrors };
}

function clientControlStream(conn: MemoryQuicConnection, extra: Buffer[] = []): void {
  conn.clientSend(CONTROL, Buffer.concat([encodeControlStreamPreface([[SETTINGS_ID.MAX_FIELD_SECTION_SIZE, 1000]]), ...extra]));
}

function get(conn: MemoryQuicConnection, streamId: number, path = '/'): void {
  conn.clientSend(streamId, headersFrame(requestHeaders('GET', path)), true);
}

function answer(ex: HttpExchange, status = 200, body = 'ok'): void {
  ex.respond(status, [['content-length', String(body.length)]]);
  ex.write(Buffer.from(body));
  ex.end();
}

describe('H3Session: our unidirectional streams', () => {
  it('opens control (SETTINGS first), QPACK encoder and decoder streams when ready', () => {
    const { conn } = open();
    const control = serverUniFrames(conn, 3);
    expect(control.type).toBe(STREAM_TYPE.CONTROL);
    const first = control.frames[0]!;
    expect(first.kind === 'frame' && first.type).toBe(FRAME_TYPE.SETTINGS);
    const settings = parseSettings(first.kind === 'frame' ? first.payload : Buffer.alloc(0));
    expect(settings.get(SETTINGS_ID.QPACK_MAX_TABLE_CAPACITY)).toBe(0);
    expect(settings.get(SETTINGS_ID.QPACK_BLOCKED_STREAMS)).toBe(0);
    expect(settings.get(SETTINGS_ID.MAX_FIELD_SECTION_SIZE)).toBe(MAX_FIELD_SECTION_SIZE);
    expect(conn.sent(7).data).toEqual(Buffer.from([STREAM_TYPE.QPACK_ENCODER]));
    expect(conn.sent(11).data).toEqual(Buffer.from([STREAM_TYPE.QPACK_DECODER]));
  });
});

describe('H3Session: the client control stream (RFC 9114 §6.2.1, §7.2.4)', () => {
  it('accepts SETTINGS then GOAWAY, MAX_PUSH_ID and unknown-but-reserved frames, with the type varint split across reads', () => {
    const { conn } = open();
    const preface = encodeControlStreamPreface([[SETTINGS_ID.MAX_FIELD_SECTION_SIZE, 1000]]);
    conn.clientSend(CONTROL, preface.subarray(0, 1));
    conn.clientSend(CONTROL, Buffer.concat([preface.subarray(1), encodeGoaway(0), encodeFrame(FRAME_TYPE.MAX_PUSH_ID, Buffer.from([3])), encodeFrame(0x21, Buffer.from('grease'))]));
    expect(conn.closed).toBeUndefined();
  });

  it.each([
    ['a first frame other than SETTINGS', [encodeGoaway(0)], H3_ERROR.H3_MISSING_SETTINGS, false],
    ['a second SETTINGS frame', [encodeFrame(FRAME_TYPE.SETTINGS, Buffer.alloc(0))], H3_ERROR.H3_FRAME_UNEXPECTED, true],
    ['DATA', [dataFrame(Buffer.from('x'))], H3_ERROR.H3_FRAME_UNEXPECTED, true],
    ['HEADERS', [headersFrame(requestHeaders('GET', '/'))], H3_ERROR.H3_FRAME_UNEXPECTED, true],
  ] as const)('closes the connection on %s', (_what, frames, code, afterSettings) => {
    const { conn } = open();
    if (afterSettings) clientControlStream(conn, [...frames]);
    else conn.clientSend(CONTROL, Buffer.concat([Buffer.from([STREAM_TYPE.CONTROL]), ...frames]));
    expect(conn.closed?.code).toBe(code);
  });

  it('closes the connection when a critical stream ends or is reset, or a second control stream opens', () => {
    const ended = open();
    clientControlStream(ended.conn);
    ended.conn.clientSend(CONTROL, Buffer.alloc(0), true);
    expect(ended.conn.closed?.code).toBe(H3_ERROR.H3_CLOSED_CRITICAL_STREAM);

    const reset = open();
    reset.conn.clientSend(6, Buffer.from([STREAM_TYPE.QPACK_ENCODER]));
    reset.conn.clientReset(6, H3_ERROR.H3_NO_ERROR);
    expect(reset.conn.closed?.code).toBe(H3_ERROR.H3_CLOSED_CRITICAL_STREAM);

    const second = open();
    clientControlStream(second.conn);
    second.conn.clientSend(6, encodeControlStreamPreface([]));
    expect(second.conn.closed?.code).toBe(H3_ERROR.H3_STREAM_CREATION_ERROR);
  });

  it('refuses a client push stream, and stops reading an unknown stream type without closing', () => {
    const push = open();
    push.conn.clientSend(CONTROL, Buffer.from([STREAM_TYPE.PUSH, 0]));
    expect(push.conn.closed?.code).toBe(H3_ERROR.H3_STREAM_CREATION_ERROR);

    const unknown = open();
    unknown.conn.clientSend(CONTROL, Buffer.from([0x21, 1, 2, 3]));
    expect(unknown.conn.stopSent.get(CONTROL)).toBe(H3_ERROR.H3_STREAM_CREATION_ERROR);
    unknown.conn.clientSend(CONTROL, Buffer.from([4, 5]), true);
    expect(unknown.conn.closed).toBeUndefined();
    expect(unknown.conn.unread(CONTROL)).toBe(0);
  });
});

describe('H3Session: GOAWAY (RFC 9114 §5.2)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const goawayIds = (conn: MemoryQuicConnection): number[] =>
    serverUniFrames(conn, 3)
      .frames.filter((f) => f.kind === 'frame' && f.type === FRAME_TYPE.GOAWAY)
      .map((f) => (f.kind === 'frame' ? parseGoaway(f.payload) : -1));

  it('sends the largest id first, the real limit a grace period later, serves what is in flight and then closes with H3_NO_ERROR', () => {
    const { conn, session, handler } = open();
    get(conn, 0);
    get(conn, 4);
    session.goaway('now');
    expect(goawayIds(conn)).toEqual([2 ** 53 - 4]);
    // A request the client sent before it saw the first GOAWAY is still served.
    get(conn, 8);
    expect(handler.exchanges.map((e) => e.streamId)).toEqual([0, 4, 8]);
    vi.advanceTimersByTime(100);
    expect(goawayIds(conn)).toEqual([2 ** 53 - 4, 12]);
    expect(conn.closed).toBeUndefined();
    // Above the limit: rejected so the client retries it elsewhere.
    get(conn, 12);
    expect(parseResponse(conn, 12).resetCode).toBe(H3_ERROR.H3_REQUEST_REJECTED);
    expect(conn.stopSent.get(12)).toBe(H3_ERROR.H3_REQUEST_REJECTED);
    for (const ex of handler.exchanges) answer(ex);
    conn.deliver();
    expect(conn.closed).toEqual({ code: H3_ERROR.H3_NO_ERROR, reason: 'goaway' });
    expect(session.requestsServed).toBe(3);
  });

  it('waits until every response byte is acknowledged before closing', () => {
    const { conn, session, handler } = open();
    conn.autoAcknowledge = false;
    get(conn, 0);
    session.goaway('now');
    vi.advanceTimersByTime(100);
    answer(handler.last);
    conn.deliver();
    expect(conn.closed).toBeUndefined();
    conn.acknowledge(0);
    expect(conn.closed?.code).toBe(H3_ERROR.H3_NO_ERROR);
  });

  it('a drain holds its first GOAWAY until a response goes out, and sends it with that response', () => {
    const { conn, session, handler } = open();
    get(conn, 0);
    session.goaway('with-response');
    expect(session.draining).toBe(true);
    expect(goawayIds(conn)).toEqual([]);
    // A request sent while the GOAWAY is held is taken like any other.
    get(conn, 4);
    expect(handler.exchanges.map((e) => e.streamId)).toEqual([0, 4]);
    // The GOAWAY is written when the response's last bytes are, with no timer in between: the
    // client reads it in the same flush, before it can send another request here.
    answer(handler.exchanges[0]!);
    expect(parseResponse(conn, 0)).toMatchObject({ status: 200, fin: true });
    expect(goawayIds(conn)).toEqual([2 ** 53 - 4]);
    vi.advanceTimersByTime(100);
    expect(goawayIds(conn)).toEqual([2 ** 53 - 4, 8]);
    answer(handler.exchanges[1]!);
    conn.deliver();
    expect(conn.closed).toEqual({ code: H3_ERROR.H3_NO_ERROR, reason: 'goaway' });
  });

  it('a drain of an idle connection sends its GOAWAY after 1 s with no response, and a 421 sends it at once', () => {
    const idle = open();
    idle.session.goaway('with-response');
    vi.advanceTimersByTime(999);
    expect(goawayIds(idle.conn)).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(goawayIds(idle.conn)).toEqual([2 ** 53 - 4]);
    vi.advanceTimersByTime(100);
    expect(goawayIds(idle.conn)).toEqual([2 ** 53 - 4, 0]);
    expect(idle.conn.closed).toEqual({ code: H3_ERROR.H3_NO_ERROR, reason: 'goaway' });

    // A held GOAWAY asked for again at once (a 421 during a drain) goes out now, once.
    const held = open();
    held.session.goaway('with-response');
    held.session.goaway('now');
    expect(goawayIds(held.conn)).toEqual([2 ** 53 - 4]);
    vi.advanceTimersByTime(1000);
    expect(goawayIds(held.conn)).toEqual([2 ** 53 - 4, 0]);
  });

  it('scales the grace period with the RTT (3 RTT, at most 3 s)', () => {
    const { conn, session } = open();
    conn.rttMs = 400;
    session.goaway('now');
    vi.advanceTimersByTime(1199);
    expect(goawayIds(conn)).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(goawayIds(conn)).toHaveLength(2);
  });
});

describe('RequestStream: requests received in 0-RTT (RFC 9114 §10.9, RFC 8470)', () => {
  /** A session on a connection running on 0-RTT keys (as at accept of a resumed client's first flight). */
  function openEarly(): Harness {
    const conn = new MemoryQuicConnection();
    conn.inEarlyData = true;
    const handler = new HeldExchanges();
    const handlerErrors: unknown[] = [];
    const session = new H3Session(conn, { handler, limits: LIMITS, onHandlerError: (err) => handlerErrors.push(err) });
    conn.start(session);
    return { conn, session, handler, handlerErrors };
  }

  it('marks a request read during early data, and keeps the mark after the handshake completes', async () => {
    const { conn, handler } = openEarly();
    get(conn, 0, '/early');
    const early = handler.last;
    expect(early.earlyData).toBe(true);
    let complete: boolean | undefined;
    void early.handshakeComplete().then((c) => (complete = c));
    await Promise.resolve();
    expect(complete).toBeUndefined();
    conn.completeHandshake();
    await Promise.resolve();
    expect(complete).toBe(true);
    expect(early.earlyData).toBe(true);
    get(conn, 4, '/late');
    expect(handler.last.earlyData).toBe(false);
    expect(await handler.last.handshakeComplete()).toBe(true);
  });

  it('reports a handshake that never completes (connection closed) to requests waiting for it', async () => {
    const { conn, session, handler } = openEarly();
    get(conn, 0);
    const waiting = handler.last.handshakeComplete();
    session.onClosed();
    expect(await waiting).toBe(false);
    expect(await handler.last.handshakeComplete()).toBe(false);
  });

  it('does not mark requests on a connection that never used early data', async () => {
    const { conn, handler } = open();
    get(conn, 0);
    expect(handler.last.earlyData).toBe(false);
    expect(await handler.last.handshakeComplete()).toBe(true);
  });
});

describe('RequestStream: validation (RFC 9114 §4.1.2, §4.3)', () => {
  const streamError = (fields: Array<[string, string]>): { code: number | undefined; stop: number | undefined; closed: unknown; handled: number } => {
    const { conn, handler } = open();
    conn.clientSend(0, headersFrame(fields), true);
    return { code: parseResponse(conn, 0).resetCode, stop: conn.stopSent.get(0), closed: conn.closed, handled: handler.exchanges.length };
  };

  it.each([
    ['no :path', [[':method', 'GET'], [':scheme', 'https'], [':authority', 'a.test']]],
    ['te other than "trailers"', requestHeaders('GET', '/', [['te', 'gzip']])],
    ['a field value with a leading space', requestHeaders('GET', '/', [['x-a', ' 1']])],
    ['a connection-specific field', requestHeaders('GET', '/', [['connection', 'close']])],
    ['a pseudo-header after a regular field', [[':method', 'GET'], ['x', '1'], [':path', '/'], [':scheme', 'https'], [':authority', 'a']]],
  ] as Array<[string, Array<[string, string]>]>)('answers a request with %s with a stream error H3_MESSAGE_ERROR; the connection lives', (_what, fields) => {
    expect(streamError(fields)).toEqual({ code: H3_ERROR.H3_MESSAGE_ERROR, stop: H3_ERROR.H3_MESSAGE_ERROR, closed: undefined, handled: 0 });
  });

  it('answers a well-formed CONNECT with 501 instead of a reset', () => {
    const { conn, handler } = open();
    conn.clientSend(0, headersFrame([[':method', 'CONNECT'], [':authority', 'a.test:443']]), true);
    const res = parseResponse(conn, 0);
    expect(res.status).toBe(501);
    expect(res.fin).toBe(true);
    expect(handler.exchanges).toHaveLength(0);
  });

  it('treats DATA before HEADERS and HEADERS after trailers as connection errors (H3_FRAME_UNEXPECTED)', () => {
    const early = open();
    early.conn.clientSend(0, dataFrame(Buffer.from('x')));
    expect(early.conn.closed?.code).toBe(H3_ERROR.H3_FRAME_UNEXPECTED);

    const late = open();
    const trailers = headersFrame([['x-t', '1']]);
    late.conn.clientSend(0, Buffer.concat([headersFrame(requestHeaders('POST', '/')), dataFrame(Buffer.from('a')), trailers, trailers]));
    expect(late.conn.closed?.code).toBe(H3_ERROR.H3_FRAME_UNEXPECTED);
  });

  it('resets a stream that ends before HEADERS (H3_REQUEST_INCOMPLETE) or whose body contradicts content-length', () => {
    const incomplete = open();
    incomplete.conn.clientSend(0, Buffer.alloc(0), true);
    expect(parseResponse(incomplete.conn, 0).resetCode).toBe(H3_ERROR.H3_REQUEST_INCOMPLETE);

    const short = open();
    short.conn.clientSend(0, Buffer.concat([headersFrame(requestHeaders('POST', '/', [['content-length', '5']])), dataFrame(Buffer.from('abc'))]), true);
    expect(parseResponse(short.conn, 0).resetCode).toBe(H3_ERROR.H3_MESSAGE_ERROR);
    expect(short.handler.last.signal.aborted).toBe(true);

    const long = open();
    long.conn.clientSend(0, Buffer.concat([headersFrame(requestHeaders('POST', '/', [['content-length', '2']])), dataFrame(Buffer.from('abc'))]));
    expect(parseResponse(long.conn, 0).resetCode).toBe(H3_ERROR.H3_MESSAGE_ERROR);
    expect(long.conn.closed).toBeUndefined();
  });
});

describe('RequestStream: bodies, backpressure, trailers', () => {
  it('stops reading QUIC while the request body buffer is full and resumes when it is read', async () => {
    const { conn, handler } = open();
    const chunk = Buffer.alloc(64 * 1024, 7);
    conn.clientSend(0, headersFrame(requestHeaders('POST', '/up')));
    for (let i = 0; i < 8; i++) conn.clientSend(0, dataFrame(chunk));
    // 256 KiB buffered for the handler, the rest left in QUIC (flow control pushes back).
    expect(conn.unread(0)).toBeGreaterThan(200 * 1024);
    const body = handler.last.body.stream;
    const wakesBefore = conn.wakes;
    let received = 0;
    body.on('data', (c: Buffer) => (received += c.length));
    conn.clientSend(0, Buffer.alloc(0), true);
    await new Promise<void>((resolve) => body.once('end', () => resolve()));
    expect(received).toBe(8 * chunk.length);
    expect(conn.unread(0)).toBe(0);
    expect(conn.wakes).toBeGreaterThan(wakesBefore); // freed credit is announced (MAX_STREAM_DATA)
  });

  it('passes request trailers with the end of the body and sends response trailers after the body', async () => {
    const { conn, handler } = open();
    conn.clientSend(0, Buffer.concat([headersFrame(requestHeaders('POST', '/')), dataFrame(Buffer.from('abc')), headersFrame([['x-sum', '42']])]), true);
    const ex = handler.last;
    ex.body.stream.resume();
    await new Promise<void>((resolve) => ex.body.stream.once('end', () => resolve()));
    expect(ex.body.trailers).toEqual([['x-sum', '42']]);
    ex.respond(200, []);
    ex.write(Buffer.from('body'));
    ex.end([['x-checksum', 'abc']]);
    const res = parseResponse(conn, 0);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('body');
    expect(res.headerSections[1]).toEqual([['x-checksum', 'abc']]);
    expect(res.fin).toBe(true);
  });

  it('answers early: the rest of the request is refused with STOP_SENDING(H3_NO_ERROR) and discarded', () => {
    const { conn, session, handler } = open();
    conn.clientSend(0, Buffer.concat([headersFrame(requestHeaders('POST', '/', [['content-length', '100000']])), dataFrame(Buffer.alloc(10))]));
    answer(handler.last, 413, 'too big');
    expect(conn.stopSent.get(0)).toBe(H3_ERROR.H3_NO_ERROR);
    expect(session.activeRequests).toBe(0);
    conn.clientSend(0, dataFrame(Buffer.alloc(1000)));
    expect(conn.unread(0)).toBe(0);
    expect(parseResponse(conn, 0).status).toBe(413);
    expect(conn.closed).toBeUndefined();
  });

  it('holds response bytes beyond the flow-control credit and reports backpressure to the writer', async () => {
    const { conn, handler } = open();
    conn.initialCredit = 1000;
    get(conn, 0);
    const ex = handler.last;
    ex.respond(200, []);
    const big = Buffer.alloc(300 * 1024, 1);
    expect(ex.write(big)).toBe(false); // above the writer's high-water mark
    let drained = false;
    void ex.drained().then(() => (drained = true));
    expect(conn.sent(0).data.length).toBeLessThanOrEqual(1000);
    conn.grant(0, 1024 * 1024);
    await Promise.resolve();
    expect(drained).toBe(true);
    ex.end();
    conn.deliver();
    const res = parseResponse(conn, 0);
    expect(res.body.length).toBe(big.length);
    expect(res.fin).toBe(true);
  });
});

describe('RequestStream: clients that give up, handlers that fail', () => {
  it('aborts the exchange when the client stops a response mid-body (STOP_SENDING)', () => {
    const { conn, session, handler } = open();
    get(conn, 0);
    const ex = handler.last;
    ex.respond(200, []);
    ex.write(Buffer.from('part'));
    conn.clientStop(0, H3_ERROR.H3_REQUEST_CANCELLED);
    expect(ex.write(Buffer.from('more'))).toBe(false);
    expect(ex.signal.aborted).toBe(true);
    expect(session.activeRequests).toBe(0);
  });

  it('notices STOP_SENDING on a request still waiting for its response (checked at most every 100 ms)', () => {
    vi.useFakeTimers();
    try {
      const { conn, session, handler } = open();
      get(conn, 0);
      conn.clientStop(0, H3_ERROR.H3_REQUEST_CANCELLED);
      expect(handler.last.signal.aborted).toBe(false);
      vi.advanceTimersByTime(100);
      expect(handler.last.signal.aborted).toBe(true);
      expect(session.activeRequests).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('drops the pending STOP_SENDING look once the client closed the connection (no timer left to wake the loop)', () => {
    vi.useFakeTimers();
    try {
      const { conn, handler } = open();
      get(conn, 0);
      conn.clientStop(0, H3_ERROR.H3_REQUEST_CANCELLED); // within 100 ms of the last look: a timer
      expect(vi.getTimerCount()).toBe(1);
      conn.clientClose();
      expect(vi.getTimerCount()).toBe(0);
      conn.deliver(); // a late packet of the draining connection arms nothing either
      expect(vi.getTimerCount()).toBe(0);
      expect(handler.last.signal.aborted).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });

  it('aborts the exchange and its body when the client resets the request stream', () => {
    const { conn, session, handler } = open();
    conn.clientSend(0, headersFrame(requestHeaders('POST', '/')));
    const ex = handler.last;
    let bodyError: Error | undefined;
    ex.body.stream.on('error', (e) => (bodyError = e));
    conn.clientReset(0, H3_ERROR.H3_REQUEST_CANCELLED);
    expect(ex.signal.aborted).toBe(true);
    expect(abortReason(ex)).toBe(ABORT.clientReset);
    expect(parseResponse(conn, 0).resetCode).toBe(H3_ERROR.H3_REQUEST_CANCELLED);
    expect(session.activeRequests).toBe(0);
    return new Promise<void>((resolve) => setImmediate(resolve)).then(() => expect(bodyError?.message).toMatch(/client reset stream/));
  });

  it('resets the stream (H3_INTERNAL_ERROR) when the handler abandons a response mid-body', () => {
    const { conn, handler } = open();
    get(conn, 0);
    const ex = handler.last;
    ex.respond(200, [['content-length', '100']]);
    ex.write(Buffer.from('half'));
    ex.reset();
    const res = parseResponse(conn, 0);
    expect(res.status).toBe(200);
    expect(res.resetCode).toBe(H3_ERROR.H3_INTERNAL_ERROR);
    expect(res.fin).toBe(false);
  });

  it('answers 500 and reports the error when the handler throws', () => {
    const bug = new Error('handler bug');
    const { conn, handlerErrors } = open({
      handle: () => {
        throw bug;
      },
    });
    get(conn, 0);
    const res = parseResponse(conn, 0);
    expect(res.status).toBe(500);
    expect(res.fin).toBe(true);
    expect(handlerErrors).toEqual([bug]);
  });

  it('aborts every open exchange when the connection closes', () => {
    const { conn, session, handler } = open();
    get(conn, 0);
    get(conn, 4);
    session.onClosed();
    expect(handler.exchanges.map((e) => e.signal.aborted)).toEqual([true, true]);
    // The connection went away (closed, timed out, reset): not the client's reset of these requests.
    expect(handler.exchanges.map(abortReason)).toEqual([ABORT.connectionClosed, ABORT.connectionClosed]);
    expect(session.activeRequests).toBe(0);
  });

  it('aborts the open exchanges with "drain timeout" when the endpoint closes the connection at drain_timeout', () => {
    const { conn, session, handler } = open();
    get(conn, 0);
    session.onClosed('drain timeout');
    expect(abortReason(handler.last)).toBe(ABORT.drainTimeout);
  });
});

describe('HTTP/3 and QPACK rules the audit found unenforced (hardening defect 8)', () => {
  it('closes on a second QPACK encoder or decoder stream (RFC 9204 §4.2)', () => {
    for (const type of [STREAM_TYPE.QPACK_ENCODER, STREAM_TYPE.QPACK_DECODER]) {
      const { conn } = open();
      conn.clientSend(6, Buffer.from([type]));
      expect(conn.closed).toBeUndefined();
      conn.clientSend(10, Buffer.from([type]));
      expect(conn.closed?.code).toBe(H3_ERROR.H3_STREAM_CREATION_ERROR);
    }
  });

  it('reads the decoder stream: Stream Cancellation is fine, Insert Count Increment and Section Acknowledgment are errors (§4.4)', () => {
    const cancel = open();
    cancel.conn.clientSend(10, Buffer.from([STREAM_TYPE.QPACK_DECODER, 0x40 | 4]));
    expect(cancel.conn.closed).toBeUndefined();
    for (const instruction of [0x00 /* Insert Count Increment 0 */, 0x01 /* Increment 1 */, 0x80 | 4 /* Section Ack, stream 4 */]) {
      const { conn } = open();
      conn.clientSend(10, Buffer.from([STREAM_TYPE.QPACK_DECODER, instruction]));
      expect(conn.closed?.code).toBe(H3_ERROR.QPACK_DECODER_STREAM_ERROR);
    }
  });

  it.each([
    ['a client GOAWAY whose id grows', [encodeGoaway(4), encodeGoaway(8)]],
    ['MAX_PUSH_ID that decreases', [encodeFrame(FRAME_TYPE.MAX_PUSH_ID, Buffer.from([8])), encodeFrame(FRAME_TYPE.MAX_PUSH_ID, Buffer.from([4]))]],
    ['CANCEL_PUSH without MAX_PUSH_ID', [encodeFrame(FRAME_TYPE.CANCEL_PUSH, Buffer.from([0]))]],
    ['CANCEL_PUSH above MAX_PUSH_ID', [encodeFrame(FRAME_TYPE.MAX_PUSH_ID, Buffer.from([2])), encodeFrame(FRAME_TYPE.CANCEL_PUSH, Buffer.from([3]))]],
  ] as const)('closes with H3_ID_ERROR on %s (RFC 9114 §5.2, §7.2.3, §7.2.7)', (_what, frames) => {
    const { conn } = open();
    clientControlStream(conn, [...frames]);
    expect(conn.closed?.code).toBe(H3_ERROR.H3_ID_ERROR);
  });

  it('accepts a shrinking client GOAWAY, a growing MAX_PUSH_ID and CANCEL_PUSH within it', () => {
    const { conn } = open();
    clientControlStream(conn, [encodeGoaway(8), encodeGoaway(4), encodeFrame(FRAME_TYPE.MAX_PUSH_ID, Buffer.from([2])), encodeFrame(FRAME_TYPE.MAX_PUSH_ID, Buffer.from([5])), encodeFrame(FRAME_TYPE.CANCEL_PUSH, Buffer.from([5]))]);
    expect(conn.closed).toBeUndefined();
  });

  it('refuses SETTINGS_H3_DATAGRAM and ENABLE_CONNECT_PROTOCOL values other than 0 or 1 (RFC 9297 §2.1.1)', () => {
    for (const id of [SETTINGS_ID.H3_DATAGRAM, SETTINGS_ID.ENABLE_CONNECT_PROTOCOL]) {
      const { conn } = open();
      conn.clientSend(CONTROL, encodeControlStreamPreface([[id, 5]]));
      expect(conn.closed?.code).toBe(H3_ERROR.H3_SETTINGS_ERROR);
      const ok = open();
      ok.conn.clientSend(CONTROL, encodeControlStreamPreface([[id, 1]]));
      expect(ok.conn.closed).toBeUndefined();
    }
  });

  it('treats a request stream that ends inside a frame as a connection error H3_FRAME_ERROR (§7.1)', () => {
    const { conn } = open();
    const frame = headersFrame(requestHeaders('POST', '/'));
    conn.clientSend(0, Buffer.concat([frame, dataFrame(Buffer.from('abcdef')).subarray(0, 4)]), true);
    expect(conn.closed?.code).toBe(H3_ERROR.H3_FRAME_ERROR);
  });

  it('closes with H3_CLOSED_CRITICAL_STREAM when the client stops our control or QPACK stream (§6.2.1)', () => {
    vi.useFakeTimers();
    try {
      for (const id of [3, 7, 11]) {
        const { conn } = open();
        conn.clientStop(id, H3_ERROR.H3_NO_ERROR);
        vi.advanceTimersByTime(100);
        expect(conn.closed?.code).toBe(H3_ERROR.H3_CLOSED_CRITICAL_STREAM);
      }
    } finally {
      vi.useRealTimers();
    }
  });

  it.each([
    ['with :scheme and :path', [[':method', 'CONNECT'], [':scheme', 'https'], [':authority', 'a.test:443'], [':path', '/']]],
    ['without :authority', [[':method', 'CONNECT']]],
  ] as Array<[string, Array<[string, string]>]>)('resets a CONNECT request %s with H3_MESSAGE_ERROR instead of answering 501 (§4.4)', (_what, fields) => {
    const { conn } = open();
    conn.clientSend(0, headersFrame(fields), true);
    expect(parseResponse(conn, 0).resetCode).toBe(H3_ERROR.H3_MESSAGE_ERROR);
    expect(parseResponse(conn, 0).status).toBeUndefined();
  });
});

describe('Request timeouts and header limits (hardening defect 5)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** The start of a HEADERS frame announcing `length` payload bytes, with all but the last byte. */
  const incompleteHeaders = (length: number): Buffer => Buffer.concat([encodeFrameHeader(FRAME_TYPE.HEADERS, length), Buffer.alloc(length - 1, 0x41)]);
  const post = (length: number): Buffer => headersFrame(requestHeaders('POST', '/upload', [['content-length', String(length)]]));

  it('resets a request whose HEADERS are incomplete request_header_timeout after the stream opened (H3_REQUEST_INCOMPLETE), however bytes trickle in', () => {
    const { conn, session, handler } = open();
    const frame = headersFrame(requestHeaders('GET', '/a/path/long/enough/to/trickle'));
    conn.clientSend(0, frame.subarray(0, 3));
    for (let i = 3; i < 12; i++) {
      vi.advanceTimersByTime(1_000);
      conn.clientSend(0, frame.subarray(i, i + 1)); // a byte every second does not extend the deadline
    }
    vi.advanceTimersByTime(999);
    expect(parseResponse(conn, 0).resetCode).toBeUndefined();
    vi.advanceTimersByTime(1);
    expect(parseResponse(conn, 0).resetCode).toBe(H3_ERROR.H3_REQUEST_INCOMPLETE);
    expect(conn.stopSent.get(0)).toBe(H3_ERROR.H3_REQUEST_INCOMPLETE);
    expect(handler.exchanges).toHaveLength(0);
    expect(session.activeRequests).toBe(0);
    expect(conn.closed).toBeUndefined();
    // The last byte comes too late: dropped, not a new request.
    conn.clientSend(0, frame.subarray(12), true);
    expect(handler.exchanges).toHaveLength(0);
  });

  it('slow-loris headers: 100 streams of incomplete 65 KB HEADERS hold at most max_connection_header_bytes, none after request_header_timeout; another connection is served meanwhile', () => {
    const maxConnectionHeaderBytes = 256 * 1024;
    const attacker = open(new HeldExchanges(), { maxHeaderBytes: 64 * 1024, maxConnectionHeaderBytes });
    const sent = new Map<number, number>();
    /** Bytes of HEADERS the server still holds: sent on streams it has neither reset nor answered. */
    const held = (): number => [...sent].reduce((n, [id, bytes]) => n + (parseResponse(attacker.conn, id).resetCode === undefined ? bytes : 0), 0);
    let maxHeld = 0;
    for (let i = 0; i < 100; i++) {
      const frame = incompleteHeaders(65_000);
      attacker.conn.clientSend(4 * i, frame);
      sent.set(4 * i, frame.length);
      maxHeld = Math.max(maxHeld, held(), attacker.session.headerBytesHeld);
    }
    // Bound: the connection's budget (was 100 × 65 KB ≈ 6.5 MB, held until the connection died).
    expect(maxHeld).toBeLessThanOrEqual(maxConnectionHeaderBytes);
    const refused = [...sent.keys()].filter((id) => parseResponse(attacker.conn, id).resetCode === H3_ERROR.H3_EXCESSIVE_LOAD);
    expect(refused).toHaveLength(100 - Math.floor(maxConnectionHeaderBytes / 65_004));
    // One timer for the session's deadlines, not one per stream.
    expect(vi.getTimerCount()).toBeLessThanOrEqual(2);

    const legit = open();
    get(legit.conn, 0);
    answer(legit.handler.last);
    expect(parseResponse(legit.conn, 0).status).toBe(200);

    vi.advanceTimersByTime(10_000);
    expect(held()).toBe(0);
    expect(attacker.session.headerBytesHeld).toBe(0);
    expect(attacker.session.activeRequests).toBe(0);
    expect([...sent.keys()].filter((id) => parseResponse(attacker.conn, id).resetCode === H3_ERROR.H3_REQUEST_INCOMPLETE)).toHaveLength(100 - refused.length);
    expect(attacker.handler.exchanges).toHaveLength(0);
  });

  it('counts only the bytes before HEADERS complete: a request with its body in the same packet passes a tight connection budget', () => {
    const { conn, session, handler } = open(new HeldExchanges(), { maxHeaderBytes: 1024, maxConnectionHeaderBytes: 1024 + 16 });
    conn.clientSend(0, incompleteHeaders(900)); // another stream holds most of the budget
    const body = Buffer.alloc(60_000, 1);
    conn.clientSend(4, Buffer.concat([post(body.length), dataFrame(body)]), true);
    expect(handler.exchanges.map((e) => e.streamId)).toEqual([4]);
    expect(parseResponse(conn, 4).resetCode).toBeUndefined();
    expect(session.headerBytesHeld).toBe(902);
  });

  it('answers 431 to a header section above max_header_bytes (decoded, or a HEADERS frame announcing more) and keeps the connection', () => {
    const { conn, session, handler } = open(new HeldExchanges(), { maxHeaderBytes: 2048 });
    const settings = parseSettings((serverUniFrames(conn, 3).frames[0] as { payload: Buffer }).payload);
    expect(settings.get(SETTINGS_ID.MAX_FIELD_SECTION_SIZE)).toBe(2048);
    // 2 fields of 1000 bytes: 2 × (5 + 1000 + 32) + the pseudo-headers > 2048 decoded.
    conn.clientSend(0, headersFrame(requestHeaders('GET', '/', [['x-a', 'a'.repeat(1000)], ['x-b', 'b'.repeat(1000)]])), true);
    expect(parseResponse(conn, 0).status).toBe(431);
    expect(parseResponse(conn, 0).fin).toBe(true);
    // A frame announcing 1 MB: answered at its first bytes, nothing of it buffered.
    conn.clientSend(4, encodeFrameHeader(FRAME_TYPE.HEADERS, 1_000_000));
    expect(parseResponse(conn, 4).status).toBe(431);
    expect(conn.stopSent.get(4)).toBe(H3_ERROR.H3_NO_ERROR);
    conn.clientSend(4, Buffer.alloc(50_000));
    expect(conn.unread(4)).toBe(0);
    expect(session.headerBytesHeld).toBe(0);
    expect(handler.exchanges).toHaveLength(0);
    get(conn, 8);
    expect(handler.exchanges.map((e) => e.streamId)).toEqual([8]);
    expect(conn.closed).toBeUndefined();
  });

  it('resets a stream whose trailers exceed max_header_bytes (H3_EXCESSIVE_LOAD, decoded or announced by the frame), counted as a header section too large; the connection goes on', async () => {
    const refusals = new RefusalCounter();
    const conn = new MemoryQuicConnection();
    const handler = new HeldExchanges();
    conn.start(new H3Session(conn, { handler, limits: { ...LIMITS, maxHeaderBytes: 2048 }, onHandlerError: () => {}, refusals }));
    const upload = (id: number, trailers: Buffer): void => conn.clientSend(id, Buffer.concat([headersFrame(requestHeaders('POST', '/')), dataFrame(Buffer.from('abc')), trailers]), trailers.length > 0);
    // Within the limit: passed on with the body.
    upload(0, headersFrame([['x-t', 'a'.repeat(1000)]]));
    handler.exchanges[0]!.body.stream.resume();
    await new Promise<void>((resolve) => handler.exchanges[0]!.body.stream.once('end', () => resolve()));
    expect(handler.exchanges[0]!.body.trailers).toEqual([['x-t', 'a'.repeat(1000)]]);
    // 2 × (3 + 1000 + 32) decoded > 2048; then a frame announcing 1 MB, refused at its frame header.
    upload(4, headersFrame([['x-t', 'a'.repeat(1000)], ['x-u', 'b'.repeat(1000)]]));
    // (Sent apart from the request: in the same read it is seen before HEADERS are handled, and gets 431.)
    upload(8, Buffer.alloc(0));
    conn.clientSend(8, encodeFrameHeader(FRAME_TYPE.HEADERS, 1_000_000));
    for (const id of [4, 8]) {
      const ex = handler.exchanges.find((e) => e.streamId === id)!;
      expect(parseResponse(conn, id).resetCode).toBe(H3_ERROR.H3_EXCESSIVE_LOAD);
      expect(conn.stopSent.get(id)).toBe(H3_ERROR.H3_EXCESSIVE_LOAD);
      expect(ex.signal.aborted).toBe(true);
    }
    expect(refusals.counts).toEqual({ 'header section too large': 2 });
    get(conn, 12);
    expect(handler.last.streamId).toBe(12);
    expect(conn.closed).toBeUndefined();
  });

  it('answers 408 when the client sends no body byte for request_body_timeout; each byte restarts the clock; the exchange is aborted with a RequestTimeoutError', async () => {
    const { conn, session, handler } = open();
    conn.clientSend(0, Buffer.concat([post(1000), dataFrame(Buffer.from('a'))]));
    const ex = handler.last;
    let bodyError: Error | undefined;
    ex.body.stream.on('error', (e) => (bodyError = e));
    ex.body.stream.resume();
    vi.advanceTimersByTime(29_000);
    conn.clientSend(0, dataFrame(Buffer.from('b'))); // progress: 30 s from here
    vi.advanceTimersByTime(29_999);
    expect(parseResponse(conn, 0).status).toBeUndefined();
    expect(ex.signal.aborted).toBe(false);
    vi.advanceTimersByTime(1);
    const res = parseResponse(conn, 0);
    expect(res.status).toBe(408);
    expect(res.fin).toBe(true);
    expect(res.resetCode).toBeUndefined();
    expect(conn.stopSent.get(0)).toBe(H3_ERROR.H3_NO_ERROR);
    expect(ex.signal.aborted).toBe(true);
    expect(ex.signal.reason).toBeInstanceOf(RequestTimeoutError);
    expect((ex.signal.reason as Error).message).toBe('request body timeout: no bytes for 30s');
    expect(session.activeRequests).toBe(0);
    await vi.advanceTimersByTimeAsync(0);
    // The body fails (the upload is cancelled), it does not end as if complete.
    expect(bodyError).toBeDefined();
    // The handler's late response has no effect.
    ex.respond(200, []);
    expect(parseResponse(conn, 0).status).toBe(408);
  });

  it('resets the stream (H3_REQUEST_INCOMPLETE) when the body times out after the response started', () => {
    const { conn, handler } = open();
    conn.clientSend(0, Buffer.concat([post(1000), dataFrame(Buffer.from('a'))]));
    const ex = handler.last;
    ex.body.stream.resume();
    ex.respond(200, []);
    ex.write(Buffer.from('early part'));
    vi.advanceTimersByTime(30_000);
    const res = parseResponse(conn, 0);
    expect(res.status).toBe(200);
    expect(res.resetCode).toBe(H3_ERROR.H3_REQUEST_INCOMPLETE);
    expect(conn.stopSent.get(0)).toBe(H3_ERROR.H3_REQUEST_INCOMPLETE);
    expect(ex.signal.reason).toBeInstanceOf(RequestTimeoutError);
  });

  it('stops the body clock while the handler does not read the body (backpressure) and restarts it when reading resumes', async () => {
    const { conn, handler } = open();
    const chunk = Buffer.alloc(64 * 1024, 7);
    conn.clientSend(0, post(8 * chunk.length));
    for (let i = 0; i < 8; i++) conn.clientSend(0, dataFrame(chunk));
    expect(conn.unread(0)).toBeGreaterThan(0); // paused: the handler's buffer is full
    vi.advanceTimersByTime(120_000);
    expect(parseResponse(conn, 0).status).toBeUndefined();
    const ex = handler.last;
    ex.body.stream.resume();
    await vi.advanceTimersByTimeAsync(0);
    expect(conn.unread(0)).toBe(0);
    await vi.advanceTimersByTimeAsync(29_999);
    expect(parseResponse(conn, 0).status).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(parseResponse(conn, 0).status).toBe(408);
  });

  it('a request that is complete has no clock: a slow upstream is not a slow client', () => {
    const { conn, handler } = open();
    conn.clientSend(0, Buffer.concat([post(1), dataFrame(Buffer.from('a'))]), true);
    get(conn, 4);
    vi.advanceTimersByTime(600_000);
    expect(parseResponse(conn, 0).status).toBeUndefined();
    expect(parseResponse(conn, 4).status).toBeUndefined();
    expect(handler.exchanges.every((e) => !e.signal.aborted)).toBe(true);
  });

  it('after max_requests_per_connection requests: GOAWAY at once, later streams refused with H3_REQUEST_REJECTED, close when served', () => {
    const { conn, session, handler } = open(new HeldExchanges(), { maxRequestsPerConnection: 2 });
    const goaways = (): number[] =>
      serverUniFrames(conn, 3)
        .frames.filter((f) => f.kind === 'frame' && f.type === FRAME_TYPE.GOAWAY)
        .map((f) => (f.kind === 'frame' ? parseGoaway(f.payload) : -1));
    get(conn, 0);
    expect(goaways()).toEqual([]);
    get(conn, 8); // out of order: stream 4 is implicitly open but not seen yet
    expect(goaways()).toEqual([12]);
    expect(session.draining).toBe(true);
    for (const id of [4, 12]) {
      get(conn, id);
      expect(parseResponse(conn, id).resetCode).toBe(H3_ERROR.H3_REQUEST_REJECTED);
      expect(conn.stopSent.get(id)).toBe(H3_ERROR.H3_REQUEST_REJECTED);
    }
    expect(handler.exchanges.map((e) => e.streamId)).toEqual([0, 8]);
    // A drain starting now changes nothing: the limit already holds.
    session.goaway('now');
    vi.advanceTimersByTime(3_000);
    expect(goaways()).toEqual([12]);
    for (const ex of handler.exchanges) answer(ex);
    conn.deliver();
    expect(conn.closed).toEqual({ code: H3_ERROR.H3_NO_ERROR, reason: 'goaway' });
  });

  it('counts what the limits and timeouts turn away, by reason (shown by list)', () => {
    const refusals = new RefusalCounter();
    const conn = new MemoryQuicConnection();
    const limits = { ...LIMITS, maxHeaderBytes: 2048, maxRequestsPerConnection: 3 };
    conn.start(new H3Session(conn, { handler: new HeldExchanges(), limits, onHandlerError: () => {}, refusals }));
    conn.clientSend(0, headersFrame(requestHeaders('GET', '/', [['x-a', 'a'.repeat(1000)], ['x-b', 'b'.repeat(1000)]])), true);
    conn.clientSend(4, Buffer.concat([post(1000), dataFrame(Buffer.from('a'))]));
    conn.clientSend(8, incompleteHeaders(1000));
    expect(refusals.counts).toEqual({ 'header section too large': 1 });
    vi.advanceTimersByTime(30_000);
    get(conn, 12); // beyond max_requests_per_connection (0, 4 and 8 were taken)
    expect(refusals.counts).toEqual({ 'header section too large': 1, 'request header timeout': 1, 'request body timeout': 1, 'requests per connection': 1 });
  });

  it('a drain in its first phase is cut short by the request limit (GOAWAY ids only fall)', () => {
    const { conn, session } = open(new HeldExchanges(), { maxRequestsPerConnection: 3 });
    get(conn, 0);
    session.goaway('now');
    get(conn, 4);
    get(conn, 8);
    const ids = serverUniFrames(conn, 3)
      .frames.filter((f) => f.kind === 'frame' && f.type === FRAME_TYPE.GOAWAY)
      .map((f) => (f.kind === 'frame' ? parseGoaway(f.payload) : -1));
    expect(ids).toEqual([2 ** 53 - 4, 12]);
    vi.advanceTimersByTime(3_000);
    expect(serverUniFrames(conn, 3).frames.filter((f) => f.kind === 'frame' && f.type === FRAME_TYPE.GOAWAY)).toHaveLength(2);
  });
});

/** The reason (ABORT) in an aborted exchange's signal, as the access log gets it. */
function abortReason(ex: HttpExchange): string | undefined {
  const why: unknown = ex.signal.reason;
  return why instanceof ExchangeAborted ? why.reason : undefined;
}
