/**
 * nghttp2's h2load (Debian's nghttp2-client) as a real HTTP/2 load client: runs it to its end and
 * reads its summary ("requests: N total, N started, N done, N succeeded, N failed, N errored, N
 * timeout" and the status-code line).
 */
import { run } from './tcp-edge.js';

export interface H2loadResult {
  readonly total: number;
  readonly done: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly errored: number;
  readonly status2xx: number;
  /** Requests per second and MB/s as h2load measured them. */
  readonly reqPerSec: number;
  readonly mbPerSec: number;
  readonly output: string;
}

export async function h2load(url: string, args: readonly string[], timeoutMs = 120_000): Promise<H2loadResult> {
  const r = await run('h2load', [...args, url], { timeoutMs });
  const output = r.stdout + r.stderr;
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(output);
  const codes = /status codes: (\d+) 2xx/.exec(output);
  const speed = /finished in [\d.]+m?s, ([\d.]+) req\/s, ([\d.]+)([KMG]?)B\/s/.exec(output);
  if (!req) throw new Error(`h2load printed no summary (exit ${r.code}):\n${output.slice(-2000)}`);
  const unit = { '': 1e-6, K: 1e-3, M: 1, G: 1e3 }[speed?.[3] ?? 'M'] ?? 1;
  return {
    total: Number(req[1]),
    done: Number(req[3]),
    succeeded: Number(req[4]),
    failed: Number(req[5]),
    errored: Number(req[6]),
    status2xx: Number(codes?.[1] ?? 0),
    reqPerSec: Number(speed?.[1] ?? 0),
    mbPerSec: Number(speed?.[2] ?? 0) * unit,
    output,
  };
}
