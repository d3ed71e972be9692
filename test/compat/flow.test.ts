// FLOW dissector (udpgrm's default): a flow exists once the server sent to the remote (sendmsg4/6
// hooks) or asserted it (FLOW_ASSURE); its datagrams then stay on that socket across flips, new
// remotes go to the working generation; expiry, a full table, and a flow owned by a socket of
// another reuseport group (same address, bound to a device: the errno the kernel really returns).
import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterAll, expect, test } from 'vitest';
import { GRM } from '../../src/grm/abi.generated.js';
import { slotOf } from '../../src/grm/compat/cookie.js';
import { parseAddress } from '../../src/grm/compat/list.js';
import { decodeStats } from '../../src/grm/compat/records.js';
import { formatFlows } from '../../src/grm/compat/flows.js';
import { formatMetrics } from '../../src/grm/compat/metrics.js';
import { waitUntil } from '../helpers/deadline.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { receiver, serve, useCompatAgent } from './harness.js';

enterPrivateNetns();
const fx = useCompatAgent('flow');
const clients: dgram.Socket[] = [];

afterAll(() => {
  for (const c of clients) c.close();
});

interface Client {
  readonly port: number;
  send(payload: string): void;
}

async function client(host: string, serverPort: number): Promise<Client> {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  s.bind(0, host);
  await once(s, 'listening');
  clients.push(s);
  return { port: s.address().port, send: (p) => s.send(p, serverPort, host) };
}

function stats(host: string, port: number): Record<string, bigint | bigint[]> {
  return decodeStats(fx.state.maps.grmc_stats.lookup(parseAddress(host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`)));
}

test.each([
  ['127.0.0.1', 46301],
  ['::1', 46302],
])('%s: a flow learned on send or FLOW_ASSURE stays on its socket after a flip; new remotes go to the working generation', async (host, port) => {
  const s1 = await serve(fx.cg, port, { dissector: 'flow' }, host);
  await s1.flip();
  const [a, b, c] = [await client(host, port), await client(host, port), await client(host, port)];
  a.send('r-a1');
  expect(await receiver([s1], 'r-a1')).toBe(0);
  await s1.line((l) => l.tx === 'r-a1'); // replied: the sendmsg hook learned the flow
  expect(await s1.assure(host, c.port)).toBe('ok'); // c never heard from s1, but s1 claims it

  const s2 = await serve(fx.cg, port, { dissector: 'flow' }, host);
  await s2.flip();
  const both = [s1, s2];
  a.send('q-a2');
  expect(await receiver(both, 'q-a2')).toBe(0);
  b.send('r-b1');
  expect(await receiver(both, 'r-b1')).toBe(1);
  await s2.line((l) => l.tx === 'r-b1');
  c.send('q-c1');
  expect(await receiver(both, 'q-c1')).toBe(0);
  a.send('r-a3');
  expect(await receiver(both, 'r-a3')).toBe(0);
  await s1.line((l) => l.tx === 'r-a3');
  b.send('q-b2');
  expect(await receiver(both, 'q-b2')).toBe(1);
  // A live flow is never moved to another socket.
  expect(await s2.assure(host, a.port)).toBe('EEXIST');
  a.send('q-a4');
  expect(await receiver(both, 'q-a4')).toBe(0);

  const st = stats(host, port);
  expect(st.tx_total).toBe(5n); // r-a1, assure c, r-b1, r-a3, assure a (refused)
  expect(st.tx_flow_create_ok).toBe(3n);
  expect(st.tx_flow_update_ok).toBe(1n);
  expect(st.tx_flow_update_conflict).toBe(1n);
  expect(st.rx_flow_ok).toBe(5n); // q-a2, q-c1, r-a3, q-b2, q-a4
  expect(st.rx_flow_new_unseen).toBe(2n); // r-a1, r-b1
  expect(st.rx_processed_total).toBe(7n);
  expect(st.rx_dissected_ok_total).toBe(7n);
  expect(st.rx_new_flow_working_gen_dispatch_ok).toBe(2n);
  expect(st.rx_flow_rg_conflict).toBe(0n);
  const existing = st.slot_rx_existing_flow as bigint[];
  expect(existing[slotOf(0, 0, s1.gen)]).toBe(4n);
  expect(existing[slotOf(0, 0, s2.gen)]).toBe(1n);

  // `grm flows`: each live socket with the remotes it owns.
  const group = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const remote = (c: Client): string => (host.includes(':') ? `[${host}]:${c.port}` : `${host}:${c.port}`);
  expect(flowsBySocket(formatFlows(fx.state.maps, false, group), group)).toEqual(
    new Map([
      [`0x${s1.soCookie.toString(16)}`, [remote(a), remote(c)].sort()],
      [`0x${s2.soCookie.toString(16)}`, [remote(b)]],
    ]),
  );
  // Past the timeout (125 s by default) entries are stale: shown only with -v, marked.
  const later = process.hrtime.bigint() + 200_000_000_000n;
  expect(formatFlows(fx.state.maps, false, group, later)).toBe(`${group}\n`);
  expect(formatFlows(fx.state.maps, true, group, later).match(/ \(stale\)\n/g)).toHaveLength(3);
  // `grm metrics`: udpgrm's Prometheus lines, then ours per slot.
  const metrics = formatMetrics(fx.state.maps, '1.2.3').split('\n');
  expect(metrics[0]).toBe('build_info{version="1.2.3"} 1');
  expect(metrics).toContain(`working_gen{socket="${group}",app_idx="0"} ${s2.gen}`);
  expect(metrics).toContain(`rx_flow_ok{socket="${group}"} 5`);
  expect(metrics).toContain(`slot_rx_existing_flow{socket="${group}",slot="${slotOf(0, 0, s1.gen)}"} 4`);
  expect(metrics.some((l) => l.startsWith(`rx_flow_rg_conflict{socket="${group}"}`))).toBe(false); // zero: not printed
});

/** `grm flows` output of one group -> so_cookie -> sorted remotes; checks the layout on the way. */
function flowsBySocket(text: string, group: string): Map<string, string[]> {
  const lines = text.replace(/\n$/, '').split('\n');
  expect(lines[0]).toBe(group);
  const out = new Map<string, string[]>();
  let current = '';
  for (const l of lines.slice(1)) {
    const sock = /^\tso_cookie (0x[0-9a-f]+)$/.exec(l);
    const flow = /^\t\t(\S+)  age (\d+\.\d)s ?$/.exec(l); // udpgrm ends it with a space
    if (sock) out.set((current = sock[1]!), []);
    else if (flow) out.get(current)!.push(flow[1]!);
    else throw new Error(`unexpected flows line ${JSON.stringify(l)}`);
  }
  for (const v of out.values()) v.sort();
  return out;
}

test('a dual-stack socket: flows of IPv4 peers, learned on send or asserted IPv4-mapped, match their datagrams', async () => {
  const port = 46341;
  const s1 = await serve(fx.cg, port, { dissector: 'flow' }, '::');
  await s1.flip();
  const a = await client('127.0.0.1', port);
  const c = await client('127.0.0.1', port);
  a.send('r-d1');
  await s1.line((l) => l.tx === 'r-d1');
  expect(await s1.assure('::ffff:127.0.0.1', c.port)).toBe('ok'); // as the app sees that peer
  const s2 = await serve(fx.cg, port, { dissector: 'flow' }, '::');
  await s2.flip();
  a.send('q-d2');
  expect(await receiver([s1, s2], 'q-d2')).toBe(0);
  c.send('q-d3');
  expect(await receiver([s1, s2], 'q-d3')).toBe(0);
  expect(formatFlows(fx.state.maps, false, `[::]:${port}`)).toContain(`\t\t127.0.0.1:${a.port}  age `);
});

test('an expired flow goes to the working generation, and the new socket takes it over on its reply', async () => {
  const host = '127.0.0.1';
  const port = 46311;
  const spec = { dissector: 'flow', timeout: 1 };
  const s1 = await serve(fx.cg, port, spec);
  await s1.flip();
  const a = await client(host, port);
  a.send('r-e1');
  await s1.line((l) => l.tx === 'r-e1');
  const learnedAt = Date.now();
  const s2 = await serve(fx.cg, port, spec);
  await s2.flip();
  a.send('q-e2');
  expect(await receiver([s1, s2], 'q-e2')).toBe(0); // well within the second
  let n = 0;
  // The entry expires one second after s1's reply: datagrams then start a new flow.
  await waitUntil(
    'the flow to expire',
    async () => {
      const p = `q-e3-${n++}`;
      a.send(p);
      return (await receiver([s1, s2], p)) === 1;
    },
    { timeoutMs: 5_000, intervalMs: 100 },
  );
  expect(Date.now() - learnedAt).toBeGreaterThanOrEqual(900);
  a.send('r-e4');
  expect(await receiver([s1, s2], 'r-e4')).toBe(1);
  await s2.line((l) => l.tx === 'r-e4');
  a.send('q-e5');
  expect(await receiver([s1, s2], 'q-e5')).toBe(1);

  const st = stats(host, port);
  expect(st.rx_flow_new_had_expired).toBe(2n); // the first late q-e3 and r-e4
  expect(st.tx_flow_create_from_expired_ok).toBe(1n);
  expect(st.tx_flow_create_ok).toBe(2n); // r-e1, then r-e4's take-over (udpgrm counts both)
  expect(st.rx_flow_ok).toBe(BigInt(n - 1 + 2)); // q-e2, the q-e3 before expiry, q-e5
});

test('a full flow table: every FLOW_ASSURE succeeds (least recently used entries go), new flows still stick', async () => {
  const host = '127.0.0.1';
  const port = 46321;
  const s1 = await serve(fx.cg, port, { dissector: 'flow' });
  await s1.flip();
  const s2 = await serve(fx.cg, port, { dissector: 'flow' });
  await s2.flip();
  const total = GRM.COMPAT_MAX_FLOWS + 100;
  const r = await s1.command(`assure-many 192.0.2.1 1024 ${total}`, (l) => l.assured !== undefined);
  expect(r.assured).toEqual({ ok: total });
  expect(fx.state.maps.grmc_flows.keys().length).toBeLessThanOrEqual(GRM.COMPAT_MAX_FLOWS);
  const a = await client(host, port);
  expect(await s1.assure(host, a.port)).toBe('ok');
  for (const p of ['q-o1', 'q-o2']) {
    a.send(p);
    expect(await receiver([s1, s2], p)).toBe(0); // s1's flow, although s2 is working
  }
  const st = stats(host, port);
  expect(st.tx_total).toBe(BigInt(total + 1));
  expect((st.tx_flow_create_ok as bigint) + (st.tx_flow_update_ok as bigint)).toBe(BigInt(total + 1));
  expect(st.tx_flow_create_error).toBe(0n);
  expect(st.rx_flow_ok).toBe(2n);
});

test('a flow owned by a socket of another reuseport group: the kernel says EBADFD, counted as rx_flow_rg_conflict', async () => {
  const host = '127.0.0.1';
  const port = 46331;
  const s1 = await serve(fx.cg, port, { dissector: 'flow' });
  await s1.flip();
  const a = await client(host, port);
  a.send('r-g1');
  await s1.line((l) => l.tx === 'r-g1');
  // Same address, bound to lo: another reuseport group, which the kernel's lookup now prefers.
  const s2 = await serve(fx.cg, port, { dissector: 'flow', device: 'lo' });
  await s2.flip();
  a.send('q-g2');
  expect(await receiver([s1, s2], 'q-g2')).toBe(1);
  const st = stats(host, port);
  expect(st.rx_flow_rg_conflict).toBe(1n);
  expect(st.rx_flow_other_error).toBe(0n);
  expect(st.rx_new_flow_working_gen_dispatch_ok).toBe(2n);
});
