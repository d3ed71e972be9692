// CBPF dissector: the group's classic BPF program extracts a cookie (datagrams reach the socket
// whose cookie they carry, in any generation) or an app (new flows of that app's working
// generation); bad cookies, empty indices, program errors and short datagrams as udpgrm counts them.
import dgram from 'node:dgram';
import { expect, test } from 'vitest';
import { cookiePack, slotOf } from '../../src/grm/compat/cookie.js';
import { listCompat, parseAddress } from '../../src/grm/compat/list.js';
import { decodeStats } from '../../src/grm/compat/records.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { ISA_PROGRAM, TAGGED_PROGRAM } from './cbpf-programs.js';
import { receiver, serve, useCompatAgent, useUdpClient } from './harness.js';

enterPrivateNetns();
const fx = useCompatAgent('cbpf');
const PORT = 46401;
const client = useUdpClient();

let n = 0;
/** Sends tag + bytes + a unique suffix; returns the payload as the servers print it. */
function send(tag: string, bytes: number[] = []): string {
  const b = Buffer.concat([Buffer.from(tag, 'latin1'), Buffer.from(bytes), Buffer.from(`-${n++}`)]);
  client.socket.send(b, PORT, '127.0.0.1');
  return b.toString('latin1');
}
const be = (c: number): number[] => [c >> 8, c & 0xff];

test('a cookie-extracting program routes datagrams to the socket whose cookie they carry; app values pick the app', async () => {
  const spec = { dissector: 'cbpf', cbpf: TAGGED_PROGRAM, max_apps: 2 };
  const old0 = await serve(fx.cg, PORT, spec); // app 0, gen 1
  await old0.flip();
  const app1 = await serve(fx.cg, PORT, { ...spec, app: 1 }); // app 1, gen 1
  await app1.flip();
  const new0 = await serve(fx.cg, PORT, spec); // app 0, gen 2: working
  await new0.flip();
  const all = [old0, app1, new0];
  expect([old0.gen, app1.gen, new0.gen]).toEqual([1, 1, 2]);
  expect(app1.cookie).toBe(cookiePack(slotOf(2, 1, 1), 0));

  expect(await receiver(all, send('c', be(old0.cookie)))).toBe(0); // an old generation, by cookie
  expect(await receiver(all, send('c', be(app1.cookie)))).toBe(1);
  expect(await receiver(all, send('c', be(new0.cookie)))).toBe(2);
  expect(await receiver(all, send('a', [1]))).toBe(1); // new flow of app 1
  expect(await receiver(all, send('a', [7]))).toBe(2); // no app 7: app 0
  expect(await receiver(all, send('x'))).toBe(2); // RET -1: app 0
  expect(await receiver(all, send('c', be(old0.cookie ^ 0x20)))).toBe(2); // check bits wrong
  expect(await receiver(all, send('c', be(cookiePack(slotOf(2, 0, 1), 9))))).toBe(2); // index 9 is empty
  await receiver(all, send('z')); // program error: the kernel's hash picks any socket
  client.socket.send(Buffer.from('c'), PORT, '127.0.0.1'); // ldh [1] past the end
  await receiver(all, 'c');

  const st = decodeStats(fx.state.maps.grmc_stats.lookup(parseAddress(`127.0.0.1:${PORT}`)));
  expect(st.rx_processed_total).toBe(10n);
  expect(st.rx_flow_ok).toBe(3n);
  expect(st.rx_cbpf_prog_error).toBe(1n);
  expect(st.rx_packet_too_short_error).toBe(1n);
  expect(st.rx_dissected_ok_total).toBe(8n);
  expect(st.rx_flow_new_bad_cookie).toBe(1n);
  expect(st.rx_flow_new_unseen).toBe(5n); // a1, a7, x, bad check, empty index
  expect(st.rx_new_flow_working_gen_dispatch_ok).toBe(5n);
  const existing = st.slot_rx_existing_flow as bigint[];
  const fresh = st.slot_rx_new_flow as bigint[];
  expect(existing[slotOf(2, 0, 1)]).toBe(1n);
  expect(existing[slotOf(2, 1, 1)]).toBe(1n);
  expect(existing[slotOf(2, 0, 2)]).toBe(1n);
  expect(fresh[slotOf(2, 1, 1)]).toBe(1n);
  expect(fresh[slotOf(2, 0, 2)]).toBe(4n);
});

test('CBPF configurations udpgrm refuses: EPERM', async () => {
  const bad = [
    { dissector: 'cbpf', cbpf: [] }, // no instruction
    { dissector: 'cbpf', cbpf: TAGGED_PROGRAM, max_apps: 5 },
    { dissector: 'cbpf', cbpf: Array.from({ length: 65 }, () => [0x06, 0, 0, 0]) }, // over 64
  ];
  for (const [i, spec] of bad.entries()) {
    const s = fx.cg.python(['serve', '127.0.0.1', String(PORT + 1 + i), JSON.stringify(spec)]);
    expect(await s.exited).not.toBe(0);
    expect(s.stderr).toContain('Operation not permitted');
  }
});

test("udpgrm's instruction set: IND, MSH, MEM/ST/STX, ALU, LEN, jumps with K and X, JA, TAX/TXA, RET X, SKF_AD_PROTOCOL; errors", async () => {
  const port = PORT + 10;
  const spec = { dissector: 'cbpf', cbpf: ISA_PROGRAM, max_apps: 2 };
  const app0 = await serve(fx.cg, port, spec);
  await app0.flip();
  const app1 = await serve(fx.cg, port, { ...spec, app: 1 });
  await app1.flip();
  const all = [app0, app1];
  const c = dgram.createSocket('udp4');
  const send = (b: Buffer): string => {
    c.send(b, port, '127.0.0.1');
    return b.toString('latin1');
  };
  const tagged = (tag: string): Buffer => Buffer.from(`${tag}-${n++}`);
  // 'i': an IPv4-like header length at byte 1 (0x45: X = 20), then bytes at X + 2, + 3, + 5.
  const ind = Buffer.alloc(32, 0x2e);
  ind.write('i', 0);
  ind[1] = 0x45;
  ind[22] = 0x77;
  ind.writeUInt16BE(0x1234, 23);
  ind.writeUInt32BE(0xdeadbeef, 25);
  const exactly10 = (): Buffer => Buffer.from(`l${String(n++).padStart(9, '-')}`);
  for (const b of [ind, tagged('m'), exactly10(), tagged('j'), tagged('x'), tagged('p')]) expect(await receiver(all, send(b))).toBe(1);
  // The checks do fail: a payload of 11 bytes, an 'i' without its bytes.
  expect(await receiver(all, send(Buffer.from(`l${String(n++).padStart(10, '-')}`)))).toBe(0);
  const wrong = Buffer.from(ind);
  wrong[22] = 0x78;
  expect(await receiver(all, send(wrong))).toBe(0);
  for (const t of ['e', 'a', 'b']) await receiver(all, send(tagged(t))); // the kernel's hash
  c.close();

  const st = decodeStats(fx.state.maps.grmc_stats.lookup(parseAddress(`127.0.0.1:${port}`)));
  expect(st.rx_processed_total).toBe(11n);
  expect(st.rx_cbpf_prog_error).toBe(2n); // 'e' (no RET), 'b' (bad opcode)
  expect(st.rx_packet_too_short_error).toBe(1n); // 'a' (ancillary load other than the protocol)
  expect(st.rx_new_flow_working_gen_dispatch_ok).toBe(8n);
  expect(listCompat(fx.state.maps, false, `127.0.0.1:${port}`)).toMatch(/^127\.0\.0\.1:46411\n\tnetns 0x[0-9a-f]+  dissector cbpf  apps 2  filter_len 63\n/);
});
