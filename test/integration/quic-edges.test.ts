/**
 * QUIC endpoint behaviour at the edges, against the real proxy: Version Negotiation for an
 * unknown version, stateless reset (with the token for the CID) for a packet of no known
 * connection and none for one too short, the TLS no_application_protocol alert for a client
 * without h3 (one certificate and two), disable_active_migration unless quic.active_migration is
 * on, and a client that moves to a new port whose path validation fails.
 */
import { createCipheriv, hkdfSync, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCert } from '../helpers/certs.js';
import { datagramFuzzer } from '../helpers/datagram-fuzz.js';
import { waitUntil } from '../helpers/deadline.js';
import { gtlsclient } from '../helpers/gtlsclient.js';
import { H3Client } from '../helpers/h3-client.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { freeUdpPort, makeTempDir, startProxy, workerPids, type RunningProxy } from '../helpers/proxy.js';

enterPrivateNetns();

/** TLS alert no_application_protocol (120) as a QUIC crypto error (0x100 + alert). */
const NO_APPLICATION_PROTOCOL = 0x178;

/** Reserved for negotiation tests (RFC 9000 §15): the proxy answers it with Version Negotiation. */
const UNKNOWN_VERSION = 0x1a2a3a4a;

/** 1200 bytes of an unknown version: always answered, with a Version Negotiation whose DCID is `scid`. */
function versionProbe(scid: Buffer): Buffer {
  const pkt = Buffer.alloc(1200);
  pkt[0] = 0xc0;
  pkt.writeUInt32BE(UNKNOWN_VERSION, 1);
  pkt[5] = 0; // empty DCID
  pkt[6] = scid.length;
  scid.copy(pkt, 7);
  return pkt;
}

function answersProbe(reply: Buffer, scid: Buffer): boolean {
  return reply.length >= 6 + scid.length && reply.readUInt32BE(1) === 0 && reply[5] === scid.length && reply.subarray(6, 6 + scid.length).equals(scid);
}

/**
 * The stateless reset token the proxy gives `cid` on `listener` (RFC 9000 §10.3.2): AES-128 of the
 * zero-padded CID (CBC-MAC over two blocks past 16 bytes) under a per-listener, per-CID-length key,
 * HKDF of the shared reset key (itself HKDF of the state dir's ticket key) with the listener's
 * address and the CID length.
 */
function resetToken(dir: string, listener: { host: string; port: number }, cid: Buffer): Buffer {
  const ticketKey = readFileSync(path.join(dir, 'state', 'ticket.key'));
  const resetKey = Buffer.from(hkdfSync('sha256', ticketKey, Buffer.alloc(0), 'udpgrm-proxy stateless reset', 32));
  const listenerKey = Buffer.from(hkdfSync('sha256', resetKey, Buffer.alloc(0), `udpgrm-proxy reset listener ${listener.host} ${listener.port} cid ${cid.length}`, 16));
  return aesCbcMac(listenerKey, cid);
}

function aesCbcMac(key: Buffer, cid: Buffer): Buffer {
  const padded = Buffer.alloc(cid.length <= 16 ? 16 : 32);
  cid.copy(padded);
  const cipher = createCipheriv('aes-128-cbc', key, Buffer.alloc(16)).setAutoPadding(false);
  const out = Buffer.concat([cipher.update(padded), cipher.final()]);
  return out.subarray(out.length - 16);
}

async function udpSocket(): Promise<dgram.Socket> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  return sock;
}

/**
 * Sends one datagram, then a probe the proxy always answers, and resolves with the first reply, or
 * undefined when the probe's answer comes first. The worker reads datagrams in order and sends
 * stateless replies at once, so the answer to `datagram` precedes the probe's: silence is known
 * from an event, not from a timeout.
 */
async function exchange(port: number, datagram: Buffer): Promise<Buffer | undefined> {
  const sock = await udpSocket();
  const marker = randomBytes(8);
  try {
    return await new Promise<Buffer | undefined>((resolve) => {
      sock.on('message', (m) => resolve(answersProbe(m, marker) ? undefined : m));
      sock.send(datagram, port, '127.0.0.1', () => sock.send(versionProbe(marker), port, '127.0.0.1'));
    });
  } finally {
    sock.close();
  }
}

/**
 * Sends a probe every 100 ms until one is answered (a flood can fill the socket buffer and lose
 * some): true on the first answer, false if none of `tries` is.
 */
async function probeUntilAnswered(port: number, tries = 100): Promise<boolean> {
  const sock = await udpSocket();
  const marker = randomBytes(8);
  let timer: NodeJS.Timeout | undefined;
  try {
    return await new Promise<boolean>((resolve) => {
      sock.on('message', (m) => {
        if (answersProbe(m, marker)) resolve(true);
      });
      let sent = 0;
      const send = (): void => {
        if (sent++ === tries) return resolve(false);
        sock.send(versionProbe(marker), port, '127.0.0.1');
        timer = setTimeout(send, 100);
      };
      send();
    });
  } finally {
    clearTimeout(timer);
    sock.close();
  }
}

describe('QUIC endpoint edges', () => {
  let single: RunningProxy;
  let multi: RunningProxy;
  let dual: RunningProxy;
  let singlePort: number;
  let multiPort: number;
  let dualPort: number;

  beforeAll(async () => {
    singlePort = await freeUdpPort();
    single = await startProxy(`
listeners: ["127.0.0.1:${singlePort}"]
workers: 1
tls: { state_dir: state }
routes: [{ path: /, respond: { status: 200 } }]
`);
    const dir = makeTempDir();
    const certs = ['a', 'b'].map((n) => makeCert(dir, n, `${n}.test`));
    multiPort = await freeUdpPort();
    multi = await startProxy(
      `
listeners: ["127.0.0.1:${multiPort}"]
workers: 1
tls:
  state_dir: state
  certificates:
    - { names: [a.test], cert: ${certs[0]!.cert}, key: ${certs[0]!.key} }
    - { names: [b.test], cert: ${certs[1]!.cert}, key: ${certs[1]!.key} }
quic: { active_migration: true }
routes: [{ path: /, respond: { status: 200 } }]
`,
      { dir },
    );
    // Two listeners in one worker (two CID tables); debug logs show each closed connection's peer.
    dualPort = await freeUdpPort();
    dual = await startProxy(`
listeners: ["127.0.0.1:${dualPort}", "[::1]:${dualPort}"]
workers: 1
tls: { state_dir: state }
quic: { idle_timeout: 1s }
logging: { level: debug }
routes: [{ path: /, respond: { status: 200 } }]
`);
  });

  afterAll(async () => {
    await single?.stop();
    await multi?.stop();
    await dual?.stop();
  });

  it('answers an unknown version with Version Negotiation listing QUIC v1', async () => {
    const dcid = randomBytes(8);
    const scid = randomBytes(8);
    // Long header with version 0x1a2a3a4a (reserved for negotiation tests), padded to 1200 bytes.
    const pkt = Buffer.alloc(1200);
    pkt[0] = 0xc0;
    pkt.writeUInt32BE(0x1a2a3a4a, 1);
    pkt[5] = dcid.length;
    dcid.copy(pkt, 6);
    pkt[14] = scid.length;
    scid.copy(pkt, 15);
    const reply = await exchange(singlePort, pkt);
    expect(reply).toBeDefined();
    expect(reply![0]! & 0x80).toBe(0x80);
    expect(reply!.readUInt32BE(1)).toBe(0); // version 0 = Version Negotiation (RFC 9000 §17.2.1)
    // The reply's DCID is our SCID and its SCID is our DCID.
    expect(reply![5]).toBe(scid.length);
    expect(reply!.subarray(6, 6 + scid.length)).toEqual(scid);
    const versions = [];
    for (let o = 6 + scid.length + 1 + dcid.length; o + 4 <= reply!.length; o += 4) versions.push(reply!.readUInt32BE(o));
    expect(versions).toContain(1);
  });

  it('answers Version Negotiation for the invariants\' largest CIDs without losing the worker', async () => {
    // RFC 8999 allows CIDs of up to 255 bytes in a long header of an unknown version; the reply
    // echoes both, so it needs more than 256 bytes. The connection opened before must survive.
    const client = await H3Client.connect({ host: '127.0.0.1', port: singlePort, sni: 'localhost' });
    try {
      for (const [dcidLen, scidLen] of [
        [20, 255],
        [255, 255],
        [0, 0],
      ] as const) {
        const dcid = randomBytes(dcidLen);
        const scid = randomBytes(scidLen);
        const pkt = randomBytes(1200);
        pkt[0] = 0xc0 | (pkt[0]! & 0x3f);
        pkt.writeUInt32BE(0x1a2a3a4a, 1);
        pkt[5] = dcidLen;
        dcid.copy(pkt, 6);
        pkt[6 + dcidLen] = scidLen;
        scid.copy(pkt, 7 + dcidLen);
        const reply = await exchange(singlePort, pkt);
        expect(reply, `reply to dcid ${dcidLen} / scid ${scidLen}`).toBeDefined();
        expect(reply!.readUInt32BE(1)).toBe(0);
        expect(reply![5]).toBe(scidLen);
        expect(reply!.subarray(6, 6 + scidLen)).toEqual(scid);
        expect(reply![6 + scidLen]).toBe(dcidLen);
        expect(reply!.subarray(7 + scidLen, 7 + scidLen + dcidLen)).toEqual(dcid);
        expect(reply!.length).toBeLessThanOrEqual(pkt.length);
      }
      expect((await client.get('localhost', '/')).status).toBe(200);
      expect(single.logs.filter((l) => l.msg === 'worker died; restarting it on the same sockets')).toEqual([]);
    } finally {
      await client.close();
    }
  });

  it('keeps every worker and its connections through random and mutated datagrams', async () => {
    for (const [port, sni, seed] of [
      [singlePort, 'localhost', 1],
      [multiPort, 'a.test', 2],
    ] as const) {
      const client = await H3Client.connect({ host: '127.0.0.1', port, sni });
      const sock = dgram.createSocket('udp4');
      await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
      try {
        const next = datagramFuzzer(seed);
        for (let batch = 0; batch < 50; batch++) {
          await Promise.all(
            Array.from({ length: 200 }, () => new Promise<void>((r) => sock.send(next(), port, '127.0.0.1', () => r()))),
          );
        }
        // The worker handles datagrams in order: an answer to a probe sent last means it read the
        // flood (a probe may also be lost to a full socket buffer, so ask again until answered).
        expect(await probeUntilAnswered(port)).toBe(true);
        expect((await client.get(sni, '/')).status).toBe(200);
      } finally {
        sock.close();
        await client.close();
      }
    }
    for (const p of [single, multi]) expect(p.logs.filter((l) => l.msg === 'worker died; restarting it on the same sockets')).toEqual([]);
  });

  it('answers a short-header packet of no known connection with a stateless reset', async () => {
    // A short header whose DCID has our CID length (16) but was never issued.
    const dcid = randomBytes(16);
    const pkt = Buffer.concat([Buffer.from([0x40]), dcid, randomBytes(60)]);
    const reply = await exchange(singlePort, pkt);
    expect(reply).toBeDefined();
    // RFC 9000 §10.3: looks like a short header, at least 21 bytes, smaller than what triggered it.
    expect(reply![0]! & 0xc0).toBe(0x40);
    expect(reply!.length).toBeGreaterThanOrEqual(21);
    expect(reply!.length).toBeLessThan(pkt.length);
    // It ends with the token any worker would issue for that CID (RFC 9000 §10.3.2): AES-128 of the
    // CID under a key derived from the state directory's ticket key (as the proxy derives it).
    const token = resetToken(single.dir, { host: '127.0.0.1', port: singlePort }, dcid);
    expect(reply!.subarray(reply!.length - 16).toString('hex')).toBe(token.toString('hex'));
  });

  it('answers a live CID of one listener sent to another without that connection\'s reset token', async () => {
    // RFC 9000 §21.11: each listener has its own CID table, so [::1] does not know a connection
    // of 127.0.0.1 and answers with a reset. It must not carry the token valid for that
    // connection, or anyone who sees a CID could kill it.
    const client = await H3Client.connect({ host: '127.0.0.1', port: dualPort, sni: 'localhost' });
    try {
      expect((await client.get('localhost', '/')).status).toBe(200);
      const cid = client.serverCid;
      expect(cid.length).toBe(16);
      const sock = dgram.createSocket('udp6');
      await new Promise<void>((r) => sock.bind(0, '::1', () => r()));
      let reply: Buffer;
      try {
        reply = await new Promise<Buffer>((resolve) => {
          sock.once('message', (m) => resolve(m));
          sock.send(Buffer.concat([Buffer.from([0x40]), cid, randomBytes(60)]), dualPort, '::1');
        });
      } finally {
        sock.close();
      }
      const got = reply.subarray(reply.length - 16).toString('hex');
      const ticketKey = readFileSync(path.join(dual.dir, 'state', 'ticket.key'));
      const sharedKey = Buffer.from(hkdfSync('sha256', ticketKey, Buffer.alloc(0), 'udpgrm-proxy stateless reset', 32));
      // Neither the token the IPv4 listener gives this CID, nor one shared by every listener.
      expect(got).not.toBe(resetToken(dual.dir, { host: '127.0.0.1', port: dualPort }, cid).toString('hex'));
      expect(got).not.toBe(aesCbcMac(sharedKey.subarray(0, 16), cid).toString('hex'));
      // It is [::1]'s own token for that CID (valid only for connections [::1] issued it to).
      expect(got).toBe(resetToken(dual.dir, { host: '::1', port: dualPort }, cid).toString('hex'));
      // And the connection lives on.
      expect((await client.get('localhost', '/')).status).toBe(200);
    } finally {
      await client.close();
    }
  });

  it('keeps the peer address of a connection when a garbage packet carries its CID from elsewhere', async () => {
    // quiche's recv succeeds for a packet it cannot decrypt: such a datagram must not move the
    // address the connection reports (X-Forwarded-For, logs). The client then goes silent, so the
    // last address the proxy holds is what its idle timeout logs.
    const client = await H3Client.connect({ host: '127.0.0.1', port: dualPort, sni: 'localhost' });
    expect((await client.get('localhost', '/')).status).toBe(200);
    const cid = client.serverCid;
    const clientPort = client.localAddress.port;
    client.abandon();
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.2', () => r()));
    try {
      await new Promise<void>((r) => sock.send(Buffer.concat([Buffer.from([0x40]), cid, randomBytes(80)]), dualPort, '127.0.0.1', () => r()));
    } finally {
      sock.close();
    }
    const closed = await dual.waitForLog((l) => l.msg === 'connection closed' && (l.peer as { port?: number } | undefined)?.port === clientPort, 10_000).catch(() => undefined);
    const moved = await dual.waitForLog((l) => l.msg === 'connection closed' && (l.peer as { host?: string } | undefined)?.host === '127.0.0.2', 1).catch(() => undefined);
    expect(moved).toBeUndefined();
    expect(closed?.peer).toEqual({ host: '127.0.0.1', port: clientPort });
  });

  it('sends no stateless reset to a packet too short to be answered by a shorter one', async () => {
    // RFC 9000 §10.3: a reset must be smaller than what triggered it and at least 21 bytes, so a
    // 21-byte short header (our 16-byte CID length) gets nothing: no reset loop between endpoints.
    const pkt = Buffer.concat([Buffer.from([0x40]), randomBytes(16), randomBytes(4)]);
    expect(await exchange(singlePort, pkt)).toBeUndefined();
  });

  it('tells clients not to move to a new address of their own accord unless quic.active_migration is on', async () => {
    const announced = async (p: number, sni: string): Promise<string[]> => {
      const r = await gtlsclient('127.0.0.1', p, [`https://${sni}:${p}/`], { sni, keepLog: /remote transport_parameters disable_active_migration=/ });
      expect(r.statuses).toEqual([200]);
      return [...r.output.matchAll(/disable_active_migration=(\d)/g)].map((m) => m[1]!);
    };
    expect(await announced(singlePort, 'localhost')).toEqual(['1']);
    // Set per certificate's TLS context: both of a multi-certificate listener's carry it.
    expect(await announced(multiPort, 'a.test')).toEqual(['0']);
    expect(await announced(multiPort, 'b.test')).toEqual(['0']);
  });

  it('keeps a connection whose client moved to a new port and left the path validation unanswered', async () => {
    // A client that moves despite disable_active_migration (the flag only asks), or a NAT that
    // rebinds, meets the same path handling.
    // Chromium moves to a new port when its path degrades (a loaded server) and may leave the
    // proxy's PATH_CHALLENGE unanswered. quiche then fails the new path (lost challenges, or its
    // 3x allowance ran out) and falls back to the old one; the next non-probing packet from the
    // new port makes the failed path active again, and one more read before a new challenge went
    // out closed the connection with PROTOCOL_VIOLATION (0xa).
    const client = await H3Client.connect({ host: '127.0.0.1', port: singlePort, sni: 'localhost', zeroLengthCid: true });
    try {
      expect((await client.get('localhost', '/')).status).toBe(200);
      await waitUntil('a spare CID of the proxy (moving needs one)', () => client.spareServerCids > 0, { timeoutMs: 10_000 });
      const oldPort = client.localAddress.port;
      let answersLost = true;
      let heardOnNew = false;
      let fellBack = false;
      client.filterInbound = (local) => {
        if (local.port === oldPort) {
          fellBack ||= heardOnNew;
          return true;
        }
        // Once the proxy uses the new port, the path stalls both ways: its packets are lost and
        // ours wait, so the first ones it reads from the new port after falling back come at once.
        if (!heardOnNew) client.holdOutbound();
        heardOnNew = true;
        return !answersLost;
      };
      await client.migrate();
      const responses = [client.get('localhost', '/moved')];
      await waitUntil('the proxy to fall back to the old port', () => fellBack, { timeoutMs: 30_000 });
      responses.push(client.get('localhost', '/again'), client.get('localhost', '/once-more'));
      // The worker is stopped while the held packets arrive, so it reads them in one go.
      const [worker] = workerPids(single.proc.pid!);
      process.kill(worker!, 'SIGSTOP');
      try {
        expect(await client.releaseOutbound()).toBeGreaterThanOrEqual(2);
      } finally {
        answersLost = false;
        process.kill(worker!, 'SIGCONT');
      }
      for (const res of await Promise.all(responses)) expect(res.status).toBe(200);
      expect(client.peerError).toBeNull();
    } finally {
      // Not close(): its draining period (3 PTOs) follows RTT samples of seconds from the held
      // packets. The proxy times the connection out.
      client.abandon();
    }
  });

  it('refuses a client without h3 with the no_application_protocol alert', async () => {
    for (const [port, sni] of [
      [singlePort, 'localhost'],
      [multiPort, 'a.test'],
    ] as const) {
      await expect(H3Client.connect({ host: '127.0.0.1', port, sni, alpn: ['hq-interop'] })).rejects.toThrow(
        new RegExp(`0x${NO_APPLICATION_PROTOCOL.toString(16)}`),
      );
      // And an h3 client is still served.
      const ok = await H3Client.connect({ host: '127.0.0.1', port, sni });
      expect((await ok.get(sni, '/')).status).toBe(200);
      await ok.close();
    }
  });
});
