/**
 * A master killed with SIGKILL under load, then a new master started (a restart, not an upgrade):
 * the old workers drain their connections, and the new master adopts their generation slot
 * instead of retiring it at once, so those connections keep working; the slot is retired once the
 * old worker exited.
 */
import { existsSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { waitForExit, waitForPidGone, waitUntil } from '../helpers/deadline.js';
import { H3Client } from '../helpers/h3-client.js';
import { enterPrivateNetns, removePinDir, uniquePinDir } from '../helpers/netns.js';
import { freeUdpPort, makeTempDir, startProxy, workerPids } from '../helpers/proxy.js';

enterPrivateNetns();

/** Big enough to need the client's ACKs and flow-control credit on the way (many congestion windows). */
const HELD_BODY_BYTES = 2 * 1024 * 1024;

/**
 * An origin that answers `/hold/NAME` only when the test releases NAME (HELD_BODY_BYTES of NAME's
 * first letter), anything else at once.
 */
function heldOrigin(): Promise<{ origin: string; held: Set<string>; release(name: string): void; close(): void }> {
  const held = new Set<string>();
  const waiting = new Map<string, http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const m = /^\/hold\/(\w+)$/.exec(req.url ?? '');
    if (!m) {
      res.end('now\n');
      return;
    }
    held.add(m[1]!);
    waiting.set(m[1]!, res);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        held,
        release: (name) => waiting.get(name)?.end(Buffer.alloc(HELD_BODY_BYTES, name)),
        close: () => server.close(),
      });
    });
  });
}

/** `p`, or a failure naming what did not complete within `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not complete within ${ms} ms`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

describe('master crash', () => {
  const dir = makeTempDir();
  const pinDir = uniquePinDir('crash');
  afterAll(() => {
    removePinDir(pinDir);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a new master adopts the slot of workers still draining: their connections keep working', async () => {
    const up = await heldOrigin();
    const port = await freeUdpPort();
    const config = `
listeners: ["127.0.0.1:${port}"]
workers: 1
drain_timeout: 30s
tls: { state_dir: state }
upstreams: { held: { targets: ["${up.origin}"], response_timeout: 60s } }
routes: [{ path: /, upstream: held }]
process: { pin_dir: "${pinDir}" }
`;
    const first = await startProxy(config, { dir });
    const authority = `localhost:${port}`;
    const client = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost', timeoutMs: 60_000 });
    let clientOpen = true;
    try {
      expect((await client.get(authority, '/warm')).status).toBe(200);
      // Two requests in flight on one connection of the old worker.
      const a = client.get(authority, '/hold/a');
      const b = client.get(authority, '/hold/b');
      // Awaited below; this only keeps its failure from being reported twice when `a` fails first.
      b.catch(() => undefined);
      await waitUntil('both requests to reach the origin', () => up.held.has('a') && up.held.has('b'), { timeoutMs: 10_000 });
      const [oldWorker] = workerPids(first.proc.pid!);
      expect(oldWorker).toBeDefined();

      first.proc.kill('SIGKILL');
      await waitForExit(first.proc, 'the killed master', 10_000);
      const second = await startProxy(config, { dir });
      try {
        expect(existsSync(`/proc/${oldWorker}`)).toBe(true);
        // The client acknowledges this response: its packets must reach the old worker, not the
        // new generation (which would answer with a stateless reset and end the connection).
        up.release('a');
        const ra = await within(a, 20_000, 'response a (2 MiB) on the old worker\'s connection');
        expect(ra.status).toBe(200);
        expect(ra.body.equals(Buffer.alloc(HELD_BODY_BYTES, 'a'))).toBe(true);
        // Not a wait for a condition: the time a stateless reset would take to come back and end the
        // connection (a loopback round trip is far below it), before the second response is due.
        await new Promise((r) => setTimeout(r, 1500));
        up.release('b');
        const rb = await within(b, 20_000, 'response b (2 MiB) on the old worker\'s connection');
        expect(rb.status).toBe(200);
        expect(rb.body.equals(Buffer.alloc(HELD_BODY_BYTES, 'b'))).toBe(true);
        await second.waitForLog((l) => l.msg === 'adopted a generation of the previous master: its workers still drain; retired once they exit');

        // Once its connection is gone the old worker exits, and only then is its slot retired.
        clientOpen = false;
        await client.close();
        await waitForPidGone(oldWorker!, 'the old worker, after its last connection', 40_000);
        await second.waitForLog((l) => l.msg === "previous master's generation drained: slot retired", 10_000);
      } finally {
        await second.stop();
      }
    } finally {
      if (clientOpen) await client.close();
      up.close();
    }
  }, 120_000);
});
