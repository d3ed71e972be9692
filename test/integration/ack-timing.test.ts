/**
 * When the proxy acknowledges a request (RFC 9000 §13.2.1): the ACK of a lone request datagram
 * waits for the response to carry it, so a fast upstream's answer goes out as one datagram instead
 * of an ACK-only packet followed by the response; and when the upstream is slow the ACK still goes
 * out on its own, within the max_ack_delay we advertise (25 ms), long before the response.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { H3Client } from '../helpers/h3-client.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { freeUdpPort, startProxy, type RunningProxy } from '../helpers/proxy.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

enterPrivateNetns();

/** The server's datagrams as the client receives them, with their arrival times. */
function recordArrivals(client: H3Client): number[] {
  const at: number[] = [];
  client.filterInbound = () => {
    at.push(performance.now());
    return true;
  };
  return at;
}

describe('ACK timing of requests', () => {
  let up: TestUpstream;
  let proxy: RunningProxy;
  let port: number;
  let client: H3Client;

  beforeAll(async () => {
    up = await startUpstream('a');
    port = await freeUdpPort();
    proxy = await startProxy(`
listeners: ["127.0.0.1:${port}"]
workers: 1
tls: { state_dir: state }
routes: [{ path: /, upstream: a }]
upstreams:
  a: { targets: ["${up.origin}"] }
logging: { access_log: false }
`);
    client = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' });
    // The handshake's aftermath (HANDSHAKE_DONE, new CIDs, SETTINGS) is over after one exchange.
    expect((await client.get('localhost', '/hello')).status).toBe(200);
  });

  afterAll(async () => {
    await client?.close();
    await proxy?.stop();
    await up?.close();
  });

  it('lets the response carry the ACK of its request when the upstream answers at once', async () => {
    const arrivals = recordArrivals(client);
    const perRequest: number[] = [];
    for (let i = 0; i < 20; i++) {
      const before = arrivals.length;
      const r = await client.get('localhost', '/hello');
      expect(r.status).toBe(200);
      perRequest.push(arrivals.length - before);
    }
    // quiche ACKs whenever it sends: flushed right after the request, every response would be the
    // second datagram. Held back, it rides on the response unless the upstream took over the hold
    // time (a loaded machine), so most requests see one datagram, and surely not all see two.
    expect(perRequest.filter((n) => n === 1).length, `server datagrams per request: ${perRequest.join(' ')}`).toBeGreaterThan(0);
  });

  it('acknowledges a request on its own when the response is slow, within max_ack_delay', async () => {
    // Let the session's STOP_SENDING check (at most every 100 ms, then on a timer, which flushes)
    // lapse first: the request's own packet then runs the check, and no flush of that kind is
    // pending that could carry the ACK in place of the hold's timer.
    await new Promise((resolve) => setTimeout(resolve, 150));
    const arrivals = recordArrivals(client);
    const sentAt = performance.now();
    const r = await client.get('localhost', '/slow?ms=600');
    const answeredAt = performance.now();
    expect(r.status).toBe(200);
    expect(answeredAt - sentAt).toBeGreaterThanOrEqual(600);
    // The first datagram is the ACK, sent when the hold (5 ms) ends (6–30 ms seen on a loaded
    // machine), far ahead of the response. (Had the hold no timer, the client's PTO probe, which
    // carries the request again, would end it at ~40 ms: this bound does not tell the two apart;
    // it fails when the ACK waits for the response.)
    expect(arrivals.length).toBeGreaterThanOrEqual(2);
    expect(arrivals[0]! - sentAt).toBeLessThan(60);
  });
});
