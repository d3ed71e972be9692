/**
 * `npx tsx bench/send-path.ts`: what one packet costs on the QUIC send path, piece by piece, so the
 * levers of issue 12 can be weighed before they are built:
 *   - a koffi call that does nothing in the kernel (getpid), and a quiche call that has nothing to
 *     send (send() → null): the price of crossing into native code from JS;
 *   - quiche's send() while a stream has data: packet build + encryption, per packet;
 *   - the kernel: 1350-byte datagrams to a loopback socket as one sendmmsg entry per packet, and
 *     as GSO (UDP_SEGMENT) entries of up to 48 segments, CPU (user + system) per packet.
 * Numbers are for comparing variants on one machine.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import koffi from 'koffi';
import { makeCert } from '../test/helpers/certs.js';
import { quiche, type QuicheConnection } from '../src/proxy/quic/native.js';
import { AF_INET, SOCK_DGRAM, SOL_SOCKET, SO_RCVBUF, SO_SNDBUF, libc } from '../src/sys/libc.js';

const lib = koffi.load('libc.so.6');
const c_getpid = lib.func('int getpid(void)');
const c_abs = lib.func('int abs(int)');

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
    for (const p of packets) client.recv(p, { from: { host: '127.0.0.1', port: 443 }, to: { host: '127.0.0.1', port: 50000 } });
    packets.length = 0;
    while (client.streamRecv(1, recvBuf));
    for (let r = client.send(out); r; r = client.send(out)) server.recv(Buffer.from(out.subarray(0, r[0])), { from: { host: '127.0.0.1', port: 50000 }, to: { host: '127.0.0.1', port: 443 } });
    if (burst === 0) server.onTimeout();
  }
  report('quiche: send() building a 1350-byte stream packet', sendMicros, sent, 'packet');
}

// ------------------------------------------------------------------ kernel

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

koffiCall();
quicheCalls();
for (const perCall of [1, 8, 64]) {
  kernelSends(1, perCall);
  if (perCall > 1) kernelSends(Math.min(perCall, 48), perCall);
}
kernelSends(1, 256);
kernelSends(48, 256);
