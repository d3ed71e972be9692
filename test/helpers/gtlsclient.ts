/**
 * ngtcp2's gtlsclient as a real HTTP/3 client. Its exit code is 0 even when the handshake fails,
 * so results are read from its output: response headers and body files.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface GtlsResult {
  readonly exitCode: number | null;
  readonly output: string;
  /** ':status' values of the responses, in the order they completed. */
  readonly statuses: number[];
  /** Downloaded bodies keyed by file name (gtlsclient names them after the URL path). */
  readonly bodies: Map<string, Buffer>;
}

export interface GtlsOptions {
  readonly requests?: number;
  readonly method?: string;
  readonly dataFile?: string;
  readonly timeoutMs?: number;
  readonly sni?: string;
  readonly extraArgs?: string[];
  /** ngtcp2 log lines to keep in `output` as well (they are dropped otherwise), e.g. /transport_parameters/. */
  readonly keepLog?: RegExp;
}

export async function gtlsclient(host: string, port: number, urls: string[], opts: GtlsOptions = {}): Promise<GtlsResult> {
  const downloadDir = mkdtempSync(path.join(tmpdir(), 'gtls-'));
  const cleanup: string[] = [];
  // Body hex dumps are off; header lines ("[name: value]") and HTTP events stay.
  const args = ['--exit-on-all-streams-close', '--no-quic-dump', '--no-http-dump', `--download=${downloadDir}`, '--timeout=10s'];
  if (opts.requests) args.push('-n', String(opts.requests));
  if (opts.method) args.push('-m', opts.method);
  if (opts.dataFile) args.push('-d', opts.dataFile);
  if (opts.extraArgs) args.push(...opts.extraArgs);
  let command = 'gtlsclient';
  // For an IP address gtlsclient sends "localhost" by itself.
  if (opts.sni && opts.sni !== host && opts.sni !== 'localhost') {
    // Debian's gtlsclient (ngtcp2 0.12) ignores --sni and sends "localhost" for an IP address; it
    // sends HOST when HOST is a name. So the name is HOST, resolved to the address through an
    // /etc/hosts of its own (bind-mounted in a private mount namespace: the host's stays as is).
    const hostsFile = path.join(downloadDir, '..', `${path.basename(downloadDir)}.hosts`);
    writeFileSync(hostsFile, `${host} ${opts.sni}\n`);
    cleanup.push(hostsFile);
    args.unshift('-m', 'sh', '-c', 'mount --bind "$0" /etc/hosts && exec gtlsclient "$@"', hostsFile);
    command = 'unshare';
    args.push(opts.sni, String(port), ...urls);
  } else {
    args.push(host, String(port), ...urls);
  }
  const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  // ngtcp2 logs every packet; keep only the lines we assert on, so big transfers stay cheap.
  let output = '';
  const keep = (line: string): void => {
    if (opts.keepLog?.test(line)) output += `${line}\n`;
    else if (line.startsWith('[') || line.startsWith('http:') || /err|close|handshake|reset/i.test(line)) {
      if (!line.startsWith('I0')) output += `${line}\n`;
    }
  };
  createInterface({ input: proc.stdout }).on('line', keep);
  createInterface({ input: proc.stderr }).on('line', keep);
  const timer = setTimeout(() => proc.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
  const exitCode = await new Promise<number | null>((resolve) => proc.once('close', (code) => resolve(code)));
  clearTimeout(timer);
  const statuses = [...output.matchAll(/^http: stream \S+ \[:status: (\d{3})\]$/gm)].map((m) => Number(m[1]));
  const bodies = new Map<string, Buffer>();
  for (const f of readdirSync(downloadDir)) bodies.set(f, readFileSync(path.join(downloadDir, f)));
  rmSync(downloadDir, { recursive: true, force: true });
  for (const f of cleanup) rmSync(f, { force: true });
  return { exitCode, output, statuses, bodies };
}
