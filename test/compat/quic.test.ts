// BESPOKE dissector, digest 0xDEAD (QUIC): client Initials go to the app their SNI names (read by
// bpf/quic_sni.h, the proxy's own decryption), packets whose DCID carries a udpgrm cookie
// (0x01, cookie) reach that socket in any generation, cookie 0 picks the app at DCID byte 4, and
// unparseable datagrams are left to the kernel's hash (counted), as udpgrm does.
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { expect, test } from 'vitest';
import { slotOf } from '../../src/grm/compat/cookie.js';
import { listCompat, parseAddress } from '../../src/grm/compat/list.js';
import { decodeStats } from '../../src/grm/compat/records.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { buildClientInitial, clientHello, clientInitials } from '../helpers/quic-initial.js';
import { receiver, serve, type Served, useCompatAgent, useUdpClient } from './harness.js';

enterPrivateNetns();
const fx = useCompatAgent('quic');
const PORT = 46501;
const client = useUdpClient();

/** Sends a datagram; returns it as the servers print it. */
function send(b: Buffer): string {
  client.socket.send(b, PORT, '127.0.0.1');
  return b.toString('latin1');
}

/** A 20-byte CID in udpgrm's layout: 0x01, cookie (big-endian), byte 3, app at byte 4, random. */
function ourCid(cookie: number, app = 0): Buffer {
  return Buffer.concat([Buffer.from([0x01, cookie >> 8, cookie & 0xff, 0, app]), randomBytes(15)]);
}
const shortHeader = (dcid: Buffer): Buffer => Buffer.concat([Buffer.from([0x40]), dcid, randomBytes(40)]);
/** A Handshake packet (long header, type 2): routed by its DCID. */
const handshake = (dcid: Buffer): Buffer =>
  Buffer.concat([Buffer.from([0xe0, 0, 0, 0, 1, dcid.length]), dcid, Buffer.from([8]), randomBytes(8), randomBytes(40)]);
const initial = (sni: string | null): Buffer => clientInitials(randomBytes(8), clientHello(sni))[0]!;

let servers: Served[] = [];

test('Initials with an SNI pick the app; DCIDs with a cookie reach their socket; junk goes to the kernel', async () => {
  const spec = { dissector: 'bespoke', digest: 0xdead, max_apps: 2, sni: [[1, 'api.example.com']] };
  const old0 = await serve(fx.cg, PORT, spec); // app 0, gen 1
  await old0.flip();
  const api = await serve(fx.cg, PORT, { ...spec, app: 1 }); // app 1, gen 1
  await api.flip();
  const new0 = await serve(fx.cg, PORT, spec); // app 0, gen 2: working
  await new0.flip();
  const all = [old0, api, new0];
  servers = all;

  expect(await receiver(all, send(initial('api.example.com')))).toBe(1);
  expect(await receiver(all, send(initial('API.Example.COM')))).toBe(1); // names ignore case
  expect(await receiver(all, send(initial('www.example.com')))).toBe(2); // unmatched: app 0
  expect(await receiver(all, send(initial('api.example.com.evil')))).toBe(2); // exact match only
  expect(await receiver(all, send(initial(null)))).toBe(2); // no SNI, random DCID: app 0
  expect(await receiver(all, send(shortHeader(ourCid(old0.cookie))))).toBe(0); // an old generation
  expect(await receiver(all, send(shortHeader(ourCid(api.cookie))))).toBe(1);
  expect(await receiver(all, send(handshake(ourCid(old0.cookie))))).toBe(0);
  expect(await receiver(all, send(shortHeader(ourCid(0, 1))))).toBe(1); // cookie 0: app at byte 4
  expect(await receiver(all, send(shortHeader(randomBytes(20).fill(0x02, 0, 1))))).toBe(2); // not ours
  await receiver(all, send(Buffer.from('too short for QUIC'))); // kernel's hash: any socket
  await receiver(all, send(Buffer.concat([Buffer.from([0xc0, 0, 0, 0, 1, 4]), randomBytes(40)]))); // DCID of 4 bytes

  const st = decodeStats(fx.state.maps.grmc_stats.lookup(parseAddress(`127.0.0.1:${PORT}`)));
  expect(st.rx_processed_total).toBe(12n);
  expect(st.rx_cbpf_prog_error).toBe(2n);
  expect(st.rx_dissected_ok_total).toBe(10n);
  expect(st.rx_flow_ok).toBe(3n);
  expect(st.rx_flow_new_unseen).toBe(7n);
  expect(st.rx_new_flow_working_gen_dispatch_ok).toBe(7n);
  const fresh = st.slot_rx_new_flow as bigint[];
  expect(fresh[slotOf(2, 1, 1)]).toBe(3n); // two SNI matches, cookie 0 with app 1
  expect(fresh[slotOf(2, 0, 2)]).toBe(4n);
  const existing = st.slot_rx_existing_flow as bigint[];
  expect(existing[slotOf(2, 0, 1)]).toBe(2n);
  expect(existing[slotOf(2, 1, 1)]).toBe(1n);
});

test('short datagrams, a QUIC v2 Initial, an Initial under 1,200 bytes, an unknown digest; the list header', async () => {
  const all = servers;
  expect(all).toHaveLength(3);
  const before = decodeStats(fx.state.maps.grmc_stats.lookup(parseAddress(`127.0.0.1:${PORT}`)));
  const delta = (name: string): bigint => (decodeStats(fx.state.maps.grmc_stats.lookup(parseAddress(`127.0.0.1:${PORT}`)))[name] as bigint) - (before[name] as bigint);
  // With its UDP header a datagram under 32 bytes is a parse error; 32..39 bytes fail the 32-byte
  // load past the header: too short (udpgrm's parse_quic_fast: IERR_SANITY, then IERR_LOAD).
  for (const n of [23, 24, 31]) await receiver(all, send(Buffer.alloc(n, 0x41 + n)));
  // Not QUIC v1 (v2's 0x6b3343cf): udpgrm derives v1 keys only, a header error.
  const v2 = initial('api.example.com');
  v2.writeUInt32BE(0x6b3343cf, 1);
  await receiver(all, send(v2));
  expect([delta('rx_cbpf_prog_error'), delta('rx_packet_too_short_error'), delta('rx_processed_total')]).toEqual([2n, 2n, 4n]);
  // An Initial in a datagram under 1,200 bytes (RFC 9000 §14.1 forbids it): routed by its DCID
  // here, so a random one is app 0 (udpgrm decrypts it and would pick app 1: listed difference).
  const short = buildClientInitial({ dcid: randomBytes(8), scid: randomBytes(8), pn: 0, pnLength: 4, cryptoFrames: [{ offset: 0, data: clientHello('api.example.com') }], padTo: 0 });
  expect(short.length).toBeLessThan(1200);
  expect(await receiver(all, send(short))).toBe(2);
  expect(listCompat(fx.state.maps, false, `127.0.0.1:${PORT}`)).toMatch(/^127\.0\.0\.1:46501\n\tnetns 0x[0-9a-f]+  dissector bespoke  digest 0xdead\n/);

  // A digest udpgrm does not know is accepted, and every datagram is a program error.
  const beef = await serve(fx.cg, PORT + 1, { dissector: 'bespoke', digest: 0xbeef });
  await beef.flip();
  const c = dgram.createSocket('udp4');
  for (const b of [initial('api.example.com'), shortHeader(ourCid(beef.cookie))]) {
    c.send(b, PORT + 1, '127.0.0.1');
    await receiver([beef], b.toString('latin1'));
  }
  c.close();
  const st = decodeStats(fx.state.maps.grmc_stats.lookup(parseAddress(`127.0.0.1:${PORT + 1}`)));
  expect([st.rx_processed_total, st.rx_cbpf_prog_error, st.rx_dissected_ok_total]).toEqual([2n, 2n, 0n]);
  expect(listCompat(fx.state.maps, false, `127.0.0.1:${PORT + 1}`)).toContain('dissector bespoke  digest 0xbeef\n');
});
