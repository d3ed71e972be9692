/**
 * `npx tsx bench/binding-floor.ts [--rounds N]`: the least CPU the server side of one QUIC
 * connection can cost in this quiche binding, whatever the proxy around it does. A client and a
 * server connection of the binding are joined in memory (no sockets, no event loop, no HTTP/3, no
 * upstream): only the calls a server must make per packet and per stream. The time of the server's
 * calls alone is summed (one thread, no syscalls: wall time is CPU time).
 *
 * Rows, as the side-by-side bench's:
 * - 1 KiB: 32 streams at a time, each a 64-byte request with FIN and a 1 KiB answer with FIN:
 *   the server's recv of every datagram, streamReadable/streamRecv, streamSend, send until done.
 * - 1 MiB: one stream, the server writes 1 MiB as flow control allows; the client acknowledges.
 * - handshake: accept, the handshake's datagrams both ways, one request and its answer, close.
 *
 * Compare with the goals of issue 12 (a fraction of Caddy's figure per row): what the binding
 * takes here is spent before our code, the kernel's UDP and the upstream's HTTP/1.1 add anything.
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../src/proxy/config/index.js';
import { quiche, type QuicheConnection } from '../src/proxy/quic/native.js';
import { TlsContexts } from '../src/proxy/quic/tls-contexts.js';
import { makeTempDir } from '../test/helpers/proxy.js';
import { benchCertificate, ourProxyConfig } from './targets.js';

const { values: args } = parseArgs({ options: { rounds: { type: 'string', default: '5' } } });
const rounds = Number(args.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds: a positive integer, not "${args.rounds}"`);

const CLIENT = { host: '127.0.0.1', port: 40000 };
const SERVER = { host: '127.0.0.1', port: 443 };
const TO_SERVER = { from: CLIENT, to: SERVER };
const TO_CLIENT = { from: SERVER, to: CLIENT };
const cert = benchCertificate();

/**
 * The server's Config is the proxy's own: TlsContexts from the config the side-by-side bench gives
 * our proxy (its certificate, its defaults). The client's is quiche's plain one with windows as large.
 */
const dir = makeTempDir('binding-floor-');
writeFileSync(path.join(dir, 'proxy.yaml'), ourProxyConfig(4433, { upstreamPort: 8080, cert, workers: 1 }));
const proxyConfig = loadConfig(path.join(dir, 'proxy.yaml'));
const tls = new TlsContexts({ certificates: proxyConfig.tls.certificates, alpn: proxyConfig.tls.alpn, limits: proxyConfig.quic, ticketKey: randomBytes(48) });
rmSync(dir, { recursive: true, force: true });
const serverConfig = tls.configFor(proxyConfig.tls.certificates[0]!, false);
const clientConfig = new quiche.Config();
clientConfig.setApplicationProtos(['h3']);
clientConfig.verifyPeer(false);
clientConfig.setInitialMaxData(proxyConfig.quic.initialMaxData);
clientConfig.setInitialMaxStreamDataBidiLocal(proxyConfig.quic.initialMaxStreamData);
clientConfig.setInitialMaxStreamDataBidiRemote(proxyConfig.quic.initialMaxStreamData);
clientConfig.setInitialMaxStreamsUni(16);

/** Nanoseconds spent in the server's calls. */
let serverNs = 0n;
function server<T>(f: () => T): T {
  const t = process.hrtime.bigint();
  try {
    return f();
  } finally {
    serverNs += process.hrtime.bigint() - t;
  }
}

const slots = Array.from({ length: 256 }, () => Buffer.alloc(1350));
/** Every datagram `from` has now (copied: the slots are reused). */
function drainPackets(from: QuicheConnection, timed: boolean): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; ; i++) {
    const slot = slots[i % slots.length]!;
    const r = timed ? server(() => from.send(slot)) : from.send(slot);
    if (r === null) return out;
    out.push(Buffer.from(slot.subarray(0, r[0])));
  }
}
function toServer(s: QuicheConnection, datagrams: Buffer[]): void {
  server(() => {
    for (const d of datagrams) s.recv(d, TO_SERVER);
  });
}
function toClient(c: QuicheConnection, datagrams: Buffer[]): void {
  for (const d of datagrams) c.recv(d, TO_CLIENT);
}

function handshake(): { client: QuicheConnection; srv: QuicheConnection } {
  const client = quiche.Connection.connect('localhost', randomBytes(16), CLIENT, SERVER, clientConfig);
  const first = drainPackets(client, false);
  const srv = server(() => quiche.Connection.accept(randomBytes(16), null, SERVER, CLIENT, serverConfig));
  toServer(srv, first);
  for (let i = 0; i < 20 && !(client.isEstablished() && server(() => srv.isEstablished())); i++) {
    toClient(client, drainPackets(srv, true));
    toServer(srv, drainPackets(client, false));
  }
  if (!srv.isEstablished()) throw new Error('handshake did not complete');
  toClient(client, drainPackets(srv, true));
  return { client, srv };
}

const request = Buffer.alloc(64, 1);
const answer = Buffer.alloc(1024, 2);
const readBuf = Buffer.alloc(65536);

/** `n` requests, `inFlight` at a time, on client stream ids from `firstId`. */
function smallRequests(client: QuicheConnection, srv: QuicheConnection, firstId: number, n: number, inFlight: number): number {
  let id = firstId;
  for (let done = 0; done < n; done += inFlight) {
    const ids: number[] = [];
    for (let k = 0; k < inFlight; k++, id += 4) {
      client.streamSend(id, request, true);
      ids.push(id);
    }
    toServer(srv, drainPackets(client, false));
    server(() => {
      for (const sid of ids) {
        if (!srv.streamReadable(sid)) throw new Error(`stream ${sid} not readable`);
        while (srv.streamRecv(sid, readBuf) !== null);
        srv.streamSend(sid, answer, true);
      }
    });
    toClient(client, drainPackets(srv, true));
    for (const sid of ids) while (client.streamReadable(sid) && client.streamRecv(sid, readBuf) !== null);
    // The client's ACKs, as a real client sends them.
    toServer(srv, drainPackets(client, false));
  }
  return id;
}

/** 1 MiB on one server-written stream (a request of the client's opens it). */
function bulk(client: QuicheConnection, srv: QuicheConnection, id: number): void {
  client.streamSend(id, request, true);
  toServer(srv, drainPackets(client, false));
  server(() => {
    while (srv.streamRecv(id, readBuf) !== null);
  });
  const body = Buffer.alloc(1 << 20, 3);
  let sent = 0;
  while (sent < body.length || !client.streamFinished(id)) {
    if (sent < body.length) {
      const n = server(() => srv.streamSend(id, body.subarray(sent, sent + 65536), sent + 65536 >= body.length)) ?? 0;
      sent += n;
    }
    toClient(client, drainPackets(srv, true));
    while (client.streamReadable(id) && client.streamRecv(id, readBuf) !== null);
    toServer(srv, drainPackets(client, false));
  }
}

function measure(label: string, unit: string, units: number, run: () => void): number {
  // V8 settles first (same work, not counted).
  run();
  const perUnit: number[] = [];
  for (let r = 0; r < rounds; r++) {
    serverNs = 0n;
    run();
    perUnit.push(Number(serverNs) / 1000 / units);
  }
  perUnit.sort((a, b) => a - b);
  const median = perUnit[perUnit.length >> 1]!;
  process.stdout.write(`${label.padEnd(44)} ${median.toFixed(1).padStart(9)} µs per ${unit}  (min ${perUnit[0]!.toFixed(1)}, max ${perUnit.at(-1)!.toFixed(1)}, ${rounds} rounds)\n`);
  return median;
}

process.stdout.write(`quiche binding, server side only, in memory (node ${process.version})\n`);
measure('1 KiB answers, 32 in flight', 'request', 4000, () => {
  const { client, srv } = handshake();
  smallRequests(client, srv, 0, 4000, 32);
});
measure('1 MiB on one stream', 'MiB', 8, () => {
  const { client, srv } = handshake();
  for (let i = 0; i < 8; i++) bulk(client, srv, i * 4);
});
measure('handshake + one 1 KiB request', 'connection', 200, () => {
  for (let i = 0; i < 200; i++) {
    const { client, srv } = handshake();
    smallRequests(client, srv, 0, 1, 1);
    server(() => srv.close(true, 0x100, Buffer.alloc(0)));
    toClient(client, drainPackets(srv, true));
  }
});
