import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { TimerQueue, type TimerOwner } from '../../src/proxy/quic/timer-queue.js';
import { SweepTimer } from '../../src/proxy/timers/sweep-timer.js';
import { H3Session } from '../../src/proxy/h3/session.js';
import type { HttpExchange } from '../../src/proxy/http/exchange.js';
import { HTTP_DEFAULTS } from '../../src/proxy/config/section-http.js';
import { RefusalCounter } from '../../src/proxy/http/refusals.js';
import { TcpConnections } from '../../src/proxy/tcp/connections.js';
import { H1Connection } from '../../src/proxy/tcp/h1-connection.js';
import { H2Connection } from '../../src/proxy/tcp/h2-connection.js';
import { MemoryQuicConnection, headersFrame, parseResponse, requestHeaders } from '../helpers/memory-quic.js';

/**
 * Real timers, real event loop: how often this thread blocked and was woken (each wake-up of the
 * event loop is one voluntary context switch of the thread that runs it). Node keeps the timer
 * list of a cleared *unref'd* timer and wakes the loop at its expiry anyway; a cleared ref'd one is
 * dropped. Each wake-up costs a worker ~0.1–0.3 ms on this VM, a few per new connection.
 */
function wakeUps(): number {
  const m = /voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync('/proc/thread-self/status', 'utf8'));
  if (!m) throw new Error('no voluntary_ctxt_switches in /proc/thread-self/status');
  return Number(m[1]);
}

const idle = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

class Owner implements TimerOwner {
  deadline: number | undefined;
  fired = 0;
  onDeadline(): void {
    this.fired++;
  }
}

const N = 20;

describe('deadlines moved later wake nothing', () => {
  // Noise (vitest's own messages, a loaded machine) only adds wake-ups: the least of three tries.
  it('TimerQueue: the timers it armed for deadlines that moved do not fire the event loop', async () => {
    const tries: number[] = [];
    for (let t = 0; t < 3; t++) {
      const q = new TimerQueue<Owner>(() => {});
      const owners = Array.from({ length: N }, () => new Owner());
      // Each deadline earlier than the last: the queue re-arms its Node timer N times, 3 ms apart.
      owners.forEach((o, i) => q.schedule(o, 100 - 3 * i));
      await new Promise((resolve) => setImmediate(resolve));
      // Then every one moves far out (as an ACK moves a loss timer later), at the end of a batch.
      for (const o of owners) q.schedule(o, 10_000);
      q.settle();
      const before = wakeUps();
      await idle(150);
      tries.push(wakeUps() - before);
      q.close();
      expect(owners.every((o) => o.fired === 0)).toBe(true);
    }
    // Ours: the earliest (Node's libuv timer cannot move later) and the idle() timer. Unref'd: ~N.
    expect(Math.min(...tries), `wake-ups per try: ${tries.join(', ')}`).toBeLessThanOrEqual(5);
  });

  it('SweepTimer: stopping it leaves nothing that fires the event loop', async () => {
    const tries: number[] = [];
    for (let t = 0; t < 3; t++) {
      const sweep = new SweepTimer(() => undefined);
      const now = performance.now();
      for (let i = 0; i < N; i++) sweep.ensure(now + 100 - 3 * i);
      await new Promise((resolve) => setImmediate(resolve));
      sweep.stop();
      const before = wakeUps();
      await idle(150);
      tries.push(wakeUps() - before);
    }
    expect(Math.min(...tries), `wake-ups per try: ${tries.join(', ')}`).toBeLessThanOrEqual(5);
  });
});

/**
 * Event-loop iterations (libuv's loop count): each wake-up of the loop is one, with none of the
 * thread's other blocking (GC helpers, locks) counted. Exact in a quiet test: an idle() is one.
 */
function loopIterations(): number {
  const info = (performance as unknown as { nodeTiming: { uvMetricsInfo?: { loopCount: number } } }).nodeTiming.uvMetricsInfo;
  if (!info) throw new Error('performance.nodeTiming.uvMetricsInfo needs Node 20.18 or later');
  return info.loopCount;
}

/**
 * Runs `body` with a short timer armed before it and due first, then waits `ms`: a timer that
 * `body` arms and clears is then never the earliest one armed (libuv's timer would still fire at
 * that one's expiry, ref'd or not; production has QUIC's timers armed before it). Returns the
 * loop's wake-ups from `body` on; ours are two, the short timer's and the wait's.
 */
async function wakeUpsAfter(body: () => void | Promise<void>, ms: number): Promise<number> {
  await idle(200); // vitest's own messages at a test's start
  const first = idle(20);
  const before = loopIterations();
  await body();
  await first;
  await idle(ms);
  return loopIterations() - before;
}

describe('a drained HTTP/3 session leaves nothing that wakes the event loop', () => {
  /** A session in memory, drained while one request is open; that request is answered (the held GOAWAY goes with it). */
  function drainedWithResponse(rttMs: number): H3Session {
    const conn = new MemoryQuicConnection();
    conn.rttMs = rttMs;
    const exchanges: HttpExchange[] = [];
    const session = new H3Session(conn, {
      handler: { handle: (ex) => void exchanges.push(ex) },
      limits: { requestHeaderTimeoutMs: 10_000, requestBodyTimeoutMs: 30_000, maxRequestsPerConnection: 100, maxHeaderBytes: 16_384, maxConnectionHeaderBytes: 65_536 },
      onHandlerError: (err) => {
        throw err;
      },
    });
    conn.start(session);
    conn.clientSend(0, headersFrame(requestHeaders('GET', '/')), true);
    session.goaway('with-response');
    const ex = exchanges[0]!;
    ex.respond(200, [['content-length', '0']]);
    ex.end();
    expect(parseResponse(conn, 0)).toMatchObject({ status: 200, fin: true });
    expect(session.draining).toBe(true);
    return session;
  }

  it('the GOAWAY hold a response released does not wake the loop at its 1 s expiry', async () => {
    // One stale timer is one wake-up, as much as vitest's own messages can add to a window: the
    // least of three windows (noise only adds), and the hold unref'd adds one to each.
    const trials: number[] = [];
    for (let i = 0; i < 3; i++) {
      trials.push(
        await wakeUpsAfter(() => {
          const session = drainedWithResponse(0);
          // The client closes before the grace period ends (its timer goes with the session).
          session.onClosed();
        }, 1_100),
      );
    }
    expect(Math.min(...trials), `wake-ups per window: ${trials.join(', ')}`).toBeLessThanOrEqual(2);
  });

  it('the grace periods of sessions closed before they end do not wake the loop', async () => {
    // Grace = 3 RTT (at least 100 ms): N different delays, N Node timer lists, N wake-ups if left.
    const woken = await wakeUpsAfter(() => {
      const sessions = Array.from({ length: N }, (_, i) => drainedWithResponse(34 + 2 * i));
      for (const s of sessions) s.onClosed();
    }, 250);
    expect(woken).toBeLessThanOrEqual(2);
  });
});

describe('TCP connections closed before their clocks run out leave nothing that wakes the event loop', () => {
  const limits = (i: number) => ({ ...HTTP_DEFAULTS, requestHeaderTimeoutMs: 100 + 5 * i, keepaliveTimeoutMs: 150 + 5 * i });
  const connectionOptions = () => ({
    handler: { handle: () => undefined },
    connections: new TcpConnections(1_000),
    refusals: new RefusalCounter(),
    altSvc: undefined,
    onHandlerError: (err: unknown) => {
      throw err;
    },
  });

  /** N connected pairs of plain TCP sockets on loopback: [ours, the client's]. */
  async function socketPairs(server: net.Server): Promise<Array<[net.Socket, net.Socket]>> {
    const ours: net.Socket[] = [];
    const all = new Promise<void>((resolve) =>
      server.on('connection', (s) => {
        if (ours.push(s) === N) resolve();
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    const clients = await Promise.all(Array.from({ length: N }, () => new Promise<net.Socket>((resolve) => { const c = net.connect(port, '127.0.0.1', () => resolve(c)); })));
    await all;
    return ours.map((s, i) => [s, clients[i]!]);
  }

  it('HTTP/1.1: the request header clock of connections that closed does not fire the loop', async () => {
    const server = net.createServer();
    const pairs = await socketPairs(server);
    // Each its own header timeout: N Node timer lists, N wake-ups if their cleared timers were left.
    const woken = await wakeUpsAfter(() => {
      pairs.forEach(([ours], i) => new H1Connection(ours, { ...connectionOptions(), limits: limits(i), connectionId: `c${i}` }));
      for (const [ours, client] of pairs) {
        ours.destroy();
        client.destroy();
      }
    }, 400);
    server.close();
    // Ours: the short timer, the wait, the sockets' closes. With the clocks unref'd: ~N more.
    expect(woken).toBeLessThanOrEqual(6);
  });

  it('HTTP/2: the idle timer and header-block clock of sessions that closed after a request do not fire the loop', async () => {
    const server = http2.createServer();
    const log = pino({ level: 'silent' });
    const answer = { handle: (ex: HttpExchange) => (ex.respond(200, [['content-length', '0']]), ex.end()) };
    const sessions: http2.ServerHttp2Session[] = [];
    const closed: Array<Promise<unknown>> = [];
    server.on('session', (s) => {
      const i = sessions.push(s) - 1;
      closed.push(new Promise((resolve) => s.once('close', resolve)));
      // After its request the idle timer runs keepalive_timeout (other lists than the header clock's).
      new H2Connection(s, { ...connectionOptions(), handler: answer, limits: { ...limits(i), keepaliveTimeoutMs: 1_000 + 5 * i }, connectionId: `c${i}`, log });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    const clients = Array.from({ length: N }, () => http2.connect(`http://127.0.0.1:${port}`));
    await Promise.all(
      clients.map((c) => {
        const req = c.request({ ':path': '/', ':authority': 'example.test' });
        req.resume();
        return new Promise((resolve) => req.once('close', resolve));
      }),
    );
    const woken = await wakeUpsAfter(async () => {
      for (const s of sessions) s.destroy();
      for (const c of clients) c.destroy();
      await Promise.all(closed);
    }, 1_200);
    server.close();
    // Ours: the short timer, the wait, the sessions' closes. Either clock unref'd: ~N more.
    expect(woken).toBeLessThanOrEqual(8);
  });
});
