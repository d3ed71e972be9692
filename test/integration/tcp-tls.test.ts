/**
 * TLS on the TCP edge as real clients see it (Debian's `openssl s_client` and curl): which
 * versions are accepted, which protocol ALPN settles on, and session resumption across workers,
 * reloads and binary upgrades (every worker of every generation accepts on a copy of one
 * listening socket; a ticket any of them issued must resume on any other).
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProxyServer } from '../../src/proxy/server.js';
import { run, startTcpEdge, type RunResult, type TcpEdge } from '../helpers/tcp-edge.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

let up: TestUpstream;
let edge: TcpEdge;
/** A listener serving HTTP/2 only over TCP (protocols: [h2, h3]). */
let h2Only: TcpEdge;

beforeAll(async () => {
  up = await startUpstream('a');
  edge = await startTcpEdge({ upstream: up.origin });
  h2Only = await startTcpEdge({ upstream: up.origin, protocols: ['h2', 'h3'] });
});

afterAll(async () => {
  await edge?.close();
  await h2Only?.close();
  await up?.close();
});

const GET = 'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n';

/**
 * `openssl s_client` to the port, sending `input` (then reading until the server closes, so a
 * TLS 1.3 ticket sent after the handshake is read too); stdout and stderr together.
 */
async function sClient(port: number, args: readonly string[], input = ''): Promise<RunResult & { out: string }> {
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-ign_eof', ...args], { input: Buffer.from(input), timeoutMs: 20_000 });
  return { ...r, out: r.stdout + r.stderr };
}

describe('TLS versions', () => {
  // SECLEVEL=0 keeps the client willing to offer the old versions: the refusal is the server's.
  for (const [version, flag, curlMax] of [
    ['1.0', '-tls1', '1.0'],
    ['1.1', '-tls1_1', '1.1'],
  ] as const) {
    it(`TLS ${version} is refused with a protocol_version alert (openssl s_client, curl)`, async () => {
      const r = await sClient(edge.port, [flag, '-cipher', 'DEFAULT@SECLEVEL=0', '-servername', 'a.test'], GET);
      expect(r.out).toMatch(/alert protocol version/);
      expect(r.out).not.toContain('HTTP/1.1 200');
      const c = await run('curl', ['-sS', '-k', `--tlsv${curlMax}`, '--tls-max', curlMax, '--ciphers', 'DEFAULT@SECLEVEL=0', '-o', '/dev/null', `https://127.0.0.1:${edge.port}/`]);
      expect(c.code).toBe(35); // CURLE_SSL_CONNECT_ERROR
      expect(c.stderr).toMatch(/alert protocol version/);
    });
  }

  for (const version of ['1.2', '1.3'] as const) {
    it(`TLS ${version} is accepted (curl, both HTTP versions)`, async () => {
      for (const http of ['--http1.1', '--http2']) {
        const c = await run('curl', ['-sS', '-v', '-k', http, `--tlsv${version}`, '--tls-max', version, '-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${edge.port}/`]);
        expect(c.code, c.stderr).toBe(0);
        expect(c.stdout).toBe('200');
        expect(c.stderr).toContain(`SSL connection using TLSv${version}`);
      }
    });
  }
});

describe('ALPN', () => {
  it('h2 when the client offers it, http/1.1 when it offers only that, HTTP/1.1 without ALPN', async () => {
    const both = await sClient(edge.port, ['-alpn', 'h2,http/1.1']);
    expect(both.out).toContain('ALPN protocol: h2');
    const h1 = await sClient(edge.port, ['-alpn', 'http/1.1'], GET);
    expect(h1.out).toContain('ALPN protocol: http/1.1');
    expect(h1.out).toContain('HTTP/1.1 200');
    const none = await sClient(edge.port, [], GET);
    expect(none.out).toContain('No ALPN negotiated');
    expect(none.out).toContain('HTTP/1.1 200');
  });

  it('protocols [h2]: a client offering only http/1.1 gets the no_application_protocol alert in the handshake', async () => {
    const r = await sClient(h2Only.port, ['-alpn', 'http/1.1'], GET);
    expect(r.out).toMatch(/alert no application protocol/);
    expect(r.out).not.toContain('HTTP/1.1');
    const c = await run('curl', ['-sS', '-k', '--http1.1', '-o', '/dev/null', `https://127.0.0.1:${h2Only.port}/`]);
    expect(c.code).toBe(35);
    expect(c.stderr).toMatch(/alert no application protocol/);
    const h2 = await run('curl', ['-sS', '-k', '--http2', '-o', '/dev/null', '-w', '%{http_code} %{http_version}', `https://127.0.0.1:${h2Only.port}/`]);
    expect(h2.stdout).toBe('200 2');
  });

  it('protocols [h2]: a client without ALPN completes the handshake, then gets 505 (HTTP/2 only) with alt-svc and the connection closed', async () => {
    const r = await sClient(h2Only.port, [], GET);
    expect(r.out).toContain('No ALPN negotiated');
    expect(r.out).toMatch(/HTTP\/1\.1 505 HTTP Version Not Supported\r\n/);
    expect(r.out).toContain(`\r\nalt-svc: h3=":${h2Only.port}"; ma=86400\r\n`);
    expect(r.code).toBe(0); // s_client read to the server's close
  });
});

describe('session resumption across workers, reloads and upgrades', () => {
  /** A full handshake (-sess_out) or a resumption (-sess_in): "New" or "Reused", and whether it was served. */
  async function handshake(port: number, version: '-tls1_3' | '-tls1_2', sni: boolean, sess: { out: string } | { in: string }): Promise<string> {
    const r = await sClient(port, [version, '-alpn', 'http/1.1', ...(sni ? ['-servername', 'a.test'] : ['-noservername']), ...('out' in sess ? ['-sess_out', sess.out] : ['-sess_in', sess.in])], GET);
    expect(r.out).toContain('HTTP/1.1 200');
    const m = /^(New|Reused), (TLSv1\.[23])/m.exec(r.out);
    return m ? `${m[1]} ${m[2]}` : r.out;
  }

  /** Runs `fn` with process.argv as a different binary's (Node's default session id context hashes it). */
  async function asAnotherBinary<T>(fn: () => Promise<T>): Promise<T> {
    const argv = process.argv;
    process.argv = [...argv.slice(0, 1), '/opt/udpgrm-proxy-next/bin/udpgrm-proxy', 'worker'];
    try {
      return await fn();
    } finally {
      process.argv = argv;
    }
  }

  for (const [name, flag] of [
    ['TLS 1.3', '-tls1_3'],
    ['TLS 1.2', '-tls1_2'],
  ] as const) {
    it(`${name}: a ticket from one worker resumes on another, after a reload and after a binary upgrade (with and without SNI)`, async () => {
      const ours = await startTcpEdge({ upstream: up.origin, keepSockets: true });
      const v = flag === '-tls1_3' ? 'TLSv1.3' : 'TLSv1.2';
      try {
        const ticket = { sni: path.join(ours.dir, 'sni.pem'), plain: path.join(ours.dir, 'plain.pem') };
        // Worker 1 alone: full handshakes, tickets saved.
        expect(await handshake(ours.port, flag, true, { out: ticket.sni })).toBe(`New ${v}`);
        expect(await handshake(ours.port, flag, false, { out: ticket.plain })).toBe(`New ${v}`);

        /** `server` stops accepting (it drains); `next` alone takes the connections; both tickets resume there. */
        const resumesOn = async (next: ProxyServer, server: ProxyServer): Promise<void> => {
          await server.drain(2000);
          const before = next.tcpCounters().accepted;
          expect(await handshake(ours.port, flag, true, { in: ticket.sni })).toBe(`Reused ${v}`);
          expect(await handshake(ours.port, flag, false, { in: ticket.plain })).toBe(`Reused ${v}`);
          expect(next.tcpCounters().accepted).toBe(before + 2);
        };
        // Worker 2 of the same generation, accepting on its own copy of the listening socket.
        const worker2 = await ours.startWorker();
        await resumesOn(worker2, ours.server);
        // A reload: the next generation's worker, built from the config (and ticket key file) again.
        const reloaded = await ours.startWorker();
        await resumesOn(reloaded, worker2);
        // A binary upgrade: a worker of another binary (another command line).
        const upgraded = await asAnotherBinary(() => ours.startWorker());
        await resumesOn(upgraded, reloaded);
        // Another deployment (its own ticket key file) cannot decrypt them: a full handshake.
        expect(await handshake(edge.port, flag, true, { in: ticket.sni })).toBe(`New ${v}`);
      } finally {
        await ours.close();
      }
    });
  }
});
