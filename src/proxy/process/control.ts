/**
 * The master's local control channel: a unix socket carrying one JSON line per request and one
 * per reply (control-protocol.ts says what they hold). `udpgrm-proxy reload`, `upgrade` and
 * `list --config` use it, and so does a new master during an upgrade; only root can connect (0600).
 */
import { chmodSync, existsSync, rmSync } from 'node:fs';
import net from 'node:net';
import { decodeReply, decodeRequest, dispatch, type ControlCommand, type ControlHandlers, type ControlReply, type ControlRequest } from './control-protocol.js';
import { DecodeError } from './json-decode.js';

/** A request is one short JSON line; anything longer is not from our CLI. */
const MAX_REQUEST_BYTES = 64 * 1024;

export class ControlServer {
  private closed = false;

  private constructor(
    private readonly server: net.Server,
    readonly path: string,
  ) {}

  static async listen(path: string, handlers: ControlHandlers): Promise<ControlServer> {
    // A socket file left by a master that is gone would make listen fail with EADDRINUSE.
    if (existsSync(path) && !(await isListening(path))) rmSync(path, { force: true });
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
    const answer = async (line: string): Promise<ControlReply<ControlCommand>> => {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        return { ok: false, error: 'control request is not JSON' };
      }
      let req: ControlRequest;
      try {
        req = decodeRequest(value);
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        return { ok: false, error: err.message };
      }
      try {
        return await dispatch(handlers, req);
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
    rmSync(this.path, { force: true });
  }
}

/**
 * Why a control request got no reply. Only `no-master` means nobody listens on the socket; the
 * others mean something is there that we could not talk to.
 */
export type ControlErrorKind = 'no-master' | 'unreachable' | 'timeout' | 'bad-reply';

export class ControlError extends Error {
  constructor(
    readonly kind: ControlErrorKind,
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

/** Sends one request to a running master and returns its reply, checked against the protocol. */
export function controlRequest<C extends ControlCommand>(path: string, req: ControlRequest<C>, timeoutMs = 120_000): Promise<ControlReply<C>> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(path);
    let buf = '';
    let settled = false;
    const fail = (kind: ControlErrorKind, message: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conn.destroy();
      reject(new ControlError(kind, path, message));
    };
    const timer = setTimeout(() => fail('timeout', `no answer from the master on ${path} within ${timeoutMs} ms`), timeoutMs);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(`${JSON.stringify(req)}\n`));
    conn.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0 || settled) return;
      let reply: ControlReply<C>;
      try {
        reply = decodeReply(req.cmd, JSON.parse(buf.slice(0, nl)));
      } catch (err) {
        fail('bad-reply', `bad reply from the master on ${path}: ${err instanceof DecodeError ? err.message : 'not JSON'}`);
        return;
      }
      settled = true;
      clearTimeout(timer);
      conn.end();
      resolve(reply);
    });
    conn.on('error', (err: NodeJS.ErrnoException) => {
      if (isNobodyListening(err)) fail('no-master', `no running udpgrm-proxy master on ${path}`);
      else fail('unreachable', `cannot talk to the master on ${path}: ${err.message}`);
    });
    conn.on('close', () => fail('bad-reply', `the master on ${path} closed the connection without a reply`));
  });
}

/** No socket file, or a file nobody listens on (left by a master that is gone). */
function isNobodyListening(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ENOENT' || err.code === 'ECONNREFUSED';
}

/** Whether something accepts connections on `path`; errors other than "nobody listening" throw. */
function isListening(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', (err: NodeJS.ErrnoException) => {
      if (isNobodyListening(err)) resolve(false);
      else reject(new ControlError('unreachable', path, `cannot tell whether a master listens on ${path}: ${err.message}`));
    });
  });
}
