/**
 * The stack's floor: the least a Node.js HTTP/3 → HTTP/1.1 relay on our quiche binding can cost
 * per request, end to end, with real sockets and the side-by-side bench's clients. Run it through
 * the side-by-side bench: `npm run bench -- --peer caddy --with-floor [--only TEXT]` adds two
 * targets to every row, `floor-undici` and `floor-net` (bench/targets.ts startFloor), and prints
 * each one's figure, its ratio to Caddy's and ours' ratio to it (bench/README.md, "The stack's
 * floor"). Needs `npx tsc -p tsconfig.json` first: the relay runs from dist/ like our proxy.
 *
 * What it is: a master process that forks WORKERS workers (one per core, like ours); each worker
 * binds its own SO_REUSEPORT UDP socket on the port (the kernel's 4-tuple hash keeps a
 * connection on one worker; no eBPF), reads datagrams as ours does (dgram's 'message' as the
 * readiness signal, then our BatchReceiver's recvmmsg for the rest of the queue), `recv`s them into
 * quiche (the proxy's own Config: TlsContexts from the bench's proxy config), and once per event
 * loop turn, per connection touched: reads the request streams (probing stream ids with
 * `streamReadable`, no `readable()` iterator), decodes each request's HEADERS with our QPACK decoder
 * for `:path`, sends ONE HTTP/1.1 GET for that path upstream, answers with a HEADERS frame
 * (`:status`, `content-length`, cached per pair) and the body as ONE DATA frame whose payload is
 * the upstream's chunks as they come (flow control: a queue per stream, the upstream paused above
 * 256 KiB queued, resumed below half), then FIN; sends with our BatchSender (sendmmsg, GSO). One
 * Node timer per worker for quiche's deadlines. Upstream, FLOOR_UPSTREAM:
 * - `undici`: a Pool with the options ours sets (256 connections, pipelining 1, no undici
 *   timeouts, 4 s keep-alive), requests through `dispatch` with a handler (as ours);
 * - `net`: one `net` socket per upstream request in flight, kept alive in an idle list, a fixed
 *   request string per path and a reader that takes the status and Content-Length from the head
 *   and counts the body's bytes.
 *
 * Deliberately left out (what ours does and the floor does not): request validation and
 * normalisation, routes, header translation (only `:path` is read; only status and
 * content-length are answered), limits and admission (Retry, handshake and pending limits, stream
 * and header budgets), the 0-RTT replay guard and early data (the Config refuses 0-RTT), stateless
 * resets, CID issuance and eBPF steering (the client's 4-tuple must not change), GOAWAY, drain and
 * reload, the ACK hold, STOP_SENDING and reset handling beyond dropping the stream, upstream
 * health, retries, timeouts and error responses (an upstream failure resets the stream), metrics,
 * logs, the HTTP/3 peer streams' parsing (they are read and dropped), TCP listeners. It is bench
 * code: it serves the bench's clients correctly and nothing adversarial.
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { Pool, type Dispatcher } from 'undici';
import { createReuseportSocket } from '../src/grm/sockets.js';
import { loadConfig } from '../src/proxy/config/index.js';
import { encodeControlStreamPreface, encodeDataFrameHeader, encodeHeadersFrame, SETTINGS_ID, STREAM_TYPE } from '../src/proxy/h3/frames.js';
import { decodeFieldSection, encodeFieldSection } from '../src/proxy/h3/qpack.js';
import type { HostPort } from '../src/proxy/net/address.js';
import { BatchReceiver } from '../src/proxy/net/batch-receiver.js';
import { BatchSender } from '../src/proxy/net/batch-sender.js';
import { quiche, type QuicheConfig, type QuicheConnection } from '../src/proxy/quic/native.js';
import { TlsContexts } from '../src/proxy/quic/tls-contexts.js';
import { decodeVarint } from '../src/proxy/quic/varint.js';
import { AF_INET } from '../src/sys/libc.js';

export type FloorUpstream = 'undici' | 'net';

/** What the bench passes a floor master (environment, inherited by its workers). */
export interface FloorEnv {
  FLOOR_CONFIG: string;
  FLOOR_PORT: string;
  FLOOR_UPSTREAM_PORT: string;
  FLOOR_UPSTREAM: FloorUpstream;
  FLOOR_WORKERS: string;
}

const CID_LEN = 16;
const HIGH_WATER = 256 * 1024;
const H3_INTERNAL_ERROR = 0x102;
const EMPTY = Buffer.alloc(0);

// ------------------------------------------------------------------ master

function runMaster(): void {
  const workers = Number(process.env.FLOOR_WORKERS);
  let ready = 0;
  const children = Array.from({ length: workers }, () => {
    const child = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, FLOOR_ROLE: 'worker' } });
    child.once('message', () => ++ready === workers && process.send!({ ready: true }));
    child.once('exit', (code) => code !== 0 && process.exit(1));
    return child;
  });
  const stop = (): void => {
    for (const c of children) c.kill();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('disconnect', stop);
}

// ------------------------------------------------------------------ worker: upstream

/** Where an upstream response goes: the HTTP/3 stream it answers. */
interface ResponseSink {
  head(status: number, contentLength: number): void;
  data(chunk: Buffer): void;
  end(): void;
  fail(): void;
  /** The upstream stops / goes on sending (set by the upstream leg). */
  pause?: () => void;
  resume?: () => void;
}

type Fetch = (path: string, sink: ResponseSink) => void;

function undiciFetch(port: number): Fetch {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 256, pipelining: 1, headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 4000, keepAliveMaxTimeout: 4000 });
  class Exchange implements Dispatcher.DispatchHandler {
    constructor(private readonly sink: ResponseSink) {}
    onRequestStart(controller: Dispatcher.DispatchController): void {
      this.sink.pause = () => controller.pause();
      this.sink.resume = () => controller.resume();
    }
    onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: Record<string, string | string[] | undefined>): void {
      this.sink.head(status, Number(headers['content-length']));
    }
    onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
      this.sink.data(chunk);
    }
    onResponseEnd(): void {
      this.sink.end();
    }
    onResponseError(): void {
      this.sink.fail();
    }
  }
  return (path, sink) => pool.dispatch({ method: 'GET', path }, new Exchange(sink));
}

/** One raw socket per request in flight, reused when its response is read to the end. */
function netFetch(port: number): Fetch {
  const idle: UpstreamSocket[] = [];
  const requests = new Map<string, string>();
  class UpstreamSocket {
    readonly socket = net.connect(port, '127.0.0.1');
    sink: ResponseSink | undefined;
    head = '';
    remaining = -1;
    constructor() {
      this.socket.setNoDelay(true);
      this.socket.on('data', (chunk) => this.onData(chunk));
      this.socket.on('error', () => {});
      this.socket.on('close', () => {
        const i = idle.indexOf(this);
        if (i >= 0) idle.splice(i, 1);
        this.sink?.fail();
        this.sink = undefined;
      });
    }
    send(path: string, sink: ResponseSink): void {
      this.sink = sink;
      this.head = '';
      this.remaining = -1;
      sink.pause = () => this.socket.pause();
      sink.resume = () => this.socket.resume();
      let req = requests.get(path);
      if (req === undefined) requests.set(path, (req = `GET ${path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n\r\n`));
      this.socket.write(req, 'latin1');
    }
    private onData(chunk: Buffer): void {
      const sink = this.sink;
      if (!sink) return;
      if (this.remaining < 0) {
        this.head += chunk.toString('latin1');
        const end = this.head.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = /\r\ncontent-length: *(\d+)/i.exec(this.head.slice(0, end));
        this.remaining = Number(length?.[1] ?? 0);
        sink.head(Number(this.head.slice(9, 12)), this.remaining);
        chunk = chunk.subarray(chunk.length - (this.head.length - end - 4));
      }
      if (chunk.length > 0) {
        this.remaining -= chunk.length;
        sink.data(chunk);
      }
      if (this.remaining === 0) {
        this.sink = undefined;
        idle.push(this);
        sink.end();
      }
    }
  }
  return (path, sink) => (idle.pop() ?? new UpstreamSocket()).send(path, sink);
}

// ------------------------------------------------------------------ worker: QUIC and HTTP/3

/** A response on its way: what quiche has not taken yet. */
interface Response {
  readonly id: number;
  readonly sink: ResponseSink;
  readonly queue: Buffer[];
  queued: number;
  ended: boolean;
  paused: boolean;
  gone: boolean;
}

interface Conn {
  readonly quic: QuicheConnection;
  readonly keys: string[];
  readonly recvInfo: { from: HostPort; to: HostPort };
  h3Open: boolean;
  nextBidi: number;
  nextUni: number;
  /** Client streams not read to their FIN: a request's bytes until its HEADERS frame is whole, then (and for uni streams) true: read and dropped. */
  readonly reading: Map<number, Buffer | true>;
  /** Responses with bytes (or the FIN) quiche has not taken yet. */
  readonly unsent: Set<Response>;
  deadline: number;
}

function runWorker(): void {
  const env = process.env as unknown as FloorEnv;
  const port = Number(env.FLOOR_PORT);
  const proxyConfig = loadConfig(env.FLOOR_CONFIG);
  const tls = new TlsContexts({ certificates: proxyConfig.tls.certificates, alpn: proxyConfig.tls.alpn, limits: proxyConfig.quic, ticketKey: randomBytes(48) });
  const config: QuicheConfig = tls.configFor(proxyConfig.tls.certificates[0]!, false);
  const fetch = env.FLOOR_UPSTREAM === 'net' ? netFetch(Number(env.FLOOR_UPSTREAM_PORT)) : undiciFetch(Number(env.FLOOR_UPSTREAM_PORT));

  const local: HostPort = { host: '127.0.0.1', port };
  const fd = createReuseportSocket({ family: AF_INET, port, addr: Buffer.from([127, 0, 0, 1]) });
  const socket = dgram.createSocket('udp4');
  const sender = new BatchSender(fd, Math.max(proxyConfig.quic.maxUdpPayload, 1350), { gso: 'auto' });
  const receiver = new BatchReceiver(fd, 65_536, 32);
  const controlPreface = encodeControlStreamPreface([
    [SETTINGS_ID.QPACK_MAX_TABLE_CAPACITY, 0],
    [SETTINGS_ID.QPACK_BLOCKED_STREAMS, 0],
  ]);
  const readBuf = Buffer.alloc(65_536);
  /** HEADERS frame + the DATA frame's header, by "status length". */
  const heads = new Map<string, Buffer>();

  const byCid = new Map<string, Conn>();
  const live = new Set<Conn>();
  const touched = new Set<Conn>();
  let flushScheduled = false;
  let timer: NodeJS.Timeout | undefined;
  let timerAt = Infinity;

  const touch = (c: Conn): void => {
    touched.add(c);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flush);
    }
  };

  function onDatagram(msg: Buffer, peer: HostPort): void {
    const long = (msg[0]! & 0x80) !== 0;
    const key = long ? msg.toString('latin1', 6, 6 + msg[5]!) : msg.toString('latin1', 1, 1 + CID_LEN);
    let c = byCid.get(key);
    if (!c) {
      if (!long || msg.length < 1200) return;
      const scid = randomBytes(CID_LEN);
      const from = { host: peer.host, port: peer.port };
      c = { quic: quiche.Connection.accept(scid, null, local, from, config), keys: [key, scid.toString('latin1')], recvInfo: { from, to: local }, h3Open: false, nextBidi: 0, nextUni: 2, reading: new Map(), unsent: new Set(), deadline: Infinity };
      for (const k of c.keys) byCid.set(k, c);
      live.add(c);
    }
    try {
      c.quic.recv(msg, c.recvInfo);
    } catch {
      // A packet quiche refuses (undecryptable, a duplicate): the connection goes on.
    }
    touch(c);
  }

  socket.on('message', (msg, rinfo) => {
    onDatagram(msg, { host: rinfo.address, port: rinfo.port });
    receiver.drainAfterRead(onDatagram);
  });

  function flush(): void {
    flushScheduled = false;
    for (const c of touched) {
      if (!c.h3Open && c.quic.isEstablished()) {
        c.h3Open = true;
        c.quic.streamSend(3, controlPreface, false);
        c.quic.streamSend(7, Buffer.from([STREAM_TYPE.QPACK_ENCODER]), false);
        c.quic.streamSend(11, Buffer.from([STREAM_TYPE.QPACK_DECODER]), false);
      }
      if (c.quic.isReadable()) readStreams(c);
      for (const r of c.unsent) write(c, r);
      send(c);
    }
    touched.clear();
    if (sender.pending > 0) sender.flush();
  }

  function send(c: Conn): void {
    for (;;) {
      let slot = sender.slot();
      if (!slot) {
        sender.flush();
        slot = sender.slot()!;
      }
      const r = c.quic.send(slot);
      if (r === null) break;
      sender.commit(r[0], r[1].to);
    }
    if (c.quic.isClosed()) {
      for (const k of c.keys) byCid.delete(k);
      live.delete(c);
      for (const r of c.unsent) r.gone = true;
      c.deadline = Infinity;
      return;
    }
    const t = c.quic.timeout();
    c.deadline = t === null ? Infinity : performance.now() + t;
    if (c.deadline < timerAt) arm(c.deadline);
  }

  function arm(at: number): void {
    if (timer) clearTimeout(timer);
    timerAt = at;
    timer = setTimeout(onTimer, Math.max(0, at - performance.now()));
  }

  function onTimer(): void {
    timer = undefined;
    timerAt = Infinity;
    const now = performance.now();
    for (const c of live) {
      if (c.deadline <= now) {
        c.quic.onTimeout();
        touch(c);
      }
    }
    let next = Infinity;
    for (const c of live) if (!touched.has(c) && c.deadline < next) next = c.deadline;
    if (next < Infinity) arm(next);
  }

  /** New client streams are found by probing the next ids (on loopback no gap lasts). */
  function readStreams(c: Conn): void {
    const q = c.quic;
    for (; q.streamReadable(c.nextBidi); c.nextBidi += 4) c.reading.set(c.nextBidi, EMPTY);
    for (; q.streamReadable(c.nextUni); c.nextUni += 4) c.reading.set(c.nextUni, true);
    for (const [id, got] of c.reading) {
      let fin = false;
      let buf = got;
      for (let r = q.streamRecv(id, readBuf); r !== null; r = q.streamRecv(id, readBuf)) {
        if (buf !== true) buf = Buffer.concat([buf, readBuf.subarray(0, r[0])]);
        if ((fin = r[1])) break;
      }
      if (buf !== true && buf.length > 0) {
        const path = requestPath(buf);
        if (path !== undefined) {
          respond(c, id, path);
          buf = true;
        }
      }
      if (fin) c.reading.delete(id);
      else c.reading.set(id, buf);
    }
  }

  function respond(c: Conn, id: number, path: string): void {
    const r: Response = {
      id,
      queue: [],
      queued: 0,
      ended: false,
      paused: false,
      gone: false,
      sink: {
        head(status, length) {
          const key = `${status} ${length}`;
          let h = heads.get(key);
          if (!h) heads.set(key, (h = Buffer.concat([encodeHeadersFrame(encodeFieldSection([[':status', String(status)], ['content-length', String(length)]])), encodeDataFrameHeader(length)])));
          enqueue(c, r, h);
        },
        data: (chunk) => enqueue(c, r, chunk),
        end() {
          r.ended = true;
          c.unsent.add(r);
          touch(c);
        },
        fail() {
          if (r.gone) return;
          r.gone = true;
          c.unsent.delete(r);
          try {
            c.quic.streamShutdown(id, quiche.Shutdown.Write, H3_INTERNAL_ERROR);
          } catch {
            // the stream is already gone
          }
          touch(c);
        },
      },
    };
    fetch(path, r.sink);
  }

  /** Written at the turn's flush: a small response goes to quiche in two calls (head, body with FIN). */
  function enqueue(c: Conn, r: Response, chunk: Buffer): void {
    if (r.gone) return;
    r.queue.push(chunk);
    r.queued += chunk.length;
    c.unsent.add(r);
    if (r.queued > HIGH_WATER && !r.paused) {
      r.paused = true;
      r.sink.pause?.();
    }
    touch(c);
  }

  /** Hands quiche what it takes of the queue; the FIN goes with the last byte. */
  function write(c: Conn, r: Response): void {
    if (r.gone) return;
    try {
      let more = true;
      while (more && r.queue.length > 0) {
        const b = r.queue[0]!;
        const last = r.ended && r.queue.length === 1;
        const n = c.quic.streamSend(r.id, b, last) ?? 0;
        r.queued -= n;
        if (n < b.length) {
          r.queue[0] = b.subarray(n);
          more = false;
        } else {
          r.queue.shift();
          if (last) r.gone = true;
        }
      }
      if (more && r.ended && !r.gone && c.quic.streamSend(r.id, EMPTY, true) !== null) r.gone = true;
    } catch {
      // The client stopped or reset the stream, or the connection is closed: drop the response.
      r.gone = true;
    }
    if (r.gone || (r.queue.length === 0 && !r.ended)) c.unsent.delete(r);
    if (r.paused && r.queued < HIGH_WATER / 2) {
      r.paused = false;
      r.sink.resume?.();
    }
  }

  socket.bind({ fd }, () => process.send!({ ready: true }));
}

/** The `:path` of a request stream's first frame, once the HEADERS frame is whole. */
function requestPath(buf: Buffer): string | undefined {
  const type = decodeVarint(buf, 0);
  if (!type) return undefined;
  const length = decodeVarint(buf, type.length);
  if (!length) return undefined;
  const start = type.length + length.length;
  if (buf.length < start + length.value) return undefined;
  for (const [name, value] of decodeFieldSection(buf.subarray(start, start + length.value))) if (name === ':path') return value;
  return '/';
}

if (process.env.FLOOR_ROLE === 'master') runMaster();
else if (process.env.FLOOR_ROLE === 'worker') runWorker();
