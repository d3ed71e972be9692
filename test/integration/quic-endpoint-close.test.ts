/**
 * A QuicEndpoint in the test process (a UDP socket on loopback, real quiche on both sides, our
 * H3Session on top) closed while a connection is open: what the worker does at the end of a drain
 * that timed out. Nothing of the endpoint may be left to run after close(): every connection's
 * application is told the connection is gone, and no timer of theirs stays armed.
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createCidIssuer } from '../../src/grm/index.js';
import { HTTP_DEFAULTS } from '../../src/proxy/config/section-http.js';
import { QUIC_DEFAULTS } from '../../src/proxy/config/section-quic.js';
import { H3_ERROR } from '../../src/proxy/h3/frames.js';
import { H3Session } from '../../src/proxy/h3/session.js';
import type { HttpExchange } from '../../src/proxy/http/exchange.js';
import { ABORT, ExchangeAborted } from '../../src/proxy/http/exchange-abort.js';
import { WorkerAdmission } from '../../src/proxy/quic/admission.js';
import { QuicEndpoint } from '../../src/proxy/quic/endpoint.js';
import { RetryTokens } from '../../src/proxy/quic/retry-token.js';
import { TlsContexts } from '../../src/proxy/quic/tls-contexts.js';
import { makeCert } from '../helpers/certs.js';
import { waitUntil } from '../helpers/deadline.js';
import { H3Client } from '../helpers/h3-client.js';
import { makeTempDir } from '../helpers/proxy.js';

/** Ref'd Node timers armed in this process (what would keep it alive, and fire). */
const armedTimers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('QuicEndpoint.close()', () => {
  it('ends every connection it still holds: the application is closed, whenEmpty resolves, no timer of theirs is left', async () => {
    const pair = makeCert(makeTempDir('endpoint-close-'), 'server', 'localhost');
    const certificate = { names: ['localhost'], certFile: path.resolve(pair.cert), keyFile: path.resolve(pair.key), selfSigned: false, isDefault: true };
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const { port } = socket.address();
    const exchanges: HttpExchange[] = [];
    const sessions: H3Session[] = [];
    const before = armedTimers();
    const endpoint = new QuicEndpoint({
      socket,
      fd: (socket as unknown as { _handle: { fd: number } })._handle.fd,
      local: { host: '127.0.0.1', port },
      tls: new TlsContexts({ certificates: [certificate], alpn: ['h3'], limits: QUIC_DEFAULTS, ticketKey: randomBytes(48) }),
      selectCertificate: () => certificate,
      issuer: createCidIssuer({ configId: 1, cidLength: QUIC_DEFAULTS.cidLength, k0: '0123456789abcdef', k1: 'fedcba9876543210', slot: 0, worker: 0 }),
      limits: QUIC_DEFAULTS,
      resetKey: randomBytes(32),
      retryTokens: new RetryTokens(randomBytes(32)),
      admission: new WorkerAdmission(QUIC_DEFAULTS),
      log: pino({ level: 'silent' }),
      createApplication: (conn) => {
        const session = new H3Session(conn, {
          handler: { handle: (ex) => void exchanges.push(ex) },
          limits: HTTP_DEFAULTS,
          onHandlerError: (err) => {
            throw err;
          },
        });
        sessions.push(session);
        return session;
      },
    });
    const client = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' });
    // A request the handler holds, and a GOAWAY whose grace period runs (as a drain's would).
    const response = client.get('localhost', '/held').catch((err: unknown) => err);
    await expect.poll(() => exchanges.length).toBe(1);
    sessions[0]!.goaway('now');
    expect(endpoint.connectionCount).toBe(1);

    let emptied = false;
    void endpoint.whenEmpty().then(() => (emptied = true));
    endpoint.close(H3_ERROR.H3_NO_ERROR, 'drain timeout');

    await waitUntil('whenEmpty() to resolve after close()', () => emptied, { timeoutMs: 5_000 });
    expect(endpoint.connectionCount).toBe(0);
    expect(endpoint.counters.connectionsClosed).toBe(1);
    expect(exchanges[0]!.signal.aborted).toBe(true);
    // Why, as the access log says it (ProxyHandler logs the reason): our cut, not the client's reset.
    expect(exchanges[0]!.signal.reason).toBeInstanceOf(ExchangeAborted);
    expect((exchanges[0]!.signal.reason as ExchangeAborted).reason).toBe(ABORT.drainTimeout);
    await expect(response).resolves.toBeInstanceOf(Error);
    await client.closed;
    // The client and the endpoint are gone: no timer of either is left armed.
    expect(armedTimers()).toBeLessThanOrEqual(before);
  });
});
