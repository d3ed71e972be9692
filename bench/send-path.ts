/**
 * `npx tsx bench/send-path.ts`: what one packet costs on the QUIC send path, piece by piece, so the
 * levers of issue 12 can be weighed before they are built.
 *
 * `npx tsx bench/send-path.ts compare [--rounds=N] CHECKOUT...`: the proxies of other built
 * checkouts (e.g. main from `git archive`, each started through its own test helper, so from its
 * own dist/) and this checkout's with quic.gso auto and off, side by side in front of one upstream (bench/upstream-server.ts), 1 worker
 * each. Every round samples each in turn (order rotating): proxy CPU per MiB for 10 × 1 MiB down on
 * one gtlsclient connection and for a 10 MiB gtlsclient upload, and proxy CPU per request for
 * 1 KiB, 32 in flight over 4 connections of our client, 2 s. Prints medians and ranges over the
 * rounds (default 10): on a shared machine short interleaved samples see the same background
 * load, long sequential runs do not. `--small-only`: only the 1 KiB row, so many more rounds fit
 * in the same time (its spread on a busy machine needs them); `--small-in-flight=N` its requests
 * in flight (default 32; e.g. 4 for the low-rate case, where each request costs its own wakeups);
 * `--small-seconds=S` its sample length
 * there (default 2).
 *
 * The micro part:
 *   - a koffi call into libc without a syscall (abs) and with the cheapest one (getpid), and a
 *     quiche call that has nothing to send (send() → null): the price of crossing into native code;
 *   - quiche's send() while a stream has data: packet build + encryption, per packet; and recv()
 *     of those packets on the other side (decryption, stream reassembly);
 *   - the kernel: 1350-byte datagrams to a loopback socket as one sendmmsg entry per packet, and
 *     as GSO (UDP_SEGMENT) entries of up to 48 segments, CPU (user + system) per packet.
 * Numbers are for comparing variants on one machine.
 */
import { fork } from 'node:child_process';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import koffi from 'koffi';
import { makeCert } from '../test/helpers/certs.js';
import { gtlsclient } from '../test/helpers/gtlsclient.js';
import { H3Client } from '../test/helpers/h3-client.js';
import { freeUdpPort, startProxy, type RunningProxy } from '../test/helpers/proxy.js';
import { startUpstream } from '../test/helpers/upstream.js';
import { quiche, type QuicheConnection } from '../src/proxy/quic/native.js';
import { AF_INET, SOCK_DGRAM, SOL_SOCKET, SO_RCVBUF, SO_SNDBUF, libc } from '../src/sys/libc.js';

const lib = koffi.load('libc.so.6');
const c_getpid = lib.func('int getpid(void)');
const c_abs = lib.func('int abs(int)');
const c_recvmmsg = lib.func('int recvmmsg(int fd, void *msgvec, unsigned int vlen, int flags, void *timeout)');

function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

function report(name: string, micros: number, n: number, unit = 'call'): void {
  console.log(`${name.padEnd(58)} ${((micros / n) * 1000).toFixed(0).padStart(7)} ns/${unit}`);
}

function koffiCall(): void {
  const n = 1_000_000;
  for (let i = 0; i < 10_000; i++) c_getpid();
  const t0 = cpuMicros();
  for (let i = 0; i < n; i++) c_getpid();
  report('koffi: getpid() (a syscall)', cpuMicros() - t0, n);
  const t1 = cpuMicros();
  for (let i = 0; i < n; i++) c_abs(-i);
  report('koffi: abs() (no syscall)', cpuMicros() - t1, n);
}

// ------------------------------------------------------------------ quiche

function quichePair(): { server: QuicheConnection; client: QuicheConnection } {
  const dir = mkdtempSync(path.join(tmpdir(), 'send-path-'));
  const cert = makeCert(dir, 'server', 'localhost');
  const common = (cfg: InstanceType<typeof quiche.Config>): void => {
    cfg.setApplicationProtos(['bench']);
    cfg.setMaxIdleTimeout(60_000);
    cfg.setMaxRecvUdpPayloadSize(1350);
    cfg.setMaxSendUdpPayloadSize(1350);
    cfg.setInitialMaxData(1 << 30);
    cfg.setInitialMaxStreamDataBidiLocal(1 << 30);
    cfg.setInitialMaxStreamDataBidiRemote(1 << 30);
    cfg.setInitialMaxStreamsBidi(100);
    cfg.verifyPeer(false);
    cfg.enablePacing(false);
  };
  const scfg = new quiche.Config();
  scfg.loadCertChainFromPemFile(cert.cert);
  scfg.loadPrivKeyFromPemFile(cert.key);
  common(scfg);
  const ccfg = new quiche.Config();
  common(ccfg);
  const sAddr = { host: '127.0.0.1', port: 443 };
  const cAddr = { host: '127.0.0.1', port: 50000 };
  const client = quiche.Connection.connect('localhost', Buffer.alloc(16, 1), cAddr, sAddr, ccfg);
  let server: QuicheConnection | undefined;
  const buf = Buffer.alloc(1350);
  for (let round = 0; round < 20 && !(client.isEstablished() && server?.isEstablished()); round++) {
    for (let r = client.send(buf); r; r = client.send(buf)) {
      server ??= quiche.Connection.accept(Buffer.alloc(16, 2), null, sAddr, cAddr, scfg);
      server.recv(buf.subarray(0, r[0]), { from: cAddr, to: sAddr });
    }
    for (let r = server!.send(buf); r; r = server!.send(buf)) client.recv(buf.subarray(0, r[0]), { from: sAddr, to: cAddr });
  }
  if (!server?.isEstablished()) throw new Error('handshake did not complete');
  return { server, client };
}

function quicheCalls(): void {
  const { server, client } = quichePair();
  const out = Buffer.alloc(1350);
  const n = 200_000;
  let t0 = cpuMicros();
  for (let i = 0; i < n; i++) server.send(out);
  report('quiche: send() with nothing to send (null)', cpuMicros() - t0, n);
  t0 = cpuMicros();
  for (let i = 0; i < n; i++) server.isClosed();
  report('quiche: isClosed()', cpuMicros() - t0, n);

  // Bulk: the server writes a stream; every packet is delivered and the client's ACKs returned.
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const packets: Buffer[] = [];
  let sendMicros = 0;
  let recvMicros = 0;
  let sent = 0;
  const recvBuf = Buffer.alloc(65536);
  while (sent < 20_000) {
    while (server.streamSend(1, chunk, false) === chunk.length && server.streamCapacity(1) > chunk.length);
    const t = cpuMicros();
    let burst = 0;
    for (let r = server.send(out); r; r = server.send(out)) {
      packets.push(Buffer.from(out.subarray(0, r[0])));
      burst++;
    }
    sendMicros += cpuMicros() - t;
    sent += burst;
    const info = { from: { host: '127.0.0.1', port: 443 }, to: { host: '127.0.0.1', port: 50000 } };
    const tr = cpuMicros();
    for (const p of packets) client.recv(p, info);
    recvMicros += cpuMicros() - tr;
    packets.length = 0;
    while (client.streamRecv(1, recvBuf));
    for (let r = client.send(out); r; r = client.send(out)) server.recv(Buffer.from(out.subarray(0, r[0])), { from: { host: '127.0.0.1', port: 50000 }, to: { host: '127.0.0.1', port: 443 } });
    if (burst === 0) server.onTimeout();
  }
  report('quiche: send() building a 1350-byte stream packet', sendMicros, sent, 'packet');
  report('quiche: recv() of a 1350-byte stream packet', recvMicros, sent, 'packet');
}

// ------------------------------------------------------------------ kernel

/** Buffers whose addresses went into kernel structs: kept reachable for the life of the bench. */
const retained: Buffer[] = [];

const SOL_UDP = 17;
const UDP_SEGMENT = 103;
const SIZE = 1350;

function udpSocket(port: number): number {
  const fd = libc.socket(AF_INET, SOCK_DGRAM, 0) as number;
  const v = Buffer.alloc(4);
  v.writeInt32LE(4 * 1024 * 1024);
  libc.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, v, 4);
  libc.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, v, 4);
  const sa = Buffer.alloc(16);
  sa.writeUInt16LE(AF_INET, 0);
  sa.writeUInt16BE(port, 2);
  sa.writeUInt32BE(0x7f000001, 4);
  if ((libc.bind(fd, sa, 16) as number) !== 0) throw new Error('bind failed');
  return fd;
}

/** Sends `perEntry`-segment entries (1 = plain datagrams) of 1350 bytes, 64 packets per sendmmsg. */
function kernelSends(perEntry: number, packetsPerCall: number): void {
  const sink = udpSocket(0);
  const name = Buffer.alloc(16);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(16);
  libc.getsockname(sink, name, len);
  const fd = udpSocket(0);
  const entries = Math.ceil(packetsPerCall / perEntry);
  const data = Buffer.allocUnsafeSlow(packetsPerCall * SIZE).fill(0x61);
  const iov = Buffer.alloc(entries * 16);
  const hdrs = Buffer.alloc(entries * 64);
  const cmsg = Buffer.alloc(entries * 24);
  for (let e = 0; e < entries; e++) {
    const segs = Math.min(perEntry, packetsPerCall - e * perEntry);
    iov.writeBigUInt64LE(koffi.address(data) + BigInt(e * perEntry * SIZE), e * 16);
    iov.writeBigUInt64LE(BigInt(segs * SIZE), e * 16 + 8);
    const h = e * 64;
    hdrs.writeBigUInt64LE(koffi.address(name), h);
    hdrs.writeUInt32LE(16, h + 8);
    hdrs.writeBigUInt64LE(koffi.address(iov) + BigInt(e * 16), h + 16);
    hdrs.writeBigUInt64LE(1n, h + 24);
    if (segs > 1) {
      cmsg.writeBigUInt64LE(18n, e * 24);
      cmsg.writeInt32LE(SOL_UDP, e * 24 + 8);
      cmsg.writeInt32LE(UDP_SEGMENT, e * 24 + 12);
      cmsg.writeUInt16LE(SIZE, e * 24 + 16);
      hdrs.writeBigUInt64LE(koffi.address(cmsg) + BigInt(e * 24), h + 32);
      hdrs.writeBigUInt64LE(24n, h + 40);
    }
  }
  retained.push(name, data, iov, hdrs, cmsg);
  // The sink is drained between timed blocks of ~512 packets, so the kernel delivers (as to a
  // reading client) instead of dropping at a full queue, and its reads are not counted. On loopback
  // the delivery up to the sink's queue runs in the sender's syscall and is counted.
  const rbuf = Buffer.alloc(65536);
  const callsPerBlock = Math.max(1, Math.floor(512 / packetsPerCall));
  let packets = 0;
  let micros = 0;
  for (let block = 0; block < 200; block++) {
    const t0 = cpuMicros();
    for (let i = 0; i < callsPerBlock; i++) {
      const n = libc.sendmmsg(fd, hdrs, entries, 0) as number;
      if (n !== entries) throw new Error(`sendmmsg sent ${n} of ${entries} (errno ${koffi.errno()})`);
    }
    micros += cpuMicros() - t0;
    packets += callsPerBlock * packetsPerCall;
    while ((libc.recv(sink, rbuf, rbuf.length, 0x40) as number) > 0);
  }
  report(`kernel: ${packetsPerCall} packets/call, ${perEntry === 1 ? 'one entry each' : `GSO ≤${perEntry} segments`}`, micros, packets, 'packet');
  libc.close(fd);
  libc.close(sink);
}



// ------------------------------------------------------------------ receive (issue 12, step 5)

/** Fills `fd`'s peer with `n` datagrams of `size` bytes from a plain socket (64 per sendmmsg). */
function blaster(toPort: number): (n: number, size: number) => void {
  const fd = udpSocket(0);
  const name = Buffer.alloc(16);
  name.writeUInt16LE(AF_INET, 0);
  name.writeUInt16BE(toPort, 2);
  name.writeUInt32BE(0x7f000001, 4);
  const data = Buffer.allocUnsafeSlow(64 * 1350).fill(0x62);
  const iov = Buffer.alloc(64 * 16);
  const hdrs = Buffer.alloc(64 * 64);
  for (let i = 0; i < 64; i++) {
    iov.writeBigUInt64LE(koffi.address(data) + BigInt(i * 1350), i * 16);
    hdrs.writeBigUInt64LE(koffi.address(name), i * 64);
    hdrs.writeUInt32LE(16, i * 64 + 8);
    hdrs.writeBigUInt64LE(koffi.address(iov) + BigInt(i * 16), i * 64 + 16);
    hdrs.writeBigUInt64LE(1n, i * 64 + 24);
  }
  retained.push(name, data, iov, hdrs);
  return (n, size) => {
    for (let i = 0; i < 64; i++) iov.writeBigUInt64LE(BigInt(size), i * 16 + 8);
    for (let sent = 0; sent < n; ) {
      const k = libc.sendmmsg(fd, hdrs, Math.min(64, n - sent), 0) as number;
      if (k < 0) throw new Error(`sendmmsg failed (errno ${koffi.errno()})`);
      sent += k;
    }
  };
}

/**
 * CPU per datagram of taking `batch` queued datagrams off a socket: with dgram ('message' per
 * datagram, what the endpoint does), and with recvmmsg(2) into preallocated slots (what a batch
 * reader would do), each datagram then handed on as a view plus a cached {host, port}. The send
 * side is not counted (measured apart, before the reads).
 */
async function receiveCosts(batch: number, size: number): Promise<void> {
  const rounds = Math.ceil(20_000 / batch);
  // dgram
  const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 * 1024 * 1024 });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  const blast = blaster(sock.address().port);
  let got = 0;
  let want = 0;
  let wake: (() => void) | undefined;
  let bytes = 0;
  sock.on('message', (m, rinfo) => {
    bytes += m.length + rinfo.port;
    if (++got === want) wake?.();
  });
  let micros = 0;
  for (let r = 0; r < rounds; r++) {
    want = got + batch;
    const arrived = new Promise<void>((resolve) => (wake = resolve));
    blast(batch, size);
    const t0 = cpuMicros();
    await arrived;
    micros += cpuMicros() - t0;
  }
  sock.close();
  report(`receive: dgram 'message', ${batch} queued × ${size} B`, micros, rounds * batch, 'datagram');

  // recvmmsg, the socket drained until EAGAIN
  const fd = udpSocket(0);
  const name = Buffer.alloc(16);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(16);
  libc.getsockname(fd, name, len);
  const blast2 = blaster(name.readUInt16BE(2));
  const slots = 64;
  const slotSize = 1500;
  const data = Buffer.allocUnsafeSlow(slots * slotSize);
  const views = Array.from({ length: slots }, (_, i) => data.subarray(i * slotSize, (i + 1) * slotSize));
  const iov = Buffer.alloc(slots * 16);
  const names = Buffer.alloc(slots * 28);
  const hdrs = Buffer.alloc(slots * 64);
  for (let i = 0; i < slots; i++) {
    iov.writeBigUInt64LE(koffi.address(data) + BigInt(i * slotSize), i * 16);
    iov.writeBigUInt64LE(BigInt(slotSize), i * 16 + 8);
    hdrs.writeBigUInt64LE(koffi.address(names) + BigInt(i * 28), i * 64);
    hdrs.writeBigUInt64LE(koffi.address(iov) + BigInt(i * 16), i * 64 + 16);
    hdrs.writeBigUInt64LE(1n, i * 64 + 24);
  }
  retained.push(data, iov, names, hdrs);
  const peers = new Map<number, { host: string; port: number }>();
  micros = 0;
  for (let r = 0; r < rounds; r++) {
    blast2(batch, size);
    const t0 = cpuMicros();
    let left = batch;
    for (let spins = 0; left > 0; spins++) {
      if (spins > 1_000_000) throw new Error(`recvmmsg: ${left} of ${batch} datagrams never arrived (errno ${koffi.errno()})`);
      for (let i = 0; i < slots; i++) hdrs.writeUInt32LE(28, i * 64 + 8); // msg_namelen in/out
      const n = c_recvmmsg(fd, hdrs, slots, 0x40, null) as number;
      if (n <= 0) continue;
      for (let i = 0; i < n; i++) {
        const got = hdrs.readUInt32LE(i * 64 + 56);
        const key = names.readUInt32BE(i * 28 + 4) * 65536 + names.readUInt16BE(i * 28 + 2);
        let peer = peers.get(key);
        if (!peer) peers.set(key, (peer = { host: '127.0.0.1', port: names.readUInt16BE(i * 28 + 2) }));
        bytes += views[i]!.subarray(0, got).length + peer.port;
      }
      left -= n;
    }
    // One more call finds the queue empty (EAGAIN), as a reader woken by readiness would.
    c_recvmmsg(fd, hdrs, slots, 0x40, null);
    micros += cpuMicros() - t0;
  }
  libc.close(fd);
  report(`receive: recvmmsg ≤${slots}, ${batch} queued × ${size} B`, micros, rounds * batch, 'datagram');
  if (bytes < 0) console.log(bytes);
}

// ------------------------------------------------------------------ the proxy, end to end

/** utime + stime of the master and its workers, in microseconds (/proc; 100 Hz clock ticks). */
function proxyCpuMicros(masterPid: number): number {
  const { user, system } = proxyCpuSplit(masterPid);
  return user + system;
}

/** The same, split: user (JS, quiche, libc) and system (the kernel: syscalls, the loopback path). */
function proxyCpuSplit(masterPid: number): { user: number; system: number } {
  const children = readFileSync(`/proc/${masterPid}/task/${masterPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  let user = 0;
  let system = 0;
  for (const pid of [masterPid, ...children]) {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    user += Number(fields[11]) * 10_000;
    system += Number(fields[12]) * 10_000;
  }
  return { user, system };
}

async function smallRequests(port: number, inFlight: number, durationMs: number): Promise<number> {
  const clients = await Promise.all(Array.from({ length: 4 }, () => H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' })));
  let done = 0;
  const deadline = performance.now() + durationMs;
  await Promise.all(
    Array.from({ length: inFlight }, async (_, i) => {
      while (performance.now() < deadline) {
        const r = await clients[i % clients.length]!.get('localhost', '/bytes?n=1024');
        if (r.status !== 200) throw new Error(`status ${r.status}`);
        done++;
      }
    }),
  );
  await Promise.all(clients.map((c) => c.close()));
  return done;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** What one sample measures, and its unit. */
const METRICS = {
  downCpu: 'ms CPU/MiB down',
  downSys: 'ms system CPU/MiB down (the kernel part of the above)',
  downRate: 'MB/s down',
  upCpu: 'ms CPU/MiB up',
  smallCpu: 'µs CPU/req 1 KiB',
  smallRate: 'req/s 1 KiB',
} as const;
type Metric = keyof typeof METRICS;

interface Variant {
  readonly name: string;
  readonly proxy: RunningProxy;
  readonly port: number;
  readonly samples: Record<Metric, number[]>;
}

/**
 * The proxies of the other checkouts (each started through its own test helper, so from its own
 * dist/) and this one's with gso auto and off, all running at once in front of the same upstreams;
 * then short samples of each in turn, the order rotating every round, so each sees the same
 * background load: 10 × 1 MiB down on one gtlsclient connection, one 10 MiB upload from gtlsclient
 * (to test/helpers/upstream.ts /echo, which reads and hashes it), and 2 s of 1 KiB requests, 32 in
 * flight over 4 connections of our client.
 */
async function compare(others: readonly string[], rounds: number, smallOnly: boolean, smallSeconds: number, smallInFlight = 32): Promise<void> {
  const upstream = fork(new URL('./upstream-server.ts', import.meta.url).pathname, [], { execArgv: ['--import', 'tsx'] });
  const upstreamPort = await new Promise<number>((resolve) => upstream.once('message', (m) => resolve((m as { port: number }).port)));
  const echo = await startUpstream('echo');
  const uploadFile = path.join(mkdtempSync(path.join(tmpdir(), 'send-path-')), 'upload.bin');
  writeFileSync(uploadFile, randomBytes(10 * 1024 * 1024));
  const config = (port: number, gso: string | undefined): string => `
listeners: ["127.0.0.1:${port}"]
workers: 1
tls: { state_dir: state }
routes:
  - path: /echo
    upstream: echo
  - upstream: app
upstreams:
  app: { targets: ["http://127.0.0.1:${upstreamPort}"], max_connections: 64 }
  echo: { targets: ["${echo.origin}"] }
quic: { initial_max_data: 64MiB, initial_max_stream_data: 8MiB${gso ? `, gso: ${gso}` : ''} }
logging: { level: info, access_log: false }
`;
  const variants: Variant[] = [];
  const starters: Array<[string, typeof startProxy, string | undefined]> = [];
  for (const dir of others) {
    const helpers = (await import(path.join(path.resolve(dir), 'test/helpers/proxy.ts'))) as { startProxy: typeof startProxy };
    starters.push([path.basename(path.resolve(dir)), helpers.startProxy, undefined]);
  }
  starters.push(['this, gso auto', startProxy, 'auto'], ['this, gso off', startProxy, 'off']);
  for (const [name, start, gso] of starters) {
    const port = await freeUdpPort();
    const samples = Object.fromEntries(Object.keys(METRICS).map((k) => [k, []])) as unknown as Record<Metric, number[]>;
    variants.push({ name, port, proxy: await start(config(port, gso)), samples });
  }
  const download = `/bytes?n=${1024 * 1024}`;
  try {
    for (const v of variants) {
      if (smallOnly) {
        await smallRequests(v.port, 32, 1000);
        continue;
      }
      await gtlsclient('127.0.0.1', v.port, [`https://localhost:${v.port}${download}`], { requests: 5, timeoutMs: 60_000 });
      await gtlsclient('127.0.0.1', v.port, [`https://localhost:${v.port}/echo`], { method: 'POST', dataFile: uploadFile, timeoutMs: 60_000 });
      await smallRequests(v.port, 32, 1000);
    }
    const bulk = 10;
    for (let round = 0; round < rounds; round++) {
      const order = variants.map((_, i) => variants[(i + round) % variants.length]!);
      for (const v of order) {
        const pid = v.proxy.proc.pid!;
        if (smallOnly) {
          const cpu0 = proxyCpuMicros(pid);
          const requests = await smallRequests(v.port, smallInFlight, smallSeconds * 1000);
          v.samples.smallCpu.push((proxyCpuMicros(pid) - cpu0) / requests);
          v.samples.smallRate.push(requests / smallSeconds);
          continue;
        }
        const split0 = proxyCpuSplit(pid);
        let cpu0 = split0.user + split0.system;
        const t0 = performance.now();
        const r = await gtlsclient('127.0.0.1', v.port, [`https://localhost:${v.port}${download}`], { requests: bulk, timeoutMs: 120_000 });
        const secs = (performance.now() - t0) / 1000;
        const ok = r.statuses.filter((st) => st === 200).length;
        if (ok !== bulk) throw new Error(`${v.name}: ${bulk - ok} of ${bulk} downloads failed`);
        v.samples.downCpu.push((proxyCpuMicros(pid) - cpu0) / 1000 / ok);
        v.samples.downSys.push((proxyCpuSplit(pid).system - split0.system) / 1000 / ok);
        v.samples.downRate.push((ok * 1024 * 1024) / secs / 1e6);
        cpu0 = proxyCpuMicros(pid);
        const up = await gtlsclient('127.0.0.1', v.port, [`https://localhost:${v.port}/echo`], { method: 'POST', dataFile: uploadFile, timeoutMs: 120_000 });
        if (up.statuses[0] !== 200) throw new Error(`${v.name}: upload failed`);
        v.samples.upCpu.push((proxyCpuMicros(pid) - cpu0) / 1000 / 10);
        cpu0 = proxyCpuMicros(pid);
        const requests = await smallRequests(v.port, 32, 2000);
        v.samples.smallCpu.push((proxyCpuMicros(pid) - cpu0) / requests);
        v.samples.smallRate.push(requests / 2);
      }
      const load = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
      const small = variants.map((v) => `${v.name} ${v.samples.smallCpu.at(-1)!.toFixed(0)}`).join(', ');
      console.log(`round ${round + 1}/${rounds} done, load ${load}; µs CPU/req 1 KiB: ${small}`);
    }
  } finally {
    for (const v of variants) await v.proxy.stop();
    upstream.kill();
    await echo.close();
  }
  // Each round's variants saw the same background load: their ratio to the first is steadier than
  // either figure alone when the load swings.
  if (variants.length > 1) {
    console.log(`\n1 KiB CPU/req against ${variants[0]!.name}, per round: median [min..max] of the ratios`);
    const base = variants[0]!.samples.smallCpu;
    for (const v of variants.slice(1)) {
      const ratios = v.samples.smallCpu.map((x, i) => x / base[i]!);
      console.log(`  ${v.name.padEnd(16)} ${median(ratios).toFixed(2).padStart(8)}  [${Math.min(...ratios).toFixed(2)}..${Math.max(...ratios).toFixed(2)}]`);
    }
  }
  console.log(`\nmedian [min..max] of ${rounds} rounds`);
  for (const [metric, unit] of Object.entries(METRICS) as Array<[Metric, string]>) {
    console.log(unit);
    for (const v of variants) {
      const xs = v.samples[metric];
      if (xs.length === 0) continue;
      const digits = metric === 'smallCpu' || metric === 'smallRate' ? 0 : 1;
      console.log(`  ${v.name.padEnd(16)} ${median(xs).toFixed(digits).padStart(8)}  [${Math.min(...xs).toFixed(digits)}..${Math.max(...xs).toFixed(digits)}]`);
    }
  }
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'compare') {
  const rounds = Number(rest.find((a) => a.startsWith('--rounds='))?.slice('--rounds='.length) ?? 10);
  await compare(
    rest.filter((a) => !a.startsWith('--')),
    rounds,
    rest.includes('--small-only'),
    Number(rest.find((a) => a.startsWith('--small-seconds='))?.slice('--small-seconds='.length) ?? 2),
    Number(rest.find((a) => a.startsWith('--small-in-flight='))?.slice('--small-in-flight='.length) ?? 32),
  );
} else if (mode === 'receive') {
  for (const batch of [1, 4, 32]) await receiveCosts(batch, 60);
  await receiveCosts(32, 1350);
} else {
  koffiCall();
  quicheCalls();
  for (const perCall of [1, 8, 64]) {
    kernelSends(1, perCall);
    if (perCall > 1) kernelSends(Math.min(perCall, 48), perCall);
  }
  kernelSends(1, 256);
  kernelSends(48, 256);
  for (const batch of [1, 4, 32]) await receiveCosts(batch, 60);
  await receiveCosts(32, 1350);
}
