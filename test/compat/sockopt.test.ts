// udpgrm's socket-option API from Python (standard socket module only), through the hooks on a
// dedicated cgroup and the registration agent (in this process): probe, register, wait, flip,
// the errno of each misuse (ENOPROTOOPT without hooks, another netns, a full group table), EAGAIN
// when the request ring is full, registration from a thread.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Agent } from '../../src/grm/compat/agent.js';
import { install } from '../../src/grm/compat/install.js';
import { GRM } from '../../src/grm/abi.generated.js';
import { deleteCompatGroup, listCompat } from '../../src/grm/compat/list.js';
import { formatMetrics } from '../../src/grm/compat/metrics.js';
import { listProxyGroups } from '../../src/grm/compat/proxy-groups.js';
import { GenerationManager } from '../../src/grm/index.js';
import { CompatState } from '../../src/grm/compat/state.js';
import { waitUntil } from '../helpers/deadline.js';
import { enterPrivateNetns, uniquePinDir } from '../helpers/netns.js';
import { CLIENT, JsonChild, PYTHON, removeCompatPinDir, serve, TestCgroup, uniqueCompatPinDir } from './harness.js';

enterPrivateNetns();
const pinDir = uniqueCompatPinDir('sockopt');
let cg: TestCgroup;
let bare: TestCgroup; // no hooks
let state: CompatState;
let agent: Agent;
const log: string[] = [];

beforeAll(() => {
  cg = new TestCgroup('sockopt');
  bare = new TestCgroup('sockopt-bare');
  state = CompatState.open(pinDir);
  install(state, cg.path);
  agent = new Agent(state, (l) => log.push(l));
});

afterAll(async () => {
  await agent?.stop();
  state?.close();
  removeCompatPinDir(pinDir);
  await cg?.remove();
  await bare?.remove();
});

// First, while no agent runs: requests queue in the ring until it is full.
test('a full request ring fails SOCKET_GEN and WORKING_GEN with EAGAIN and changes nothing', async () => {
  const py = cg.python(['fill-ring', '127.0.0.1', '46001']);
  expect(await py.exited).toBe(0);
  const r = py.lines[0]!;
  expect(r.errno).toBe('EAGAIN');
  expect(r.posted as number).toBeGreaterThan(100); // 64 KiB ring of 48-byte records
  expect(r.working_gen_errno).toBe('EAGAIN');
  expect(r.working_gen_after).toBe(r.working_gen_before);
  expect(r.dissector_errno).toBe('EAGAIN');
  expect(r.dissector_group).toBe(-1); // no group left behind: a retry may set any dissector
  // The agent then serves the queue (the process is gone: each request fails, none is fatal).
  agent.start();
  await waitUntil('the agent to serve the queued requests', () => agent.counters.failed >= (r.posted as number), { timeoutMs: 20_000 });
  expect(agent.counters.registered).toBe(0);
  // udpgrm's management counters, per group: failures, and the gauge of the last one.
  const metrics = formatMetrics(state.maps).split('\n');
  expect(metrics).toContain('socket_critical_gauge{socket="127.0.0.1:46001"} 1');
  expect(metrics).toContain(`socket_critical{socket="127.0.0.1:46001"} ${r.posted as number}`);
});

test('probe, register, wait for registration, flip: the article snippet', async () => {
  const probe = cg.python(['probe', '127.0.0.1', '46002']);
  expect(await probe.exited).toBe(0);
  expect(probe.lines).toEqual([{ working_gen: -1 }]); // no group yet

  const py = cg.python(['register', '127.0.0.1', '46002']);
  expect(await py.exited).toBe(0);
  expect(py.lines).toEqual([
    { step: 'probe', working_gen: -1 },
    // Slot 1, index 0: udpgrm's cookie 0x00a1.
    { step: 'registered', gen: 1, idx: 0, cookie: 0xa1, cookie_gen: 1, cookie_idx: 0 },
    { step: 'flipped', working_gen: 1 },
    { step: 'dissector', type: 0, timeout: 0, max_apps: 0, digest: 0 },
  ]);
  const listed = listCompat(state.maps, false, '127.0.0.1:46002');
  expect(listed).toMatch(/^127\.0\.0\.1:46002\n\tnetns 0x[0-9a-f]+  dissector flow  flow_timeout_sec 0\n\tsocket generations:\n/);
  // The process exited: its socket is dead, still shown because gen 1 is working.
  expect(listed).toContain('\t\tgen  1  dead  <=  app 0  gen 1\n');
  expect(log.some((l) => l.includes('127.0.0.1:46002') && l.includes('registered: gen 1 slot 1 idx 0'))).toBe(true);
  expect(listCompat(state.maps, true, '127.0.0.1:46002')).toContain('\tmetrics:\n\t\tsocket_critical_gauge 0\n\t\tsocket_critical 0\n');
});

test('each misuse fails with udpgrm errno', async () => {
  const py = cg.python(['errnos', '127.0.0.1', '46010']);
  expect(await py.exited).toBe(0);
  expect(py.lines[0]).toEqual({
    set_without_reuseport: 'EBADF', // no socket storage
    get_socket_gen_without_reuseport: 'EBADFD',
    get_app_without_reuseport: 'EBADFD',
    probe_no_group: -1,
    get_dissector_no_group: 'EBADFD',
    short_optval: 'EFAULT',
    unknown_dissector: 'EPERM',
    flow_with_apps: 'EPERM',
    probe_after_failed_create: -1, // a refused dissector creates no group
    set_noop: 'ok',
    set_noop_again: 'ok', // same configuration
    set_noop_verbose: 'ok', // flags do not count
    set_flow_on_noop: 'EPERM',
    flow_assure_on_noop: 'EPERM',
    get_flow_assure: 'EPERM',
    app_beyond_max_apps: 'EOVERFLOW',
    app_same: 'ok',
    get_app: 0,
    socket_gen_unregistered: [0xffffffff, 0xffffffff, 0xff7f, 0],
    socket_gen_4: -1,
    app_after_gen: 'EEXIST',
    working_gen_any_value: 'ok', // no check that the generation has sockets
    working_gen_read: 356,
    other_option_passes: 'ok',
  });
  expect(listCompat(state.maps, false, '127.0.0.1:46010')).toContain('dissector noop  verbose\n');
});

test('without the hooks the kernel answers every option with ENOPROTOOPT', async () => {
  const py = bare.python(['nohooks', '127.0.0.1', '46020']);
  expect(await py.exited).toBe(0);
  const all = Object.fromEntries([200, 201, 202, 203, 204].flatMap((o) => [[`set_${o}`, 'ENOPROTOOPT'], [`get_${o}`, 'ENOPROTOOPT']]));
  expect(py.lines[0]).toEqual(all);
});

test('more error paths: FLOW_ASSURE family, short GET, big buffers of other options, 20-byte SET, refused configurations', async () => {
  const py = cg.python(['errnos-more', '127.0.0.1', '46021']);
  expect({ status: await py.exited, stderr: py.stderr }).toEqual({ status: 0, stderr: '' });
  expect(py.lines[0]).toEqual({
    flow_assure_bad_family: 'EPERM',
    flow_assure_v4: 'ok',
    get_socket_gen_2_bytes: 'EFAULT',
    get_working_gen_2_bytes: 'EFAULT',
    big_set_other: 'ok', // SO_RCVBUF with an 8 KiB buffer reaches the kernel
    rcvbuf_after: 8192, // 4096, doubled by the kernel
    dissector_20_bytes: 'ok',
    dissector_20_read_back: [4, '00000000'], // NOOP; bytes 16..19 were not read
    cbpf_with_digest: 'EPERM',
    cbpf_with_digest_group: -1,
    noop_with_filter: 'EPERM',
    noop_with_filter_group: -1,
    noop_with_apps: 'EPERM',
    noop_with_apps_group: -1,
    flow_with_digest: 'EPERM',
    flow_with_digest_group: -1,
    bespoke_without_digest: 'EPERM', // udpgrm accepts any BESPOKE (listed difference)
    bespoke_without_digest_group: -1,
    bespoke_9_hostnames: 'EPERM',
    bespoke_9_hostnames_group: -1,
    bespoke_5_apps: 'EPERM',
    bespoke_5_apps_group: -1,
  });
});

test('SOCKET_GEN set again to its generation is a no-op; a thread other than the main one registers', async () => {
  const port = 46031;
  const registeredHere = (): number => log.filter((l) => l.includes(`127.0.0.1:${port} `) && l.includes(' registered: ')).length;
  const s = await serve(cg, port, {});
  try {
    expect(registeredHere()).toBe(1);
    const wg = agent.counters.workingGenSet;
    expect((await s.command(`sockgen ${s.gen}`, (l) => l.step === 'sockgen')).errno).toBe('ok');
    // A WORKING_GEN record queued after it: once served, any request before it was too (FIFO).
    await s.command(`working ${s.gen}`, (l) => l.step === 'working');
    await waitUntil('the agent to serve WORKING_GEN', () => agent.counters.workingGenSet > wg, { timeoutMs: 5_000 });
    expect(registeredHere()).toBe(1);
  } finally {
    s.proc.stdin!.end();
  }
  const t = cg.python(['thread-register', '127.0.0.1', String(port + 1)]);
  expect(await t.exited).toBe(0);
  expect(t.lines[0]).toEqual({ tid_is_pid: false, gen: 1, idx: 0 });
});

test('a socket in another netns than its group: SET fails EBADF, GET reads the group (udpgrm does not check)', async () => {
  const reg = cg.python(['register', '0.0.0.0', '46033']);
  expect(await reg.exited).toBe(0);
  const other = new JsonChild(cg.spawn('unshare', ['-n', PYTHON, CLIENT, 'netns', '0.0.0.0', '46033']));
  expect(await other.exited).toBe(0);
  expect(other.lines[0]).toEqual({ set_working_gen: 'EBADF', set_socket_gen: 'EBADF', get_working_gen: 1 });
});

test("grm list shows the proxy's own groups after the compat ones, marked", () => {
  const proxyPinDir = uniquePinDir('compat-list');
  const mgr = GenerationManager.open({ pinDir: proxyPinDir, cidLength: 16 });
  try {
    const g = mgr.openGroup({ host: '127.0.0.1', port: 46050 });
    const gen = g.addGeneration();
    const fd = g.createSocket();
    g.register(gen, 0, fd);
    g.setWorking(0, gen);
    const text = listProxyGroups(proxyPinDir, false);
    expect(text).toMatch(/^127\.0\.0\.1:46050  \(udpgrm-proxy\)\n\tgroup \d+ /);
    expect(text).toContain(`\t\tgen ${String(gen).padStart(2)}  slot `);
    expect(listProxyGroups(proxyPinDir, false, '127.0.0.1:1')).toBe('');
    expect(listProxyGroups(`${proxyPinDir}-none`, false)).toBe('');
  } finally {
    mgr.cleanup();
  }
});

test('a full group table (512 groups) fails a new address with EBADF and creates nothing', async () => {
  const first = 47000;
  const before = state.maps.grmc_groups.keys().length;
  const py = cg.python(['fill-groups', '127.0.0.1', String(first)]);
  try {
    expect(await py.exited).toBe(0);
    const r = py.lines[0]!;
    expect(r).toEqual({ created: GRM.COMPAT_MAX_GROUPS - before, errno: 'EBADF', probe: -1 });
  } finally {
    await py.exited;
    const n = (py.lines[0]?.created as number | undefined) ?? 1000;
    for (let p = first; p < first + n; p++) deleteCompatGroup(state.maps, `127.0.0.1:${p}`);
  }
});
