// The benchmark's upstream, in its own process: GET /bytes?n=N answers N bytes.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const block = Buffer.alloc(1024 * 1024, 'abcdefghijklmnopqrstuvwxyz');
const server = http.createServer((req, res) => {
  const n = Math.min(block.length, Number(new URL(req.url ?? '/', 'http://x').searchParams.get('n') ?? 0));
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(n) });
  res.end(block.subarray(0, n));
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as AddressInfo).port }));
