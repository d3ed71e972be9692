import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RefusalCounter } from '../../src/proxy/http/refusals.js';
import { TcpConnections } from '../../src/proxy/tcp/connections.js';
import { H1Connection } from '../../src/proxy/tcp/h1-connection.js';

const LIMITS = { maxHeaderBytes: 64 * 1024, requestHeaderTimeoutMs: 10_000, requestBodyTimeoutMs: 10_000, keepaliveTimeoutMs: 10_000, maxRequestsPerConnection: 100 };

describe('H1Connection', () => {
  let server: http.Server | undefined;
  afterEach(() => {
    server?.closeAllConnections();
    server?.close();
  });

  it('starts nothing for a request Node parsed after the socket was destroyed', async () => {
    const handled: string[] = [];
    let conn: H1Connection | undefined;
    let delivered = false;
    server = http.createServer();
    server.on('connection', (socket: net.Socket) => {
      conn = new H1Connection(socket, {
        handler: { handle: (ex) => void handled.push(ex.request.path) },
        limits: LIMITS,
        connectionId: 'c1',
        connections: new TcpConnections(10),
        refusals: new RefusalCounter(),
        altSvc: undefined,
        onHandlerError: () => {},
      });
    });
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      // The order a drain can produce: the socket is destroyed, its 'close' is still to come, and
      // the parser hands on a request it had already read.
      req.socket.destroy();
      conn!.onRequest(req, res);
      delivered = true;
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
    client.on('error', () => {});
    client.write('GET /late HTTP/1.1\r\nHost: example.test\r\n\r\n');
    await once(client, 'close');
    await new Promise((resolve) => setImmediate(resolve));
    expect(delivered).toBe(true);
    expect(handled).toEqual([]);
    expect(conn!.activeRequests).toBe(0);
  });
});
