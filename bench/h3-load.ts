/**
 * Closed-loop HTTP/3 load with our own client (test/helpers/h3-client.ts): `inFlight` request
 * loops spread over `connections` connections, each sending its next GET when the last one is
 * answered, for `durationMs`. Latency per request gives the percentiles the C clients do not.
 */
import { H3Client } from '../test/helpers/h3-client.js';

export interface H3LoadOptions {
  readonly connections: number;
  readonly inFlight: number;
  readonly durationMs: number;
  /** Called once every connection is up, just before the first request (start a measurement). */
  readonly onStart?: () => void;
  /** Called when the last request has been answered, before the connections close. */
  readonly onEnd?: () => void;
}

export interface H3LoadResult {
  readonly requests: number;
  readonly bytes: number;
  /** Milliseconds, sorted. */
  readonly latencies: number[];
  readonly failures: number;
  /** Connections that closed before the load ended: why (the server's error code, or none). */
  readonly closedEarly: string[];
  readonly elapsedMs: number;
}

export async function h3Load(port: number, path: string, opts: H3LoadOptions): Promise<H3LoadResult> {
  const clients = await Promise.all(Array.from({ length: opts.connections }, () => H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' })));
  // A connection the server closed (its error counts as the requests' failures) is not closed again.
  const gone = new Set<H3Client>();
  for (const c of clients) void c.closed.then(() => gone.add(c));
  const latencies: number[] = [];
  let bytes = 0;
  let failures = 0;
  opts.onStart?.();
  const started = performance.now();
  const deadline = started + opts.durationMs;
  const loop = async (i: number): Promise<void> => {
    const client = clients[i % clients.length]!;
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        const r = await client.get('localhost', path);
        if (r.status !== 200) failures++;
        bytes += r.body.length;
        latencies.push(performance.now() - t0);
      } catch {
        failures++;
      }
    }
  };
  await Promise.all(Array.from({ length: opts.inFlight }, (_, i) => loop(i)));
  const elapsedMs = performance.now() - started;
  opts.onEnd?.();
  const closedEarly = [...gone].map((c) => (c.peerError ? `closed by the server with ${c.peerError.isApp ? 'application' : 'transport'} error 0x${c.peerError.errorCode.toString(16)}` : 'closed with no CONNECTION_CLOSE from the server (idle timeout or a local error)'));
  await Promise.all(clients.filter((c) => !gone.has(c)).map((c) => c.close()));
  return { requests: latencies.length, bytes, latencies: latencies.sort((a, b) => a - b), failures, closedEarly, elapsedMs };
}

export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}
