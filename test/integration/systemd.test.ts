/**
 * systemd Type=notify: READY=1 once serving, RELOADING=1 (with MONOTONIC_USEC) then READY=1 around
 * a reload, MAINPID of the new master after a binary upgrade, STOPPING=1 on stop.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { waitForExit, waitForPidGone, waitUntil } from '../helpers/deadline.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { NotifySocket } from '../helpers/notify-socket.js';
import { freeUdpPort, makeTempDir, startProxy } from '../helpers/proxy.js';

enterPrivateNetns();

/** Messages on the notify socket until `count` arrived; fails after 10 s with what did arrive. */
async function received(notify: NotifySocket, count: number): Promise<string[]> {
  const got: string[] = [];
  // Polled: the stand-in socket is read without blocking and has no event.
  await waitUntil(
    `${count} notify message(s)`,
    () => {
      got.push(...notify.drain());
      return got.length >= count;
    },
    { timeoutMs: 10_000, intervalMs: 20, detail: () => `got ${JSON.stringify(got)}` },
  );
  return got;
}

describe('systemd notify protocol', () => {
  const dir = makeTempDir();
  const notify = new NotifySocket(path.join(dir, 'notify.sock'));
  let newMaster = 0;

  afterAll(async () => {
    if (newMaster && existsSync(`/proc/${newMaster}`)) process.kill(newMaster, 'SIGKILL');
    notify.close();
  });

  it('reports ready, reloading, the new main pid after an upgrade, and stopping', async () => {
    const port = await freeUdpPort();
    const proxy = await startProxy(
      `
listeners: ["127.0.0.1:${port}"]
workers: 1
tls: { state_dir: state }
routes: [{ path: /, respond: { status: 200 } }]
`,
      { dir, env: { NOTIFY_SOCKET: notify.path } },
    );
    expect(notify.drain()).toEqual(['READY=1']);

    process.kill(proxy.proc.pid!, 'SIGHUP');
    const reload = await received(notify, 2);
    expect(reload[0]).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+$/);
    expect(reload[1]).toBe('READY=1');
    await proxy.waitForLog((l) => l.msg === 'reload complete');

    process.kill(proxy.proc.pid!, 'SIGUSR2');
    const took = await proxy.waitForLog((l) => l.msg === 'took over from the previous master');
    newMaster = Number(took.pid);
    await waitForExit(proxy.proc, 'the old master after the handover', 30_000);
    expect(Number(readFileSync(path.join(dir, 'state/udpgrm-proxy.pid'), 'utf8'))).toBe(newMaster);
    // The old master does not claim STOPPING during a handover: the service keeps running.
    expect(await received(notify, 1)).toEqual([`MAINPID=${newMaster}\nREADY=1`]);

    // (The new master's log lines still reach our pipe, but the helper stops reading at the old
    // master's exit: the notify socket is what we check from here on.)
    process.kill(newMaster, 'SIGTERM');
    expect(await received(notify, 1)).toEqual(['STOPPING=1']);
    await waitForPidGone(newMaster, 'the new master after SIGTERM', 30_000);
    await proxy.stop();
  });
});
