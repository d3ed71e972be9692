// udpgrm's socket-option API from Python (standard socket module only), through the hooks on a
// dedicated cgroup and the registration agent (in this process): probe, register, wait, flip,
// the errno of each misuse, and EAGAIN when the request ring is full.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Agent } from '../../src/grm/compat/agent.js';
import { install } from '../../src/grm/compat/install.js';
import { listCompat } from '../../src/grm/compat/list.js';
import { formatMetrics } from '../../src/grm/compat/metrics.js';
import { listProxyGroups } from '../../src/grm/compat/proxy-groups.js';
import { GenerationManager } from '../../src/grm/index.js';
import { CompatState } from '../../src/grm/compat/state.js';
import { waitUntil } from '../helpers/deadline.js';
import { enterPrivateNetns, uniquePinDir } from '../helpers/netns.js';
import { removeCompatPinDir, TestCgroup, uniqueCompatPinDir } from './harness.js';

enterPrivateNetns();
const pinDir = uniqueCompatPinDir('sockopt');
let cg: TestCgroup;
let state: CompatState;
let agent: Agent;
const log: string[] = [];

beforeAll(() => {
  cg = new TestCgroup('sockopt');
  state = CompatState.open(pinDir);
  install(state, cg.path);
  agent = new Agent(state, (l) => log.push(l));
});

afterAll(async () => {
  await agent?.stop();
  state?.close();
  removeCompatPinDir(pinDir);
  await cg?.remove();
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
