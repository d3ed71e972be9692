/**
 * The master's local control channel: a unix socket speaking one JSON object per line.
 * `udpgrm-proxy reload` and `udpgrm-proxy list --config` use it; only root can connect (0600).
 */
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import net from 'node:net';

export type ControlRequest =
  | { readonly cmd: 'reload' }
  | { readonly cmd: 'status' }
  | { readonly cmd: 'stop'; readonly graceful: boolean }
  /** Start a new master from the binary on disk and hand over to it. */
  | { readonly cmd: 'upgrade' }
  /** Sent by that new master once its generation works: release the socket, drain, exit. */
  | { readonly cmd: 'handover'; readonly pid: number };

/** A request is one short JSON line; anything longer is not from our CLI. */
const MAX_REQUEST_BYTES = 64 * 1024;

const COMMANDS: ReadonlySet<string> = new Set(['reload', 'status', 'stop', 'upgrade', 'handover']);

export type ControlHandler = (req: ControlRequest) => Promise<unknown>;

export class ControlServer {
  private closed = false;

  private constructor(
    private readonly server: net.Server,
    readonly path: string,
  ) {}

  static async listen(path: string, handler: ControlHandler): Promise<ControlServer> {
    // A socket file left by a master that is gone would make listen fail with EADDRINUSE.
    if (existsSync(path) && !(await isAlive(path))) unlinkSync(path);
    const server = net.createServer((conn) => {
      let buf = '';
      conn.setEncoding('utf8');
      conn.on('data', (chunk: string) => {
        buf += chunk;
        if (buf.length > MAX_REQUEST_BYTES) {
          conn.destroy();
          return;
        }
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          void answer(line).then(
            (reply) => conn.write(`${JSON.stringify(reply)}\n`),
            () => conn.destroy(),
          );
        }
      });
      conn.on('error', () => {});
    });
    const answer = async (line: string): Promise<unknown> => {
      let req: ControlRequest;
      try {
        req = JSON.parse(line) as ControlRequest;
      } catch {
        return { ok: false, error: 'control request is not JSON' };
      }
      if (typeof req !== 'object' || req === null || typeof req.cmd !== 'string') return { ok: false, error: 'control request needs a "cmd" string' };
      if (!COMMANDS.has(req.cmd)) return { ok: false, error: `unknown control command ${JSON.stringify(req.cmd)}` };
      try {
        return await handler(req);
      } catch (err) {
        return { ok: false, error: (err as Error).message };
      }
    };
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    chmodSync(path, 0o600);
    return new ControlServer(server, path);
  }

  /** Stops accepting and removes the socket file (once: after a handover the path is the new master's). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

/** Sends one request to a running master and returns its reply. */
export function controlRequest(path: string, req: ControlRequest, timeoutMs = 120_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(path);
    let buf = '';
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`no answer from the master on ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(`${JSON.stringify(req)}\n`));
    conn.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      conn.end();
      resolve(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
    });
    conn.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new Error(err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? `no running udpgrm-proxy master on ${path}` : err.message));
    });
  });
}

function isAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.createConnection(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}
